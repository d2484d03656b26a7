// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {ICommitteeManager} from "../interfaces/ICommitteeManager.sol";
import {ITaskManager} from "../interfaces/ITaskManager.sol";
import {IStakeRegistry} from "../interfaces/IStakeRegistry.sol";

/// @title CommitteeStorage
/// @notice The CommitteeManager's state (committees and seats, task bindings, per-round votes, commitments, reveals
///         and packed scores), the round phase derived from the TaskManager's clock, and the views over it.
/// @dev Sizes that bound every loop: at most MAX_MEMBERS members, at most MAX_CONTRIBUTORS inputs per round. Seat
///      stakes are below 2^96, so a committee's total is below 2^100 and every product in the consensus fits.
abstract contract CommitteeStorage is ICommitteeManager {
    // ─── STORAGE ───
    /// @notice Most members a committee may have.
    uint256 public constant MAX_MEMBERS = 16;
    /// @notice Most contributors a committee task takes per round (slash verdicts are one uint256 bitmap).
    uint256 public constant MAX_CONTRIBUTORS = 256;
    /// @notice Most of each round's budget (basis points) a committee may pay its members.
    uint256 public constant MAX_MEMBER_SHARE_BPS = 5_000;
    /// @notice A member's scores sum to this, or are all zero (fedchain.core.consensus.SCORE_SCALE).
    uint256 public constant SCORE_SCALE = 1e9;
    /// @notice A member that commits and does not reveal loses minSeatStake / NON_REVEAL_SLASH_DIVISOR.
    uint256 public constant NON_REVEAL_SLASH_DIVISOR = 10;

    struct Committee {
        address owner; // slot 0
        uint32 availabilityWindow;
        uint32 commitWindow;
        uint32 revealWindow;
        uint96 minSeatStake; // slot 1
        uint104 totalStake; // sum of joined seats; frozen once bound (no seat is left before the task ended)
        uint16 memberShareBps;
        uint8 joined;
        bool bound;
        uint256 taskId; // slot 2
        address[] members;
    }

    /// @dev `index` is the member's position in `members`; `stake` stays recorded after leaving (history).
    struct Seat {
        uint96 stake;
        uint8 index;
        bool proposed;
        bool joined;
    }

    /// @dev What the hot paths (vote, commit, reveal) need of a task's committee, in one slot. A round's aggregation
    ///      deadline is always its submission deadline plus the task's aggregation window (RoundClock).
    struct Binding {
        uint64 committeeId; // 0: the task has no committee
        uint32 availabilityWindow;
        uint32 commitWindow;
        uint32 revealWindow;
        uint32 aggregationWindow;
    }

    /// @dev One slot per round: the submission deadline (copied from the TaskManager by the first availability vote,
    ///      when it can no longer move, so that later calls need not ask the TaskManager), who voted, how many
    ///      contributors reached an availability majority, whether the first reveal stored the agreed inputs (then
    ///      `inputsHash` checks later reveals), and finalization.
    struct RoundState {
        uint40 submissionDeadline;
        uint16 votedMask;
        uint16 inputCount;
        bool inputsStored;
        bool finalized;
        bytes32 inputsHash;
    }

    /// @dev A member's commitment and reveal; a reveal is recorded by its (non-zero) model digest.
    struct MemberRound {
        bytes32 commitment;
        bytes32 modelDigest;
        bytes32 reportDigest;
        uint256 slashBitmap;
        bool slashed;
    }

    ITaskManager internal immutable _taskManager;
    IStakeRegistry internal immutable _registry;
    uint256 internal _committeeCount;
    mapping(uint256 committeeId => Committee committee) internal _committees;
    mapping(uint256 committeeId => mapping(address account => Seat seat)) internal _seats;
    mapping(address owner => uint256 committeeId) internal _pending;
    mapping(uint256 taskId => Binding binding) internal _bindings;
    mapping(uint256 taskId => mapping(uint256 round => RoundState state)) internal _rounds;
    mapping(uint256 taskId => mapping(uint256 round => mapping(address contributor => uint256 stake))) internal
        _availability;
    mapping(uint256 taskId => mapping(uint256 round => address[] inputs)) internal _inputs;
    mapping(uint256 taskId => mapping(uint256 round => mapping(address member => MemberRound record))) internal
        _memberRounds;
    /// @dev Scores of member `index`, eight uint32 per word: score k in word k / 8 at bit 32 * (k % 8).
    mapping(uint256 taskId => mapping(uint256 round => mapping(uint256 index => uint256[32] words))) internal _scores;

    /// @notice Serve `taskManager` (its registry holds the seats' locks and must grant this SLASHER_ROLE).
    constructor(ITaskManager taskManager_) {
        if (address(taskManager_) == address(0)) revert CommitteeManagerZeroAddress("taskManager");
        _taskManager = taskManager_;
        _registry = IStakeRegistry(taskManager_.stakeRegistry());
    }

    // ─── VIEWS ───
    /// @inheritdoc ICommitteeManager
    function taskManager() external view returns (address) {
        return address(_taskManager);
    }

    /// @inheritdoc ICommitteeManager
    function stakeRegistry() external view returns (address) {
        return address(_registry);
    }

    /// @inheritdoc ICommitteeManager
    function committeeCount() external view returns (uint256) {
        return _committeeCount;
    }

    /// @inheritdoc ICommitteeManager
    function pendingCommitteeOf(address owner) external view returns (uint256) {
        return _pending[owner];
    }

    /// @inheritdoc ICommitteeManager
    function committeeOfTask(uint256 taskId) external view returns (uint256) {
        return _bindings[taskId].committeeId;
    }

    /// @inheritdoc ICommitteeManager
    function getCommittee(uint256 committeeId) external view returns (CommitteeView memory v) {
        Committee storage c = _committee(committeeId);
        (v.owner, v.bound, v.taskId, v.minSeatStake) = (c.owner, c.bound, c.taskId, c.minSeatStake);
        (v.availabilityWindow, v.commitWindow, v.revealWindow) = (c.availabilityWindow, c.commitWindow, c.revealWindow);
        (v.memberShareBps, v.totalStake) = (c.memberShareBps, c.totalStake);
        v.nonRevealSlash = c.minSeatStake / NON_REVEAL_SLASH_DIVISOR;
        v.members = c.members;
        uint256 m = v.members.length;
        (v.stakes, v.joined) = (new uint256[](m), new bool[](m));
        for (uint256 i; i < m; ++i) {
            Seat storage seat = _seats[committeeId][v.members[i]];
            (v.stakes[i], v.joined[i]) = (seat.stake, seat.joined);
        }
    }

    /// @inheritdoc ICommitteeManager
    function getRoundStatus(uint256 taskId, uint256 round) external view returns (RoundStatus memory v) {
        Binding memory b = _bindings[taskId];
        RoundState storage s = _rounds[taskId][round];
        (v.phase, v.submissionDeadline, v.aggregationDeadline) = _phase(taskId, round, b, s);
        if (v.submissionDeadline != 0) {
            v.availabilityEnd = v.submissionDeadline + b.availabilityWindow;
            v.commitEnd = v.availabilityEnd + b.commitWindow;
            v.revealEnd = v.commitEnd + b.revealWindow;
        }
        (v.inputCount, v.votedMask, v.finalized) = (s.inputCount, s.votedMask, s.finalized);
    }

    /// @inheritdoc ICommitteeManager
    function getBallot(uint256 taskId, uint256 round, address member) external view returns (Ballot memory v) {
        Seat storage seat = _seats[_bindings[taskId].committeeId][member];
        MemberRound storage r = _memberRounds[taskId][round][member];
        v.votedAvailability = seat.proposed && (_rounds[taskId][round].votedMask >> seat.index) & 1 == 1;
        (v.commitment, v.modelDigest, v.reportDigest) = (r.commitment, r.modelDigest, r.reportDigest);
        (v.revealed, v.slashBitmap, v.slashed) = (r.modelDigest != bytes32(0), r.slashBitmap, r.slashed);
        if (v.revealed) {
            uint256 n = _rounds[taskId][round].inputCount;
            v.scores = new uint32[](n);
            uint256[32] storage words = _scores[taskId][round][seat.index];
            for (uint256 k; k < n; ++k) {
                v.scores[k] = uint32(words[k / 8] >> (32 * (k % 8)));
            }
        }
    }

    /// @inheritdoc ICommitteeManager
    function inputsOf(uint256 taskId, uint256 round) external view returns (address[] memory) {
        return _inputs[taskId][round];
    }

    /// @inheritdoc ICommitteeManager
    function availabilityOf(uint256 taskId, uint256 round, address contributor) external view returns (uint256) {
        return _availability[taskId][round][contributor];
    }

    // ─── INTERNAL ───
    /// @dev The one place a committee round's phase is derived: the submission deadline sd (this contract's copy,
    ///      else the TaskManager's clock), the committee's windows (A + C + R < the aggregation window, checked at
    ///      binding) and this contract's finalization. ad = sd + the task's aggregation window.
    function _phase(uint256 taskId, uint256 round, Binding memory b, RoundState storage s)
        internal
        view
        returns (CommitteePhase phase, uint64 sd, uint64 ad)
    {
        if (b.committeeId == 0) return (CommitteePhase.Pending, 0, 0);
        sd = s.submissionDeadline;
        if (sd == 0) {
            ITaskManager.RoundView memory r = _taskManager.getRound(taskId, round);
            if (r.openedAt == 0) return (CommitteePhase.Pending, 0, 0);
            sd = r.submissionDeadline;
        }
        ad = sd + b.aggregationWindow;
        if (block.timestamp < sd) return (CommitteePhase.Pending, sd, ad);
        uint256 elapsed = block.timestamp - sd;
        if (elapsed < b.availabilityWindow) return (CommitteePhase.Availability, sd, ad);
        elapsed -= b.availabilityWindow;
        if (elapsed < b.commitWindow) return (CommitteePhase.Commit, sd, ad);
        if (s.finalized) return (CommitteePhase.Finalized, sd, ad);
        if (block.timestamp >= ad) return (CommitteePhase.Expired, sd, ad);
        phase = elapsed - b.commitWindow < b.revealWindow ? CommitteePhase.Reveal : CommitteePhase.Finalize;
    }

    /// @dev Revert unless the round is in `expected`; returns its submission deadline.
    function _expectPhase(uint256 taskId, uint256 round, Binding memory b, CommitteePhase expected)
        internal
        view
        returns (uint64 sd)
    {
        CommitteePhase phase;
        (phase, sd,) = _phase(taskId, round, b, _rounds[taskId][round]);
        if (phase != expected) revert CommitteeManagerWrongPhase(taskId, round, phase);
    }

    /// @dev The task's committee binding; reverts for a task without a committee.
    function _binding(uint256 taskId) internal view returns (Binding memory b) {
        b = _bindings[taskId];
        if (b.committeeId == 0) revert CommitteeManagerNotCommitteeTask(taskId);
    }

    /// @dev The caller's seat in the task's committee (every seat of a bound committee is joined).
    function _memberSeat(uint256 taskId, Binding memory b, address account) internal view returns (Seat memory seat) {
        seat = _seats[b.committeeId][account];
        if (!seat.proposed) revert CommitteeManagerNotMember(taskId, account);
    }

    function _committee(uint256 committeeId) internal view returns (Committee storage c) {
        if (committeeId == 0 || committeeId > _committeeCount) revert CommitteeManagerUnknownCommittee(committeeId);
        c = _committees[committeeId];
    }
}
