// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @title CommitteeConsensus
/// @notice Stake-weighted (Yuma-style) consensus of a committee round, in exact integer arithmetic: exactly
///         `fedchain.core.consensus.consensus` (python/fedchain/core/consensus.py), against which it is tested.
/// @dev With m members (<= 16) and n inputs (<= 256), scores are a row-major m x n matrix, a zero row for a member
///      that did not reveal. Bounds that keep every product below 2^256 without a 512-bit division: stakes < 2^96
///      (so the total < 2^100), each member's scores sum to at most 1e9 < 2^30 (so a member's clipped scores do too,
///      and the sum of weights < 2^130), and budgets < 2^120 (the TaskManager's cap on a task's budget).
library CommitteeConsensus {
    /// @dev The round's outcome: per input its consensus score c_i and reward; per member its agreement and dividend.
    struct Outcome {
        uint256[] consensus;
        uint256[] rewards;
        uint256[] agreement;
        uint256[] dividends;
    }

    /// @dev c_i, the clipped weights, the contributors' rewards floor(cb * weight_i / sum) and the members'
    ///      dividends floor(mb * stake_v * agreement_v / sum) (all zero when the sum is zero). O(n * m^2).
    function tally(uint256[] memory stakes, uint256[] memory scores, uint256 n, uint256 cb, uint256 mb)
        internal
        pure
        returns (Outcome memory o)
    {
        uint256 m = stakes.length;
        uint256 total = sum(stakes);
        (o.consensus, o.rewards) = (new uint256[](n), new uint256[](n));
        (o.agreement, o.dividends) = (new uint256[](m), new uint256[](m));
        uint256 weightSum;
        for (uint256 i; i < n; ++i) {
            uint256 c = consensusScore(stakes, scores, n, i, total);
            uint256 weight;
            for (uint256 v; v < m; ++v) {
                uint256 s = scores[v * n + i];
                uint256 clipped = s < c ? s : c;
                weight += stakes[v] * clipped;
                o.agreement[v] += clipped;
            }
            (o.consensus[i], o.rewards[i]) = (c, weight); // rewards hold the weights until the split below
            weightSum += weight;
        }
        _split(cb, o.rewards, weightSum);
        for (uint256 v; v < m; ++v) {
            o.dividends[v] = stakes[v] * o.agreement[v];
        }
        _split(mb, o.dividends, sum(o.dividends));
    }

    /// @dev The largest score of input `i` that members holding strictly more than half of `total` gave at least
    ///      (0 if none): a member's score s is the answer when the stake scoring >= s is a majority and s is largest.
    function consensusScore(uint256[] memory stakes, uint256[] memory scores, uint256 n, uint256 i, uint256 total)
        internal
        pure
        returns (uint256 best)
    {
        uint256 m = stakes.length;
        for (uint256 v; v < m; ++v) {
            uint256 s = scores[v * n + i];
            if (s <= best) continue;
            uint256 backing;
            for (uint256 u; u < m; ++u) {
                if (scores[u * n + i] >= s) backing += stakes[u];
            }
            if (2 * backing > total) best = s;
        }
    }

    /// @dev The non-zero digest that members holding a strict stake majority revealed, and the lowest index of a
    ///      member that revealed it; (0, 0) if none. Zero digests stand for members that did not reveal.
    function majorityDigest(bytes32[] memory digests, uint256[] memory stakes, uint256 total)
        internal
        pure
        returns (bytes32 digest, uint256 index)
    {
        uint256 m = digests.length;
        for (uint256 v; v < m; ++v) {
            bytes32 d = digests[v];
            if (d == bytes32(0)) continue;
            uint256 backing;
            for (uint256 u = v; u < m; ++u) {
                if (digests[u] == d) backing += stakes[u]; // members below v revealed other digests
            }
            if (2 * backing > total) return (d, v);
        }
    }

    /// @dev Bit i set when members holding a strict stake majority set bit i of their bitmaps (0: not revealed).
    function majorityBits(uint256[] memory bitmaps, uint256[] memory stakes, uint256 n, uint256 total)
        internal
        pure
        returns (uint256 bits)
    {
        uint256 m = bitmaps.length;
        for (uint256 i; i < n; ++i) {
            uint256 backing;
            for (uint256 v; v < m; ++v) {
                if ((bitmaps[v] >> i) & 1 == 1) backing += stakes[v];
            }
            if (2 * backing > total) bits |= 1 << i;
        }
    }

    function sum(uint256[] memory values) internal pure returns (uint256 total) {
        for (uint256 i; i < values.length; ++i) {
            total += values[i];
        }
    }

    /// @dev In place: weights[i] becomes floor(budget * weights[i] / weightSum), or 0 when weightSum is 0.
    function _split(uint256 budget, uint256[] memory weights, uint256 weightSum) private pure {
        for (uint256 i; i < weights.length; ++i) {
            weights[i] = weightSum == 0 ? 0 : budget * weights[i] / weightSum;
        }
    }
}
