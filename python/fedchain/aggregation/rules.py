"""The aggregation rules: (K, D) float32 buffer of update deltas in, (D,) float32 aggregate out.

Reproducibility contract: for a given buffer (rows in canonical address order) and weights, every function here
returns the same bytes on every CPU, vector width and thread count (FedAvg: on every platform where torch fuses
multiply-add, see `fused_multiply_add`). They use only element-wise torch ops, each rounding once in IEEE
arithmetic, in a fixed order; every reduction across rows is written out row by row, never left to a BLAS or
library reduction whose order depends on the machine. The one exception, Multi-Krum's pairwise
distances, is computed fast by BLAS and then *certified* (see `multi_krum`), so that its discrete selection, and
so its output bytes, are reproducible too.

Inputs are assumed finite (fedchain.learning.screening rejects non-finite rows first): with NaN or infinity the output is
defined by IEEE arithmetic but not meaningful.
"""

from __future__ import annotations

import ctypes
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

from fedchain.aggregation import _native
from fedchain.aggregation._chunks import CHUNK, reproducible_gram, reproducible_sq_norms, run_chunks
from fedchain.aggregation._sortnet import pruned_after_groups, pruned_network, sort_rows
from fedchain.aggregation.config import AggregationError, AggregationResult, RuleConfig

MAX_WEIGHT = 2**29  # weights * float32 values stay exact in float64 (24 + 29 bits <= 53)
GRAM_CHUNK = 32_768  # columns per BLAS call in Multi-Krum's fast Gram matrix
F64_EPS = 2.0**-53  # unit roundoff of float64
NATIVE_MIN_SPAN = 65_536  # elements per worker below which a second thread costs more than it saves
NATIVE_SORT_GROUP = 16  # rows the native rank kernel sorts in registers at a time (its fedchain_sort16)

Weights = torch.Tensor | Sequence[int]
log = logging.getLogger(__name__)


# ---------------------------------------------------------------- VALIDATION


def _check_buffer(buffer: torch.Tensor) -> tuple[int, int]:
    if not isinstance(buffer, torch.Tensor):
        raise AggregationError(f"buffer must be a torch.Tensor, got {type(buffer).__name__}")
    if buffer.dim() != 2 or buffer.shape[0] < 1 or buffer.shape[1] < 1:
        raise AggregationError(f"buffer must have shape (K, D) with K, D >= 1, got {tuple(buffer.shape)}")
    if buffer.dtype != torch.float32:
        raise AggregationError(f"buffer must be float32, got {buffer.dtype}: receive updates as float32 deltas")
    return int(buffer.shape[0]), int(buffer.shape[1])


def check_weights(weights: Weights | None, k: int) -> list[int]:
    """Validate per-row sample counts: K integers in [0, 2**29) with a positive sum. None means all ones."""
    if weights is None:
        return [1] * k
    if isinstance(weights, torch.Tensor):
        if weights.dtype.is_floating_point or weights.dtype.is_complex or weights.dtype == torch.bool:
            raise AggregationError(f"weights must be an integer tensor (sample counts), got {weights.dtype}")
        values = [int(v) for v in weights.reshape(-1).tolist()]
    else:
        values = []
        for v in weights:
            if isinstance(v, bool) or not isinstance(v, int):
                raise AggregationError(f"weights must be integers (sample counts), got {v!r}")
            values.append(int(v))
    if len(values) != k:
        raise AggregationError(f"got {len(values)} weights for {k} rows: give one sample count per row")
    for v in values:
        if not 0 <= v < MAX_WEIGHT:
            raise AggregationError(f"weight {v} out of range [0, {MAX_WEIGHT}): sample counts must be non-negative")
    if sum(values) == 0:
        raise AggregationError("all weights are zero: at least one row must carry samples")
    return values


# ---------------------------------------------------------------- FEDAVG


# (start, end, weight, result with one rounding): lerp cases, weight < 0.5 and >= 0.5, where two roundings differ
_LERP_PROBES = (
    (0.8442233800888062, 0.6944606900215149, 0.10403860360383987, 0.8286423087120056),
    (0.5141826868057251, 0.8596099019050598, 0.5563966631889343, 0.7063772082328796),
)


@lru_cache(maxsize=1)
def fused_multiply_add() -> bool:
    """Whether torch's float32 `lerp_` rounds once (a fused multiply-add) at every element position.

    ATen's vectorised lerp is fmadd(coeff, end - start, base): one rounding on AVX2/AVX512 x86-64 (every x86-64
    CPU since 2013) and ARM64, and the scalar tails are contracted likewise. Probed with values where one and two
    roundings differ, at lengths and offsets that cover vector bodies and tails.
    """
    for start, end, weight, fused in _LERP_PROBES:
        for n, offset in ((1, 0), (7, 1), (64, 0), (1031, 3), (70_001, 5)):
            out = torch.full((n + offset,), start, dtype=torch.float32)[offset:]
            out.lerp_(torch.full((n,), end, dtype=torch.float32), weight)
            if not bool((out == fused).all()):
                return False
    return True


def fedavg_steps(weights: Sequence[int], rows: Sequence[int]) -> list[float]:
    """The lerp weight of each row after the first: w_i / (w_0 + ... + w_i), rounded once to float32."""
    steps, seen = [], weights[rows[0]]
    for r in rows[1:]:
        seen += weights[r]
        steps.append(float(np.float32(weights[r] / seen)))
    return steps


def fedavg(
    buffer: torch.Tensor,
    weights: Weights | None,
    *,
    rows: Sequence[int] | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sample-weighted mean of the rows (all, or `rows`), reproducible to the byte.

    A running weighted mean, one pass over each row: per chunk of D, out = x_0, then for each further row in
    ascending row order out = lerp(out, x_i, w_i / (w_0 + ... + w_i)) in float32, one rounding per element per
    row. Identical rows give back that row exactly (lerp(x, x, t) = x). Rows with weight 0 are skipped. On the
    CPU the native kernel (`_native`) computes the same roundings in one pass over the rows, which is several
    times faster; without a C compiler the torch ops below are used, with the same bytes. On the
    rare platform whose torch kernel does not fuse (`fused_multiply_add()` False: no FMA, or
    ATEN_CPU_CAPABILITY=default) the mean is formed from exact float64 products w_i * x_i instead, which can
    differ in the last bit: a warning is logged.

    `out`: a (D,) float32 contiguous tensor on the buffer's device to write the mean into (and return), for a
    caller that aggregates round after round: a fresh output costs page faults that, at D = 10M, take about as
    long as the mean itself.

    Raises:
        AggregationError: on a malformed buffer, weights or `out`, or if the chosen rows carry no weight.
    """
    k, d = _check_buffer(buffer)
    w = check_weights(weights, k)
    chosen = sorted(set(range(k) if rows is None else rows))
    if any(not 0 <= r < k for r in chosen):
        raise AggregationError(f"rows {chosen} out of range for {k} rows")
    used = [r for r in chosen if w[r] > 0]
    if not used:
        raise AggregationError(f"rows {chosen} carry no weight: nothing to average")
    if out is None:
        out = new_output(d, buffer.device)
    else:
        _check_out(out, buffer)
    steps = fedavg_steps(w, used)
    if buffer.device.type == "cpu" and buffer.stride(1) == 1 and _fedavg_native(buffer, used, steps, out):
        return out
    if not fused_multiply_add():
        log.warning("torch's float32 lerp is not fused here: FedAvg bytes may differ from FMA machines in the last bit")
        _fedavg_exact(buffer, w, used, out)
        return out

    def body(start: int, end: int, _: None) -> None:
        o = out[start:end]
        if len(used) == 1:
            o.copy_(buffer[used[0], start:end])
            return
        torch.lerp(buffer[used[0], start:end], buffer[used[1], start:end], steps[0], out=o)
        for r, t in zip(used[2:], steps[1:]):
            o.lerp_(buffer[r, start:end], t)

    run_chunks(d, CHUNK, lambda: None, body)
    return out


def new_output(d: int, device: torch.device) -> torch.Tensor:
    """An uninitialised (D,) float32 output. On the CPU it is allocated by numpy, which asks the kernel for
    transparent huge pages on large arrays: a fresh 40 MB output then costs ~20 page faults instead of ~10,000,
    which on a VM took about as long as FedAvg itself."""
    if device.type == "cpu":
        return torch.from_numpy(np.empty(d, dtype=np.float32))
    return torch.empty(d, dtype=torch.float32, device=device)


def _check_out(out: torch.Tensor, buffer: torch.Tensor) -> None:
    d = buffer.shape[1]
    if not isinstance(out, torch.Tensor) or out.dtype != torch.float32 or tuple(out.shape) != (d,):
        raise AggregationError(f"out must be a float32 tensor of shape ({d},), got {getattr(out, 'shape', out)!r}")
    if out.device != buffer.device or not out.is_contiguous():
        raise AggregationError(f"out must be contiguous and on {buffer.device}")
    if out.untyped_storage().data_ptr() == buffer.untyped_storage().data_ptr():
        raise AggregationError("out must not share memory with the buffer: rows are read after out is written")


def _fedavg_native(buffer: torch.Tensor, used: list[int], steps: list[float], out: torch.Tensor) -> bool:
    # The same lerps as the torch path below, fused over rows (see _native.c): one span of D per worker thread.
    lib = _native.library()
    if lib is None:
        return False
    k, d = len(used), out.numel()
    coef = (ctypes.c_float * k)(0.0, *(t if t < 0.5 else t - 1.0 for t in steps))  # t - 1 is exact for t >= 0.5
    small = (ctypes.c_ubyte * k)(1, *(int(t < 0.5) for t in steps))
    base, row_bytes, item = buffer.data_ptr(), buffer.stride(0) * 4, 4

    def body(start: int, end: int, _: None) -> None:
        rows = (ctypes.c_void_p * k)(*(base + r * row_bytes + start * item for r in used))
        lib.fedchain_fedavg_lerp(rows, coef, small, k, out.data_ptr() + start * item, end - start)

    run_chunks(d, _native_span(d), lambda: None, body)
    return True


def _native_span(d: int) -> int:
    # One contiguous span of D per worker thread (ctypes releases the GIL), in whole cache lines.
    workers = max(1, min(torch.get_num_threads(), d // NATIVE_MIN_SPAN))
    span = -(-d // workers)
    return span + (-span % 16)


def _fedavg_exact(buffer: torch.Tensor, w: list[int], used: list[int], out: torch.Tensor) -> None:
    # float64 accumulation of exact products w_i * x_i (24 + 29 bits <= 53), divided once, rounded once.
    total = float(sum(w[r] for r in used))

    def scratch() -> tuple[torch.Tensor, torch.Tensor]:
        return torch.empty(CHUNK, dtype=torch.float64), torch.empty(CHUNK, dtype=torch.float64)

    def body(start: int, end: int, s: tuple[torch.Tensor, torch.Tensor]) -> None:
        acc, tmp = s[0][: end - start], s[1][: end - start]
        acc.copy_(buffer[used[0], start:end])
        acc.mul_(w[used[0]])
        for r in used[1:]:
            tmp.copy_(buffer[r, start:end])
            acc.add_(tmp, alpha=w[r])
        acc.div_(total)
        out[start:end].copy_(acc)

    run_chunks(out.numel(), CHUNK, scratch, body)


# ---------------------------------------------------------------- MEDIAN AND TRIMMED MEAN


@dataclass
class _SortScratch:
    work: torch.Tensor  # (K + 1, chunk) float32: the chunk's rows plus one spare for the sorting network
    acc: torch.Tensor  # (chunk,) float64
    tmp: torch.Tensor  # (chunk,) float64
    outside: list[int]  # per row: coordinates where it fell outside the kept band (trimmed mean only)
    flags: torch.Tensor  # (2, chunk) bool


def _sorted_chunk(
    buffer: torch.Tensor, start: int, end: int, s: _SortScratch, steps: tuple[tuple[int, int], ...]
) -> list[torch.Tensor]:
    k, n = buffer.shape[0], end - start
    rows = [s.work[i, :n] for i in range(k)]
    for i in range(k):
        rows[i].copy_(buffer[i, start:end])
    return sort_rows(rows, s.work[k, :n], steps)[0]


def _mean_of_ranks(ranked: list[torch.Tensor], lo: int, hi: int, s: _SortScratch, out: torch.Tensor) -> None:
    # Mean of ranks lo..hi (ranks do not depend on row order); float64 sums keep the mean of identical values
    # exact. Halving is exact except for subnormals, where torch's add_ with alpha, fused (one rounding) wherever
    # lerp is (`fused_multiply_add`), decides the last bit; the native kernel computes the same with fmaf.
    if hi == lo:
        torch.add(ranked[lo], 0.0, out=out)
        return
    if hi == lo + 1:
        torch.mul(ranked[lo], 0.5, out=out)  # a/2 + b/2: exact halves, one rounding, no overflow
        out.add_(ranked[hi], alpha=0.5)
    else:
        n = out.numel()
        acc, tmp = s.acc[:n], s.tmp[:n]
        acc.copy_(ranked[lo])
        for r in range(lo + 1, hi + 1):
            tmp.copy_(ranked[r])
            acc.add_(tmp)
        acc.div_(hi - lo + 1)
        out.copy_(acc)
    out.add_(0.0)  # -0.0 + 0.0 = +0.0: which signed zero reached a rank is the one thing sorting leaves open


def sort_chunk(k: int) -> int:
    """Columns per chunk for the sorting network: K + 1 rows of it stay in cache, at most CHUNK.
    Results do not depend on it (every op is element-wise)."""
    target = max(4_096, min(CHUNK, 1_000_000 // (k + 1)))
    return 1 << (target.bit_length() - 1)


def _sort_scratch(k: int) -> _SortScratch:
    c = sort_chunk(k)
    return _SortScratch(
        work=torch.empty(k + 1, c, dtype=torch.float32),
        acc=torch.empty(c, dtype=torch.float64),
        tmp=torch.empty(c, dtype=torch.float64),
        outside=[0] * k,
        flags=torch.empty(2, c, dtype=torch.bool),
    )


def _rank_mean_native(buffer: torch.Tensor, lo: int, hi: int, count_outside: bool) -> tuple[torch.Tensor, list[int]] | None:
    # The mean of ranks lo..hi per column, as _sorted_chunk + _mean_of_ranks compute it (see _native.c), with
    # the per-row counts outside [r_lo, r_hi] if asked; one span of D per worker. None without the kernel.
    if buffer.device.type != "cpu" or buffer.stride(1) != 1:
        return None
    lib = _native.library()
    if lib is None:
        return None
    k, d = buffer.shape
    out = new_output(d, buffer.device)
    wanted = tuple(range(lo, hi + 1))
    steps, late = pruned_network(k, wanted), pruned_after_groups(k, wanted, NATIVE_SORT_GROUP)
    pairs = (ctypes.c_int * max(1, 2 * len(steps)))(*(v for step in steps for v in step))
    late_pairs = (ctypes.c_int * max(1, 2 * len(late)))(*(v for step in late for v in step))
    base, row_bytes = buffer.data_ptr(), buffer.stride(0) * 4

    def body(start: int, end: int, counts: ctypes.Array[ctypes.c_longlong]) -> None:
        rows = (ctypes.c_void_p * k)(*(base + r * row_bytes + start * 4 for r in range(k)))
        where = counts if count_outside else None
        if lib.fedchain_rank_mean(rows, k, end - start, pairs, len(steps), late_pairs, len(late), lo, hi,
                                  out.data_ptr() + start * 4, where):
            raise MemoryError("the native rank kernel could not allocate its scratch")

    parts = run_chunks(d, _native_span(d), lambda: (ctypes.c_longlong * k)(), body)
    return out, [sum(int(part[i]) for part in parts) for i in range(k)]


def coordinate_median(buffer: torch.Tensor) -> torch.Tensor:
    """Coordinate-wise median (unweighted; for even K the mean of the two middle values, as numpy's median).

    Each chunk of K rows is sorted column-wise by a sorting network of element-wise min/max passes, pruned to the
    steps that reach the middle ranks; for even K the result is a/2 + b/2 rounded once. The output does not
    depend on the order of the rows at all. On the CPU the native kernel (`_native`) computes the same bytes in
    one pass over the rows, sorting cache-sized blocks of columns (several times faster); NaN lands on the same
    coordinates (as a NaN of any bit pattern).
    """
    k, d = _check_buffer(buffer)
    lo, hi = (k - 1) // 2, k // 2
    steps = pruned_network(k, tuple(range(lo, hi + 1)))
    native = _rank_mean_native(buffer, lo, hi, count_outside=False)
    if native is not None:
        return native[0]
    out = new_output(d, buffer.device)

    def body(start: int, end: int, s: _SortScratch) -> None:
        ranked = _sorted_chunk(buffer, start, end, s, steps)
        _mean_of_ranks(ranked, lo, hi, s, out[start:end])

    run_chunks(d, sort_chunk(k), lambda: _sort_scratch(k), body)
    return out


def trimmed_cut(k: int, beta: float) -> int:
    """Rows cut at each end per coordinate: int(beta * K), as Flower and scipy's trim_mean."""
    if not 0.0 <= beta < 0.5:
        raise AggregationError(f"beta={beta} must be in [0, 0.5)")
    return int(beta * k)


def _trimmed_mean(buffer: torch.Tensor, beta: float, count_outside: bool) -> tuple[torch.Tensor, list[int]]:
    k, d = _check_buffer(buffer)
    cut = trimmed_cut(k, beta)
    lo, hi = cut, k - 1 - cut
    steps = pruned_network(k, tuple(range(lo, hi + 1)))
    native = _rank_mean_native(buffer, lo, hi, count_outside=count_outside and cut > 0)
    if native is not None:
        return native
    out = new_output(d, buffer.device)

    def body(start: int, end: int, s: _SortScratch) -> None:
        ranked = _sorted_chunk(buffer, start, end, s, steps)
        if count_outside and cut > 0:
            below, above = s.flags[0, : end - start], s.flags[1, : end - start]
            for i in range(k):
                torch.lt(buffer[i, start:end], ranked[lo], out=below)
                torch.gt(buffer[i, start:end], ranked[hi], out=above)
                s.outside[i] += int(below.sum()) + int(above.sum())
        _mean_of_ranks(ranked, lo, hi, s, out[start:end])

    scratches = run_chunks(d, sort_chunk(k), lambda: _sort_scratch(k), body)
    outside = [sum(s.outside[i] for s in scratches) for i in range(k)]
    return out, outside


def trimmed_mean(buffer: torch.Tensor, beta: float) -> torch.Tensor:
    """Coordinate-wise trimmed mean: drop the int(beta * K) lowest and highest values per coordinate, average the rest.

    Unweighted, as Flower's `aggregate_trimmed_avg`. Sorted by a sorting network per chunk; the kept ranks are
    summed in rank order in float64 and divided by their count, so the output does not depend on the order of
    the rows at all. The native kernel computes the same bytes, as for `coordinate_median`.
    """
    return _trimmed_mean(buffer, beta, count_outside=False)[0]


def trimmed_discards(outside: list[int], d: int, cut: int) -> list[int]:
    """Rows the trimmed mean discards: those outside the kept band (strictly below the lowest kept value or above
    the highest) in clearly more coordinates than chance puts them there.

    With K rows and `cut` cut at each end, each coordinate has 2 * cut rows outside, so a row is outside in
    2 * cut / K of the coordinates on average; a row that is systematically extreme is outside in nearly all of
    them. The threshold is halfway between: more than (1 + 2 * cut / K) / 2 of the coordinates. (A fixed one half
    would discard typical honest rows whenever beta > 0.25.) `outside`: per row, the counts of `_trimmed_mean`.
    """
    k = len(outside)
    return [i for i, c in enumerate(outside) if 2 * k * c > d * (k + 2 * cut)]


# ---------------------------------------------------------------- MULTI-KRUM


def fast_gram(buffer: torch.Tensor) -> tuple[torch.Tensor, float]:
    """(K, K) float64 Gram matrix by BLAS on float64 copies of column chunks, and its error factor gamma.

    Products of float32 values are exact in float64, so the only error is summation order: for any order,
    |G_ij - exact| <= gamma * sum_l |x_il x_jl| <= gamma * |x_i| |x_j| with gamma = D u / (1 - D u)
    (u = 2**-53; Higham, Accuracy and Stability, eq. 3.5). Which order the BLAS, and the split over worker
    threads, use differs by machine; the bound holds for all of them. The native kernel (`_native`) is used where
    it is available; otherwise numpy's BLAS (OpenBLAS): torch's MKL build runs this skinny product several times
    slower on AMD CPUs.
    """
    k, d = buffer.shape
    du = d * F64_EPS
    gamma = du / (1.0 - du)
    if buffer.device.type == "cpu" and buffer.stride(1) == 1:
        gram = _native_gram(buffer)
        if gram is not None:
            return gram, gamma
    width = min(GRAM_CHUNK, d)

    def scratch() -> tuple[NDArray[np.float64], torch.Tensor]:
        return np.zeros((k, k)), torch.empty(k, width, dtype=torch.float64)

    def body(start: int, end: int, s: tuple[NDArray[np.float64], torch.Tensor]) -> None:
        block = s[1][:, : end - start]
        for i in range(k):
            block[i].copy_(buffer[i, start:end])  # exact widening, row by row (one op never spans threads)
        b = block.numpy()
        s[0][...] += b @ b.T

    with threadpool_limits(limits=1, user_api="blas"):  # our workers are the parallelism; no nested BLAS pools
        parts = run_chunks(d, GRAM_CHUNK, scratch, body)
    total = parts[0][0]
    for part in parts[1:]:
        total = total + part[0]
    return torch.from_numpy(total), gamma


def _native_gram(buffer: torch.Tensor) -> torch.Tensor | None:
    # The same exact products, summed in the native kernel's order (one span of D per worker): a few times
    # faster than widening chunks for BLAS at small K. None when the kernel is unavailable.
    lib = _native.library()
    if lib is None:
        return None
    k, d = buffer.shape
    base, row_bytes = buffer.data_ptr(), buffer.stride(0) * 4

    def body(start: int, end: int, partial: torch.Tensor) -> None:
        rows = (ctypes.c_void_p * k)(*(base + r * row_bytes + start * 4 for r in range(k)))
        if lib.fedchain_gram(rows, k, end - start, partial.data_ptr()) != 0:
            raise MemoryError("the native Gram kernel could not allocate its scratch")

    parts = run_chunks(d, _native_span(d), lambda: torch.zeros(k, k, dtype=torch.float64), body)
    upper = parts[0]
    for part in parts[1:]:
        upper = upper + part
    return torch.triu(upper) + torch.triu(upper, diagonal=1).T


def sq_distances(gram: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances from a Gram matrix: G_ii + G_jj - 2 G_ij, clamped at 0, zero diagonal."""
    diag = torch.diagonal(gram)
    dist = (diag[:, None] + diag[None, :]) - 2.0 * gram
    dist.clamp_(min=0.0)
    dist.fill_diagonal_(0.0)
    return dist


def krum_scores(dist: torch.Tensor, n_closest: int) -> list[float]:
    """Krum score of each row: the sum of its `n_closest` smallest squared distances to the other rows.

    Written in plain Python floats over sorted lists, so that it is the same on every machine.
    """
    k = dist.shape[0]
    d = dist.tolist()
    scores = []
    for i in range(k):
        nearest = sorted(d[i][j] for j in range(k) if j != i)[:n_closest]
        total = 0.0
        for v in nearest:
            total += v
        scores.append(total)
    return scores


def _select(scores: list[float], m: int) -> list[int]:
    # The m lowest scores; equal scores go to the lower row index (the earlier address).
    return sorted(sorted(range(len(scores)), key=lambda i: (scores[i], i))[:m])


def _certified(scores: list[float], bounds: list[float], selected: list[int]) -> bool:
    # The selection is the same for every score vector within `bounds` of these ones.
    rest = [j for j in range(len(scores)) if j not in set(selected)]
    if not rest:
        return True
    worst_in = max(scores[i] + bounds[i] for i in selected)
    best_out = min(scores[j] - bounds[j] for j in rest)
    return worst_in < best_out


def krum_parameters(k: int, f: int, m: int | None) -> tuple[int, int]:
    """(n_closest, m) for K rows: n_closest = max(1, K - f - 2) capped at K - 1; m defaults to K - f and is capped
    at K (a round where fewer contributors turned up than the spec's m still aggregates)."""
    if f < 0:
        raise AggregationError(f"f={f} must be >= 0")
    m = max(1, k - f) if m is None else m
    if m < 1:
        raise AggregationError(f"m={m} must be >= 1: Multi-Krum averages m of the K rows")
    return min(max(1, k - f - 2), max(k - 1, 0)), min(m, k)


def multi_krum(
    buffer: torch.Tensor, f: int, m: int | None = None, weights: Weights | None = None
) -> tuple[torch.Tensor, list[int]]:
    """Multi-Krum (Blanchard et al. 2017): average the m rows with the lowest Krum scores.

    Returns the (weighted, if `weights`) FedAvg of the selected rows and the selected row indices, ascending.
    Equal scores go to the lower row index. Guarantees need K >= 2f + 3; smaller K still runs (as Flower's).

    Reproducible selection: pairwise distances come from a fast float64 BLAS Gram matrix whose error is bounded
    for any summation order (`fast_gram`). Each score sums `n_closest` distances, each within
    e_ij = gamma (|x_i| + |x_j|)**2 of exact, so a score is within E_i = n_closest max_j e_ij (+ rounding).
    If the chosen set is separated from the rest by more than 3 E (in-set score + 3 E_i < out-of-set score - 3
    E_j), every machine, whatever its BLAS, selects the same set. Otherwise (a near-tie, e.g. identical rows)
    the distances are recomputed with `reproducible_gram`, element-wise and identical to the byte everywhere,
    and the selection is made from those. The output is then the reproducible `fedavg` of the selected rows.
    """
    k, _ = _check_buffer(buffer)
    w = check_weights(weights, k)
    n_closest, m = krum_parameters(k, f, m)
    if k == 1:
        return fedavg(buffer, w), [0]
    gram, gamma = fast_gram(buffer)
    dist = sq_distances(gram)
    scores = krum_scores(dist, n_closest)
    selected = _select(scores, m)
    norms = torch.sqrt(torch.diagonal(gram).clamp(min=0.0)).tolist()
    # x2 margin covers the norms themselves coming from this Gram matrix; + 4u the rounding of G_ii + G_jj - 2 G_ij
    pair_err = [2.0 * (gamma + 4.0 * F64_EPS) * max((norms[i] + norms[j]) ** 2 for j in range(k) if j != i) for i in range(k)]
    bounds = [n_closest * e + 4.0 * n_closest * F64_EPS * abs(s) for e, s in zip(pair_err, scores)]
    if not _certified(scores, [3.0 * b for b in bounds], selected):
        scores = krum_scores(sq_distances(reproducible_gram(buffer)), n_closest)
        selected = _select(scores, m)
    return fedavg(buffer, w, rows=selected), selected


# ---------------------------------------------------------------- NORM CLIPPING


def row_norms(buffer: torch.Tensor) -> list[float]:
    """L2 norm of each row, reproducible to the byte (float64 lanes, fixed order; see `reproducible_sq_norms`)."""
    _check_buffer(buffer)
    return torch.sqrt(reproducible_sq_norms(buffer)).tolist()


def median_of(values: Sequence[float]) -> float:
    """Median of floats (mean of the middle two for an even count), computed the same everywhere."""
    s = sorted(values)
    n = len(s)
    if n == 0:
        raise AggregationError("median of no values")
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2.0


def clip_to_median_norm(buffer: torch.Tensor, multiple: float) -> torch.Tensor:
    """Scale, IN PLACE, every row whose L2 norm exceeds `multiple` x the median row norm down to about that bound.

    Returns the (K,) float32 factors applied (1.0 for rows within the bound). Norms are reproducible; each factor
    is bound / norm rounded to float32 and multiplied in float32, one rounding per element. Clone the buffer
    first to keep the original rows.
    """
    k, _ = _check_buffer(buffer)
    if not (math.isfinite(multiple) and multiple > 0):
        raise AggregationError(f"clip multiple {multiple} must be a finite number > 0")
    norms = row_norms(buffer)
    bound = multiple * median_of(norms)
    factors = torch.ones(k, dtype=torch.float32)
    for i, norm in enumerate(norms):
        if norm > bound:
            factors[i] = bound / norm
            buffer[i].mul_(factors[i].item())
    return factors


# ---------------------------------------------------------------- ENTRY POINT


def aggregate(
    config: RuleConfig, buffer: torch.Tensor, weights: Weights | None, *, clip_in_place: bool = True
) -> AggregationResult:
    """Apply the configured rule (after norm clipping, if configured) to the rows of `buffer`.

    Weights (sample counts) weight FedAvg and the final average of Multi-Krum; median and trimmed mean are
    unweighted, as in Flower. `discarded`: FedAvg, rows with weight 0; median, none (it never sets a whole row
    aside); trimmed mean, rows outside the kept band in clearly more coordinates than chance (`trimmed_discards`); Multi-Krum, the rows
    not selected. Clipping scales rows of `buffer` in place unless `clip_in_place=False` (then it works on one
    copy of the buffer, the most extra memory any rule uses).
    """
    k, d = _check_buffer(buffer)
    w = check_weights(weights, k)
    factors: list[float] | None = None
    if config.clip_multiple is not None:
        if not clip_in_place:
            buffer = buffer.clone()
        factors = clip_to_median_norm(buffer, config.clip_multiple).tolist()
    everyone = list(range(k))
    if config.name == "fedavg":
        vector = fedavg(buffer, w)
        discarded = [i for i in everyone if w[i] == 0]
    elif config.name == "median":
        vector, discarded = coordinate_median(buffer), []
    elif config.name == "trimmed-mean":
        vector, outside = _trimmed_mean(buffer, config.beta, count_outside=True)
        discarded = trimmed_discards(outside, d, trimmed_cut(k, config.beta))
    else:
        vector, selected = multi_krum(buffer, config.f, config.m, w)
        discarded = [i for i in everyone if i not in set(selected)]
    return AggregationResult(
        vector=vector,
        selected=[i for i in everyone if i not in set(discarded)],
        discarded=discarded,
        clip_factors=factors,
    )
