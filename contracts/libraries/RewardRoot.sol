// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Arrays} from "@openzeppelin/contracts/utils/Arrays.sol";
import {Hashes} from "@openzeppelin/contracts/utils/cryptography/Hashes.sol";

/// @title RewardRoot
/// @notice The root of a round's reward tree, built on chain exactly as OpenZeppelin's StandardMerkleTree (and
///         `fedchain.core.merkle.RewardTree`) builds it over (uint256 taskId, uint256 round, address account,
///         uint256 amount) leaves, so TaskManager.claim verifies the proofs off-chain code derives from it.
/// @dev Leaf = keccak256(bytes.concat(keccak256(abi.encode(taskId, round, account, amount)))); leaves sorted
///      ascending; an array of 2n - 1 nodes with sorted leaf i at 2n - 2 - i and node i = the commutative hash of
///      nodes 2i + 1 and 2i + 2. O(n log n) for the sort, n - 1 hashes.
library RewardRoot {
    /// @dev The double-hashed leaf of one (taskId, round, account, amount) entry.
    function leaf(uint256 taskId, uint256 round, address account, uint256 amount) internal pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(taskId, round, account, amount))));
    }

    /// @dev The root over `leaves` (sorted in place); zero for no leaves (no proof reaches it: nothing claimable).
    function root(bytes32[] memory leaves) internal pure returns (bytes32) {
        uint256 n = leaves.length;
        if (n == 0) return bytes32(0);
        Arrays.sort(leaves);
        bytes32[] memory tree = new bytes32[](2 * n - 1);
        for (uint256 i; i < n; ++i) {
            tree[2 * n - 2 - i] = leaves[i];
        }
        for (uint256 i = n - 1; i > 0; --i) {
            tree[i - 1] = Hashes.commutativeKeccak256(tree[2 * i - 1], tree[2 * i]);
        }
        return tree[0];
    }
}
