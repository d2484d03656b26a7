"""The reward Merkle tree: exactly OpenZeppelin's `StandardMerkleTree` (@openzeppelin/merkle-tree) for leaves of
types ["uint256", "uint256", "address", "uint256"] = (taskId, round, account, amount), so proofs verify with
OpenZeppelin's `MerkleProof.verify` in the contracts:

    leaf = keccak256(bytes.concat(keccak256(abi.encode(taskId, round, account, amount))))

Tree construction (as in @openzeppelin/merkle-tree's `makeMerkleTree`): leaf hashes sorted ascending; stored in an
array of 2n - 1 nodes with leaf i (in sorted order) at index 2n - 2 - i; node i = hashPair(node 2i+1, node 2i+2),
where hashPair hashes the two 32-byte children in ascending order (commutative). A proof is the list of siblings
from the leaf up to the root. A tree of one leaf has root = leaf and empty proofs.

Empty tree (no entries): OpenZeppelin's library refuses it; here the root is 32 zero bytes (`EMPTY_ROOT`), which no
proof can reach (a proof always yields a keccak output), so nothing is claimable.

    tree = RewardTree(task_id=1, round=0, entries={"0xAbc...": 10**18})
    tree.root, tree.proof("0xAbc..."), verify(tree.root, tree.leaf("0xAbc..."), tree.proof("0xAbc..."))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from eth_abi import encode
from eth_utils import is_address, keccak, to_checksum_address

from fedchain.errors import FedchainError

LEAF_TYPES = ["uint256", "uint256", "address", "uint256"]
EMPTY_ROOT = b"\x00" * 32
_UINT256_MAX = 2**256 - 1


class MerkleError(FedchainError, ValueError):
    """Raised for an invalid reward entry (address, amount) or a proof asked for an account not in the tree."""


def _check_uint(name: str, v: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= _UINT256_MAX:
        raise MerkleError(f"{name} must be an integer in [0, 2**256), got {v!r}")
    return v


def normalize_address(account: str) -> str:
    """Checksummed form of a 0x-prefixed 20-byte hex address; MerkleError if it is not one."""
    if not isinstance(account, str) or not is_address(account) or not account.startswith("0x"):
        raise MerkleError(f"not a valid 0x-prefixed 20-byte address: {account!r}")
    return to_checksum_address(account)


def leaf_hash(task_id: int, round: int, account: str, amount: int) -> bytes:
    """keccak256(keccak256(abi.encode(uint256 taskId, uint256 round, address account, uint256 amount)))."""
    values = [_check_uint("task_id", task_id), _check_uint("round", round), normalize_address(account),
              _check_uint("amount", amount)]
    return keccak(keccak(encode(LEAF_TYPES, values)))


def hash_pair(a: bytes, b: bytes) -> bytes:
    """OpenZeppelin's commutative node hash: keccak256 of the two children in ascending order."""
    return keccak(a + b if a <= b else b + a)


def process_proof(leaf: bytes, proof: Sequence[bytes]) -> bytes:
    node = leaf
    for sibling in proof:
        node = hash_pair(node, sibling)
    return node


def verify(root: bytes, leaf: bytes, proof: Sequence[bytes]) -> bool:
    """True iff `proof` leads from `leaf` to `root` (as OpenZeppelin's MerkleProof.verify)."""
    if len(leaf) != 32 or any(len(p) != 32 for p in proof):
        return False
    return process_proof(leaf, proof) == root


class RewardTree:
    """OpenZeppelin StandardMerkleTree of (task_id, round, account, amount) for one round's rewards.

    `entries` maps accounts (any case; stored checksummed) to amounts in the token's smallest unit. Every entry
    becomes a leaf, zero amounts included (filter them out beforehand if they should not be claimable).
    """

    def __init__(self, task_id: int, round: int, entries: Mapping[str, int]) -> None:
        self.task_id = _check_uint("task_id", task_id)
        self.round = _check_uint("round", round)
        self.entries: dict[str, int] = {}
        for account, amount in entries.items():
            acct = normalize_address(account)
            if acct in self.entries:
                raise MerkleError(f"account {acct} appears twice (addresses differ only in case)")
            self.entries[acct] = _check_uint(f"amount for {acct}", amount)
        self._leaf = {a: leaf_hash(self.task_id, self.round, a, v) for a, v in self.entries.items()}
        leaves = sorted(self._leaf.values())
        n = len(leaves)
        self.tree: list[bytes] = [b""] * max(2 * n - 1, 0)  # OpenZeppelin's array layout
        for i, leaf in enumerate(leaves):
            self.tree[len(self.tree) - 1 - i] = leaf
        for i in range(len(self.tree) - 1 - n, -1, -1):
            self.tree[i] = hash_pair(self.tree[2 * i + 1], self.tree[2 * i + 2])
        self._index = {leaf: len(self.tree) - 1 - i for i, leaf in enumerate(leaves)}

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def root(self) -> bytes:
        """32 bytes; EMPTY_ROOT (zeros) when there are no entries."""
        return self.tree[0] if self.tree else EMPTY_ROOT

    @property
    def root_hex(self) -> str:
        return "0x" + self.root.hex()

    def leaf(self, account: str) -> bytes:
        acct = normalize_address(account)
        if acct not in self._leaf:
            raise MerkleError(f"account {acct} has no reward in task {self.task_id} round {self.round}")
        return self._leaf[acct]

    def amount(self, account: str) -> int:
        self.leaf(account)
        return self.entries[normalize_address(account)]

    def proof(self, account: str) -> list[bytes]:
        """Siblings from the account's leaf up to the root (OpenZeppelin's getProof)."""
        i = self._index[self.leaf(account)]
        proof = []
        while i > 0:
            proof.append(self.tree[i - 1 if i % 2 == 0 else i + 1])  # sibling
            i = (i - 1) // 2
        return proof

    def proof_hex(self, account: str) -> list[str]:
        return ["0x" + p.hex() for p in self.proof(account)]
