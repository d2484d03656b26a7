"""Contribution scoring: each accepted update's value on the validator's held-out data, and rewards from scores.

Everything works through one callback, `evaluate(vector) -> float`: the validation LOSS of the previous global
model plus the (D,) delta `vector` (the caller builds the model; nothing here touches models or files). The value
of a coalition S of accepted rows is

    v(S) = loss(base) - loss(base + combine(S)),   v(empty) = 0,

with `combine` the coalition's update: `fedavg_combine` (its own sample-weighted FedAvg, the functions' default) or
`share_combine` (its members' own terms of the round's FedAvg, the validator's default through the task spec's
`scoring.coalition`: nobody earns by diluting the others). Three estimators:

- `marginal_scores`: leave-one-out, v(A) - v(A minus i): exact, |A| + 2 evaluations, blind to redundancy (two
  similar helpful updates each look useless without the other).
- `tmc_shapley`: truncated Monte-Carlo Shapley (Ghorbani & Zou, ICML 2019), with antithetic pairs (each
  permutation is followed by its reverse, which roughly halves the error here). Permutations come from
  SHA-256 of (seed, pair index, row): the same on every machine and Python version. Along each permutation the
  prefix values are walked in order; once |v(A) - v(prefix)| <= truncation_tol * |v(A)| the remaining players
  get marginal 0. The estimate is the mean marginal; its standard error is the standard deviation of the
  pair means / sqrt(pairs). Coalition values are cached, so small rounds cost at most 2**|A| evaluations.

  Error, as tested (tests/python/test_scoring.py: 5-player quadratic games, exact Shapley by enumeration): at
  the default budget (64 permutations, tolerance 0.01) every player's raw estimate was within 0.15 x
  sum_i |exact_i| of its exact value (worst seen 0.11 over 40 games), normalised scores within 0.15 of the
  exact normalised ones, and within 3 reported standard errors + truncation_tol x |v(A)|.

- `gradient_shapley`: the Aumann-Shapley value of the share game, from gradients along the path from the base to
  the round's aggregate. With share coalitions the coalition S moves the model to base + sum_{i in S} a_i x_i
  (a_i = w_i / W_A), so v extends to fractional membership q in [0, 1]^A as L(base) - L(base + sum_i q_i a_i x_i);
  its Aumann-Shapley value (integrated gradients along the diagonal q = t 1) is

      phi_i = -a_i x_i . integral_0^1 grad L(base + t u_A) dt,      u_A = the round's aggregate,

  computed with `points`-point Gauss-Legendre quadrature. It equals the Shapley value exactly when the loss is
  quadratic around the base (both are then -a_i x_i . grad L(base + u_A / 2)), and its values sum to v(A) up to
  the quadrature error (completeness). Cost: `points` gradient passes over the evaluation set and one dot product
  per row, whatever |A|: linear in contributors, against TMC's permutations x |A| forward passes.

Scores are clipped at 0 and normalised to sum 1 per round (all zero stays all zero); `raw` keeps the unclipped,
unnormalised estimates (loss units), and `stderr` is in the units of `scores`.
"""

from __future__ import annotations

import hashlib
import math
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import torch

from fedchain.aggregation import AggregationError, check_weights, fedavg
from fedchain.errors import FedchainError

DEFAULT_PERMUTATIONS = 64
DEFAULT_TRUNCATION_TOL = 0.01

DEFAULT_GRADIENT_POINTS = 3

Evaluate = Callable[[torch.Tensor], float]
Gradient = Callable[[torch.Tensor], torch.Tensor]  # delta (D,) -> gradient (D,) of the loss at base + delta
Combine = Callable[[torch.Tensor, Sequence[int], list[int]], torch.Tensor]


class ScoringError(FedchainError, ValueError):
    """Raised when scoring inputs are invalid (no rows, bad budget, a non-finite loss from `evaluate`)."""


@dataclass(frozen=True)
class ScoreResult:
    """Scores of the accepted rows (row index -> share of the round, summing to 1 or all 0) and how they were made."""

    scores: dict[int, float]
    method: str  # "marginal" | "tmc-shapley" | "gradient-shapley"
    params: dict[str, Any]  # the estimator's parameters, for the round report
    evaluations: int  # losses computed: the base and each distinct coalition (gradient-shapley: gradient passes too)
    stderr: dict[int, float]  # standard error of each score (0 for the exact leave-one-out)
    raw: dict[int, float] = field(default_factory=dict)  # unclipped, unnormalised values (loss decrease)


def fedavg_combine(buffer: torch.Tensor, weights: Sequence[int], rows: list[int]) -> torch.Tensor:
    """Default coalition aggregate: sample-weighted FedAvg of `rows`; zeros if they carry no samples."""
    if sum(weights[r] for r in rows) == 0:
        return torch.zeros(buffer.shape[1], dtype=torch.float32)
    return fedavg(buffer, weights, rows=rows)


def share_combine(buffer: torch.Tensor, weights: Sequence[int], accepted: Sequence[int]) -> Combine:
    """Coalition aggregate as each member's own term of the round's FedAvg: sum over S of (w_i / W_A) x_i, with
    W_A the weight of all accepted rows (computed as FedAvg(S) * W_S / W_A).

    Unlike `fedavg_combine`, a member never rescales the others: an update that is zero (a free-rider) adds
    exactly nothing, and one that is noise cannot earn by diluting updates that overshoot. v(A) is the same
    (the round's FedAvg); what each row is credited with is what its own term did to the held-out loss.
    """
    total = sum(weights[r] for r in accepted)

    def combine(buf: torch.Tensor, w: Sequence[int], rows: list[int]) -> torch.Tensor:
        part = sum(w[r] for r in rows)
        if part == 0 or total == 0:
            return torch.zeros(buf.shape[1], dtype=torch.float32)
        return fedavg(buf, w, rows=rows).mul_(part / total)

    return combine


class _Game:
    """Cached coalition values v(S) = loss(base) - loss(base + combine(S)), safe to share between threads.

    `evaluations` counts the distinct coalitions valued (plus the base), so it does not depend on how walks on
    several threads happened to race for the same coalition.
    """

    def __init__(self, buffer: torch.Tensor, weights: Sequence[int], evaluate: Evaluate, combine: Combine) -> None:
        self.buffer, self.weights, self.evaluate, self.combine = buffer, weights, evaluate, combine
        self._lock = threading.Lock()
        self.base_loss = self._loss(torch.zeros(buffer.shape[1], dtype=torch.float32), evaluate)
        self.cache: dict[tuple[int, ...], float] = {(): 0.0}

    @property
    def evaluations(self) -> int:
        return len(self.cache)  # the base, and every non-empty coalition valued

    @staticmethod
    def _loss(vector: torch.Tensor, evaluate: Evaluate) -> float:
        loss = float(evaluate(vector))
        if not math.isfinite(loss):
            raise ScoringError(f"evaluate returned a non-finite loss {loss}: check the model and validation data")
        return loss

    def value(self, coalition: Sequence[int], evaluate: Evaluate | None = None) -> float:
        key = tuple(sorted(coalition))
        with self._lock:
            if key in self.cache:
                return self.cache[key]
        value = self.base_loss - self._loss(self.combine(self.buffer, self.weights, list(key)), evaluate or self.evaluate)
        with self._lock:
            return self.cache.setdefault(key, value)


def _prepare(buffer: torch.Tensor, weights: Any, accepted: Sequence[int]) -> tuple[list[int], list[int]]:
    if not isinstance(buffer, torch.Tensor) or buffer.dim() != 2:
        raise ScoringError("buffer must be a (K, D) tensor")
    k = buffer.shape[0]
    try:
        w = check_weights(weights, k)
    except AggregationError as exc:
        raise ScoringError(str(exc)) from exc
    rows = sorted(set(int(r) for r in accepted))
    if any(not 0 <= r < k for r in rows):
        raise ScoringError(f"accepted rows {rows} out of range for {k} rows")
    return w, rows


def normalise(raw: Mapping[int, float]) -> tuple[dict[int, float], float]:
    """Clip at 0 and scale to sum 1; returns the scores and the divisor (0 when everything clipped to 0)."""
    clipped = {r: max(0.0, v) for r, v in raw.items()}
    total = math.fsum(clipped.values())
    if total <= 0.0:
        return {r: 0.0 for r in raw}, 0.0
    return {r: v / total for r, v in clipped.items()}, total


def marginal_scores(
    buffer: torch.Tensor,
    weights: Any,
    accepted: Sequence[int],
    evaluate: Evaluate,
    combine: Combine = fedavg_combine,
) -> ScoreResult:
    """Leave-one-out: row i's raw value is v(A) - v(A minus i), its marginal effect on the loss of the round's
    aggregate against the previous global model. |A| + 2 evaluations (|A| + 1 when |A| = 1)."""
    w, rows = _prepare(buffer, weights, accepted)
    if not rows:
        return ScoreResult({}, "marginal", {}, 0, {}, {})
    game = _Game(buffer, w, evaluate, combine)
    full = game.value(rows)
    raw = {r: full - game.value([q for q in rows if q != r]) for r in rows}
    scores, _ = normalise(raw)
    return ScoreResult(scores, "marginal", {}, game.evaluations, {r: 0.0 for r in rows}, raw)


def permutation(players: Sequence[int], seed: int, index: int) -> list[int]:
    """The `index`-th seeded permutation of `players`: sorted by SHA-256("fedchain-tmc:seed:index:player")."""

    def key(player: int) -> bytes:
        return hashlib.sha256(f"fedchain-tmc:{seed}:{index}:{player}".encode()).digest()

    return sorted(players, key=lambda p: (key(p), p))


def _walk(
    game: _Game, order: list[int], full: float, tol: float, evaluate: Evaluate | None = None
) -> list[tuple[int, float]]:
    # Marginal contributions along one permutation; 0 for everyone after the prefix is within tol of v(A).
    out: list[tuple[int, float]] = []
    previous = 0.0
    for j, player in enumerate(order):
        if abs(full - previous) <= tol * abs(full):
            out.extend((p, 0.0) for p in order[j:])
            break
        current = game.value(order[: j + 1], evaluate)
        out.append((player, current - previous))
        previous = current
    return out


def tmc_shapley(
    buffer: torch.Tensor,
    weights: Any,
    accepted: Sequence[int],
    evaluate: Evaluate | Sequence[Evaluate],
    permutations: int = DEFAULT_PERMUTATIONS,
    truncation_tol: float = DEFAULT_TRUNCATION_TOL,
    seed: int = 0,
    combine: Combine = fedavg_combine,
) -> ScoreResult:
    """Truncated Monte-Carlo Shapley values of the accepted rows (see the module docstring).

    At most 1 + permutations x |A| evaluations, far fewer in practice (cache, truncation). `evaluate` may be a
    sequence of equivalent evaluators, each safe to use from one thread at a time: the permutation walks then run
    on that many threads, each with its own evaluator, sharing the coalition cache. Every coalition's value is the
    same whichever evaluator computes it, so the walks, the truncation and the result do not depend on the threads.

    Raises:
        ScoringError: if permutations is not an even integer >= 4 (pairs; two pairs give a standard error),
            truncation_tol is not in [0, 1), or a loss is not finite.
    """
    if isinstance(permutations, bool) or not isinstance(permutations, int) or permutations < 4 or permutations % 2:
        raise ScoringError(f"permutations={permutations!r} must be an even integer >= 4 (antithetic pairs)")
    if not 0.0 <= truncation_tol < 1.0:
        raise ScoringError(f"truncation_tol={truncation_tol} must be in [0, 1)")
    w, rows = _prepare(buffer, weights, accepted)
    params = {"permutations": permutations, "truncation_tol": truncation_tol, "seed": int(seed)}
    if not rows:
        return ScoreResult({}, "tmc-shapley", params, 0, {}, {})
    evaluators = [evaluate] if callable(evaluate) else list(evaluate)
    if not evaluators:
        raise ScoringError("no evaluator given")
    game = _Game(buffer, w, evaluators[0], combine)
    full = game.value(rows)
    orders = []
    for pair in range(permutations // 2):
        forward = permutation(rows, seed, pair)
        orders += [forward, forward[::-1]]
    walks = _run_walks(game, orders, full, truncation_tol, evaluators)
    units: dict[int, list[float]] = {r: [] for r in rows}  # per antithetic pair: the mean of its two marginals
    for pair in range(permutations // 2):
        marginal = {r: 0.0 for r in rows}
        for walk in walks[2 * pair : 2 * pair + 2]:  # forward, then reverse: a fixed order of additions
            for player, value in walk:
                marginal[player] += value / 2.0
        for r in rows:
            units[r].append(marginal[r])
    n_units = permutations // 2
    raw = {r: math.fsum(v) / n_units for r, v in units.items()}
    raw_se = {
        r: math.sqrt(math.fsum((x - raw[r]) ** 2 for x in v) / (n_units - 1) / n_units) if n_units > 1 else math.inf
        for r, v in units.items()
    }
    scores, total = normalise(raw)
    stderr = {r: (se / total if total > 0 else se) for r, se in raw_se.items()}
    return ScoreResult(scores, "tmc-shapley", params, game.evaluations, stderr, raw)


def _run_walks(
    game: _Game, orders: list[list[int]], full: float, tol: float, evaluators: list[Evaluate]
) -> list[list[tuple[int, float]]]:
    """Each order's walk, in order; on len(evaluators) threads, each thread holding one evaluator at a time."""
    if len(evaluators) == 1:
        return [_walk(game, order, full, tol, evaluators[0]) for order in orders]
    free: queue.SimpleQueue[Evaluate] = queue.SimpleQueue()
    for ev in evaluators:
        free.put(ev)

    def one(order: list[int]) -> list[tuple[int, float]]:
        ev = free.get()
        try:
            return _walk(game, order, full, tol, ev)
        finally:
            free.put(ev)

    with ThreadPoolExecutor(max_workers=len(evaluators), thread_name_prefix="fedchain-score") as pool:
        return list(pool.map(one, orders))


def exact_shapley(
    buffer: torch.Tensor, weights: Any, accepted: Sequence[int], evaluate: Evaluate, combine: Combine = fedavg_combine
) -> dict[int, float]:
    """Exact Shapley values (raw, loss units) by enumerating all 2**|A| coalitions: for checking, |A| <= ~12."""
    w, rows = _prepare(buffer, weights, accepted)
    n = len(rows)
    if n > 16:
        raise ScoringError(f"exact Shapley over {n} players needs 2**{n} evaluations: use tmc_shapley")
    game = _Game(buffer, w, evaluate, combine)
    result = {}
    for i, r in enumerate(rows):
        others = rows[:i] + rows[i + 1 :]
        total = 0.0
        for mask in range(1 << (n - 1)):
            subset = [others[b] for b in range(n - 1) if mask >> b & 1]
            s = len(subset)
            coeff = math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n)
            total += coeff * (game.value(subset + [r]) - game.value(subset))
        result[r] = total
    return result


def gauss_legendre(points: int) -> list[tuple[float, float]]:
    """(node, weight) pairs of the `points`-point Gauss-Legendre rule on [0, 1] (exact for polynomials of degree
    2 x points - 1)."""
    import numpy as np

    nodes, weights = np.polynomial.legendre.leggauss(points)
    return [(float((n + 1.0) / 2.0), float(w / 2.0)) for n, w in zip(nodes, weights)]


def gradient_shapley(
    buffer: torch.Tensor,
    weights: Any,
    accepted: Sequence[int],
    gradient: Gradient,
    evaluate: Evaluate | None = None,
    points: int = DEFAULT_GRADIENT_POINTS,
) -> ScoreResult:
    """Aumann-Shapley values of the accepted rows in the share game (see the module docstring).

    `gradient(delta)` returns the (D,) gradient of the validation loss at base + delta. `points` gradient passes
    and |A| dot products of length D; with `evaluate`, two loss evaluations more (the base and the round's
    aggregate) give `params["completeness_gap"]`: v(A) - sum of the raw values, as a share of |v(A)| (the
    quadrature's and the path's error; 0 when v(A) is 0). Deterministic: no sampling, no seed.

    Raises:
        ScoringError: if points is not an integer in [1, 16], or a gradient is not finite or of the wrong shape.
    """
    if isinstance(points, bool) or not isinstance(points, int) or not 1 <= points <= 16:
        raise ScoringError(f"points={points!r} must be an integer from 1 to 16 (Gauss-Legendre nodes)")
    w, rows = _prepare(buffer, weights, accepted)
    params: dict[str, Any] = {"points": points}
    total = sum(w[r] for r in rows)
    if not rows or total == 0:
        return ScoreResult({r: 0.0 for r in rows}, "gradient-shapley", params, 0, {r: 0.0 for r in rows},
                           {r: 0.0 for r in rows})
    aggregate = fedavg(buffer, w, rows=rows)  # u_A: with share coalitions, the whole round's FedAvg
    path_gradient = torch.zeros(buffer.shape[1], dtype=torch.float64)
    for node, weight in gauss_legendre(points):
        g = gradient(aggregate * node)
        if not isinstance(g, torch.Tensor) or g.shape != (buffer.shape[1],):
            raise ScoringError(f"gradient returned {type(g).__name__} of shape {getattr(g, 'shape', None)}, "
                               f"expected ({buffer.shape[1]},)")
        if not bool(torch.isfinite(g).all()):
            raise ScoringError("gradient is not finite: check the model and validation data")
        path_gradient.add_(g.to(torch.float64), alpha=weight)
    mean_gradient = path_gradient.to(torch.float32)
    # Row by row: no (|A|, D) copy of the buffer; each row is read once.
    raw = {r: -(w[r] / total) * float(torch.dot(buffer[r], mean_gradient)) for r in rows}
    evaluations = points
    if evaluate is not None:
        full = float(evaluate(torch.zeros_like(aggregate))) - float(evaluate(aggregate))
        evaluations += 2
        gap = full - math.fsum(raw.values())
        params["completeness_gap"] = round(gap / abs(full), 6) if full != 0 and math.isfinite(full) else 0.0
    scores, _ = normalise(raw)
    return ScoreResult(scores, "gradient-shapley", params, evaluations, {r: 0.0 for r in rows}, raw)


# ---------------------------------------------------------------- REWARDS


def rewards_from_scores(scores: Mapping[str, float], budget: int) -> dict[str, int]:
    """Split an integer `budget` in proportion to `scores` (address -> non-negative score), exactly.

    Each address gets floor(budget * score / total) in exact rational arithmetic (scores are read as the exact
    binary fractions they are); the units left over go one each to the largest remainders, ties to the lower
    address (case-insensitive). The amounts sum to `budget` exactly when any score is positive, else all are 0.

    Raises:
        ScoringError: on a negative or non-integer budget, a negative or non-finite score, or two keys that are
            the same address in another case.
    """
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
        raise ScoringError(f"budget={budget!r} must be a non-negative integer (smallest token unit)")
    keys = {str(a).lower(): a for a in scores}
    if len(keys) != len(scores):
        raise ScoringError("the same address appears twice in different letter case")
    exact: dict[str, Fraction] = {}
    for address, score in scores.items():
        if not isinstance(score, (int, float)) or isinstance(score, bool) or not math.isfinite(score) or score < 0:
            raise ScoringError(f"score {score!r} of {address} must be a finite number >= 0")
        exact[address] = Fraction(score)
    total = sum(exact.values(), Fraction(0))
    if total == 0:
        return {a: 0 for a in scores}
    shares = {a: budget * s / total for a, s in exact.items()}
    amounts = {a: math.floor(v) for a, v in shares.items()}
    left = budget - sum(amounts.values())
    by_remainder = sorted(shares, key=lambda a: (-(shares[a] - amounts[a]), str(a).lower()))
    for a in by_remainder[:left]:
        amounts[a] += 1
    return amounts


# ---------------------------------------------------------------- ROUND


def score_round(
    buffer: torch.Tensor,
    weights: Any,
    accepted: Sequence[int],
    evaluate: Evaluate,
    method: str = "tmc-shapley",
    *,
    permutations: int = DEFAULT_PERMUTATIONS,
    truncation_tol: float = DEFAULT_TRUNCATION_TOL,
    seed: int = 0,
    combine: Combine = fedavg_combine,
    gradient: Gradient | None = None,
    points: int = DEFAULT_GRADIENT_POINTS,
) -> ScoreResult:
    """Score every row of the round: `accepted` rows by `method` ("tmc-shapley" | "marginal" | "gradient-shapley",
    which needs `gradient` and always forms coalitions as shares), all other rows (rejected by screening,
    discarded by the robust rule) 0."""
    k = buffer.shape[0]
    if method == "tmc-shapley":
        res = tmc_shapley(buffer, weights, accepted, evaluate, permutations, truncation_tol, seed, combine)
    elif method == "marginal":
        res = marginal_scores(buffer, weights, accepted, evaluate, combine)
    elif method == "gradient-shapley":
        if gradient is None:
            raise ScoringError("gradient-shapley needs the loss's gradient: pass gradient=")
        res = gradient_shapley(buffer, weights, accepted, gradient, evaluate, points)
    else:
        raise ScoringError(f"unknown scoring method {method!r}: use 'tmc-shapley', 'marginal' or 'gradient-shapley'")
    return ScoreResult(
        scores={r: res.scores.get(r, 0.0) for r in range(k)},
        method=res.method,
        params=res.params,
        evaluations=res.evaluations,
        stderr={r: res.stderr.get(r, 0.0) for r in range(k)},
        raw={r: res.raw.get(r, 0.0) for r in range(k)},
    )
