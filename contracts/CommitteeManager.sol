// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {ITaskManager} from "./interfaces/ITaskManager.sol";
import {ICommitteeManager} from "./interfaces/ICommitteeManager.sol";
import {CommitteeStorage} from "./base/CommitteeStorage.sol";
import {CommitteeSeats} from "./base/CommitteeSeats.sol";
import {CommitteeVoting} from "./base/CommitteeVoting.sol";
import {CommitteeConsensus} from "./libraries/CommitteeConsensus.sol";
import {RewardRoot} from "./libraries/RewardRoot.sol";

/// @title CommitteeManager
/// @notice The validator of committee tasks: a task whose `validator` is this contract is judged by the committee
///         its owner proposed and every member joined. After each round's availability votes, commits and reveals,
///         anyone finalizes: the stake-weighted consensus fixes the model, the contributors' rewards, the members'
///         dividends and the slashes, and this contract posts them to the TaskManager, which keeps rounds, budgets,
///         expiry, claims and contributor slashing as for any task.
/// @dev Assembled from CommitteeStorage (state, phases, views), CommitteeSeats (propose, join, leave, binding),
///      CommitteeVoting (votes, commits, reveals, non-revealer slashes); this file finalizes. Whoever finalizes
///      cannot change the outcome: it is a function of the stored reveals, the seat stakes and the round's budget.
contract CommitteeManager is CommitteeSeats, CommitteeVoting {
    /// @dev A round's reveals as finalize reads them: per member (committee order) its stake, model and report
    ///      digests and slash verdicts (zero for members that did not reveal); the scores, n rows of m (by input).
    struct Reveals {
        uint256 total; // the committee's stake
        uint256 shareBps;
        address[] members;
        uint256[] stakes;
        bytes32[] models;
        bytes32[] reports;
        uint256[] slashBitmaps;
        address[] inputs;
        uint256[] scores;
        bool pending; // some member committed and has not revealed
    }

    /// @dev What finalize posts and announces.
    struct Result {
        bytes32 model;
        bytes32 report;
        uint256 contributorsBudget;
        uint256 membersBudget;
        uint256 slashBitmap;
        bytes32 root;
        uint256 totalRewards;
        CommitteeConsensus.Outcome outcome;
        ITaskManager.SlashRequest[] slashes;
    }

    /// @notice Validate for `taskManager_` (grant this SLASHER_ROLE in its registry and call setCommitteeManager).
    constructor(ITaskManager taskManager_) CommitteeStorage(taskManager_) {}

    /// @inheritdoc ICommitteeManager
    /// @dev Checks, then reads every reveal (<= 16 members x 256 inputs), computes the consensus and the reward
    ///      root in memory, records the finalization, and calls TaskManager.postResult last.
    function finalize(uint256 taskId, uint256 round) external returns (bytes32 rewardsRoot) {
        RoundState storage s = _rounds[taskId][round];
        Result memory x = _consensus(taskId, round, _checkedReveals(taskId, round, s));
        s.finalized = true;
        emit CommitteeFinalized(
            taskId,
            round,
            x.model,
            x.root,
            x.contributorsBudget,
            x.membersBudget,
            _uint32s(x.outcome.consensus),
            x.outcome.dividends,
            x.slashBitmap
        );
        _taskManager.postResult(taskId, round, x.model, x.report, x.root, x.totalRewards, x.slashes);
        return x.root;
    }

    // ─── INTERNAL ───
    /// @dev The round's reveals, once finalize may run: in the finalize phase, or in the reveal phase when every
    ///      member that committed has revealed.
    function _checkedReveals(uint256 taskId, uint256 round, RoundState storage s)
        private
        view
        returns (Reveals memory r)
    {
        Binding memory b = _binding(taskId);
        (CommitteePhase phase,,) = _phase(taskId, round, b, s);
        r = _load(taskId, round, _committees[b.committeeId]);
        if (phase == CommitteePhase.Reveal) {
            if (r.pending) revert CommitteeManagerRevealsPending(taskId, round);
        } else if (phase != CommitteePhase.Finalize) {
            revert CommitteeManagerWrongPhase(taskId, round, phase);
        }
    }

    /// @dev The consensus model (reverts without a stake majority for one), the rewards and dividends, the slashes
    ///      and the reward root.
    function _consensus(uint256 taskId, uint256 round, Reveals memory r) private view returns (Result memory x) {
        uint256 lead;
        (x.model, lead) = CommitteeConsensus.majorityDigest(r.models, r.stakes, r.total);
        if (x.model == bytes32(0)) revert CommitteeManagerNoConsensus(taskId, round);
        x.report = r.reports[lead];
        uint256 n = r.inputs.length;
        (x.contributorsBudget, x.membersBudget) = _budgets(taskId, r.shareBps);
        x.outcome = CommitteeConsensus.tally(r.stakes, r.scores, n, x.contributorsBudget, x.membersBudget);
        x.slashBitmap = CommitteeConsensus.majorityBits(r.slashBitmaps, r.stakes, n, r.total);
        (x.root, x.totalRewards) = _rewardRoot(taskId, round, r, x.outcome);
        x.slashes = _slashes(taskId, round, r.inputs, x.slashBitmap);
    }

    /// @dev Every member's reveal of the round and the agreed inputs stored by the first reveal (none: n = 0).
    function _load(uint256 taskId, uint256 round, Committee storage c) private view returns (Reveals memory r) {
        (r.total, r.shareBps, r.members) = (c.totalStake, c.memberShareBps, c.members);
        r.inputs = _inputs[taskId][round];
        (uint256 m, uint256 n) = (r.members.length, r.inputs.length);
        (r.stakes, r.models, r.reports) = (new uint256[](m), new bytes32[](m), new bytes32[](m));
        (r.slashBitmaps, r.scores) = (new uint256[](m), new uint256[](m * n));
        uint256 committeeId = _bindings[taskId].committeeId;
        for (uint256 v; v < m; ++v) {
            address member = r.members[v];
            r.stakes[v] = _seats[committeeId][member].stake;
            MemberRound storage mr = _memberRounds[taskId][round][member];
            bytes32 model = mr.modelDigest;
            if (model == bytes32(0)) {
                if (mr.commitment != bytes32(0)) r.pending = true;
                continue;
            }
            (r.models[v], r.reports[v], r.slashBitmaps[v]) = (model, mr.reportDigest, mr.slashBitmap);
            uint256[32] storage words = _scores[taskId][round][v];
            uint256 word;
            for (uint256 k; k < n; ++k) {
                if (k % 8 == 0) word = words[k / 8];
                r.scores[k * m + v] = uint32(word >> (32 * (k % 8)));
            }
        }
    }

    /// @dev The round's budget (its reward plus what rolled over), split into the members' share and the rest.
    function _budgets(uint256 taskId, uint256 shareBps) private view returns (uint256 cb, uint256 mb) {
        ITaskManager.TaskView memory t = _taskManager.getTask(taskId);
        uint256 budget = t.rewardPerRound + t.carry; // < 2^120
        mb = budget * shareBps / 10_000;
        cb = budget - mb;
    }

    /// @dev One leaf per account with a non-zero amount: a contributor's reward plus, when it is also a member, its
    ///      dividend; then each other member's dividend. Returns the root and the sum of the amounts.
    function _rewardRoot(uint256 taskId, uint256 round, Reveals memory r, CommitteeConsensus.Outcome memory o)
        private
        pure
        returns (bytes32 root, uint256 total)
    {
        (uint256 n, uint256 m) = (r.inputs.length, r.members.length);
        uint256[] memory amounts = o.rewards; // dividends of members that are inputs are added in place
        uint256[] memory others = new uint256[](m); // dividends of members that are not inputs
        uint256 count;
        for (uint256 v; v < m; ++v) {
            uint256 d = o.dividends[v];
            if (d == 0) continue;
            (bool found, uint256 i) = _find(r.inputs, r.members[v]);
            if (found) amounts[i] += d;
            else (others[v], count) = (d, count + 1);
        }
        for (uint256 i; i < n; ++i) {
            if (amounts[i] != 0) ++count;
        }
        bytes32[] memory leaves = new bytes32[](count);
        count = 0;
        for (uint256 i; i < n; ++i) {
            if (amounts[i] == 0) continue;
            (leaves[count++], total) = (RewardRoot.leaf(taskId, round, r.inputs[i], amounts[i]), total + amounts[i]);
        }
        for (uint256 v; v < m; ++v) {
            if (others[v] == 0) continue;
            (leaves[count++], total) = (RewardRoot.leaf(taskId, round, r.members[v], others[v]), total + others[v]);
        }
        root = RewardRoot.root(leaves);
    }

    /// @dev The slashed inputs (ascending, as postResult wants them), each with its submitted digest as evidence.
    function _slashes(uint256 taskId, uint256 round, address[] memory inputs, uint256 bitmap)
        private
        view
        returns (ITaskManager.SlashRequest[] memory out)
    {
        uint256 k;
        for (uint256 i; i < inputs.length; ++i) {
            if ((bitmap >> i) & 1 == 1) ++k;
        }
        out = new ITaskManager.SlashRequest[](k);
        k = 0;
        for (uint256 i; i < inputs.length; ++i) {
            if ((bitmap >> i) & 1 == 0) continue;
            out[k++] = ITaskManager.SlashRequest(inputs[i], _taskManager.submissionOf(taskId, round, inputs[i]));
        }
    }

    /// @dev Binary search of `account` in the ascending `inputs`.
    function _find(address[] memory inputs, address account) private pure returns (bool, uint256) {
        (uint256 lo, uint256 hi) = (0, inputs.length);
        while (lo < hi) {
            uint256 mid = (lo + hi) / 2;
            if (inputs[mid] < account) lo = mid + 1;
            else hi = mid;
        }
        return (lo < inputs.length && inputs[lo] == account, lo);
    }

    /// @dev Consensus scores are members' scores, so each fits uint32.
    function _uint32s(uint256[] memory values) private pure returns (uint32[] memory out) {
        out = new uint32[](values.length);
        for (uint256 i; i < values.length; ++i) {
            out[i] = uint32(values[i]);
        }
    }
}
