"""Stake-weighted consensus of a validator committee (Yuma-style), in exact integer arithmetic.

A committee's members each reveal, for one round: which updates they could fetch and open, the digest of the model
they computed, a slashing verdict per contributor, and a score per contributor (non-negative integers summing to
SCORE_SCALE, or all zero). From the reveals and the members' stakes, anyone computes the same outcome:

    inputs   update i is in the round's input set when members holding more than half of the committee's total
             stake could open it (an update outside the set is `unavailable` for everyone);
    model    the model digest revealed by members holding more than half of the total stake (None: no consensus);
    c_i      the consensus score of contributor i: the largest score that members holding strictly more than
             kappa = 1/2 of the total stake gave it, at least (a member that did not reveal counts as 0);
    clipped  each member's score clipped to it, min(w_v,i, c_i);
    rewards  the contributors' budget split in proportion to sum_v stake_v * min(w_v,i, c_i) (floor; dust stays);
    agreement_v = sum_i min(w_v,i, c_i): the part of a member's score vector that survived clipping;
    dividends   the members' budget split in proportion to stake_v * agreement_v (floor; dust stays);
    slashed  contributor i when members holding more than half of the stake revealed a slashing verdict for it.

Every quantity is an integer and every division a floor, so the contract and this module compute the same numbers
(the contract is tested against this module). Totals are bounded: 16 members, stakes below 2**96, scores below
2**32 and budgets below 2**128 keep every product below 2**256.

    outcome = consensus(stakes=[100, 100, 100], reveals=[r0, r1, None], contributors_budget=900, members_budget=100)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fedchain.errors import FedchainError

SCORE_SCALE = 10**9  # a member's scores sum to this (or are all zero)
MAX_MEMBERS = 16


class ConsensusError(FedchainError, ValueError):
    """Raised when a reveal or the committee does not have the shape the consensus needs."""


@dataclass(frozen=True)
class Reveal:
    """One member's revealed round result, over the round's submissions in submission order."""

    available: tuple[bool, ...]  # could it fetch and open each submission
    model_digest: bytes  # 32 bytes: the digest of the model it computed
    scores: tuple[int, ...]  # per submission, summing to SCORE_SCALE or all 0
    slash: tuple[bool, ...]  # per submission: a slashing verdict (with the submission's digest as evidence)

    def check(self, n: int) -> None:
        if not (len(self.available) == len(self.scores) == len(self.slash) == n):
            raise ConsensusError(f"a reveal covers {len(self.scores)} submissions, the round has {n}")
        if any(s < 0 or s >= 2**32 for s in self.scores):
            raise ConsensusError("scores are integers in [0, 2**32)")
        if sum(self.scores) not in (0, SCORE_SCALE):
            raise ConsensusError(f"scores sum to {sum(self.scores)}, not {SCORE_SCALE} (or 0)")
        if len(self.model_digest) != 32:
            raise ConsensusError("a model digest is 32 bytes")


@dataclass(frozen=True)
class Outcome:
    inputs: tuple[bool, ...]  # per submission: in the agreed input set
    model_digest: bytes | None  # None: no model has a stake majority, the round cannot finalize
    consensus_scores: tuple[int, ...]  # c_i
    rewards: tuple[int, ...]  # per submission's contributor
    agreement: tuple[int, ...]  # per member (0 for members that did not reveal)
    dividends: tuple[int, ...]  # per member
    slashed: tuple[bool, ...]  # per submission


def _majority(stake: int, total: int) -> bool:
    """Strictly more than half of the total stake."""
    return 2 * stake > total


def consensus_score(stakes: Sequence[int], scores: Sequence[int], total: int) -> int:
    """The largest score x such that the members scoring at least x hold strictly more than half of `total`."""
    backing = 0
    for score, stake in sorted(zip(scores, stakes), key=lambda p: -p[0]):
        backing += stake
        if _majority(backing, total):
            return score
    return 0


def consensus(
    stakes: Sequence[int], reveals: Sequence[Reveal | None], contributors_budget: int, members_budget: int
) -> Outcome:
    """The committee's outcome for one round; `reveals[v]` is None for a member that did not reveal."""
    if not 1 <= len(stakes) <= MAX_MEMBERS or len(reveals) != len(stakes):
        raise ConsensusError(f"a committee has 1 to {MAX_MEMBERS} members, each with a stake and a reveal slot")
    if any(s <= 0 for s in stakes):
        raise ConsensusError("every member holds a positive stake")
    total = sum(stakes)
    revealed = [r for r in reveals if r is not None]
    n = len(revealed[0].scores) if revealed else 0
    for r in revealed:
        r.check(n)
    members = range(len(stakes))
    live = [(stakes[v], r) for v, r in enumerate(reveals) if r is not None]
    inputs = tuple(_majority(sum(s for s, r in live if r.available[i]), total) for i in range(n))
    model = _majority_digest(stakes, reveals, total)
    # A member that did not reveal counts as 0; an update outside the input set scores 0 for everyone.
    w = [[(r.scores[i] if r is not None and inputs[i] else 0) for i in range(n)] for r in reveals]
    c = tuple(consensus_score(stakes, [w[v][i] for v in members], total) for i in range(n))
    clipped = [[min(w[v][i], c[i]) for i in range(n)] for v in members]
    weight = [sum(stakes[v] * clipped[v][i] for v in members) for i in range(n)]
    rewards = _split(contributors_budget, weight)
    agreement = tuple(sum(clipped[v]) for v in members)
    dividends = _split(members_budget, [stakes[v] * agreement[v] for v in members])
    slashed = tuple(_majority(sum(s for s, r in live if r.slash[i]), total) for i in range(n))
    return Outcome(inputs, model, c, rewards, agreement, dividends, slashed)


def _majority_digest(stakes: Sequence[int], reveals: Sequence[Reveal | None], total: int) -> bytes | None:
    backing: dict[bytes, int] = {}
    for stake, reveal in zip(stakes, reveals):
        if reveal is not None:
            backing[reveal.model_digest] = backing.get(reveal.model_digest, 0) + stake
    winners = [digest for digest, stake in backing.items() if _majority(stake, total)]
    return winners[0] if winners else None


def _split(budget: int, weights: Sequence[int]) -> tuple[int, ...]:
    """floor(budget * weight_i / sum of weights); all zero when every weight is zero. The dust is not paid."""
    total = sum(weights)
    if total == 0:
        return tuple(0 for _ in weights)
    return tuple(budget * w // total for w in weights)


def integer_scores(scores: Sequence[float]) -> tuple[int, ...]:
    """A member's scores (non-negative, any total) as integers summing to SCORE_SCALE, or all zero.

    floor(SCORE_SCALE * s_i / total), then the units left over one each to the largest remainders (ties to the
    lower index): the same integers on every machine for the same (already decimal-rounded) scores.
    """
    from fractions import Fraction

    if any(not s >= 0 for s in scores):
        raise ConsensusError("scores must be non-negative numbers")
    exact = [Fraction(s) for s in scores]
    total = sum(exact, Fraction(0))
    if total == 0:
        return tuple(0 for _ in scores)
    shares = [SCORE_SCALE * s / total for s in exact]
    out = [int(share) for share in shares]  # floor: shares are non-negative
    order = sorted(range(len(out)), key=lambda i: (-(shares[i] - out[i]), i))
    for i in order[: SCORE_SCALE - sum(out)]:
        out[i] += 1
    return tuple(out)


def bitmap(flags: Sequence[bool]) -> int:
    """Bit i set when flags[i] (at most 256 flags: one uint256 on chain)."""
    if len(flags) > 256:
        raise ConsensusError("at most 256 submissions fit a bitmap")
    return sum(1 << i for i, flag in enumerate(flags) if flag)


def commitment(
    *, chain_id: int, contract: str, task_id: int, round_index: int, member: str, model_digest: bytes,
    report_digest: bytes, slash: Sequence[bool], scores: Sequence[int], salt: bytes,
) -> bytes:
    """keccak256(abi.encode(chainId, contract, taskId, round, member, modelDigest, reportDigest, slashBitmap,
    uint32[] scores, salt)): what a member commits to before revealing. Binding the member's address means another
    member cannot copy the commitment, and the salt (32 random bytes) that nobody can test guesses against it."""
    from eth_abi import encode
    from eth_utils import keccak

    if len(salt) != 32 or len(model_digest) != 32 or len(report_digest) != 32:
        raise ConsensusError("digests and the salt are 32 bytes each")
    types = ["uint256", "address", "uint256", "uint256", "address", "bytes32", "bytes32", "uint256", "uint32[]",
             "bytes32"]
    values = [chain_id, contract, task_id, round_index, member, model_digest, report_digest, bitmap(slash),
              list(scores), salt]
    return bytes(keccak(encode(types, values)))
