// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {CommitteeStorage} from "./CommitteeStorage.sol";
import {ICommitteeManager} from "../interfaces/ICommitteeManager.sol";

/// @title CommitteeVoting
/// @notice What members do in a round: vote which submissions they could open (availability), commit to their
///         result, reveal it over the agreed input set; and what anyone does to a member that committed and did not
///         reveal (slash it with its commitment as evidence).
/// @dev The agreed input set is the contributors whose availability votes hold a strict stake majority; the votes
///      count how many cross it, and the first reveal proves the set (ascending, each over the majority, as many as
///      counted) and stores it with its hash, against which later reveals are checked in O(1) storage reads.
abstract contract CommitteeVoting is CommitteeStorage {
    /// @inheritdoc ICommitteeManager
    /// @dev Bounded: contributors are strictly ascending and each submitted, so there are at most maxContributors.
    function voteAvailability(uint256 taskId, uint256 round, address[] calldata contributors) external {
        Binding memory b = _binding(taskId);
        Seat memory seat = _memberSeat(taskId, b, msg.sender);
        uint64 sd = _expectPhase(taskId, round, b, CommitteePhase.Availability);
        RoundState storage s = _rounds[taskId][round];
        uint16 bit = uint16(1 << seat.index);
        if (s.votedMask & bit != 0) revert CommitteeManagerAlreadyVoted(taskId, round, msg.sender);
        uint256 crossed = _addVotes(taskId, round, contributors, seat.stake, _committees[b.committeeId].totalStake);
        uint16 inputCount = s.inputCount + uint16(crossed); // <= maxContributors <= 256
        (s.submissionDeadline, s.votedMask, s.inputCount) = (uint40(sd), s.votedMask | bit, inputCount);
        emit AvailabilityVoted(taskId, round, msg.sender, contributors, inputCount);
    }

    /// @inheritdoc ICommitteeManager
    function commit(uint256 taskId, uint256 round, bytes32 commitment) external {
        if (commitment == bytes32(0)) revert CommitteeManagerZeroValue();
        Binding memory b = _binding(taskId);
        _memberSeat(taskId, b, msg.sender);
        _expectPhase(taskId, round, b, CommitteePhase.Commit);
        MemberRound storage r = _memberRounds[taskId][round][msg.sender];
        if (r.commitment != bytes32(0)) revert CommitteeManagerAlreadyCommitted(taskId, round, msg.sender);
        r.commitment = commitment;
        emit Committed(taskId, round, msg.sender, commitment);
    }

    /// @inheritdoc ICommitteeManager
    function reveal(
        uint256 taskId,
        uint256 round,
        bytes32 modelDigest,
        bytes32 reportDigest,
        address[] calldata inputs,
        uint32[] calldata scores,
        uint256 slashBitmap,
        bytes32 salt
    ) external {
        if (modelDigest == bytes32(0)) revert CommitteeManagerZeroValue();
        (MemberRound storage r, uint256 index) = _revealer(taskId, round);
        bytes32 computed = _commitmentOf(taskId, round, modelDigest, reportDigest, slashBitmap, scores, salt);
        if (computed != r.commitment) revert CommitteeManagerCommitmentMismatch(r.commitment, computed);
        _checkInputs(taskId, round, inputs);
        if (scores.length != inputs.length) revert CommitteeManagerScoresLength(inputs.length, scores.length);
        _checkScores(scores, slashBitmap);
        (r.modelDigest, r.reportDigest, r.slashBitmap) = (modelDigest, reportDigest, slashBitmap);
        _storeScores(_scores[taskId][round][index], scores);
        emit Revealed(taskId, round, msg.sender, modelDigest, reportDigest, slashBitmap, scores, salt);
    }

    /// @inheritdoc ICommitteeManager
    /// @dev Interaction last; the registry takes what it can (active stake first, then unbonding).
    function slashNonRevealer(uint256 taskId, uint256 round, address member) external returns (uint256 amount) {
        Binding memory b = _binding(taskId);
        _memberSeat(taskId, b, member);
        (CommitteePhase phase, uint64 sd,) = _phase(taskId, round, b, _rounds[taskId][round]);
        uint256 revealEnd = uint256(sd) + b.availabilityWindow + b.commitWindow + b.revealWindow;
        if (phase == CommitteePhase.Pending || block.timestamp < revealEnd) {
            revert CommitteeManagerWrongPhase(taskId, round, phase);
        }
        MemberRound storage r = _memberRounds[taskId][round][member];
        bytes32 commitment = r.commitment;
        if (commitment == bytes32(0) || r.modelDigest != bytes32(0) || r.slashed) {
            revert CommitteeManagerNothingToSlash(taskId, round, member);
        }
        r.slashed = true;
        uint256 penalty = _committees[b.committeeId].minSeatStake / NON_REVEAL_SLASH_DIVISOR;
        amount = _registry.slash(member, penalty, commitment);
        emit NonRevealerSlashed(taskId, round, member, amount, commitment);
    }

    // ─── INTERNAL ───
    /// @dev The caller's record for a reveal: a member, in the reveal phase, that committed and has not revealed.
    function _revealer(uint256 taskId, uint256 round) private view returns (MemberRound storage r, uint256 index) {
        Binding memory b = _binding(taskId);
        index = _memberSeat(taskId, b, msg.sender).index;
        _expectPhase(taskId, round, b, CommitteePhase.Reveal);
        r = _memberRounds[taskId][round][msg.sender];
        if (r.commitment == bytes32(0)) revert CommitteeManagerNotCommitted(taskId, round, msg.sender);
        if (r.modelDigest != bytes32(0)) revert CommitteeManagerAlreadyRevealed(taskId, round, msg.sender);
    }

    /// @dev What the caller must have committed to (fedchain.core.consensus.commitment): bound to this chain, this
    ///      contract, the task, the round and the member, so that a commitment can be neither replayed nor copied.
    function _commitmentOf(
        uint256 taskId,
        uint256 round,
        bytes32 modelDigest,
        bytes32 reportDigest,
        uint256 slashBitmap,
        uint32[] calldata scores,
        bytes32 salt
    ) private view returns (bytes32) {
        return keccak256(
            abi.encode(
                block.chainid,
                address(this),
                taskId,
                round,
                msg.sender,
                modelDigest,
                reportDigest,
                slashBitmap,
                scores,
                salt
            )
        );
    }

    /// @dev Add `stake` to each contributor's availability (strictly ascending, each with a submission); returns how
    ///      many crossed a strict majority of `total` with this vote.
    function _addVotes(uint256 taskId, uint256 round, address[] calldata contributors, uint256 stake, uint256 total)
        private
        returns (uint256 crossed)
    {
        mapping(address => uint256) storage backing = _availability[taskId][round];
        address previous;
        for (uint256 i; i < contributors.length; ++i) {
            address account = contributors[i];
            if (account <= previous) revert CommitteeManagerNotAscending(i, account);
            previous = account;
            if (_taskManager.submissionOf(taskId, round, account) == bytes32(0)) {
                revert CommitteeManagerNoSubmission(taskId, round, account);
            }
            uint256 before = backing[account];
            uint256 afterVote = before + stake;
            backing[account] = afterVote;
            if (2 * before <= total && 2 * afterVote > total) ++crossed; // this vote gave it a strict majority
        }
    }

    /// @dev `inputs` is the agreed input set. The first reveal checks it against the availability votes and stores
    ///      it; later ones compare its hash.
    function _checkInputs(uint256 taskId, uint256 round, address[] calldata inputs) private {
        RoundState storage s = _rounds[taskId][round];
        bytes32 hash = keccak256(abi.encodePacked(inputs));
        if (s.inputsStored) {
            if (hash != s.inputsHash) revert CommitteeManagerNotAgreedInputs(inputs.length, address(0), s.inputCount);
            return;
        }
        uint256 n = s.inputCount;
        if (inputs.length != n) revert CommitteeManagerNotAgreedInputs(inputs.length, address(0), n);
        uint256 total = _committees[_bindings[taskId].committeeId].totalStake;
        mapping(address => uint256) storage backing = _availability[taskId][round];
        address previous;
        for (uint256 i; i < n; ++i) {
            address account = inputs[i];
            if (account <= previous || 2 * backing[account] <= total) {
                revert CommitteeManagerNotAgreedInputs(i, account, n);
            }
            previous = account;
        }
        (s.inputsStored, s.inputsHash) = (true, hash);
        _inputs[taskId][round] = inputs;
    }

    /// @dev Scores (one per input, each a uint32 by the ABI) sum to SCORE_SCALE or are all zero; verdicts name
    ///      inputs only.
    function _checkScores(uint32[] calldata scores, uint256 slashBitmap) private pure {
        uint256 n = scores.length;
        uint256 sum;
        for (uint256 k; k < n; ++k) {
            sum += scores[k];
        }
        if (sum != 0 && sum != SCORE_SCALE) revert CommitteeManagerScoreSum(sum);
        if (n < 256 && slashBitmap >> n != 0) revert CommitteeManagerSlashBitmapTooWide(slashBitmap, n);
    }

    /// @dev Pack eight uint32 per word, writing only non-zero words (the member's words start empty).
    function _storeScores(uint256[32] storage words, uint32[] calldata scores) private {
        uint256 n = scores.length;
        for (uint256 w; w * 8 < n; ++w) {
            uint256 word;
            uint256 end = w * 8 + 8 < n ? w * 8 + 8 : n;
            for (uint256 k = w * 8; k < end; ++k) {
                word |= uint256(scores[k]) << (32 * (k % 8));
            }
            if (word != 0) words[w] = word;
        }
    }
}
