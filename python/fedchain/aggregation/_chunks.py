"""Walk the D axis in chunks on a few worker threads, and the reproducible reductions built on element-wise ops.

Every body touches only its own slice [start, end) of the output and computes it with element-wise torch ops,
so the bytes it writes do not depend on which thread ran it, how many there are, or the CPU's vector width.
Parallelism comes from our own workers (one per torch thread, each a contiguous run of chunks, joined once at
the end), never from ATen's intra-op pool: chunks stay at or below ATen's grain size (32,768 elements), so each
op runs on its worker alone. Measured on 2 vCPUs: with ATen's pool, every op is a barrier, and on a shared
machine where a vCPU is often stolen FedAvg at K=10, D=10M went from ~40 ms to 0.3-4 s; the workers kept it at
~50-110 ms whatever the load.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

CHUNK = 32_768  # elements of D per chunk (ATen's grain size: one op never spans threads)
LANES = 4_096  # reproducible Gram: products accumulate element-wise into this many float64 lanes, fixed forever
NORM_LANES = 32_768  # reproducible squared norms: likewise, with more lanes
PARTS = 2  # ... in this many partial sums over spans of D (part of the definition of the result; keep it)
GRAM_CHUNK_BYTES = 64 * 1024 * 1024  # memory for the Gram's lane accumulators at a time (not part of the result)

S = TypeVar("S")

_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def _executor(workers: int) -> ThreadPoolExecutor:
    # One long-lived pool: starting threads per call would cost more than a small aggregation.
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size < workers:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fedchain-agg")
            _pool_size = workers
        return _pool


def run_chunks(
    total: int,
    chunk: int,
    make_scratch: Callable[[], S],
    body: Callable[[int, int, S], None],
) -> list[S]:
    """Call `body(start, end, scratch)` for consecutive chunks of [0, total), split among worker threads.

    Each worker gets a contiguous run of chunks and its own scratch (returned, one per worker, in order, so
    callers can combine per-worker integer counters). Exceptions propagate.
    """
    n_chunks = math.ceil(total / chunk)
    workers = max(1, min(torch.get_num_threads(), n_chunks))
    bounds = [(w * n_chunks // workers) * chunk for w in range(workers + 1)]

    def work(lo: int, hi: int) -> S:
        scratch = make_scratch()
        for start in range(lo, min(hi, total), chunk):
            body(start, min(start + chunk, total), scratch)
        return scratch

    if workers == 1:
        return [work(0, total)]
    futures = [_executor(workers).submit(work, bounds[w], bounds[w + 1]) for w in range(workers)]
    return [f.result() for f in futures]


def tree_sum_lanes(acc: torch.Tensor) -> torch.Tensor:
    """Sum the last axis (a power of two long) by repeated halving with element-wise adds: a fixed order."""
    n = acc.shape[-1]
    assert n & (n - 1) == 0, "lane count must be a power of two"
    acc = acc.clone()
    while n > 1:
        n //= 2
        acc[..., :n].add_(acc[..., n : 2 * n])
    return acc[..., 0]


def _part_bounds(d: int, lanes: int) -> list[int]:
    blocks = math.ceil(d / lanes)
    return [min(d, (p * blocks // PARTS) * lanes) for p in range(PARTS + 1)]


def _run_parts(one_part: Callable[[int], torch.Tensor]) -> torch.Tensor:
    # The PARTS partial sums are fixed by D alone, and added in a fixed order.
    total = one_part(0)
    for p in range(1, PARTS):
        total = total + one_part(p)
    return total


def reproducible_gram(buffer: torch.Tensor, rows: list[int] | None = None) -> torch.Tensor:
    """The (R, R) float64 Gram matrix of `buffer[rows]`, the same bytes on every CPU and thread count.

    Float32 products are exact in float64 (24 + 24 bits < 53), so fused or separate multiply-add give the same
    result; each product is added into a fixed lane (element index mod LANES, within one of PARTS fixed spans of
    D) in index order, then lanes and parts are summed in a fixed tree. Entry (i, j) depends only on rows i and j.
    Cost: R(R+1)/2 * D multiply-adds, element-wise (slower than BLAS; use it where the bytes must agree).
    """
    index = torch.arange(buffer.shape[0]) if rows is None else torch.tensor(list(rows), dtype=torch.long)
    r, d = index.numel(), buffer.shape[1]
    bounds = _part_bounds(d, LANES)

    # The (rows, R, LANES) accumulators are built a few rows at a time (GRAM_CHUNK_BYTES): each entry is summed
    # exactly as before (the same products into the same lanes in the same order), in bounded memory; all at once
    # they took R * R * LANES * 8 bytes, twice (328 MB, twice, at R = 100).
    step = max(1, GRAM_CHUNK_BYTES // max(1, r * LANES * 8))

    def one_part(p: int) -> torch.Tensor:
        out = torch.zeros(r, r, dtype=torch.float64)
        block = torch.empty(r, LANES, dtype=torch.float64)
        for a0 in range(0, r, step):
            a1 = min(r, a0 + step)
            acc = torch.zeros(a1 - a0, r, LANES, dtype=torch.float64)
            for start in range(bounds[p], bounds[p + 1], LANES):
                n = min(LANES, bounds[p + 1] - start)
                block[:, :n].copy_(buffer[:, start : start + n].index_select(0, index))
                for a in range(a0, a1):
                    acc[a - a0, a:, :n].addcmul_(block[a:, :n], block[a, :n])
            out[a0:a1] = tree_sum_lanes(acc)
        return out

    upper = torch.triu(_run_parts(one_part))
    return upper + torch.triu(upper, diagonal=1).T


def reproducible_sq_norms(buffer: torch.Tensor) -> torch.Tensor:
    """Squared L2 norm of each row as float64, the same bytes on every CPU (same scheme, NORM_LANES lanes)."""
    k, d = buffer.shape
    bounds = _part_bounds(d, NORM_LANES)

    def one_part(p: int) -> torch.Tensor:
        acc = torch.zeros(k, NORM_LANES, dtype=torch.float64)
        block = torch.empty(NORM_LANES, dtype=torch.float64)
        for start in range(bounds[p], bounds[p + 1], NORM_LANES):
            n = min(NORM_LANES, bounds[p + 1] - start)
            for a in range(k):
                block[:n].copy_(buffer[a, start : start + n])
                acc[a, :n].addcmul_(block[:n], block[:n])
        return tree_sum_lanes(acc)

    return _run_parts(one_part)
