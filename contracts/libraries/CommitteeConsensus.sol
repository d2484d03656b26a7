// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @title CommitteeConsensus
/// @notice Stake-weighted (Yuma-style) consensus of a committee round, in exact integer arithmetic: exactly
///         `fedchain.core.consensus.consensus` (python/fedchain/core/consensus.py), against which it is tested.
/// @dev With m members (<= 16) and n inputs (<= 256), scores are an n x m matrix (input-major), zeros for a member
///      that did not reveal. Bounds that keep every product below 2^256 without a 512-bit division: stakes < 2^96
///      (so the total < 2^100), each member's scores sum to at most 1e9 < 2^30 (so a member's clipped scores do too,
///      and the sum of weights < 2^130), and budgets < 2^120 (the TaskManager's cap on a task's budget).
library CommitteeConsensus {
    /// @dev A member's stake fits the low 96 bits of a sort key; its score (< 2^32) sits above them.
    uint256 private constant _STAKE_BITS = 96;
    uint256 private constant _STAKE_MASK = (1 << _STAKE_BITS) - 1;

    /// @dev The round's outcome: per input its consensus score c_i and reward; per member its agreement and dividend.
    struct Outcome {
        uint256[] consensus;
        uint256[] rewards;
        uint256[] agreement;
        uint256[] dividends;
    }

    /// @dev c_i, the clipped weights, the contributors' rewards floor(cb * weight_i / sum) and the members'
    ///      dividends floor(mb * stake_v * agreement_v / sum) (all zero when the sum is zero). `scores` holds n rows
    ///      of m: input i's scores by member at i * m .. i * m + m - 1. O(n * m^2) cheap steps (a sort per input).
    function tally(uint256[] memory stakes, uint256[] memory scores, uint256 n, uint256 cb, uint256 mb)
        internal
        pure
        returns (Outcome memory o)
    {
        uint256 m = stakes.length;
        uint256 total = sum(stakes);
        (o.consensus, o.rewards) = (new uint256[](n), new uint256[](n));
        (o.agreement, o.dividends) = (new uint256[](m), new uint256[](m));
        uint256[] memory keys = new uint256[](m); // one input's (score, stake) pairs at a time
        uint256 weightSum;
        for (uint256 i; i < n; ++i) {
            (uint256 c, uint256 weight) = _input(stakes, scores, i * m, keys, total, o.agreement); // i * m < 4096
            (o.consensus[i], o.rewards[i]) = (c, weight); // rewards hold the weights until the split below
            weightSum += weight;
        }
        _split(cb, o.rewards, weightSum);
        for (uint256 v; v < m; ++v) {
            o.dividends[v] = stakes[v] * o.agreement[v];
        }
        _split(mb, o.dividends, sum(o.dividends));
    }

    /// @dev One input (its scores at scores[row .. row + m - 1]): its consensus score c and weight
    ///      sum_v stake_v * min(score_v, c); each member's clipped score is added to its agreement.
    function _input(
        uint256[] memory stakes,
        uint256[] memory scores,
        uint256 row,
        uint256[] memory keys,
        uint256 total,
        uint256[] memory agreement
    ) private pure returns (uint256 c, uint256 weight) {
        uint256 m = stakes.length;
        // unchecked: row + v < n * m <= 4096; stake < 2^96 and clipped < 2^32, so each product < 2^128 and
        // weight < 16 * 2^128; an agreement sums at most 256 scores < 2^32 (the library's bounds, above)
        unchecked {
            for (uint256 v; v < m; ++v) {
                keys[v] = (scores[row + v] << _STAKE_BITS) | stakes[v];
            }
            c = consensusScore(keys, total);
            for (uint256 v; v < m; ++v) {
                uint256 s = scores[row + v];
                uint256 clipped = s < c ? s : c;
                weight += stakes[v] * clipped;
                agreement[v] += clipped;
            }
        }
    }

    /// @dev The largest score x such that the members scoring at least x hold strictly more than half of `total`
    ///      (0 if none), from `keys` = score << 96 | stake per member (reordered in place): sorted by score, largest
    ///      first, the answer is the score at which the running stake first exceeds half. Ties do not matter: every
    ///      member scoring more than that score comes before it, so no larger score has a majority.
    function consensusScore(uint256[] memory keys, uint256 total) internal pure returns (uint256) {
        uint256 m = keys.length;
        // unchecked: j >= 1 wherever j - 1 is taken; backing <= total < 2^100, so 2 * backing cannot overflow
        unchecked {
            for (uint256 k = 1; k < m; ++k) {
                uint256 key = keys[k];
                uint256 j = k;
                while (j > 0 && keys[j - 1] < key) {
                    keys[j] = keys[j - 1];
                    --j;
                }
                keys[j] = key;
            }
            uint256 backing;
            for (uint256 k; k < m; ++k) {
                uint256 key = keys[k];
                backing += key & _STAKE_MASK;
                if (2 * backing > total) return key >> _STAKE_BITS;
            }
        }
        return 0;
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
        // unchecked: backing <= total < 2^100 (stakes < 2^96, m <= 16); i < n <= 256
        unchecked {
            for (uint256 i; i < n; ++i) {
                uint256 backing;
                for (uint256 v; v < m; ++v) {
                    if ((bitmaps[v] >> i) & 1 == 1) backing += stakes[v];
                }
                if (2 * backing > total) bits |= 1 << i;
            }
        }
    }

    function sum(uint256[] memory values) internal pure returns (uint256 total) {
        for (uint256 i; i < values.length; ++i) {
            total += values[i];
        }
    }

    /// @dev In place: weights[i] becomes floor(budget * weights[i] / weightSum), or 0 when weightSum is 0.
    function _split(uint256 budget, uint256[] memory weights, uint256 weightSum) private pure {
        if (weightSum == 0) return; // then every weight is 0 already
        // unchecked: budget < 2^120 and each weight <= weightSum < 2^132, so the product < 2^252; weightSum > 0
        unchecked {
            for (uint256 i; i < weights.length; ++i) {
                weights[i] = budget * weights[i] / weightSum;
            }
        }
    }
}
