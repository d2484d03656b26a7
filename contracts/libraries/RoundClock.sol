// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {ITaskManager} from "../interfaces/ITaskManager.sol";

/// @title RoundClock
/// @notice A round's clock: when it opened, its two deadlines, its submission count and the validator's required
///         stake, in one storage slot, and the phase those deadlines give at the block time.
/// @dev Time: Anvil mines only when a transaction arrives, so a view's phase is judged at the last block, while a
///      transaction judges deadlines at its own block time. A round's recorded outcome (Finalized or Expired) is
///      kept by the caller beside its result; `phase` here is what time alone says.
library RoundClock {
    /// @dev One slot, written when the round opens: its deadlines, its submission count, and the active stake the
    ///      task's validator must hold to post its result (the registry's minimum when the task was created, copied
    ///      from round to round so that postResult, which reads this slot anyway, checks it without another one).
    ///      Times fit uint40 until the year 36812.
    struct Clock {
        uint40 openedAt;
        uint40 submissionDeadline;
        uint40 aggregationDeadline;
        uint32 submissions;
        uint104 validatorStake;
    }

    /// @dev Open `round` now: submissions until now + submissionWindow, a result until that + aggregationWindow.
    function open(
        mapping(uint256 => Clock) storage clocks,
        uint256 round,
        uint32 submissionWindow,
        uint32 aggregationWindow,
        uint104 validatorStake
    ) internal returns (uint40 submissionDeadline, uint40 aggregationDeadline) {
        uint40 nowTs = uint40(block.timestamp);
        submissionDeadline = nowTs + submissionWindow;
        aggregationDeadline = submissionDeadline + aggregationWindow;
        clocks[round] = Clock(nowTs, submissionDeadline, aggregationDeadline, 0, validatorStake); // one slot, one write
    }

    /// @dev Close submissions now; the validator gets its whole aggregation window from now.
    function close(Clock storage c, uint32 aggregationWindow) internal returns (uint40 closedAt, uint40 deadline) {
        closedAt = uint40(block.timestamp);
        deadline = closedAt + aggregationWindow;
        c.submissionDeadline = closedAt;
        c.aggregationDeadline = deadline;
    }

    /// @dev What the clock alone says: Pending (never opened), Open, then Aggregating until the aggregation deadline,
    ///      then Expired. A recorded outcome overrides Aggregating and Expired (see TaskManagerStorage._phase):
    ///      an outcome is recorded only at or after the submission deadline, and the deadline moves only while open.
    function phase(Clock storage c) internal view returns (ITaskManager.RoundPhase) {
        if (c.openedAt == 0) return ITaskManager.RoundPhase.Pending;
        if (block.timestamp < c.submissionDeadline) return ITaskManager.RoundPhase.Open;
        if (block.timestamp < c.aggregationDeadline) return ITaskManager.RoundPhase.Aggregating;
        return ITaskManager.RoundPhase.Expired;
    }

    /// @dev The last opened round of `numRounds`: rounds open in order, so binary search for the last opened clock.
    function current(mapping(uint256 => Clock) storage clocks, uint256 numRounds) internal view returns (uint256 lo) {
        uint256 hi = numRounds; // invariant: round lo is opened, rounds >= hi are not
        while (hi - lo > 1) {
            uint256 mid = (lo + hi) / 2;
            if (clocks[mid].openedAt != 0) lo = mid;
            else hi = mid;
        }
    }
}
