// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {SubmissionLocks} from "./SubmissionLocks.sol";
import {ITaskManager} from "../interfaces/ITaskManager.sol";
import {IPrivacyLedger} from "../interfaces/IPrivacyLedger.sol";
import {RoundClock} from "../libraries/RoundClock.sol";

/// @title RoundLifecycle
/// @notice The round state machine: submissions while open, the validator's result (with its slashes) while
///         aggregating, expiry once the aggregation deadline passed, and the next round (or the task's end).
/// @dev Round r+1 opens in the transaction that finalizes or expires round r. No loop runs over the round's
///      contributors: postResult loops only over the slashes the validator names (at most maxContributors).
abstract contract RoundLifecycle is SubmissionLocks {
    using RoundClock for RoundClock.Clock;
    using RoundClock for mapping(uint256 => RoundClock.Clock);

    /// @inheritdoc ITaskManager
    /// @dev No on-chain duplicate-digest check: it would cost a cold slot per submission and catch only exact
    ///      copies, while sealed updates are bound to their sender and round, so the validator rejects replays
    ///      (and can slash them with this stored digest as evidence). Unknown tasks read as a Pending round.
    ///      The stake lock (SubmissionLocks) is decided before the digest is stored and taken last.
    ///      Not pausable: a pause must not let the owner run rounds out empty (their clocks keep going).
    ///      A private task (PrivacyLedger) takes submitPrivateUpdate only: its cap shares the slot _submit reads.
    function submitUpdate(uint256 taskId, uint256 round, bytes32 digest, uint256 numSamples) external {
        _requireNotPrivate(taskId);
        _submit(taskId, round, digest, numSamples);
    }

    /// @inheritdoc ITaskManager
    /// @dev Not pausable, as submitUpdate. The summary's counts are checked against each other and the sample
    ///      count (a few comparisons, no loop); the histogram's length is capped. Everything else about the record
    ///      is checked off chain by the validator against the full record in the update's envelope (the root binds
    ///      the two).
    function submitUpdateWithPseudoLabels(
        uint256 taskId,
        uint256 round,
        bytes32 digest,
        uint256 numSamples,
        bytes32 labelsRoot,
        uint256 summary,
        bytes calldata histogram
    ) external {
        _requireNotPrivate(taskId); // pseudo-labelling and privacy are not combined (yet)
        _checkPseudoLabelSummary(numSamples, summary, histogram.length);
        _submit(taskId, round, digest, numSamples);
        emit PseudoLabelsDeclared(taskId, round, msg.sender, labelsRoot, summary, histogram);
    }

    /// @dev summary = thresholdBp | unlabelledSeen << 16 | pseudoLabelled << 48 | meanConfidenceBp << 80
    ///      | labelled << 96, bits 128-255 zero (fedchain.unlabelled.record.pack_summary).
    function _checkPseudoLabelSummary(uint256 numSamples, uint256 summary, uint256 histogramLength) private pure {
        uint256 thresholdBp = summary & 0xFFFF;
        uint256 unlabelledSeen = (summary >> 16) & 0xFFFFFFFF;
        uint256 pseudoLabelled = (summary >> 48) & 0xFFFFFFFF;
        uint256 meanConfidenceBp = (summary >> 80) & 0xFFFF;
        uint256 labelled = (summary >> 96) & 0xFFFFFFFF;
        if (
            summary >> 128 != 0 || thresholdBp > 10_000 || meanConfidenceBp > 10_000
                || pseudoLabelled > unlabelledSeen || labelled + pseudoLabelled != numSamples
        ) revert TaskManagerBadPseudoLabelSummary(summary, numSamples);
        if (histogramLength % 4 != 0 || histogramLength < 8 || histogramLength > 1024) {
            revert TaskManagerBadPseudoLabelHistogram(histogramLength);
        }
    }

    /// @dev The submission itself, shared by every external submit function (plain today; submissions that carry
    ///      a record, such as a privacy spend or a pseudo-label summary, check and emit their part around it).
    function _submit(uint256 taskId, uint256 round, bytes32 digest, uint256 numSamples) internal {
        if (digest == bytes32(0)) revert TaskManagerZeroDigest();
        RoundClock.Clock storage c = _clocks[taskId][round];
        RoundPhase phase = _phase(c, _results[taskId][round]); // reads only the clock while the round is open
        if (phase != RoundPhase.Open) revert TaskManagerRoundNotOpen(taskId, round, phase);
        mapping(address => bytes32) storage subs = _submissions[taskId][round];
        if (subs[msg.sender] != bytes32(0)) revert TaskManagerAlreadySubmitted(taskId, round, msg.sender);
        Task storage t = _tasks[taskId];
        // Full and still open only while minOpen keeps it so: then only submitUpdateDisplacing gets in.
        if (c.submissions >= t.maxContributors) revert TaskManagerRoundFull(taskId, round, t.maxContributors);
        uint256 required = t.minContributorStake;
        (uint256 staked, uint256 locked) = _registry.stakeOf(msg.sender); // a trusted, immutable registry
        if (staked < required) revert TaskManagerStakeTooLow(msg.sender, staked, required);
        uint256 lockAmount = _lockToTake(t, taskId, round, staked, locked);

        subs[msg.sender] = digest;
        uint32 count = c.submissions + 1; // <= maxContributors, checked above
        c.submissions = count;
        emit UpdateSubmitted(taskId, round, msg.sender, digest, numSamples);
        // Not by count alone: cheap accounts submitting first could otherwise close the round on everyone else.
        if (count == t.maxContributors && block.timestamp >= uint256(c.openedAt) + t.minOpen) {
            _closeRound(t, c, taskId, round);
        }
        if (lockAmount != 0) _registry.lock(msg.sender, lockAmount);
    }

    /// @inheritdoc ITaskManager
    /// @dev Effects (the displaced digest and count), then the caller's submission (its own lock), then the release
    ///      of the displaced lock. A lock the displaced account carried from the previous round is not released
    ///      here: removing its digest makes the previous round's lock its own again (SubmissionLocks._holdsLock),
    ///      released with that round. O(1): the caller names whom it displaces (the client picks the least stake).
    function submitUpdateDisplacing(
        uint256 taskId,
        uint256 round,
        bytes32 digest,
        uint256 numSamples,
        address displaced
    ) external nonReentrant {
        _requireNotPrivate(taskId); // a private task's submissions go through its ledger
        RoundClock.Clock storage c = _clocks[taskId][round];
        RoundPhase phase = _phase(c, _results[taskId][round]);
        if (phase != RoundPhase.Open) revert TaskManagerRoundNotOpen(taskId, round, phase);
        Task storage t = _tasks[taskId];
        uint32 count = c.submissions;
        if (count < t.maxContributors) revert TaskManagerRoundNotFull(taskId, round, count, t.maxContributors);
        mapping(address => bytes32) storage subs = _submissions[taskId][round];
        bytes32 withdrawn = subs[displaced];
        if (withdrawn == bytes32(0)) revert TaskManagerNoSubmission(taskId, round, displaced);
        uint256 theirs = _registry.activeStake(displaced);
        uint256 mine = _registry.activeStake(msg.sender);
        if (mine <= theirs) revert TaskManagerStakeNotHigher(msg.sender, mine, displaced, theirs);

        delete subs[displaced];
        c.submissions = count - 1;
        bool carried = round != 0 && _holdsLock(taskId, round - 1, displaced); // read after the delete, on purpose
        emit UpdateDisplaced(taskId, round, displaced, msg.sender, withdrawn);
        _submit(taskId, round, digest, numSamples);
        uint256 amount = t.slashAmount;
        if (amount != 0 && !carried) _registry.unlock(displaced, amount);
    }

    /// @inheritdoc ITaskManager
    function closeFullRound(uint256 taskId, uint256 round) external {
        RoundClock.Clock storage c = _clocks[taskId][round];
        RoundPhase phase = _phase(c, _results[taskId][round]);
        if (phase != RoundPhase.Open) revert TaskManagerRoundNotOpen(taskId, round, phase);
        Task storage t = _tasks[taskId];
        uint32 count = c.submissions;
        if (count < t.maxContributors) revert TaskManagerRoundNotFull(taskId, round, count, t.maxContributors);
        uint256 closesAt = uint256(c.openedAt) + t.minOpen;
        if (block.timestamp < closesAt) revert TaskManagerTooEarlyToClose(taskId, round, uint64(closesAt));
        _closeRound(t, c, taskId, round);
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
        mapping(uint256 => Result) storage results = _results[taskId];
        (uint256 available, uint104 validatorStake) =
            _checkResult(t, _clocks[taskId][round], results[round], taskId, round, rewardsRoot, totalRewards);
        if (slashes.length != 0) _checkSlashes(taskId, round, slashes);

        // totalRewards <= available <= funded < 2^120 (rewardPerRound + carry never exceeds the budget)
        results[round] = Result(rewardsRoot, uint120(totalRewards), RoundPhase.Finalized, 0);
        t.carry = uint128(available - totalRewards);
        emit RoundFinalized(taskId, round, modelDigest, reportDigest, rewardsRoot, totalRewards);
        _advance(t, taskId, round, validatorStake);

        if (slashes.length != 0) _executeSlashes(t, taskId, round, slashes);
    }

    /// @inheritdoc ITaskManager
    /// @dev Its budget (plus carry) rolls over to the next round; the next round opens now, or the task ends.
    function expireRound(uint256 taskId, uint256 round) external {
        Task storage t = _tasks[taskId];
        Result storage r = _results[taskId][round];
        RoundClock.Clock storage c = _clocks[taskId][round];
        RoundPhase phase = _phase(c, r);
        if (phase != RoundPhase.Expired || r.outcome != RoundPhase.Pending) {
            revert TaskManagerRoundNotExpirable(taskId, round, phase);
        }
        r.outcome = RoundPhase.Expired;
        uint256 rolledOver = uint256(t.rewardPerRound) + t.carry; // <= funded < 2^120
        t.carry = uint128(rolledOver);
        emit RoundExpired(taskId, round, rolledOver);
        _advance(t, taskId, round, c.validatorStake);
    }

    // ─── INTERNAL ───
    /// @dev Every submit function but PrivacyLedger's refuses a private task: its spend must go through the ledger.
    function _requireNotPrivate(uint256 taskId) internal view {
        if (_tasks[taskId].epsilonCap != 0) revert IPrivacyLedger.TaskManagerPrivateTask(taskId);
    }

    /// @dev Close submissions now; the validator gets its whole aggregation window from now.
    function _closeRound(Task storage t, RoundClock.Clock storage c, uint256 taskId, uint256 round) private {
        (uint40 closedAt, uint40 aggregationDeadline) = c.close(t.closeWindow);
        emit SubmissionsClosed(taskId, round, closedAt, aggregationDeadline);
    }

    /// @dev Open `round` now and announce its deadlines; `validatorStake` is what the validator must hold to post.
    function _openRound(Task storage t, uint256 taskId, uint256 round, uint104 validatorStake) internal {
        (uint40 submissionDeadline, uint40 aggregationDeadline) =
            _clocks[taskId].open(round, t.submissionWindow, t.aggregationWindow, validatorStake);
        emit RoundOpened(taskId, round, submissionDeadline, aggregationDeadline);
    }

    /// @dev After `round` finalized or expired: open the next one (with the same validator stake), or end the task
    ///      (last round, or cancelled) and make the unallocated budget (carry plus the rounds never run) refundable.
    function _advance(Task storage t, uint256 taskId, uint256 round, uint104 validatorStake) private {
        uint256 next = round + 1;
        uint256 numRounds = t.numRounds;
        if (next < numRounds && !t.cancelled) {
            _openRound(t, taskId, next, validatorStake);
            return;
        }
        uint256 unallocated = uint256(t.carry) + uint256(t.rewardPerRound) * (numRounds - next); // <= funded
        t.carry = uint128(unallocated);
        t.endedAt = uint64(block.timestamp);
        emit TaskEnded(taskId, unallocated);
    }

    /// @dev The caller is the task's validator and still holds the stake the round requires, the round
    ///      aggregates, and the rewards fit the budget with a root exactly when they are positive. Returns the budget
    ///      available to this round (its own plus what rolled over) and the validator stake the rounds require.
    function _checkResult(
        Task storage t,
        RoundClock.Clock storage c,
        Result storage r,
        uint256 taskId,
        uint256 round,
        bytes32 rewardsRoot,
        uint256 totalRewards
    ) private view returns (uint256 available, uint104 validatorStake) {
        address validator = t.validator;
        if (msg.sender != validator) revert TaskManagerNotValidator(taskId, msg.sender, validator);
        RoundPhase phase = _phase(c, r);
        if (phase != RoundPhase.Aggregating) revert TaskManagerRoundNotAggregating(taskId, round, phase);
        available = uint256(t.rewardPerRound) + t.carry;
        if (totalRewards > available) revert TaskManagerRewardsExceedBudget(taskId, round, totalRewards, available);
        if ((rewardsRoot == bytes32(0)) != (totalRewards == 0)) {
            revert TaskManagerInvalidRewardsRoot(taskId, round, rewardsRoot, totalRewards);
        }
        validatorStake = c.validatorStake;
        // Not only at creation: a validator that unstaked cannot post. A committee task requires zero (its members'
        // seats are locked instead): the check always passes, and skipping it would cost every other task a branch.
        _checkValidatorStake(validator, validatorStake);
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

    /// @dev Interactions last: the registry takes what it can (capped) and sends it to the treasury. Each slashed
    ///      account's stake is locked for this round, so the full amount is there; the lock itself is released
    ///      like any other (SubmissionLocks.release).
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
}
