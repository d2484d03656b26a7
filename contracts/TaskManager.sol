// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {ITaskManager} from "./interfaces/ITaskManager.sol";
import {IStakeRegistry} from "./interfaces/IStakeRegistry.sol";

/// @title TaskManager
/// @notice Federated-learning tasks: a funded budget, a sequence of rounds (Open -> Aggregating -> Finalized or
///         Expired), one update digest per contributor per round, the validator's result with a Merkle root of
///         rewards, pull-payment claims, slashing through the StakeRegistry, and refunds to the task owner.
/// @dev Digests are the 32-byte sha2-256 digest inside a CIDv0 (dag-pb, Kubo's default `add`: 256 KiB chunks,
///      dag-pb leaves): the one CID form that can be rebuilt from those 32 bytes alone (multihash 0x12 0x20 prefix,
///      base58btc). Time: Anvil mines only when a transaction arrives, so a view's phase is judged at the last block;
///      transactions judge deadlines at their own block time. Accounting per task:
///      funded == paidOut + refunded + held, and the contract holds sum(held) of each token.
///      Storage is packed so that the hot paths (submitUpdate, postResult, claim) touch few slots.
contract TaskManager is ITaskManager, Ownable2Step, Pausable, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;
    using SafeCast for uint256;

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
    /// @notice The named validator has `staked` active stake; the registry requires `required`.
    error TaskManagerValidatorStakeTooLow(address validator, uint256 staked, uint256 required);
    /// @notice The reward token delivered `received` for a transfer of `expected` (fee-on-transfer tokens refused).
    error TaskManagerFeeOnTransfer(address token, uint256 expected, uint256 received);
    /// @notice No task has this id.
    error TaskManagerUnknownTask(uint256 taskId);
    /// @notice Submissions to this round are not accepted in its current phase.
    error TaskManagerRoundNotOpen(uint256 taskId, uint256 round, RoundPhase phase);
    /// @notice A zero digest is not a content id (zero means "no submission").
    error TaskManagerZeroDigest();
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

    // ─── STORAGE ───
    /// @dev Packed by access path: slot 0 for postResult/expire, slot 1 for submitUpdate, slot 2 the round budget,
    ///      slots 3-4 for claim. Amounts fit uint128 (checked at creation), windows uint32, rounds uint24.
    ///      The current round is not stored (postResult would rewrite it every round): rounds open in order, so
    ///      getTask finds it by binary search over the round clocks. aggregationWindow is kept in slots 0 and 1
    ///      so that neither postResult nor the submission that closes a round reads another slot.
    struct Task {
        address validator; // slot 0
        uint24 numRounds;
        bool cancelled;
        uint32 submissionWindow;
        uint32 aggregationWindow;
        uint128 minContributorStake; // slot 1
        uint32 maxContributors;
        uint32 closeWindow; // == aggregationWindow
        uint128 rewardPerRound; // slot 2
        uint128 carry;
        IERC20 rewardToken; // slot 3
        uint64 endedAt; // 0 while running
        uint128 funded; // slot 4
        uint128 paidOut;
        address owner; // slot 5
        uint128 refunded; // slot 6
        uint128 slashAmount;
        bytes32 specDigest; // slot 7
        bytes32 initialModelDigest; // slot 8
    }

    /// @dev One slot, written when the round opens: its deadlines and the submission count.
    struct Clock {
        uint64 openedAt;
        uint64 submissionDeadline;
        uint64 aggregationDeadline;
        uint32 submissions;
    }

    /// @dev Written when the round ends. `outcome` is Pending while the round is live, then Finalized or Expired;
    ///      it shares a slot with the totals postResult writes anyway (no rewrite of the clock), and `claimed`
    ///      grows with claims beside the cap it is checked against. Budgets are < 2^120, so totals fit.
    struct Result {
        bytes32 rewardsRoot;
        uint120 totalRewards;
        RoundPhase outcome;
        uint128 claimed;
    }

    IStakeRegistry private immutable _registry;
    uint64 private immutable _claimPeriod;
    uint256 private _taskCount;
    mapping(uint256 taskId => Task) private _tasks;
    mapping(uint256 taskId => mapping(uint256 round => Clock)) private _clocks;
    mapping(uint256 taskId => mapping(uint256 round => Result)) private _results;
    /// @dev The digest each contributor submitted: slash evidence must equal it. Same slot cost as a flag.
    mapping(uint256 taskId => mapping(uint256 round => mapping(address account => bytes32))) private _submissions;
    mapping(uint256 taskId => mapping(uint256 round => mapping(address account => bool))) private _claimed;

    /// @param registry the StakeRegistry; it must grant this contract SLASHER_ROLE (the deploy script does).
    /// @param claimPeriod_ seconds after a task ends during which rewards stay claimable.
    /// @param initialOwner may pause and unpause (two-step ownership transfer).
    constructor(IStakeRegistry registry, uint64 claimPeriod_, address initialOwner) Ownable(initialOwner) {
        if (address(registry) == address(0)) revert TaskManagerZeroAddress("registry");
        _registry = registry;
        _claimPeriod = claimPeriod_;
    }

    // ─── ADMIN ───
    /// @notice Owner: stop new tasks and new submissions. Claims, results, expiry, refunds and unstaking go on.
    function pause() external onlyOwner {
        _pause();
    }

    /// @notice Owner: lift the pause.
    function unpause() external onlyOwner {
        _unpause();
    }

    // ─── TASKS ───
    /// @inheritdoc ITaskManager
    /// @dev Pulls the budget and refuses a token that delivers less than asked. Emits TaskCreated, RoundOpened.
    function createTask(TaskParams calldata p) external whenNotPaused nonReentrant returns (uint256 taskId) {
        uint256 budget = _checkParams(p);
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
        t.rewardPerRound = uint128(p.rewardPerRound); // budget < 2^120, so each round's share is too
        t.rewardToken = p.rewardToken;
        t.funded = uint128(budget);
        t.owner = msg.sender;
        t.slashAmount = uint128(p.slashAmount); // <= minContributorStake
        t.specDigest = p.specDigest;
        t.initialModelDigest = p.initialModelDigest;
        emit TaskCreated(taskId, msg.sender, address(p.rewardToken), budget, p.specDigest, p.initialModelDigest);
        _openRound(t, taskId, 0);
    }

    /// @inheritdoc ITaskManager
    /// @dev No on-chain duplicate-digest check: it would cost a cold slot per submission and catch only exact
    ///      copies, while sealed updates are bound to their sender and round, so the validator rejects replays
    ///      (and can slash them with this stored digest as evidence). Unknown tasks read as a Pending round.
    function submitUpdate(uint256 taskId, uint256 round, bytes32 digest, uint256 numSamples) external whenNotPaused {
        if (digest == bytes32(0)) revert TaskManagerZeroDigest();
        Clock storage c = _clocks[taskId][round];
        RoundPhase phase = _phase(c, _results[taskId][round]); // reads only the clock while the round is open
        if (phase != RoundPhase.Open) revert TaskManagerRoundNotOpen(taskId, round, phase);
        mapping(address => bytes32) storage subs = _submissions[taskId][round];
        if (subs[msg.sender] != bytes32(0)) revert TaskManagerAlreadySubmitted(taskId, round, msg.sender);
        Task storage t = _tasks[taskId];
        uint256 required = t.minContributorStake;
        uint256 staked = _registry.activeStake(msg.sender); // one cold call to a trusted, immutable registry
        if (staked < required) revert TaskManagerStakeTooLow(msg.sender, staked, required);

        subs[msg.sender] = digest;
        uint32 count = c.submissions + 1; // < maxContributors + 1: the round closes when it reaches the maximum
        c.submissions = count;
        emit UpdateSubmitted(taskId, round, msg.sender, digest, numSamples);
        if (count == t.maxContributors) {
            // Close early: the validator gets its full aggregation window from now.
            uint64 nowTs = uint64(block.timestamp);
            uint64 aggregationDeadline = nowTs + t.closeWindow;
            c.submissionDeadline = nowTs;
            c.aggregationDeadline = aggregationDeadline;
            emit SubmissionsClosed(taskId, round, nowTs, aggregationDeadline);
        }
    }

    /// @inheritdoc ITaskManager
    /// @dev Checks everything (including every slash) first, then records the result and opens the next round
    ///      (or ends the task), then calls the registry for each slash. The loop is bounded by maxContributors:
    ///      each slashed account must have submitted in this round, and accounts are strictly ascending.
    function postResult(
        uint256 taskId,
        uint256 round,
        bytes32 modelDigest,
        bytes32 reportDigest,
        bytes32 rewardsRoot,
        uint256 totalRewards,
        SlashRequest[] calldata slashes
    ) external nonReentrant {
        Task storage t = _tasks[taskId];
        address validator = t.validator;
        if (msg.sender != validator) revert TaskManagerNotValidator(taskId, msg.sender, validator);
        RoundPhase phase = _phase(_clocks[taskId][round], _results[taskId][round]);
        if (phase != RoundPhase.Aggregating) revert TaskManagerRoundNotAggregating(taskId, round, phase);
        uint256 available = uint256(t.rewardPerRound) + t.carry;
        if (totalRewards > available) revert TaskManagerRewardsExceedBudget(taskId, round, totalRewards, available);
        if ((rewardsRoot == bytes32(0)) != (totalRewards == 0)) {
            revert TaskManagerInvalidRewardsRoot(taskId, round, rewardsRoot, totalRewards);
        }
        if (slashes.length != 0) _checkSlashes(taskId, round, slashes);

        // totalRewards <= available <= funded < 2^120 (rewardPerRound + carry never exceeds the budget)
        _results[taskId][round] = Result(rewardsRoot, uint120(totalRewards), RoundPhase.Finalized, 0);
        t.carry = uint128(available - totalRewards);
        emit RoundFinalized(taskId, round, modelDigest, reportDigest, rewardsRoot, totalRewards);
        _advance(t, taskId, round);

        if (slashes.length != 0) _executeSlashes(t, taskId, round, slashes);
    }

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
    /// @dev Its budget (plus carry) rolls over to the next round; the next round opens now, or the task ends.
    function expireRound(uint256 taskId, uint256 round) external {
        Task storage t = _tasks[taskId];
        Result storage r = _results[taskId][round];
        RoundPhase phase = _phase(_clocks[taskId][round], r);
        if (phase != RoundPhase.Expired || r.outcome != RoundPhase.Pending) {
            revert TaskManagerRoundNotExpirable(taskId, round, phase);
        }
        r.outcome = RoundPhase.Expired;
        uint256 rolledOver = uint256(t.rewardPerRound) + t.carry; // <= funded < 2^120
        t.carry = uint128(rolledOver);
        emit RoundExpired(taskId, round, rolledOver);
        _advance(t, taskId, round);
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
    function stakeRegistry() external view returns (address) {
        return address(_registry);
    }

    /// @inheritdoc ITaskManager
    function claimPeriod() external view returns (uint64) {
        return _claimPeriod;
    }

    /// @inheritdoc ITaskManager
    function taskCount() external view returns (uint256) {
        return _taskCount;
    }

    /// @inheritdoc ITaskManager
    function getTask(uint256 taskId) external view returns (TaskView memory v) {
        if (taskId >= _taskCount) revert TaskManagerUnknownTask(taskId);
        Task storage t = _tasks[taskId];
        v.owner = t.owner;
        v.rewardToken = t.rewardToken;
        v.validator = t.validator;
        v.specDigest = t.specDigest;
        v.initialModelDigest = t.initialModelDigest;
        v.numRounds = t.numRounds;
        v.currentRound = uint32(_currentRound(taskId, t.numRounds));
        v.maxContributors = t.maxContributors;
        v.submissionWindow = t.submissionWindow;
        v.aggregationWindow = t.aggregationWindow;
        v.rewardPerRound = t.rewardPerRound;
        v.minContributorStake = t.minContributorStake;
        v.slashAmount = t.slashAmount;
        v.funded = t.funded;
        v.paidOut = t.paidOut;
        v.refunded = t.refunded;
        v.carry = t.carry;
        v.cancelled = t.cancelled;
        v.ended = t.endedAt != 0;
        v.endedAt = t.endedAt;
    }

    /// @inheritdoc ITaskManager
    function getRound(uint256 taskId, uint256 round) external view returns (RoundView memory v) {
        Clock storage c = _clocks[taskId][round];
        Result storage r = _results[taskId][round];
        v.phase = _phase(c, r);
        v.openedAt = c.openedAt;
        v.submissionDeadline = c.submissionDeadline;
        v.aggregationDeadline = c.aggregationDeadline;
        v.submissions = c.submissions;
        v.rewardsRoot = r.rewardsRoot;
        v.totalRewards = r.totalRewards;
        v.claimed = r.claimed;
    }

    /// @inheritdoc ITaskManager
    function submissionOf(uint256 taskId, uint256 round, address account) external view returns (bytes32) {
        return _submissions[taskId][round][account];
    }

    /// @inheritdoc ITaskManager
    function hasClaimed(uint256 taskId, uint256 round, address account) external view returns (bool) {
        return _claimed[taskId][round][account];
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
    /// @dev The one place a round's phase is derived: from its stored clock and outcome and the block time.
    ///      Open is decided from the clock alone: an outcome is recorded only at or after the submission deadline
    ///      (a result needs Aggregating, expiry needs the later aggregation deadline), and the deadline moves only
    ///      while the round is open.
    function _phase(Clock storage c, Result storage r) private view returns (RoundPhase) {
        if (c.openedAt == 0) return RoundPhase.Pending;
        if (block.timestamp < c.submissionDeadline) return RoundPhase.Open;
        RoundPhase outcome = r.outcome;
        if (outcome != RoundPhase.Pending) return outcome; // Finalized or Expired, recorded
        if (block.timestamp < c.aggregationDeadline) return RoundPhase.Aggregating;
        return RoundPhase.Expired; // deadline passed without a result; expireRound records it
    }

    /// @dev The last opened round: rounds open in order, so binary search for the last non-zero openedAt.
    function _currentRound(uint256 taskId, uint256 numRounds) private view returns (uint256 lo) {
        mapping(uint256 => Clock) storage clocks = _clocks[taskId];
        uint256 hi = numRounds; // invariant: round lo is opened, rounds >= hi are not
        while (hi - lo > 1) {
            uint256 mid = (lo + hi) / 2;
            if (clocks[mid].openedAt != 0) lo = mid;
            else hi = mid;
        }
    }

    /// @dev Validates the parameters and the validator's stake; returns the budget.
    function _checkParams(TaskParams calldata p) private view returns (uint256 budget) {
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
        uint256 registryMin = _registry.minContributorStake();
        if (p.minContributorStake < registryMin || p.minContributorStake > type(uint128).max) {
            revert TaskManagerContributorStakeTooLow(p.minContributorStake, registryMin);
        }
        if (p.slashAmount > p.minContributorStake) revert TaskManagerSlashTooHigh(p.slashAmount, p.minContributorStake);
        uint256 validatorStake = _registry.activeStake(p.validator);
        uint256 validatorMin = _registry.minValidatorStake();
        if (validatorStake < validatorMin) {
            revert TaskManagerValidatorStakeTooLow(p.validator, validatorStake, validatorMin);
        }
    }

    /// @dev Open `round` now: submissions until now + submissionWindow, result until that + aggregationWindow.
    function _openRound(Task storage t, uint256 taskId, uint256 round) private {
        uint64 nowTs = uint64(block.timestamp);
        uint64 submissionDeadline = nowTs + t.submissionWindow;
        uint64 aggregationDeadline = submissionDeadline + t.aggregationWindow;
        _clocks[taskId][round] = Clock(nowTs, submissionDeadline, aggregationDeadline, 0);
        emit RoundOpened(taskId, round, submissionDeadline, aggregationDeadline);
    }

    /// @dev After `round` finalized or expired: open the next one, or end the task (last round, or cancelled)
    ///      and make the unallocated budget (carry plus the rounds never run) refundable.
    function _advance(Task storage t, uint256 taskId, uint256 round) private {
        uint256 next = round + 1;
        uint256 numRounds = t.numRounds;
        if (next < numRounds && !t.cancelled) {
            _openRound(t, taskId, next);
            return;
        }
        uint256 unallocated = uint256(t.carry) + uint256(t.rewardPerRound) * (numRounds - next); // <= funded
        t.carry = uint128(unallocated);
        t.endedAt = uint64(block.timestamp);
        emit TaskEnded(taskId, unallocated);
    }

    /// @dev Every slashed account submitted in this round, its evidence is that digest, and accounts ascend.
    function _checkSlashes(uint256 taskId, uint256 round, SlashRequest[] calldata slashes) private view {
        mapping(address => bytes32) storage subs = _submissions[taskId][round];
        address previous;
        for (uint256 i; i < slashes.length; ++i) {
            address account = slashes[i].account;
            if (account <= previous) revert TaskManagerSlashesNotSorted(i, account);
            previous = account;
            bytes32 submitted = subs[account];
            bytes32 evidence = slashes[i].evidence;
            if (submitted == bytes32(0) || submitted != evidence) {
                revert TaskManagerSlashEvidenceMismatch(taskId, round, account, evidence, submitted);
            }
        }
    }

    /// @dev Interactions last: the registry takes what it can (capped) and sends it to the treasury.
    function _executeSlashes(Task storage t, uint256 taskId, uint256 round, SlashRequest[] calldata slashes)
        private
    {
        uint256 amount = t.slashAmount;
        for (uint256 i; i < slashes.length; ++i) {
            SlashRequest calldata s = slashes[i];
            uint256 taken = _registry.slash(s.account, amount, s.evidence);
            emit Slashed(taskId, round, s.account, taken, s.evidence);
        }
    }

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
        mapping(address => bool) storage claimed = _claimed[taskId][round];
        if (claimed[msg.sender]) revert TaskManagerAlreadyClaimed(taskId, round, msg.sender);
        // OpenZeppelin StandardMerkleTree leaf: double keccak of the ABI-encoded entry.
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(taskId, round, msg.sender, amount))));
        if (!MerkleProof.verifyCalldata(proof, root, leaf)) {
            revert TaskManagerInvalidProof(taskId, round, msg.sender, amount);
        }
        uint256 total = r.totalRewards;
        uint256 newClaimed = uint256(r.claimed) + amount;
        if (newClaimed > total) revert TaskManagerClaimExceedsRound(taskId, round, newClaimed, total);
        claimed[msg.sender] = true;
        r.claimed = uint128(newClaimed); // <= totalRewards < 2^120
        emit RewardClaimed(taskId, round, msg.sender, amount);
    }

    function _checkClaimPeriod(Task storage t, uint256 taskId) private view {
        uint64 endedAt = t.endedAt;
        if (endedAt != 0 && block.timestamp > endedAt + _claimPeriod) {
            revert TaskManagerClaimPeriodOver(taskId, endedAt + _claimPeriod);
        }
    }

    function _onlyTaskOwner(Task storage t, uint256 taskId) private view {
        address taskOwner = t.owner;
        if (msg.sender != taskOwner) revert TaskManagerNotTaskOwner(taskId, msg.sender, taskOwner);
    }

    /// @dev Unallocated budget once ended; after the claim period, everything still held.
    function _refundable(Task storage t) private view returns (uint256) {
        if (block.timestamp > t.endedAt + _claimPeriod) return uint256(t.funded) - t.paidOut - t.refunded;
        return t.carry;
    }
}
