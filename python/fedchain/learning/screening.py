"""Pre-scoring rejection checks on a round's (K, D) buffer of update deltas: pure, reproducible verdicts per row.

A rejected row scores 0 and its reason code goes into the round report. Checks run in this order, and a row gets
the first reason that applies:

1. `non-finite`: a NaN or infinity anywhere in the row.
2. `duplicate`: cosine similarity above `duplicate_cosine` with another row. Every row of such a group is rejected,
   the earliest on chain too: who reached the chain first says nothing about who trained the update (a front-runner
   can re-wrap an honest update seen in the mempool under its own name and land first), and the content of two
   near-copies cannot prove which one is the original. So a copy earns nothing, and a near-duplicate is never a
   reason to slash (`fedchain.core.reasons.PROVABLE` leaves it out). `duplicate_of` still names, for the report's
   reader, the earliest-submitted row each later one is near.
3. `free-rider`: norm 0, or at most `free_rider_fraction` of the median norm of the rows still in (the global
   model sent back unchanged, or with tiny noise). Whether a small update helps at all is scoring's question.
4. `norm-outlier`: norm above median x max(`outlier_ratio`, exp(`outlier_mad_z` x 1.4826 x MAD of log norms)).
   Honest contributors with more data take more local steps and send larger deltas, roughly in proportion: the
   generous ratio (10x by default) never flags 5x the data, while a 50x-scaled update is flagged unless honest
   norms themselves spread that widely. Sample counts are deliberately not used: they are self-reported.

Rows named in `pre_rejected` (reasons decided elsewhere: wrong base model, replay, malformed) keep those reasons
and are left out of every statistic. Norms and cosines come from `reproducible_sq_norms`/`reproducible_gram`,
so every validator reaches the same verdicts to the byte.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from fedchain.aggregation import median_of, reproducible_gram, reproducible_sq_norms
from fedchain.core.reasons import Reason
from fedchain.errors import FedchainError

NON_FINITE = Reason.NON_FINITE
DUPLICATE = Reason.DUPLICATE
FREE_RIDER = Reason.FREE_RIDER
NORM_OUTLIER = Reason.NORM_OUTLIER
REASONS = (NON_FINITE, DUPLICATE, FREE_RIDER, NORM_OUTLIER)


class ScreeningError(FedchainError, ValueError):
    """Raised when screening inputs (buffer, submission order, thresholds) are malformed."""


@dataclass(frozen=True)
class ScreeningConfig:
    """Thresholds of the checks (defaults suit dense deltas of a model trained a few local epochs)."""

    duplicate_cosine: float = 0.99  # cosine similarity above which a later row copies an earlier one
    free_rider_fraction: float = 0.01  # norm at most this fraction of the median norm: nothing learned
    outlier_ratio: float = 10.0  # norm above this multiple of the median norm is an outlier (at least)
    outlier_mad_z: float = 3.5  # ... or beyond this many robust standard deviations of log norm, if wider

    def __post_init__(self) -> None:
        if not -1.0 < self.duplicate_cosine <= 1.0:
            raise ScreeningError(f"duplicate_cosine={self.duplicate_cosine} must be in (-1, 1]")
        if not 0.0 <= self.free_rider_fraction < 1.0:
            raise ScreeningError(f"free_rider_fraction={self.free_rider_fraction} must be in [0, 1)")
        if not self.outlier_ratio > 1.0:
            raise ScreeningError(f"outlier_ratio={self.outlier_ratio} must be > 1")
        if not self.outlier_mad_z > 0.0:
            raise ScreeningError(f"outlier_mad_z={self.outlier_mad_z} must be > 0")


@dataclass(frozen=True)
class ScreeningResult:
    """Per-row verdicts: accepted rows ascending, rejected rows with their reason code."""

    accepted: list[int]
    rejected: dict[int, str]  # row -> reason code (a Reason value)
    norms: list[float] = field(default_factory=list)  # L2 norm of every row (nan/inf for non-finite rows)
    duplicate_of: dict[int, int] = field(default_factory=dict)  # duplicate row -> the earlier row it copies
    median_norm: float = 0.0  # the reference median norm the norm checks used


def non_finite_rows(buffer: torch.Tensor) -> list[int]:
    """Rows holding a NaN or an infinity."""
    return [i for i in range(buffer.shape[0]) if not bool(torch.isfinite(buffer[i]).all())]


def duplicate_rows(
    buffer: torch.Tensor, candidates: Sequence[int], submission_order: Sequence[int], threshold: float
) -> dict[int, int]:
    """Among `candidates`, map each row whose cosine with an earlier-submitted candidate exceeds `threshold` to the
    earliest such row. Zero rows have no direction and are never duplicates (the free-rider check takes them)."""
    rows = [r for r in submission_order if r in set(candidates)]
    if len(rows) < 2:
        return {}
    gram = reproducible_gram(buffer, rows).tolist()
    norms = [math.sqrt(gram[a][a]) for a in range(len(rows))]
    found: dict[int, int] = {}
    for b in range(len(rows)):
        if norms[b] == 0.0:
            continue
        for a in range(b):
            if norms[a] > 0.0 and gram[a][b] / (norms[a] * norms[b]) > threshold:
                found[rows[b]] = rows[a]
                break
    return found


def _mad(values: Sequence[float]) -> float:
    med = median_of(values)
    return median_of([abs(v - med) for v in values])


def screen(
    buffer: torch.Tensor,
    submission_order: Sequence[int] | None = None,
    config: ScreeningConfig | None = None,
    pre_rejected: Mapping[int, str] | None = None,
) -> ScreeningResult:
    """Run the checks on every row of `buffer` (K, D) float32; see the module docstring.

    `submission_order`: row indices, earliest on chain first (default: row order); only names, in `duplicate_of`,
    the earliest row of a near-duplicate group (every row of the group is rejected). `pre_rejected`: rows already rejected elsewhere, with their reasons.

    Raises:
        ScreeningError: on a malformed buffer, or an order that is not a permutation of the rows.
    """
    config = config or ScreeningConfig()
    if not isinstance(buffer, torch.Tensor) or buffer.dim() != 2 or buffer.dtype != torch.float32:
        raise ScreeningError("buffer must be a (K, D) float32 tensor")
    k = buffer.shape[0]
    order = list(range(k)) if submission_order is None else [int(r) for r in submission_order]
    if sorted(order) != list(range(k)):
        raise ScreeningError(f"submission_order {order} must list each of the {k} rows exactly once")
    rejected: dict[int, str] = {}
    for r, reason in (pre_rejected or {}).items():
        if not 0 <= r < k:
            raise ScreeningError(f"pre_rejected row {r} out of range for {k} rows")
        rejected[int(r)] = str(reason)

    for r in non_finite_rows(buffer):
        rejected.setdefault(r, NON_FINITE)
    norms = torch.sqrt(reproducible_sq_norms(buffer)).tolist()
    live = [r for r in range(k) if r not in rejected]

    duplicate_of = duplicate_rows(buffer, live, order, config.duplicate_cosine)
    for r, original in duplicate_of.items():
        rejected[r] = DUPLICATE
        rejected[original] = DUPLICATE  # chain order does not tell the original: neither keeps its standing
    live = [r for r in live if r not in rejected]

    moving = [norms[r] for r in live if norms[r] > 0.0]
    reference = median_of(moving) if moving else 0.0
    for r in live:
        if norms[r] == 0.0 or norms[r] <= config.free_rider_fraction * reference:
            rejected[r] = FREE_RIDER
    live = [r for r in live if r not in rejected]

    if live:
        median = median_of([norms[r] for r in live])
        spread = 1.4826 * _mad([math.log(norms[r]) for r in live])
        bound = median * max(config.outlier_ratio, math.exp(min(700.0, config.outlier_mad_z * spread)))
        reference = median
        for r in live:
            if norms[r] > bound:
                rejected[r] = NORM_OUTLIER

    accepted = [r for r in range(k) if r not in rejected]
    return ScreeningResult(
        accepted=accepted,
        rejected=dict(sorted(rejected.items())),
        norms=norms,
        duplicate_of=duplicate_of,
        median_norm=reference,
    )
