"""Walk the D axis in chunks, and the reproducible reductions built on element-wise ops.

Every body touches only its own slice [start, end) of the output and computes it with element-wise torch ops,
so the bytes it writes do not depend on how many threads ATen's intra-op pool splits each op over, or on the
CPU's vector width. Chunks of CHUNK elements are large enough that each op is split over the intra-op threads
and the per-op overhead is small, and small enough that a chunk's working set stays in cache. (Worker threads
of our own were tried: with one op per few microseconds they fight over the GIL and ran slower than one.)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

import torch

CHUNK = 65_536  # elements of D per chunk
LANES = 4_096  # reproducible Gram: products accumulate element-wise into this many float64 lanes, fixed forever
NORM_LANES = 32_768  # reproducible squared norms: likewise, with more lanes
PARTS = 2  # ... in this many partial sums over spans of D (part of the definition of the result; keep it)

S = TypeVar("S")


def run_chunks(
    total: int,
    chunk: int,
    make_scratch: Callable[[], S],
    body: Callable[[int, int, S], None],
) -> list[S]:
    """Call `body(start, end, scratch)` for consecutive chunks of [0, total); returns [scratch]."""
    scratch = make_scratch()
    for start in range(0, total, chunk):
        body(start, min(start + chunk, total), scratch)
    return [scratch]


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

    def one_part(p: int) -> torch.Tensor:
        acc = torch.zeros(r, r, LANES, dtype=torch.float64)
        block = torch.empty(r, LANES, dtype=torch.float64)
        for start in range(bounds[p], bounds[p + 1], LANES):
            n = min(LANES, bounds[p + 1] - start)
            block[:, :n].copy_(buffer[:, start : start + n].index_select(0, index))
            for a in range(r):
                acc[a, a:, :n].addcmul_(block[a:, :n], block[a, :n])
        return tree_sum_lanes(acc)

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
