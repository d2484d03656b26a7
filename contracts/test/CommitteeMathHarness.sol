// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {CommitteeConsensus} from "../libraries/CommitteeConsensus.sol";
import {RewardRoot} from "../libraries/RewardRoot.sol";

/// @title CommitteeMathHarness
/// @notice Test only: the committee's consensus and reward-root libraries behind external views, so that tests can
///         compare them with fedchain.core.consensus and fedchain.core.merkle on many random inputs cheaply.
contract CommitteeMathHarness {
    /// @notice CommitteeConsensus.tally: consensus scores, rewards, agreement and dividends.
    function tally(uint256[] calldata stakes, uint256[] calldata scores, uint256 n, uint256 cb, uint256 mb)
        external
        pure
        returns (uint256[] memory, uint256[] memory, uint256[] memory, uint256[] memory)
    {
        CommitteeConsensus.Outcome memory o = CommitteeConsensus.tally(stakes, scores, n, cb, mb);
        return (o.consensus, o.rewards, o.agreement, o.dividends);
    }

    /// @notice CommitteeConsensus.majorityDigest.
    function majorityDigest(bytes32[] calldata digests, uint256[] calldata stakes)
        external
        pure
        returns (bytes32, uint256)
    {
        return CommitteeConsensus.majorityDigest(digests, stakes, CommitteeConsensus.sum(stakes));
    }

    /// @notice CommitteeConsensus.majorityBits.
    function majorityBits(uint256[] calldata bitmaps, uint256[] calldata stakes, uint256 n)
        external
        pure
        returns (uint256)
    {
        return CommitteeConsensus.majorityBits(bitmaps, stakes, n, CommitteeConsensus.sum(stakes));
    }

    /// @notice RewardRoot over (taskId, round, accounts[i], amounts[i]) leaves.
    function root(uint256 taskId, uint256 round, address[] calldata accounts, uint256[] calldata amounts)
        external
        pure
        returns (bytes32)
    {
        bytes32[] memory leaves = new bytes32[](accounts.length);
        for (uint256 i; i < accounts.length; ++i) {
            leaves[i] = RewardRoot.leaf(taskId, round, accounts[i], amounts[i]);
        }
        return RewardRoot.root(leaves);
    }
}
