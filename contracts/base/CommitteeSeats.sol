// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {CommitteeStorage} from "./CommitteeStorage.sol";
import {ICommitteeManager} from "../interfaces/ICommitteeManager.sol";
import {ITaskManager} from "../interfaces/ITaskManager.sol";

/// @title CommitteeSeats
/// @notice A committee's life before and after its task: the owner proposes it, each member opts in by locking a
///         seat stake in the registry, the TaskManager binds it to the owner's next task (only once every member
///         joined, so contributors see the whole committee before they stake), and members leave once the task ended.
/// @dev Seat stakes are locked through the registry's lock primitive (this contract holds SLASHER_ROLE) and are the
///      members' consensus weights; they are fixed while the committee serves (no seat is left before the task ends).
abstract contract CommitteeSeats is CommitteeStorage {
    /// @inheritdoc ICommitteeManager
    /// @dev O(m^2) duplicate check over at most 16 members.
    function propose(
        address[] calldata members,
        uint256 minSeatStake,
        uint32 availabilityWindow,
        uint32 commitWindow,
        uint32 revealWindow,
        uint16 memberShareBps
    ) external returns (uint256 committeeId) {
        uint256 m = members.length;
        if (m == 0 || m > MAX_MEMBERS) revert CommitteeManagerInvalidSize(m, MAX_MEMBERS);
        uint256 registryMin = _registry.minValidatorStake();
        if (minSeatStake < registryMin || minSeatStake > type(uint96).max) {
            revert CommitteeManagerInvalidSeatStake(minSeatStake, registryMin);
        }
        if (memberShareBps > MAX_MEMBER_SHARE_BPS) {
            revert CommitteeManagerInvalidShare(memberShareBps, MAX_MEMBER_SHARE_BPS);
        }
        if (availabilityWindow == 0 || commitWindow == 0 || revealWindow == 0) {
            revert CommitteeManagerInvalidWindows(availabilityWindow, commitWindow, revealWindow);
        }
        committeeId = ++_committeeCount;
        Committee storage c = _committees[committeeId];
        for (uint256 i; i < m; ++i) {
            address member = members[i];
            Seat storage seat = _seats[committeeId][member];
            if (member == address(0) || seat.proposed) revert CommitteeManagerInvalidMember(i, member);
            (seat.index, seat.proposed) = (uint8(i), true); // i < 16
        }
        (c.owner, c.availabilityWindow, c.commitWindow, c.revealWindow) =
            (msg.sender, availabilityWindow, commitWindow, revealWindow);
        (c.minSeatStake, c.memberShareBps, c.members) = (uint96(minSeatStake), memberShareBps, members);
        _pending[msg.sender] = committeeId;
        emit CommitteeProposed(
            committeeId,
            msg.sender,
            members,
            minSeatStake,
            availabilityWindow,
            commitWindow,
            revealWindow,
            memberShareBps
        );
    }

    /// @inheritdoc ICommitteeManager
    /// @dev Effects, then the registry's lock (which reverts if the member's unlocked active stake is short).
    function join(uint256 committeeId, uint256 stake) external {
        Committee storage c = _committee(committeeId);
        if (c.bound || _pending[c.owner] != committeeId) revert CommitteeManagerNotPending(committeeId);
        Seat storage seat = _seats[committeeId][msg.sender];
        if (!seat.proposed) revert CommitteeManagerNotProposed(committeeId, msg.sender);
        if (seat.joined) revert CommitteeManagerAlreadyJoined(committeeId, msg.sender);
        uint256 minSeat = c.minSeatStake;
        if (stake < minSeat || stake > type(uint96).max) {
            revert CommitteeManagerInvalidStake(committeeId, stake, minSeat);
        }
        (seat.stake, seat.joined) = (uint96(stake), true);
        uint8 joined = c.joined + 1; // <= members.length <= 16
        c.joined = joined;
        c.totalStake += uint104(stake); // < 16 * 2^96
        emit SeatJoined(committeeId, msg.sender, stake, joined);
        _registry.lock(msg.sender, stake);
    }

    /// @inheritdoc ICommitteeManager
    /// @dev A bound committee's stakes stay recorded (they weighed its rounds); an unbound one forgets the seat's
    ///      stake so that the member may join again.
    function leave(uint256 committeeId) external {
        Committee storage c = _committee(committeeId);
        Seat storage seat = _seats[committeeId][msg.sender];
        if (!seat.joined) revert CommitteeManagerNotJoined(committeeId, msg.sender);
        uint256 stake = seat.stake;
        if (c.bound) {
            uint256 taskId = c.taskId;
            if (!_taskManager.getTask(taskId).ended) revert CommitteeManagerTaskRunning(committeeId, taskId);
        } else {
            (seat.stake, c.joined) = (0, c.joined - 1);
            c.totalStake -= uint104(stake);
        }
        seat.joined = false;
        emit SeatLeft(committeeId, msg.sender, stake);
        _registry.unlock(msg.sender, stake);
    }

    /// @inheritdoc ICommitteeManager
    /// @dev Called by TaskManager.createTask for a task whose validator is this contract, after the task is stored.
    function onTaskCreated(uint256 taskId, address owner, ITaskManager.TaskParams calldata params) external {
        if (msg.sender != address(_taskManager)) revert CommitteeManagerNotTaskManager(msg.sender);
        uint256 committeeId = _pending[owner];
        if (committeeId == 0) revert CommitteeManagerNoPendingCommittee(owner);
        Committee storage c = _committees[committeeId];
        uint256 size = c.members.length;
        if (c.joined != size) revert CommitteeManagerCommitteeIncomplete(committeeId, c.joined, size);
        if (params.maxContributors > MAX_CONTRIBUTORS) {
            revert CommitteeManagerTooManyContributors(params.maxContributors, MAX_CONTRIBUTORS);
        }
        (uint32 a, uint32 cw, uint32 r) = (c.availabilityWindow, c.commitWindow, c.revealWindow);
        uint256 phases = uint256(a) + cw + r;
        if (phases >= params.aggregationWindow) revert CommitteeManagerWindowsTooLong(phases, params.aggregationWindow);
        delete _pending[owner];
        (c.bound, c.taskId) = (true, taskId);
        // ids count up from 1, far below 2^64; the TaskManager checked the aggregation window is below 2^32
        _bindings[taskId] = Binding(uint64(committeeId), a, cw, r, uint32(params.aggregationWindow));
        emit CommitteeBound(committeeId, taskId);
    }
}
