// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {ITaskManager} from "./interfaces/ITaskManager.sol";
import {IPrivacyLedger} from "./interfaces/IPrivacyLedger.sol";
import {IStakeRegistry} from "./interfaces/IStakeRegistry.sol";
import {ICommitteeManager} from "./interfaces/ICommitteeManager.sol";
import {TaskManagerStorage} from "./base/TaskManagerStorage.sol";
import {PrivacyLedger} from "./base/PrivacyLedger.sol";
import {RewardClaims} from "./base/RewardClaims.sol";

/// @title TaskManager
/// @notice Federated-learning tasks: a funded budget, a sequence of rounds (Open -> Aggregating -> Finalized or
///         Expired), one update digest per contributor per round, the validator's result with a Merkle root of
///         rewards, pull-payment claims, slashing through the StakeRegistry, and refunds to the task owner.
/// @dev One deployed contract assembled from pieces with one job each: TaskManagerStorage (state and views),
///      SubmissionLocks (the stake each submission locks until its round settles), RoundLifecycle (submissions,
///      results, slashes, expiry), RewardClaims (claims and refunds); this file creates, cancels and pauses tasks.
///      Digests are the 32-byte sha2-256 digest inside a CIDv0 (dag-pb, Kubo's default `add`: 256 KiB chunks,
///      dag-pb leaves): the one CID form that can be rebuilt from those 32 bytes alone (multihash 0x12 0x20
///      prefix, base58btc).
contract TaskManager is Ownable2Step, PrivacyLedger, RewardClaims {
    using SafeERC20 for IERC20;
    using SafeCast for uint256;

    /// @notice Deploy against `registry`, with the claim period that every task of this manager gets.
    /// @param registry the StakeRegistry; it must grant this contract SLASHER_ROLE (the deploy script does).
    /// @param claimPeriod_ seconds after a task ends during which rewards stay claimable.
    /// @param initialOwner may pause and unpause (two-step ownership transfer).
    constructor(IStakeRegistry registry, uint64 claimPeriod_, address initialOwner)
        TaskManagerStorage(registry, claimPeriod_)
        Ownable(initialOwner)
    {}

    // ─── ADMIN ───
    /// @notice Owner: stop new tasks. Running tasks go on untouched (submissions, results, expiry, claims, refunds,
    ///         unstaking): stopping submissions while round clocks run would let the owner empty rounds at will.
    function pause() external onlyOwner {
        _pause();
    }

    /// @notice Owner: lift the pause.
    function unpause() external onlyOwner {
        _unpause();
    }

    /// @inheritdoc ITaskManager
    /// @dev Once: a committee bound to a task must keep judging it, so the manager cannot be swapped under it.
    function setCommitteeManager(address committeeManager_) external onlyOwner {
        if (committeeManager_ == address(0)) revert TaskManagerZeroAddress("committeeManager");
        address current = _committeeManager;
        if (current != address(0)) revert TaskManagerCommitteeManagerAlreadySet(current);
        _committeeManager = committeeManager_;
        emit CommitteeManagerSet(committeeManager_);
    }

    // ─── TASKS ───
    /// @inheritdoc ITaskManager
    /// @dev Pulls the budget and refuses a token that delivers less than asked. Emits TaskCreated, RoundOpened.
    ///      A committee task calls the CommitteeManager last (it binds the owner's complete committee or reverts).
    function createTask(TaskParams calldata p) external whenNotPaused nonReentrant returns (uint256 taskId) {
        taskId = _createTask(p, 0);
    }

    /// @inheritdoc IPrivacyLedger
    /// @dev createTask's checks and effects, with the cap stored beside them (before any interaction's end).
    function createPrivateTask(TaskParams calldata p, uint64 epsilonCap)
        external
        whenNotPaused
        nonReentrant
        returns (uint256 taskId)
    {
        if (epsilonCap == 0) revert TaskManagerZeroPrivacyCap();
        if (epsilonCap > type(uint32).max) revert TaskManagerPrivacyCapTooLarge(epsilonCap, type(uint32).max);
        taskId = _createTask(p, epsilonCap);
    }

    /// @inheritdoc ITaskManager
    /// @dev The current round still runs to its end (result or expiry); then the task ends and its unallocated
    ///      budget becomes refundable.
    function cancelTask(uint256 taskId) external {
        Task storage t = _tasks[taskId];
        _onlyTaskOwner(t, taskId);
        if (t.endedAt != 0) revert TaskManagerTaskEnded(taskId);
        if (t.cancelled) revert TaskManagerAlreadyCancelled(taskId);
        t.cancelled = true;
        emit TaskCancelled(taskId);
    }

    // ─── INTERNAL ───
    /// @dev A task's creation; `epsilonCap` 0 for a plain task, positive for a private one (PrivacyLedger).
    function _createTask(TaskParams calldata p, uint64 epsilonCap) private returns (uint256 taskId) {
        (uint256 budget, uint104 validatorStake, address committee) = _checkParams(p);
        // Interaction first only to measure what arrived; nonReentrant guards the window.
        uint256 before = p.rewardToken.balanceOf(address(this));
        p.rewardToken.safeTransferFrom(msg.sender, address(this), budget);
        uint256 received = p.rewardToken.balanceOf(address(this)) - before;
        if (received != budget) revert TaskManagerFeeOnTransfer(address(p.rewardToken), budget, received);

        taskId = _taskCount++;
        Task storage t = _tasks[taskId];
        t.validator = p.validator;
        t.numRounds = uint24(p.numRounds); // < 2^24, checked
        t.submissionWindow = uint32(p.submissionWindow); // < 2^32, checked
        t.aggregationWindow = uint32(p.aggregationWindow); // < 2^32, checked
        t.minContributorStake = uint128(p.minContributorStake); // < 2^128, checked
        t.maxContributors = p.maxContributors;
        t.closeWindow = uint32(p.aggregationWindow);
        t.minOpen = p.minOpen; // <= submissionWindow, checked
        t.rewardPerRound = uint128(p.rewardPerRound); // budget < 2^120, so each round's share is too
        t.rewardToken = p.rewardToken;
        t.funded = uint128(budget);
        t.owner = msg.sender;
        t.slashAmount = uint128(p.slashAmount); // <= minContributorStake
        t.specDigest = p.specDigest;
        t.initialModelDigest = p.initialModelDigest;
        emit TaskCreated(taskId, msg.sender, address(p.rewardToken), budget, p.specDigest, p.initialModelDigest);
        if (epsilonCap != 0) {
            t.epsilonCap = uint32(epsilonCap); // <= type(uint32).max, checked
            emit PrivacyCapSet(taskId, epsilonCap);
        }
        _openRound(t, taskId, 0, validatorStake);
        if (committee != address(0)) ICommitteeManager(committee).onTaskCreated(taskId, msg.sender, p);
    }

    /// @dev Validates the parameters and the validator's stake; returns the budget and the validator's minimum
    ///      (which the task's rounds keep: the validator must hold it whenever it posts a result). A task naming the
    ///      CommitteeManager (returned as `committee`) needs no validator stake: its members lock their seats.
    function _checkParams(TaskParams calldata p)
        private
        view
        returns (uint256 budget, uint104 validatorStake, address committee)
    {
        if (address(p.rewardToken) == address(0)) revert TaskManagerZeroAddress("rewardToken");
        if (p.validator == address(0)) revert TaskManagerZeroAddress("validator");
        if (p.numRounds == 0 || p.numRounds > type(uint24).max) revert TaskManagerInvalidRounds(p.numRounds);
        if (p.rewardPerRound == 0 || p.rewardPerRound > type(uint120).max) {
            revert TaskManagerInvalidReward(p.rewardPerRound, p.numRounds);
        }
        budget = uint256(p.numRounds) * p.rewardPerRound; // < 2^32 * 2^120: no overflow
        if (budget > type(uint120).max) revert TaskManagerInvalidReward(p.rewardPerRound, p.numRounds);
        if (
            p.submissionWindow == 0 || p.aggregationWindow == 0 || p.submissionWindow > type(uint32).max
                || p.aggregationWindow > type(uint32).max
        ) revert TaskManagerInvalidWindows(p.submissionWindow, p.aggregationWindow);
        if (p.maxContributors == 0) revert TaskManagerInvalidMaxContributors(p.maxContributors);
        if (p.minOpen > p.submissionWindow) revert TaskManagerInvalidMinOpen(p.minOpen, p.submissionWindow);
        uint256 registryMin = _registry.minContributorStake();
        if (p.minContributorStake < registryMin || p.minContributorStake > type(uint128).max) {
            revert TaskManagerContributorStakeTooLow(p.minContributorStake, registryMin);
        }
        if (p.slashAmount > p.minContributorStake) revert TaskManagerSlashTooHigh(p.slashAmount, p.minContributorStake);
        address committeeManager_ = _committeeManager;
        if (committeeManager_ != address(0) && p.validator == committeeManager_) return (budget, 0, committeeManager_);
        validatorStake = _registry.minValidatorStake().toUint104();
        _checkValidatorStake(p.validator, validatorStake);
    }
}
