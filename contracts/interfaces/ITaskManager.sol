// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

/// @title ITaskManager
/// @notice Training tasks, their rounds, update digests, results, reward claims and slashing.
/// @dev Rounds are numbered from 0. Digests are the 32-byte sha2-256 digests inside CIDv0 content ids.
interface ITaskManager {
    // ─── TYPES ───
    /// @notice Everything a task owner chooses when creating a task.
    struct TaskParams {
        IERC20 rewardToken;          // any ERC20 (fee-on-transfer tokens are refused)
        bytes32 specDigest;          // model spec document (also carries the validator's sealing key)
        bytes32 initialModelDigest;  // global model of round 0
        uint32 numRounds;
        uint256 rewardPerRound;      // budget = numRounds * rewardPerRound, pulled from the owner
        uint64 submissionWindow;     // seconds a round is open for submissions
        uint64 aggregationWindow;    // seconds the validator has after submissions close
        uint256 minContributorStake; // at least the registry's contributor minimum
        uint32 maxContributors;      // submissions per round; reaching it closes submissions early (after minOpen)
        address validator;
        uint256 slashAmount;         // per provably bad update; at most minContributorStake
        uint32 minOpen;              // seconds a round stays open at least, full or not (at most submissionWindow):
                                     // while a full round is open, more stake displaces the least (see RoundLifecycle)
    }

    /// @notice Phases of a round, derived from stored deadlines and the block time.
    enum RoundPhase {
        Pending,     // not yet opened (a later round)
        Open,        // accepting submissions
        Aggregating, // submissions closed; waiting for the validator's result
        Finalized,   // result posted
        Expired      // the validator missed the aggregation deadline (or it was expired explicitly)
    }

    /// @notice A slash the validator requests in its result: the contributor and the offending update's digest.
    struct SlashRequest {
        address account;
        bytes32 evidence;
    }

    /// @notice A task as stored.
    struct TaskView {
        address owner;
        IERC20 rewardToken;
        address validator;
        bytes32 specDigest;
        bytes32 initialModelDigest;
        uint32 numRounds;
        uint32 currentRound;         // the round now open, aggregating or last ended
        uint32 maxContributors;
        uint64 submissionWindow;
        uint64 aggregationWindow;
        uint256 rewardPerRound;
        uint256 minContributorStake;
        uint256 slashAmount;
        uint256 funded;
        uint256 paidOut;
        uint256 refunded;
        uint256 carry;               // unallocated budget rolled over from earlier rounds; once the task ended,
                                     // the unallocated rest not yet refunded to the owner
        bool cancelled;
        bool ended;
        uint64 endedAt;
        uint32 minOpen;
    }

    /// @notice A round as stored, with its phase derived at the current block time.
    /// @dev The model and report digests are not stored (two more cold slots would put postResult over its gas
    ///      budget); read them from the RoundFinalized log. Open on [openedAt, submissionDeadline), aggregating on
    ///      [submissionDeadline, aggregationDeadline), expired from aggregationDeadline on if no result came.
    struct RoundView {
        RoundPhase phase;
        uint64 openedAt;
        uint64 submissionDeadline;   // moved to the closing time when maxContributors is reached
        uint64 aggregationDeadline;
        uint32 submissions;
        bytes32 rewardsRoot;
        uint256 totalRewards;
        uint256 claimed;
    }

    // ─── EVENTS (signatures fixed: indexers and the Python client rely on them) ───
    /// @notice A task was created and its `budget` pulled from `owner`; the digests name its spec and first model.
    event TaskCreated(
        uint256 indexed taskId,
        address indexed owner,
        address rewardToken,
        uint256 budget,
        bytes32 specDigest,
        bytes32 initialModelDigest
    );
    /// @notice `round` opened: submissions until `submissionDeadline`, a result until `aggregationDeadline`.
    event RoundOpened(
        uint256 indexed taskId, uint256 indexed round, uint64 submissionDeadline, uint64 aggregationDeadline
    );
    /// @notice `contributor` submitted the update with this `digest`, trained on `numSamples` samples.
    event UpdateSubmitted(
        uint256 indexed taskId, uint256 indexed round, address indexed contributor, bytes32 digest, uint256 numSamples
    );
    /// @notice With `contributor`'s update (the UpdateSubmitted just before): what it declares about the pseudo-labels
    ///         it trained on. `labelsRoot`: Merkle root over (sample commitment, label, confidence bucket) per
    ///         pseudo-labelled sample; `summary`: threshold, unlabelled seen, pseudo-labelled, mean confidence and
    ///         labelled count packed (see submitUpdateWithPseudoLabels); `histogram`: uint32 big-endian per class.
    event PseudoLabelsDeclared(
        uint256 indexed taskId,
        uint256 indexed round,
        address indexed contributor,
        bytes32 labelsRoot,
        uint256 summary,
        bytes histogram
    );
    /// @notice The round reached maxContributors at `closedAt`; the validator has until `aggregationDeadline`.
    event SubmissionsClosed(uint256 indexed taskId, uint256 indexed round, uint64 closedAt, uint64 aggregationDeadline);
    /// @notice A contributor holding more active stake took the slot of `displaced` in a full round: its submission
    ///         (`digest`) is withdrawn from the round and its lock for it released.
    event UpdateDisplaced(
        uint256 indexed taskId, uint256 indexed round, address indexed displaced, address by, bytes32 digest
    );
    /// @notice The validator's result: the new model, the round report, the rewards root and their total.
    event RoundFinalized(
        uint256 indexed taskId,
        uint256 indexed round,
        bytes32 modelDigest,
        bytes32 reportDigest,
        bytes32 rewardsRoot,
        uint256 totalRewards
    );
    /// @notice The round ended without a result; `rolledOver` is the budget the next round may pay.
    event RoundExpired(uint256 indexed taskId, uint256 indexed round, uint256 rolledOver);
    /// @notice `contributor` was paid `amount` for the round.
    event RewardClaimed(uint256 indexed taskId, uint256 indexed round, address indexed contributor, uint256 amount);
    /// @notice `account` lost `amount` of stake for the update with digest `evidence`.
    event Slashed(
        uint256 indexed taskId, uint256 indexed round, address indexed account, uint256 amount, bytes32 evidence
    );
    /// @notice The owner cancelled: no round opens after the current one.
    event TaskCancelled(uint256 indexed taskId);
    /// @notice The task ended; `unallocated` budget is refundable to its owner.
    event TaskEnded(uint256 indexed taskId, uint256 unallocated);
    /// @notice The owner withdrew `amount` of the task's budget.
    event RefundWithdrawn(uint256 indexed taskId, address indexed owner, uint256 amount);
    /// @notice The stake `account` locked for its submission in a settled round (`amount`) was released.
    event LockReleased(uint256 indexed taskId, uint256 indexed round, address indexed account, uint256 amount);
    /// @notice The owner set the CommitteeManager: tasks naming it as validator are judged by a committee.
    event CommitteeManagerSet(address committeeManager);

    // ─── ERRORS ───
    /// @notice A required address was zero (`what` names it).
    error TaskManagerZeroAddress(string what);
    /// @notice A task needs at least one round and at most 2^24 - 1.
    error TaskManagerInvalidRounds(uint32 numRounds);
    /// @notice rewardPerRound is zero, or the budget numRounds * rewardPerRound exceeds 2^120 - 1.
    error TaskManagerInvalidReward(uint256 rewardPerRound, uint32 numRounds);
    /// @notice Windows must be positive and below 2^32 seconds.
    error TaskManagerInvalidWindows(uint64 submissionWindow, uint64 aggregationWindow);
    /// @notice maxContributors must be positive.
    error TaskManagerInvalidMaxContributors(uint32 maxContributors);
    /// @notice The task's contributor minimum is below the registry's (or above 2^128 - 1).
    error TaskManagerContributorStakeTooLow(uint256 minContributorStake, uint256 registryMinimum);
    /// @notice The slash amount may not exceed the task's contributor minimum.
    error TaskManagerSlashTooHigh(uint256 slashAmount, uint256 minContributorStake);
    /// @notice The named validator has `staked` active stake; it needs `required` (the registry's minimum when the
    ///         task is created, and that same minimum whenever it posts a result).
    error TaskManagerValidatorStakeTooLow(address validator, uint256 staked, uint256 required);
    /// @notice The reward token delivered `received` for a transfer of `expected` (fee-on-transfer tokens refused).
    error TaskManagerFeeOnTransfer(address token, uint256 expected, uint256 received);
    /// @notice No task has this id.
    error TaskManagerUnknownTask(uint256 taskId);
    /// @notice Submissions to this round are not accepted in its current phase.
    error TaskManagerRoundNotOpen(uint256 taskId, uint256 round, RoundPhase phase);
    /// @notice A zero digest is not a content id (zero means "no submission").
    error TaskManagerZeroDigest();
    /// @notice A pseudo-label summary whose fields are out of range or disagree with the sample count.
    error TaskManagerBadPseudoLabelSummary(uint256 summary, uint256 numSamples);
    /// @notice A pseudo-label histogram that is not 2 to 256 uint32 counts.
    error TaskManagerBadPseudoLabelHistogram(uint256 length);
    /// @notice `contributor` already submitted in this round.
    error TaskManagerAlreadySubmitted(uint256 taskId, uint256 round, address contributor);
    /// @notice `contributor` has `staked` active stake; the task requires `required`.
    error TaskManagerStakeTooLow(address contributor, uint256 staked, uint256 required);
    /// @notice Only the task's validator may post results.
    error TaskManagerNotValidator(uint256 taskId, address caller, address validator);
    /// @notice A result can be posted only while the round aggregates (not while open, not twice, not late).
    error TaskManagerRoundNotAggregating(uint256 taskId, uint256 round, RoundPhase phase);
    /// @notice totalRewards exceeds the round's budget plus what rolled over.
    error TaskManagerRewardsExceedBudget(uint256 taskId, uint256 round, uint256 totalRewards, uint256 available);
    /// @notice The root must be zero exactly when totalRewards is zero.
    error TaskManagerInvalidRewardsRoot(uint256 taskId, uint256 round, bytes32 rewardsRoot, uint256 totalRewards);
    /// @notice Slashes must be sorted by account, strictly ascending; entry `index` is not.
    error TaskManagerSlashesNotSorted(uint256 index, address account);
    /// @notice The evidence is not the digest `account` submitted in this round (zero: it submitted nothing).
    error TaskManagerSlashEvidenceMismatch(
        uint256 taskId, uint256 round, address account, bytes32 evidence, bytes32 submitted
    );
    /// @notice Claims need a finalized round.
    error TaskManagerRoundNotFinalized(uint256 taskId, uint256 round, RoundPhase phase);
    /// @notice `account` already claimed this round.
    error TaskManagerAlreadyClaimed(uint256 taskId, uint256 round, address account);
    /// @notice The proof does not show (taskId, round, account, amount) under the round's root.
    error TaskManagerInvalidProof(uint256 taskId, uint256 round, address account, uint256 amount);
    /// @notice Claims would total `claimed`, more than the round's `totalRewards`.
    error TaskManagerClaimExceedsRound(uint256 taskId, uint256 round, uint256 claimed, uint256 totalRewards);
    /// @notice The claim period ended at `deadline`; what was unclaimed belongs to the owner again.
    error TaskManagerClaimPeriodOver(uint256 taskId, uint64 deadline);
    /// @notice A claim of nothing (zero amount or no rounds).
    error TaskManagerNothingToClaim(uint256 taskId);
    /// @notice claimMany's arrays differ in length.
    error TaskManagerLengthMismatch(uint256 rounds, uint256 amounts, uint256 proofs);
    /// @notice Only a live round whose aggregation deadline passed without a result can be expired.
    error TaskManagerRoundNotExpirable(uint256 taskId, uint256 round, RoundPhase phase);
    /// @notice Only the task's owner may do this.
    error TaskManagerNotTaskOwner(uint256 taskId, address caller, address owner);
    /// @notice The task has already ended.
    error TaskManagerTaskEnded(uint256 taskId);
    /// @notice The task is already cancelled.
    error TaskManagerAlreadyCancelled(uint256 taskId);
    /// @notice Refunds start once the task has ended.
    error TaskManagerTaskNotEnded(uint256 taskId);
    /// @notice Nothing is refundable to the owner now.
    error TaskManagerNothingToRefund(uint256 taskId);
    /// @notice `contributor`'s `locked` stake plus the `needed` lock of this submission (0 when it carries its
    ///         previous round's lock) would exceed its `active` stake: release settled locks or stake more.
    error TaskManagerStakeLocked(address contributor, uint256 active, uint256 locked, uint256 needed);
    /// @notice A lock is released only once its round is settled (finalized, or past its aggregation deadline).
    error TaskManagerRoundNotSettled(uint256 taskId, uint256 round, RoundPhase phase);
    /// @notice `account` holds no lock for this round: it did not submit, its lock was released or carried into
    ///         its submission to the next round, or the task slashes nothing.
    error TaskManagerNothingLocked(uint256 taskId, uint256 round, address account);
    /// @notice The claim period is longer than `maximum` seconds (a period near 2^64 would overflow and make every
    ///         claim and refund revert).
    error TaskManagerClaimPeriodTooLong(uint64 claimPeriod, uint64 maximum);
    /// @notice The CommitteeManager is set once; it already is (`committeeManager`).
    error TaskManagerCommitteeManagerAlreadySet(address committeeManager);
    /// @notice The round holds maxContributors submissions: displace one holding less stake (submitUpdateDisplacing).
    error TaskManagerRoundFull(uint256 taskId, uint256 round, uint32 maxContributors);
    /// @notice Displacing (or closing early) needs a full round.
    error TaskManagerRoundNotFull(uint256 taskId, uint256 round, uint32 submissions, uint32 maxContributors);
    /// @notice The account to displace has no submission in this round.
    error TaskManagerNoSubmission(uint256 taskId, uint256 round, address account);
    /// @notice Only strictly more active stake displaces a submission.
    error TaskManagerStakeNotHigher(address contributor, uint256 stake, address displaced, uint256 displacedStake);
    /// @notice A full round closes early only once it has been open minOpen seconds.
    error TaskManagerTooEarlyToClose(uint256 taskId, uint256 round, uint64 closesAt);
    /// @notice minOpen must not exceed the submission window.
    error TaskManagerInvalidMinOpen(uint32 minOpen, uint64 submissionWindow);

    // ─── LOGIC ───
    /// @notice Create a task and pull its budget (numRounds * rewardPerRound) from the caller. Round 0 opens now.
    ///         A task whose validator is the CommitteeManager binds the caller's pending committee (every member
    ///         joined; see ICommitteeManager.onTaskCreated) instead of checking a validator's stake.
    function createTask(TaskParams calldata params) external returns (uint256 taskId);

    /// @notice Owner, once: the CommitteeManager, the validator of committee tasks (it needs SLASHER_ROLE too).
    function setCommitteeManager(address committeeManager_) external;

    /// @notice Post the digest of the caller's update for `round` of `taskId`. The caller's active stake must reach
    ///         the task's minimum, and the task's slash amount of it is locked until the round settles: taken from
    ///         its unlocked stake, or carried over from its submission to the previous round if that lock is held.
    function submitUpdate(uint256 taskId, uint256 round, bytes32 digest, uint256 numSamples) external;

    /// @notice Submit to a full, open round by taking the slot of `displaced`, whose active stake must be strictly
    ///         below the caller's. The displaced submission leaves the round (UpdateDisplaced) and its lock is
    ///         released; the caller's submission is then made as submitUpdate makes it.
    function submitUpdateDisplacing(
        uint256 taskId,
        uint256 round,
        bytes32 digest,
        uint256 numSamples,
        address displaced
    ) external;

    /// @notice Anyone: close a full round's submissions once it has been open minOpen seconds (SubmissionsClosed).
    function closeFullRound(uint256 taskId, uint256 round) external;

    /// @notice submitUpdate for an update trained with pseudo-labels, with its pseudo-label declaration (emitted as
    ///         PseudoLabelsDeclared). `summary` packs thresholdBp (bits 0-15), unlabelledSeen (16-47),
    ///         pseudoLabelled (48-79), meanConfidenceBp (80-95) and labelled (96-127); it must hold
    ///         pseudoLabelled <= unlabelledSeen and labelled + pseudoLabelled == numSamples. `histogram`: the
    ///         pseudo-labels per class, uint32 big-endian each, 2 to 256 classes. Declared, not proven: the
    ///         task's validator checks it against the record in the update.
    function submitUpdateWithPseudoLabels(
        uint256 taskId,
        uint256 round,
        bytes32 digest,
        uint256 numSamples,
        bytes32 labelsRoot,
        uint256 summary,
        bytes calldata histogram
    ) external;

    /// @notice The task's validator posts a round's result: new model, report, reward Merkle root and slashes.
    ///         The validator must still hold, as active stake, the registry's validator minimum of the task's
    ///         creation (a committee task's validator, the CommitteeManager, holds none: its members' seats are
    ///         locked in the registry instead).
    /// @dev `slashes` must be sorted by account, strictly ascending (no duplicates): an O(n) duplicate check.
    function postResult(
        uint256 taskId,
        uint256 round,
        bytes32 modelDigest,
        bytes32 reportDigest,
        bytes32 rewardsRoot,
        uint256 totalRewards,
        SlashRequest[] calldata slashes
    ) external;

    /// @notice Claim the caller's reward for a finalized round with a Merkle proof of (taskId, round, caller, amount).
    function claim(uint256 taskId, uint256 round, uint256 amount, bytes32[] calldata proof) external;

    /// @notice Claim several rounds in one transaction, all or nothing.
    function claimMany(
        uint256 taskId,
        uint256[] calldata rounds,
        uint256[] calldata amounts,
        bytes32[][] calldata proofs
    ) external;

    /// @notice Anyone: expire the current round once its aggregation deadline passed without a result.
    function expireRound(uint256 taskId, uint256 round) external;

    /// @notice Anyone: release the stake `account` locked for its submission to `round`, once the round is settled
    ///         (finalized, or past its aggregation deadline, when no result can come any more). Returns the amount.
    function release(uint256 taskId, uint256 round, address account) external returns (uint256 amount);

    /// @notice The owner cancels: no round opens after the current one ends.
    function cancelTask(uint256 taskId) external;

    /// @notice The owner withdraws what is not owed: unallocated budget once the task ended, and, after the
    ///         claim period, what nobody claimed.
    function withdrawRefund(uint256 taskId) external returns (uint256 amount);

    // ─── VIEWS ───
    /// @notice The registry whose stake gates submissions and results, holds submissions' locks and slashes.
    function stakeRegistry() external view returns (address);
    /// @notice The CommitteeManager (zero until the owner sets it).
    function committeeManager() external view returns (address);
    /// @notice Seconds after a task ends during which rewards can still be claimed.
    function claimPeriod() external view returns (uint64);
    /// @notice Number of tasks created; ids are 0 .. taskCount() - 1.
    function taskCount() external view returns (uint256);
    /// @notice A task's parameters and accounting (reverts for an unknown id).
    function getTask(uint256 taskId) external view returns (TaskView memory);
    /// @notice A round's clock and result, its phase derived at the current block time.
    function getRound(uint256 taskId, uint256 round) external view returns (RoundView memory);
    /// @notice Digest submitted by `account` in a round (zero if none).
    function submissionOf(uint256 taskId, uint256 round, address account) external view returns (bytes32);
    /// @notice Stake `account` has locked for its submission to a round and not released (nor carried into its
    ///         submission to the next round): the task's slash amount, or 0.
    function lockedFor(uint256 taskId, uint256 round, address account) external view returns (uint256);
    /// @notice Whether `account` claimed its reward for a round.
    function hasClaimed(uint256 taskId, uint256 round, address account) external view returns (bool);
    /// @notice Last time a claim is accepted (endedAt + claimPeriod), or 0 while the task runs (no limit yet).
    function claimDeadline(uint256 taskId) external view returns (uint64);
    /// @notice What withdrawRefund would pay the owner now.
    function refundable(uint256 taskId) external view returns (uint256);
}
