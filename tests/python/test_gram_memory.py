"""The reproducible Gram in bounded memory: the same bytes as building every accumulator at once."""

from __future__ import annotations

import torch

from fedchain.aggregation import _chunks
from fedchain.aggregation._chunks import LANES, _part_bounds, _run_parts, reproducible_gram, tree_sum_lanes


def _gram_all_at_once(buffer: torch.Tensor, rows: list[int]) -> torch.Tensor:
    """The definition, as first written: every (R, R, LANES) accumulator at once."""
    index = torch.tensor(rows, dtype=torch.long)
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


def test_the_gram_built_a_few_rows_at_a_time_has_the_same_bytes(monkeypatch):
    g = torch.Generator().manual_seed(5)
    buffer = torch.randn(23, 2 * LANES + 77, generator=g) * torch.logspace(-3, 3, 23).unsqueeze(1)
    rows = [4, 0, 22, 7, 7, 13, 1, 19, 2, 11, 5]
    expected = _gram_all_at_once(buffer, rows)
    for chunk_rows in (1, 3, 64):
        monkeypatch.setattr(_chunks, "GRAM_CHUNK_BYTES", chunk_rows * len(rows) * LANES * 8)
        assert torch.equal(reproducible_gram(buffer, rows), expected)
