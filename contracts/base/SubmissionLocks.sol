// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {TaskManagerStorage} from "./TaskManagerStorage.sol";
import {ITaskManager} from "../interfaces/ITaskManager.sol";

/// @title SubmissionLocks
/// @notice The stake behind each submission stays slashable until its round settles. A submission locks the task's
///         slash amount of the contributor's stake in the StakeRegistry; the lock is released, by anyone, once the
///         round is finalized or past its aggregation deadline (when no result, so no slash, can come any more).
///         A contributor who submits to consecutive rounds of a task carries one lock from round to round instead.
/// @dev O(1) per call, no loop over participants: the lock of (task, round, account) is implied by its stored
///      digest (its amount is the task's fixed slash amount), and one bit beside the claim bit records its release.
///      The lock of round r is carried into round r + 1 when the account submits there while still holding it;
///      then the account's submission to r + 1 marks r's lock as moved, so r cannot be released again.
///      A slash takes the tokens of the settling round's lock and leaves the lock itself to this release, so the
///      registry's locked total can exceed the stake until then; it never understates what unsettled rounds need.
abstract contract SubmissionLocks is TaskManagerStorage {
    /// @inheritdoc ITaskManager
    /// @dev Effects, then the registry call. Releasing only frees stake nobody can slash any more, so anyone may
    ///      call it for anyone; each lock is released once.
    function release(uint256 taskId, uint256 round, address account) external returns (uint256 amount) {
        RoundPhase phase = _phase(_clocks[taskId][round], _results[taskId][round]);
        if (phase != RoundPhase.Finalized && phase != RoundPhase.Expired) {
            revert TaskManagerRoundNotSettled(taskId, round, phase);
        }
        amount = _tasks[taskId].slashAmount;
        if (amount == 0 || !_holdsLock(taskId, round, account)) revert TaskManagerNothingLocked(taskId, round, account);
        _settlements[taskId][round][account].released = true;
        emit LockReleased(taskId, round, account, amount);
        _registry.unlock(account, amount);
    }

    /// @inheritdoc ITaskManager
    function lockedFor(uint256 taskId, uint256 round, address account) external view returns (uint256) {
        return _holdsLock(taskId, round, account) ? _tasks[taskId].slashAmount : 0;
    }

    // ─── INTERNAL ───
    /// @dev The stake the caller's submission to `round` must newly lock (0: nothing, or its previous round's lock
    ///      carries over), checked against its `active` and `locked` stake. Called before the submission is stored.
    ///      A carried lock belongs to a settled round (round r + 1 opens only once r ended), so moving it leaves the
    ///      registry's total as it is, and needs that total to be within the active stake, as a new lock would.
    ///      The carry is tested first: it needs no read of the slash amount unless the check fails.
    function _lockToTake(Task storage t, uint256 taskId, uint256 round, uint256 active, uint256 locked)
        internal
        view
        returns (uint256 amount)
    {
        if (round != 0 && _holdsLock(taskId, round - 1, msg.sender)) {
            if (locked > active && t.slashAmount != 0) revert TaskManagerStakeLocked(msg.sender, active, locked, 0);
            return 0;
        }
        amount = t.slashAmount;
        if (amount != 0 && locked + amount > active) {
            revert TaskManagerStakeLocked(msg.sender, active, locked, amount);
        }
    }

    /// @dev `account` submitted to `round`, has not released that lock, and did not carry it into the next round.
    function _holdsLock(uint256 taskId, uint256 round, address account) internal view returns (bool) {
        if (_submissions[taskId][round][account] == bytes32(0)) return false;
        if (_settlements[taskId][round][account].released) return false;
        return _submissions[taskId][round + 1][account] == bytes32(0);
    }
}
