"""The pseudo-label record an update carries: what the contributor declares about the labels it made and trained on.

No torch: validators, auditors and the dashboard read it without the learning stack.

The record (the envelope extension "pseudo-labels/1", canonical JSON; full form, in IPFS with the update, sealed
with it when the task is sealed):

    {"adaptive": false,                 # FlexMatch per-class thresholds used
     "histogram": [n_0, ..., n_{C-1}],  # pseudo-labels per class
     "labelled": 40,                    # labelled samples trained on
     "leaves": [["0x<commitment>", label, bucket], ...],  # one per pseudo-labelled sample, in sample order
     "mean_confidence_bp": 9871,        # mean confidence of the pseudo-labels, in basis points (floor)
     "pseudo_labelled": 512,            # unlabelled samples that got a pseudo-label (= len(leaves))
     "root": "0x<32 bytes>",            # Merkle root over the leaves
     "threshold_bp": 9500,              # the confidence threshold, in basis points
     "unlabelled_seen": 760}            # unlabelled samples the global model looked at

    leaf       = keccak256(keccak256(abi.encode(bytes32 commitment, uint256 label, uint256 bucket)))
    commitment = keccak256(salt || sha256(sample's float32 bytes, C order))
    salt       = keccak256("fedchain-pseudo-label-salt" || secret || sha256(sample))   (the secret stays private)
    bucket     = floor(100 * confidence), in [0, 100]

The tree is OpenZeppelin's StandardMerkleTree layout (fedchain.core.merkle's hash_pair): to prove one label the
contributor shows (commitment, label, bucket) and the proof; to show which sample it was, the salt and the sample.

The update's sample count is labelled + pseudo_labelled. The event of the submission carries a summary packed in
one uint256 (`pack_summary`), the root and the histogram (uint32 big-endian per class).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi import encode
from eth_utils import keccak

from fedchain.core.envelope import register_extension
from fedchain.core.merkle import EMPTY_ROOT, hash_pair, verify

EXTENSION = "pseudo-labels/1"
BASIS_POINTS = 10_000
BUCKETS = 100  # confidence buckets: floor(100 * confidence)
MAX_CLASSES = 256  # the contract's cap on the histogram's length
_SALT_TAG = b"fedchain-pseudo-label-salt"
_U32 = 2**32 - 1
_FIELDS = {"adaptive", "histogram", "labelled", "leaves", "mean_confidence_bp", "pseudo_labelled", "root",
           "threshold_bp", "unlabelled_seen"}


# ------------------------------------------------------------------------------------------------ commitments


def sample_digest(sample: Any) -> bytes:
    """sha256 of one sample's float32 bytes in C order (a NumPy array or anything with tobytes())."""
    return hashlib.sha256(sample.tobytes()).digest()


def salt_for(secret: bytes, digest: bytes) -> bytes:
    return keccak(_SALT_TAG + secret + digest)


def commitment(salt: bytes, digest: bytes) -> bytes:
    return keccak(salt + digest)


def bucket_of(confidence: float) -> int:
    return min(BUCKETS, max(0, int(confidence * BUCKETS)))


def leaf_hash(commit: bytes, label: int, bucket: int) -> bytes:
    return keccak(keccak(encode(["bytes32", "uint256", "uint256"], [commit, label, bucket])))


class LabelTree:
    """OpenZeppelin StandardMerkleTree layout over pseudo-label leaves (sorted hashes, commutative pairs)."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        ordered = sorted(leaves)
        n = len(ordered)
        self.tree: list[bytes] = [b""] * max(2 * n - 1, 0)
        for i, leaf in enumerate(ordered):
            self.tree[len(self.tree) - 1 - i] = leaf
        for i in range(len(self.tree) - 1 - n, -1, -1):
            self.tree[i] = hash_pair(self.tree[2 * i + 1], self.tree[2 * i + 2])
        self._index = {leaf: len(self.tree) - 1 - i for i, leaf in enumerate(ordered)}

    @property
    def root(self) -> bytes:
        return self.tree[0] if self.tree else EMPTY_ROOT

    def proof(self, leaf: bytes) -> list[bytes]:
        i = self._index[leaf]
        out = []
        while i > 0:
            out.append(self.tree[i - 1 if i % 2 == 0 else i + 1])
            i = (i - 1) // 2
        return out


# ------------------------------------------------------------------------------------------------ the record


@dataclass(frozen=True)
class PseudoLabels:
    """What a pseudo-labelling trainer labelled (a TrainResult's extras["pseudo-labels"]); no salts yet."""

    threshold: float
    adaptive: bool
    num_classes: int
    labelled: int
    unlabelled_seen: int
    sample_digests: tuple[bytes, ...]  # sha256 of each pseudo-labelled sample, in sample order
    labels: tuple[int, ...]
    confidences: tuple[float, ...]


@dataclass(frozen=True)
class PseudoLabelRecord:
    threshold_bp: int
    adaptive: bool
    labelled: int
    unlabelled_seen: int
    histogram: tuple[int, ...]
    mean_confidence_bp: int
    leaves: tuple[tuple[bytes, int, int], ...]  # (commitment, label, bucket)

    @property
    def pseudo_labelled(self) -> int:
        return len(self.leaves)

    @property
    def num_samples(self) -> int:
        """What the update's sample count must be."""
        return self.labelled + self.pseudo_labelled

    def leaf_hashes(self) -> list[bytes]:
        return [leaf_hash(c, label, b) for c, label, b in self.leaves]

    def tree(self) -> LabelTree:
        return LabelTree(self.leaf_hashes())

    @property
    def root(self) -> bytes:
        return self.tree().root

    def proof(self, index: int) -> list[bytes]:
        """The proof for the index-th pseudo-labelled sample's leaf."""
        c, label, b = self.leaves[index]
        return self.tree().proof(leaf_hash(c, label, b))

    @classmethod
    def build(cls, labels: PseudoLabels, secret: bytes) -> PseudoLabelRecord:
        histogram = [0] * labels.num_classes
        leaves = []
        for digest, label, conf in zip(labels.sample_digests, labels.labels, labels.confidences):
            histogram[label] += 1
            leaves.append((commitment(salt_for(secret, digest), digest), int(label), bucket_of(conf)))
        n = len(leaves)
        mean = sum(labels.confidences) / n if n else 0.0
        return cls(threshold_bp=int(round(labels.threshold * BASIS_POINTS)), adaptive=labels.adaptive,
                   labelled=labels.labelled, unlabelled_seen=labels.unlabelled_seen, histogram=tuple(histogram),
                   mean_confidence_bp=min(BASIS_POINTS, int(mean * BASIS_POINTS)), leaves=tuple(leaves))

    # -- the extension's JSON ---------------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "adaptive": self.adaptive, "histogram": list(self.histogram), "labelled": self.labelled,
            "leaves": [["0x" + c.hex(), label, b] for c, label, b in self.leaves],
            "mean_confidence_bp": self.mean_confidence_bp, "pseudo_labelled": self.pseudo_labelled,
            "root": "0x" + self.root.hex(), "threshold_bp": self.threshold_bp, "unlabelled_seen": self.unlabelled_seen,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> PseudoLabelRecord:
        """Parse and check a record (ValueError saying what is wrong): every field present and typed, the counts,
        histogram, mean confidence and root consistent with the leaves."""
        if not isinstance(value, dict) or set(value) != _FIELDS:
            got = sorted(value) if isinstance(value, dict) else type(value).__name__
            raise ValueError(f"a pseudo-label record has exactly the fields {sorted(_FIELDS)}, got {got}")
        ints = {k: _uint(k, value[k]) for k in ("labelled", "unlabelled_seen", "pseudo_labelled",
                                                 "threshold_bp", "mean_confidence_bp")}
        if not isinstance(value["adaptive"], bool):
            raise ValueError("adaptive must be true or false")
        for k in ("threshold_bp", "mean_confidence_bp"):
            if ints[k] > BASIS_POINTS:
                raise ValueError(f"{k} must be at most {BASIS_POINTS}, got {ints[k]}")
        hist = value["histogram"]
        if not isinstance(hist, list) or not 2 <= len(hist) <= MAX_CLASSES:
            raise ValueError(f"histogram must be a list of 2 to {MAX_CLASSES} counts")
        histogram = tuple(_uint("histogram entry", h) for h in hist)
        leaves = _leaves(value["leaves"], len(histogram))
        record = cls(ints["threshold_bp"], value["adaptive"], ints["labelled"], ints["unlabelled_seen"], histogram,
                     ints["mean_confidence_bp"], leaves)
        record._check_consistent(ints["pseudo_labelled"], value["root"])
        return record

    def _check_consistent(self, pseudo_labelled: int, root: object) -> None:
        if pseudo_labelled != len(self.leaves):
            raise ValueError(f"pseudo_labelled is {pseudo_labelled} but there are {len(self.leaves)} leaves")
        if pseudo_labelled > self.unlabelled_seen:
            raise ValueError(f"pseudo_labelled {pseudo_labelled} exceeds unlabelled_seen {self.unlabelled_seen}")
        counted = [0] * len(self.histogram)
        for _, label, _ in self.leaves:
            counted[label] += 1
        if tuple(counted) != self.histogram:
            raise ValueError(f"histogram {list(self.histogram)} does not count the leaves' labels {counted}")
        if self.leaves:  # floor(100 c_i) <= 100 c_i < floor(100 c_i) + 1, so the mean lies within the buckets' mean
            # (one basis point of slack below: floats floor 0.99 * 10000 to 9899)
            low = sum(b for _, _, b in self.leaves) * (BASIS_POINTS // BUCKETS) // len(self.leaves) - 1
            high = low + 1 + BASIS_POINTS // BUCKETS
            if not low <= self.mean_confidence_bp <= high:
                raise ValueError(f"mean_confidence_bp {self.mean_confidence_bp} is outside [{low}, {high}], what "
                                 "the leaves' confidence buckets allow")
        elif self.mean_confidence_bp != 0:
            raise ValueError("mean_confidence_bp must be 0 when nothing was pseudo-labelled")
        if root != "0x" + self.root.hex():
            raise ValueError(f"root {root!r:.70} is not the Merkle root of the leaves (0x{self.root.hex()})")

    # -- on chain ---------------------------------------------------------------------------------------------------

    def summary(self) -> int:
        return pack_summary(self.threshold_bp, self.unlabelled_seen, self.pseudo_labelled, self.mean_confidence_bp,
                            self.labelled)

    def histogram_bytes(self) -> bytes:
        return b"".join(min(h, _U32).to_bytes(4, "big") for h in self.histogram)


def _uint(name: str, v: object) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= _U32:
        raise ValueError(f"{name} must be an integer in [0, 2**32), got {v!r:.40}")
    return v


def _leaves(raw: object, num_classes: int) -> tuple[tuple[bytes, int, int], ...]:
    if not isinstance(raw, list):
        raise ValueError("leaves must be a list of [commitment, label, bucket]")
    out = []
    for i, leaf in enumerate(raw):
        if (not isinstance(leaf, list) or len(leaf) != 3 or not isinstance(leaf[0], str)
                or len(leaf[0]) != 66 or not leaf[0].startswith("0x") or leaf[0] != leaf[0].lower()):
            raise ValueError(f"leaf {i} must be [\"0x<64 lower-case hex>\", label, bucket], got {leaf!r:.80}")
        try:
            commit = bytes.fromhex(leaf[0][2:])
        except ValueError:
            raise ValueError(f"leaf {i}: commitment is not hex") from None
        label, bucket = _uint(f"leaf {i} label", leaf[1]), _uint(f"leaf {i} bucket", leaf[2])
        if label >= num_classes:
            raise ValueError(f"leaf {i}: label {label} is not below the histogram's {num_classes} classes")
        if bucket > BUCKETS:
            raise ValueError(f"leaf {i}: bucket {bucket} exceeds {BUCKETS}")
        out.append((commit, label, bucket))
    return tuple(out)


def _check_extension(value: dict[str, Any]) -> dict[str, Any]:
    return PseudoLabelRecord.from_json(value).to_json()


register_extension(EXTENSION, _check_extension)


def verify_label(root: bytes, commit: bytes, label: int, bucket: int, proof: Sequence[bytes]) -> bool:
    """True iff (commit, label, bucket) is a leaf under `root`: what an auditor checks for one disclosed label."""
    return verify(root, leaf_hash(commit, label, bucket), proof)


# ------------------------------------------------------------------------------------------------ the event summary

# uint256 summary = thresholdBp | unlabelledSeen << 16 | pseudoLabelled << 48 | meanConfidenceBp << 80
#                   | labelled << 96          (bits 128..255 zero; the contract checks the same layout)


def pack_summary(threshold_bp: int, unlabelled_seen: int, pseudo_labelled: int, mean_confidence_bp: int,
                 labelled: int) -> int:
    for name, v, bits in (("threshold_bp", threshold_bp, 16), ("unlabelled_seen", unlabelled_seen, 32),
                          ("pseudo_labelled", pseudo_labelled, 32), ("mean_confidence_bp", mean_confidence_bp, 16),
                          ("labelled", labelled, 32)):
        if not 0 <= v < 2**bits:
            raise ValueError(f"{name} {v} does not fit in {bits} bits")
    return (threshold_bp | unlabelled_seen << 16 | pseudo_labelled << 48 | mean_confidence_bp << 80
            | labelled << 96)


@dataclass(frozen=True)
class Summary:
    """The on-chain summary of a record, as the submission's event carries it."""

    threshold_bp: int
    unlabelled_seen: int
    pseudo_labelled: int
    mean_confidence_bp: int
    labelled: int
    root: bytes
    histogram: tuple[int, ...]

    @classmethod
    def from_event(cls, summary: int, root: bytes, histogram: bytes) -> Summary:
        return cls(summary & 0xFFFF, (summary >> 16) & _U32, (summary >> 48) & _U32, (summary >> 80) & 0xFFFF,
                   (summary >> 96) & _U32, bytes(root),
                   tuple(int.from_bytes(histogram[i:i + 4], "big") for i in range(0, len(histogram), 4)))

    @classmethod
    def of(cls, record: PseudoLabelRecord) -> Summary:
        return cls(record.threshold_bp, record.unlabelled_seen, record.pseudo_labelled, record.mean_confidence_bp,
                   record.labelled, record.root, record.histogram)

    def to_json(self) -> dict[str, Any]:
        return {"threshold": self.threshold_bp / BASIS_POINTS, "unlabelled_seen": self.unlabelled_seen,
                "pseudo_labelled": self.pseudo_labelled, "labelled": self.labelled,
                "mean_confidence": self.mean_confidence_bp / BASIS_POINTS, "histogram": list(self.histogram),
                "root": "0x" + self.root.hex()}
