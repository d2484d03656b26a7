// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ITaskManager} from "./ITaskManager.sol";

/// @title ICommitteeManager
/// @notice A committee of up to 16 staked validators acting as one task's validator: members opt in (locking a seat
///         stake) before the task is funded; each round they agree on the input set (availability votes), commit to
///         and reveal their results, and anyone finalizes the round by stake-weighted consensus, which posts the
///         result (model, report, reward root over contributors and members, slashes) to the TaskManager.
/// @dev Round phases, from the TaskManager's clock (sd: submissions closed, ad: aggregation deadline; A, C, R the
///      committee's windows): Availability [sd, sd+A), Commit [sd+A, sd+A+C), Reveal [sd+A+C, sd+A+C+R), Finalize
///      [sd+A+C+R, ad). The consensus is exactly `fedchain.core.consensus.consensus` over the agreed input set.
interface ICommitteeManager {
    // ─── TYPES ───
    /// @notice A committee round's phase, derived from the TaskManager's round clock and the committee's windows.
    enum CommitteePhase {
        Pending,      // the round has not opened, or still takes submissions (or the task has no committee)
        Availability, // members vote which submissions they could fetch and open
        Commit,       // members commit to their results
        Reveal,       // members reveal; finalize may come early once every committed member revealed
        Finalize,     // reveals are over; anyone may finalize until the aggregation deadline
        Finalized,    // the consensus result was posted
        Expired       // the aggregation deadline passed without a result (TaskManager.expireRound)
    }

    /// @notice A committee as stored (stakes[i] is members[i]'s seat stake, 0 before it joins).
    struct CommitteeView {
        address owner;
        bool bound;
        uint256 taskId;              // meaningful once bound
        uint256 minSeatStake;
        uint32 availabilityWindow;
        uint32 commitWindow;
        uint32 revealWindow;
        uint16 memberShareBps;       // share of each round's budget paid to members as dividends
        uint256 totalStake;          // sum of joined seats (every seat once bound): the consensus' 100%
        uint256 nonRevealSlash;      // what a member loses for committing and not revealing: minSeatStake / 10
        address[] members;
        uint256[] stakes;
        bool[] joined;
    }

    /// @notice A committee round's clock and progress.
    struct RoundStatus {
        CommitteePhase phase;
        uint64 submissionDeadline;   // sd (0 while the round has not opened)
        uint64 availabilityEnd;      // sd + A
        uint64 commitEnd;            // sd + A + C
        uint64 revealEnd;            // sd + A + C + R
        uint64 aggregationDeadline;  // ad
        uint16 inputCount;           // contributors with a stake majority of availability votes so far
        uint16 votedMask;            // bit i: members[i] voted availability
        bool finalized;
    }

    /// @notice One member's part in a round (scores are over the agreed input set, in ascending address order).
    struct Ballot {
        bool votedAvailability;
        bytes32 commitment;          // 0: not committed
        bool revealed;
        bytes32 modelDigest;
        bytes32 reportDigest;
        uint256 slashBitmap;
        uint32[] scores;
        bool slashed;                // slashed for committing and not revealing
    }

    // ─── EVENTS ───
    /// @notice `owner` proposed a committee, now its pending one (replacing any earlier unbound proposal).
    event CommitteeProposed(
        uint256 indexed committeeId,
        address indexed owner,
        address[] members,
        uint256 minSeatStake,
        uint32 availabilityWindow,
        uint32 commitWindow,
        uint32 revealWindow,
        uint16 memberShareBps
    );
    /// @notice `member` took its seat, locking `stake` of its registry stake; `joined` members have so far.
    event SeatJoined(uint256 indexed committeeId, address indexed member, uint256 stake, uint256 joined);
    /// @notice `member` left its seat and its `stake` was unlocked.
    event SeatLeft(uint256 indexed committeeId, address indexed member, uint256 stake);
    /// @notice The committee became the validator of `taskId` (created by its owner with every member joined).
    event CommitteeBound(uint256 indexed committeeId, uint256 indexed taskId);
    /// @notice `member` could fetch and open these `contributors`' updates; `inputCount` contributors now have a
    ///         stake majority (the agreed input set so far).
    event AvailabilityVoted(
        uint256 indexed taskId,
        uint256 indexed round,
        address indexed member,
        address[] contributors,
        uint256 inputCount
    );
    /// @notice `member` committed to its result.
    event Committed(uint256 indexed taskId, uint256 indexed round, address indexed member, bytes32 commitment);
    /// @notice `member` revealed its result over the agreed input set (`inputsOf`), matching its commitment.
    event Revealed(
        uint256 indexed taskId,
        uint256 indexed round,
        address indexed member,
        bytes32 modelDigest,
        bytes32 reportDigest,
        uint256 slashBitmap,
        uint32[] scores,
        bytes32 salt
    );
    /// @notice The consensus of a round, posted to the TaskManager: per input (ascending address) its consensus
    ///         score, per member (committee order) its dividend, bit i of `slashBitmap` for a slashed input.
    event CommitteeFinalized(
        uint256 indexed taskId,
        uint256 indexed round,
        bytes32 modelDigest,
        bytes32 rewardsRoot,
        uint256 contributorsBudget,
        uint256 membersBudget,
        uint32[] consensusScores,
        uint256[] dividends,
        uint256 slashBitmap
    );
    /// @notice `member` committed and did not reveal: it lost `amount`, with its commitment as evidence.
    event NonRevealerSlashed(
        uint256 indexed taskId, uint256 indexed round, address indexed member, uint256 amount, bytes32 commitment
    );

    // ─── ERRORS ───
    /// @notice A constructor argument was the zero address (`what` names it).
    error CommitteeManagerZeroAddress(string what);
    /// @notice A committee has 1 to `maximum` members.
    error CommitteeManagerInvalidSize(uint256 size, uint256 maximum);
    /// @notice members[`index`] is the zero address or appears twice.
    error CommitteeManagerInvalidMember(uint256 index, address member);
    /// @notice The seat minimum must reach the registry's validator minimum (and stay below 2^96).
    error CommitteeManagerInvalidSeatStake(uint256 minSeatStake, uint256 registryMinimum);
    /// @notice The members' share may be at most `maximum` basis points of each round's budget.
    error CommitteeManagerInvalidShare(uint256 memberShareBps, uint256 maximum);
    /// @notice Each phase window must be positive.
    error CommitteeManagerInvalidWindows(uint32 availabilityWindow, uint32 commitWindow, uint32 revealWindow);
    /// @notice No committee has this id.
    error CommitteeManagerUnknownCommittee(uint256 committeeId);
    /// @notice The committee is no longer its owner's pending proposal (replaced or bound): seats cannot be taken.
    error CommitteeManagerNotPending(uint256 committeeId);
    /// @notice `account` is not a proposed member of the committee.
    error CommitteeManagerNotProposed(uint256 committeeId, address account);
    /// @notice `member` already holds its seat.
    error CommitteeManagerAlreadyJoined(uint256 committeeId, address member);
    /// @notice A seat needs at least `minSeatStake` (and less than 2^96).
    error CommitteeManagerInvalidStake(uint256 committeeId, uint256 stake, uint256 minSeatStake);
    /// @notice `member` holds no seat to leave.
    error CommitteeManagerNotJoined(uint256 committeeId, address member);
    /// @notice Seats of a bound committee are locked until its task has ended.
    error CommitteeManagerTaskRunning(uint256 committeeId, uint256 taskId);
    /// @notice Only the TaskManager may bind a committee.
    error CommitteeManagerNotTaskManager(address caller);
    /// @notice `owner` has no pending committee to bind.
    error CommitteeManagerNoPendingCommittee(address owner);
    /// @notice Only `joined` of the committee's `size` members have taken their seats.
    error CommitteeManagerCommitteeIncomplete(uint256 committeeId, uint256 joined, uint256 size);
    /// @notice A committee task takes at most `maximum` contributors per round (one bitmap of slash verdicts).
    error CommitteeManagerTooManyContributors(uint256 maxContributors, uint256 maximum);
    /// @notice The committee's phases (`phases` = A + C + R seconds) must end before the aggregation window does.
    error CommitteeManagerWindowsTooLong(uint256 phases, uint256 aggregationWindow);
    /// @notice The task has no committee.
    error CommitteeManagerNotCommitteeTask(uint256 taskId);
    /// @notice `account` is not a member of the task's committee.
    error CommitteeManagerNotMember(uint256 taskId, address account);
    /// @notice The round is in `phase`; this needs another one.
    error CommitteeManagerWrongPhase(uint256 taskId, uint256 round, CommitteePhase phase);
    /// @notice `member` already voted availability in this round.
    error CommitteeManagerAlreadyVoted(uint256 taskId, uint256 round, address member);
    /// @notice Addresses must be strictly ascending; entry `index` is not.
    error CommitteeManagerNotAscending(uint256 index, address account);
    /// @notice `contributor` submitted nothing in this round.
    error CommitteeManagerNoSubmission(uint256 taskId, uint256 round, address contributor);
    /// @notice A zero commitment or model digest was given (zero means "none").
    error CommitteeManagerZeroValue();
    /// @notice `member` already committed in this round.
    error CommitteeManagerAlreadyCommitted(uint256 taskId, uint256 round, address member);
    /// @notice `member` did not commit in this round.
    error CommitteeManagerNotCommitted(uint256 taskId, uint256 round, address member);
    /// @notice `member` already revealed in this round.
    error CommitteeManagerAlreadyRevealed(uint256 taskId, uint256 round, address member);
    /// @notice The reveal hashes to `computed`, not to the `committed` commitment.
    error CommitteeManagerCommitmentMismatch(bytes32 committed, bytes32 computed);
    /// @notice inputs[`index`] (`account`) is not in the agreed input set, or the list does not have its `expected`
    ///         length (index == length then).
    error CommitteeManagerNotAgreedInputs(uint256 index, address account, uint256 expected);
    /// @notice One score per input is needed.
    error CommitteeManagerScoresLength(uint256 inputs, uint256 scores);
    /// @notice Scores must sum to SCORE_SCALE, or all be zero.
    error CommitteeManagerScoreSum(uint256 sum);
    /// @notice The slash bitmap names bits beyond the `inputs` inputs.
    error CommitteeManagerSlashBitmapTooWide(uint256 slashBitmap, uint256 inputs);
    /// @notice Some member committed and has not revealed: finalize waits for the reveal deadline.
    error CommitteeManagerRevealsPending(uint256 taskId, uint256 round);
    /// @notice No model digest was revealed by members holding a stake majority: the round cannot finalize (it
    ///         expires through the TaskManager and its budget rolls over).
    error CommitteeManagerNoConsensus(uint256 taskId, uint256 round);
    /// @notice `member` is not slashable for this round: it did not commit, it revealed, or it was slashed already.
    error CommitteeManagerNothingToSlash(uint256 taskId, uint256 round, address member);

    // ─── SEATS ───
    /// @notice Propose a committee for the caller's next task; it replaces the caller's unbound pending proposal.
    ///         1..16 distinct members, each must join with at least `minSeatStake` (>= the registry's validator
    ///         minimum) before the task is created. `memberShareBps` (<= 5000) of each round's budget pays members.
    function propose(
        address[] calldata members,
        uint256 minSeatStake,
        uint32 availabilityWindow,
        uint32 commitWindow,
        uint32 revealWindow,
        uint16 memberShareBps
    ) external returns (uint256 committeeId);

    /// @notice A proposed member takes its seat, locking `stake` (>= minSeatStake) of its registry stake; its
    ///         consensus weight is that stake.
    function join(uint256 committeeId, uint256 stake) external;

    /// @notice Unlock the caller's seat: before the committee is bound to a task, or once that task has ended.
    function leave(uint256 committeeId) external;

    /// @notice TaskManager only: bind `owner`'s pending committee to the new task `taskId`. Reverts unless every
    ///         member joined, maxContributors <= 256 and A + C + R < aggregationWindow.
    function onTaskCreated(uint256 taskId, address owner, ITaskManager.TaskParams calldata params) external;

    // ─── ROUNDS ───
    /// @notice A member, once per round, in the availability phase: the contributors (strictly ascending, each
    ///         with a submission this round) whose updates it could fetch and open.
    function voteAvailability(uint256 taskId, uint256 round, address[] calldata contributors) external;

    /// @notice A member, once per round, in the commit phase: keccak256(abi.encode(block.chainid, this, taskId,
    ///         round, member, modelDigest, reportDigest, slashBitmap, uint32[] scores, salt)).
    function commit(uint256 taskId, uint256 round, bytes32 commitment) external;

    /// @notice A member that committed, in the reveal phase: its result over exactly the agreed input set
    ///         (`inputs`, strictly ascending); scores sum to SCORE_SCALE or are all 0; bit i of `slashBitmap` is a
    ///         slashing verdict for inputs[i].
    function reveal(
        uint256 taskId,
        uint256 round,
        bytes32 modelDigest,
        bytes32 reportDigest,
        address[] calldata inputs,
        uint32[] calldata scores,
        uint256 slashBitmap,
        bytes32 salt
    ) external;

    /// @notice Anyone: compute the round's consensus and post it to the TaskManager. Allowed once the reveal phase
    ///         ended, or earlier (after the commit phase) when every member that committed has revealed.
    function finalize(uint256 taskId, uint256 round) external returns (bytes32 rewardsRoot);

    /// @notice Anyone, once the reveal phase ended: slash a member that committed and did not reveal (by the
    ///         committee's nonRevealSlash, with its commitment as evidence). Returns what was taken.
    function slashNonRevealer(uint256 taskId, uint256 round, address member) external returns (uint256 amount);

    // ─── VIEWS ───
    /// @notice The TaskManager this committee manager validates for.
    function taskManager() external view returns (address);
    /// @notice The registry holding the seats' stake locks.
    function stakeRegistry() external view returns (address);
    /// @notice Committees proposed so far; ids are 1 .. committeeCount().
    function committeeCount() external view returns (uint256);
    /// @notice The committee `owner`'s next task would bind (0: none).
    function pendingCommitteeOf(address owner) external view returns (uint256);
    /// @notice The committee bound to `taskId` (0: none).
    function committeeOfTask(uint256 taskId) external view returns (uint256);
    /// @notice A committee with its members and stakes.
    function getCommittee(uint256 committeeId) external view returns (CommitteeView memory);
    /// @notice A committee round's phase, deadlines and progress.
    function getRoundStatus(uint256 taskId, uint256 round) external view returns (RoundStatus memory);
    /// @notice One member's availability vote, commitment and reveal in a round.
    function getBallot(uint256 taskId, uint256 round, address member) external view returns (Ballot memory);
    /// @notice The agreed input set (ascending), stored by the round's first reveal (empty before it).
    function inputsOf(uint256 taskId, uint256 round) external view returns (address[] memory);
    /// @notice Stake of the members that voted `contributor` available in the round.
    function availabilityOf(uint256 taskId, uint256 round, address contributor) external view returns (uint256);
}
