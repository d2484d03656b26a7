// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {TaskManagerStorage} from "./TaskManagerStorage.sol";
import {ITaskManager} from "../interfaces/ITaskManager.sol";

/// @title RewardClaims
/// @notice The budget's way out: contributors pull their rewards against each finalized round's Merkle root
///         during the claim period; the owner pulls what is not owed (unallocated budget, then, after the claim
///         period, everything unclaimed).
/// @dev Pull payments only, each guarded and with its effects recorded before the transfer. Per task,
///      funded == paidOut + refunded + held; per round, claimed never exceeds totalRewards.
abstract contract RewardClaims is TaskManagerStorage {
    using SafeERC20 for IERC20;
    using SafeCast for uint256;

    /// @inheritdoc ITaskManager
    function claim(uint256 taskId, uint256 round, uint256 amount, bytes32[] calldata proof) external nonReentrant {
        Task storage t = _tasks[taskId];
        _checkClaimPeriod(t, taskId);
        _claim(taskId, round, amount, proof);
        t.paidOut += uint128(amount); // amount <= the round's total (checked), which fits uint128
        t.rewardToken.safeTransfer(msg.sender, amount);
    }

    /// @inheritdoc ITaskManager
    /// @dev One transfer for the sum. Any failing entry reverts the whole call.
    function claimMany(
        uint256 taskId,
        uint256[] calldata rounds,
        uint256[] calldata amounts,
        bytes32[][] calldata proofs
    ) external nonReentrant {
        uint256 n = rounds.length;
        if (amounts.length != n || proofs.length != n) {
            revert TaskManagerLengthMismatch(n, amounts.length, proofs.length);
        }
        if (n == 0) revert TaskManagerNothingToClaim(taskId);
        Task storage t = _tasks[taskId];
        _checkClaimPeriod(t, taskId);
        uint256 total;
        for (uint256 i; i < n; ++i) {
            _claim(taskId, rounds[i], amounts[i], proofs[i]);
            total += amounts[i];
        }
        t.paidOut += total.toUint128();
        t.rewardToken.safeTransfer(msg.sender, total);
    }

    /// @inheritdoc ITaskManager
    function withdrawRefund(uint256 taskId) external nonReentrant returns (uint256 amount) {
        Task storage t = _tasks[taskId];
        _onlyTaskOwner(t, taskId);
        if (t.endedAt == 0) revert TaskManagerTaskNotEnded(taskId);
        amount = _refundable(t);
        if (amount == 0) revert TaskManagerNothingToRefund(taskId);
        t.carry = 0;
        t.refunded += uint128(amount); // refunded + amount <= funded < 2^120
        emit RefundWithdrawn(taskId, msg.sender, amount);
        t.rewardToken.safeTransfer(msg.sender, amount);
    }

    // ─── VIEWS ───
    /// @inheritdoc ITaskManager
    function hasClaimed(uint256 taskId, uint256 round, address account) external view returns (bool) {
        return _settlements[taskId][round][account].claimed;
    }

    /// @inheritdoc ITaskManager
    function claimDeadline(uint256 taskId) external view returns (uint64) {
        uint64 endedAt = _tasks[taskId].endedAt;
        return endedAt == 0 ? 0 : endedAt + _claimPeriod;
    }

    /// @inheritdoc ITaskManager
    function refundable(uint256 taskId) external view returns (uint256) {
        Task storage t = _tasks[taskId];
        return t.endedAt == 0 ? 0 : _refundable(t);
    }

    // ─── INTERNAL ───
    /// @dev Checks and records one claim of the caller; the caller transfers.
    function _claim(uint256 taskId, uint256 round, uint256 amount, bytes32[] calldata proof) private {
        Result storage r = _results[taskId][round];
        bytes32 root = r.rewardsRoot;
        if (root == bytes32(0)) {
            RoundPhase phase = _phase(_clocks[taskId][round], r);
            if (phase != RoundPhase.Finalized) revert TaskManagerRoundNotFinalized(taskId, round, phase);
            revert TaskManagerInvalidProof(taskId, round, msg.sender, amount); // finalized with no rewards
        }
        if (amount == 0) revert TaskManagerNothingToClaim(taskId);
        Settlement storage settlement = _settlements[taskId][round][msg.sender];
        if (settlement.claimed) revert TaskManagerAlreadyClaimed(taskId, round, msg.sender);
        // OpenZeppelin StandardMerkleTree leaf: double keccak of the ABI-encoded entry.
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(taskId, round, msg.sender, amount))));
        if (!MerkleProof.verifyCalldata(proof, root, leaf)) {
            revert TaskManagerInvalidProof(taskId, round, msg.sender, amount);
        }
        uint256 total = r.totalRewards;
        uint256 newClaimed = uint256(r.claimed) + amount;
        if (newClaimed > total) revert TaskManagerClaimExceedsRound(taskId, round, newClaimed, total);
        settlement.claimed = true;
        r.claimed = uint128(newClaimed); // <= totalRewards < 2^120
        emit RewardClaimed(taskId, round, msg.sender, amount);
    }

    function _checkClaimPeriod(Task storage t, uint256 taskId) private view {
        uint64 endedAt = t.endedAt;
        if (endedAt != 0 && block.timestamp > endedAt + _claimPeriod) {
            revert TaskManagerClaimPeriodOver(taskId, endedAt + _claimPeriod);
        }
    }

    /// @dev Unallocated budget once ended; after the claim period, everything still held.
    function _refundable(Task storage t) private view returns (uint256) {
        if (block.timestamp > t.endedAt + _claimPeriod) return uint256(t.funded) - t.paidOut - t.refunded;
        return t.carry;
    }
}
