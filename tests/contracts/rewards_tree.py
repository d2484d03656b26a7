"""A minimal OpenZeppelin StandardMerkleTree for (taskId, round, account, amount) leaves, for the contract tests.

Same layout as @openzeppelin/merkle-tree: leaf = keccak256(keccak256(abi.encode(values))), leaves sorted by hash,
stored at the end of a flat array, parents hashed as keccak256(sorted(a, b)). The product's own tree lives in
python/fedchain/merkle.py; this copy keeps the contract tests independent of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_abi import encode
from eth_utils import keccak, to_checksum_address

LEAF_TYPES = ["uint256", "uint256", "address", "uint256"]


def leaf_hash(task_id: int, round_index: int, account: str, amount: int) -> bytes:
    return keccak(keccak(encode(LEAF_TYPES, [task_id, round_index, to_checksum_address(account), amount])))


def _hash_pair(a: bytes, b: bytes) -> bytes:
    return keccak(min(a, b) + max(a, b))


@dataclass
class RewardsTree:
    task_id: int
    round: int
    entries: dict[str, int]  # checksummed account -> amount

    def __post_init__(self) -> None:
        if not self.entries:
            raise ValueError("a rewards tree needs at least one entry")
        self.entries = {to_checksum_address(a): v for a, v in self.entries.items()}
        leaves = sorted(leaf_hash(self.task_id, self.round, a, v) for a, v in self.entries.items())
        n = len(leaves)
        self._tree: list[bytes] = [b""] * (2 * n - 1)
        for i, leaf in enumerate(leaves):
            self._tree[len(self._tree) - 1 - i] = leaf
        for i in range(len(self._tree) - 1 - n, -1, -1):
            self._tree[i] = _hash_pair(self._tree[2 * i + 1], self._tree[2 * i + 2])

    @property
    def root(self) -> bytes:
        return self._tree[0]

    @property
    def total(self) -> int:
        return sum(self.entries.values())

    def proof(self, account: str) -> list[bytes]:
        account = to_checksum_address(account)
        target = leaf_hash(self.task_id, self.round, account, self.entries[account])
        index = self._tree.index(target)
        proof = []
        while index > 0:
            sibling = index + 1 if index % 2 == 1 else index - 1
            proof.append(self._tree[sibling])
            index = (index - 1) // 2
        return proof


def verify(root: bytes, leaf: bytes, proof: list[bytes]) -> bool:
    node = leaf
    for sibling in proof:
        node = _hash_pair(node, sibling)
    return node == root
