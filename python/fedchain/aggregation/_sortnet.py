"""Sorting networks: a fixed list of compare-exchange steps that sorts K values, applied to whole rows at once.

A step (i, j) with i < j puts the element-wise minimum of rows i and j in row i and the maximum in row j: K rows of
a chunk become sorted in every column with a few dozen vectorised min/max passes, where a per-column sort would
pay for D tiny sorts. The result is exact and independent of the input order (values are only moved, never
combined); only the sign of a zero may land either way, which callers normalise.
"""

from __future__ import annotations

from functools import lru_cache

import torch


@lru_cache(maxsize=64)
def batcher_network(k: int) -> tuple[tuple[int, int], ...]:
    """Batcher's odd-even merge sort for k inputs: built for the next power of two, steps beyond k dropped.

    Dropping is sound because the missing inputs can be read as +inf at the bottom: a step against +inf never
    moves anything.
    """
    n = 1
    while n < k:
        n *= 2
    steps: list[tuple[int, int]] = []
    p = 1
    while p < n:
        q = p
        while q >= 1:
            r = q % p if q != p else 0
            for j in range(r, n - q, 2 * q):
                for i in range(min(q, n - j - q)):
                    lo, hi = i + j, i + j + q
                    if (lo // (2 * p)) == (hi // (2 * p)) and lo < k and hi < k:
                        steps.append((lo, hi))
            q //= 2
        p *= 2
    return tuple(steps)


@lru_cache(maxsize=256)
def _pruned_positions(k: int, wanted: tuple[int, ...]) -> tuple[int, ...]:
    # Positions in batcher_network(k) of the steps that can affect the ranks in `wanted` (walking backwards).
    needed = set(wanted)
    kept: list[int] = []
    network = batcher_network(k)
    for position in range(len(network) - 1, -1, -1):
        i, j = network[position]
        if i in needed or j in needed:
            kept.append(position)
            needed.update((i, j))
    kept.reverse()
    return tuple(kept)


@lru_cache(maxsize=256)
def pruned_network(k: int, wanted: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """The steps of `batcher_network(k)` that can affect the ranks in `wanted` (found by walking backwards)."""
    network = batcher_network(k)
    return tuple(network[p] for p in _pruned_positions(k, wanted))


@lru_cache(maxsize=256)
def pruned_after_groups(k: int, wanted: tuple[int, ...], group: int) -> tuple[tuple[int, int], ...]:
    """The steps of `pruned_network(k, wanted)` left once every aligned group of `group` rows (a power of two) is
    sorted by other means: Batcher's network sorts those groups in its first levels (merges of runs shorter than
    `group`) and never crosses a group before it has. Running a superset of the pruned steps in the network's
    order leaves the wanted ranks as they are, so a full sort of the groups followed by these steps places them."""
    network = batcher_network(k)
    first = next((p for p, (i, j) in enumerate(network) if i // group != j // group), len(network))
    return tuple(network[p] for p in _pruned_positions(k, wanted) if p >= first)


def sort_rows(
    rows: list[torch.Tensor], spare: torch.Tensor, steps: tuple[tuple[int, int], ...]
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Apply `steps` to the row views in `rows` (equal-length 1-D tensors), using `spare` as the one scratch row.

    Returns the rows in rank order (rank r is `result[r]`) and the row now free; tensors are permuted, never
    copied, so the returned rows and spare are the same storages in another order.
    """
    rows = list(rows)
    for i, j in steps:
        torch.minimum(rows[i], rows[j], out=spare)
        torch.maximum(rows[i], rows[j], out=rows[j])
        rows[i], spare = spare, rows[i]
    return rows, spare
