"""The native kernels (FedAvg, Multi-Krum's Gram, median and trimmed mean): the same bytes as the torch path,
built safely, and optional."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedchain.aggregation import (
    AggregationError,
    RuleConfig,
    _native,
    aggregate,
    coordinate_median,
    fedavg,
    trimmed_mean,
)
from fedchain.aggregation.rules import _trimmed_mean, fedavg_steps

needs_compiler = pytest.mark.skipif(_native._compiler() is None, reason="no C compiler on this machine")


@pytest.fixture
def torch_path(monkeypatch):
    """torch_path(fn): fn() run with the kernels disabled (FEDCHAIN_NATIVE=0), then the kernels back."""

    def run(fn):
        monkeypatch.setenv("FEDCHAIN_NATIVE", "0")
        _native.reset()
        try:
            return fn()
        finally:
            monkeypatch.delenv("FEDCHAIN_NATIVE")
            _native.reset()

    return run


def same_bytes(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.numpy().tobytes() == b.numpy().tobytes()


@needs_compiler
def test_kernel_is_in_use_where_a_compiler_exists():
    assert _native.library() is not None, _native.unavailable_reason()


@needs_compiler
@pytest.mark.parametrize(
    ("k", "d"),
    [(1, 1), (2, 3), (3, 2047), (3, 2049), (5, 65_537), (10, 140_001), (4, 300_007)],  # block and span edges
)
def test_native_and_torch_paths_give_the_same_bytes(torch_path, k, d):
    g = torch.Generator().manual_seed(k * 7919 + d)
    x = torch.randn(k, d, generator=g) * torch.logspace(-3, 3, k)[:, None]  # rows of very different scales
    w = [int(v) for v in torch.randint(1, 5_000, (k,), generator=g)]
    native = fedavg(x, w)
    assert _native.library() is not None
    assert same_bytes(native, torch_path(lambda: fedavg(x, w)))


@needs_compiler
def test_native_path_handles_row_subsets_zero_weights_and_offset_views(torch_path):
    big = torch.randn(6, 70_001, generator=torch.Generator().manual_seed(4))
    x = big[:, 1:]  # a view: storage offset, row stride 70,001, unit column stride
    w = [3, 0, 8, 1, 1, 2]
    for rows in (None, [5, 0, 2], [1, 4]):
        native = fedavg(x, w, rows=rows)
        assert same_bytes(native, torch_path(lambda: fedavg(x, w, rows=rows)))  # noqa: B023 - called at once


@needs_compiler
def test_native_path_on_one_row_and_on_identical_rows_is_exact():
    row = torch.randn(100_003, generator=torch.Generator().manual_seed(5))
    assert same_bytes(fedavg(row[None, :], [7]), row)
    assert same_bytes(fedavg(row.repeat(9, 1), list(range(1, 10))), row)


@needs_compiler
@settings(max_examples=30, deadline=None)
@given(
    k=st.integers(1, 9),
    d=st.integers(1, 5_000),
    weights=st.lists(st.integers(0, 2**29 - 1), min_size=9, max_size=9),
    seed=st.integers(0, 2**31 - 1),
)
def test_native_matches_the_running_lerp_definition(k, d, weights, seed):
    w = weights[:k]
    if sum(w) == 0:
        w[0] = 1
    x = torch.randn(k, d, generator=torch.Generator().manual_seed(seed))
    used = [r for r in range(k) if w[r] > 0]
    expected = x[used[0]].clone()
    for r, t in zip(used[1:], fedavg_steps(w, used)):
        expected = torch.lerp(expected, x[r], t)
    assert same_bytes(fedavg(x, w), expected)


def test_disabled_by_environment_falls_back_with_a_reason(torch_path):
    def check():
        assert _native.library() is None
        assert "FEDCHAIN_NATIVE=0" in _native.unavailable_reason()
        assert fedavg(torch.tensor([[1.0, 2.0], [3.0, 4.0]]), [1, 3]).tolist() == [2.5, 3.5]

    torch_path(check)


def test_missing_compiler_is_a_clear_error_and_the_torch_path_still_works(monkeypatch, tmp_path):
    monkeypatch.setenv("FEDCHAIN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(_native, "_compiler", lambda: None)
    with pytest.raises(OSError, match="no C compiler"):
        _native.build()
    _native.reset()
    try:
        assert _native.library() is None
        assert fedavg(torch.tensor([[1.0], [3.0]]), [1, 1]).tolist() == [2.0]
    finally:
        _native.reset()


@needs_compiler
def test_a_failed_compile_reports_the_compilers_message(monkeypatch, tmp_path):
    bad = tmp_path / "bad.c"
    bad.write_text("this is not C\n")
    monkeypatch.setenv("FEDCHAIN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(_native, "SOURCE", bad)
    with pytest.raises(OSError, match="failed to build bad.c"):
        _native.build()
    assert not list((tmp_path / "cache" / "native").glob("*.so"))  # nothing half-built left behind


@needs_compiler
def test_builds_of_other_sources_in_the_cache_are_kept_unless_long_unused(monkeypatch, tmp_path):
    # Checkouts of different versions share ~/.cache/fedchain: one build must not delete another's kernel.
    monkeypatch.setenv("FEDCHAIN_CACHE_DIR", str(tmp_path))
    directory = tmp_path / "native"
    directory.mkdir(mode=0o700)
    recent, old = directory / "fedchain_native_0000000000000001.so", directory / "fedchain_native_0000000000000002.so"
    recent.write_bytes(b"another version's kernel")
    old.write_bytes(b"a kernel unused for long")
    long_ago = os.stat(old).st_mtime - (_native.STALE_DAYS + 1) * 86_400
    os.utime(old, (long_ago, long_ago))
    built = _native.build()
    assert built.exists() and recent.exists() and not old.exists()


@needs_compiler
def test_build_caches_by_source_and_refuses_a_shared_cache_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("FEDCHAIN_CACHE_DIR", str(tmp_path))
    first = _native.build()
    assert first.exists() and _native.build() == first
    assert stat.S_IMODE(os.stat(first.parent).st_mode) == 0o700
    os.chmod(first.parent, 0o777)
    with pytest.raises(OSError, match="writable by group or others"):
        _native.build()


@needs_compiler
@pytest.mark.parametrize(("k", "d"), [(1, 1), (3, 7), (5, 257), (6, 70_001), (11, 131_075)])  # tiles, tails, spans
def test_native_gram_is_within_the_certified_bound_of_the_exact_gram(k, d):
    from fedchain.aggregation.rules import fast_gram

    x = torch.randn(k, d, generator=torch.Generator().manual_seed(k + d)) * torch.logspace(-2, 2, k)[:, None]
    gram, gamma = fast_gram(x)
    assert _native.library() is not None
    exact = x.double() @ x.double().T  # products exact; float64 sums of this size are far inside gamma
    norms = x.double().norm(dim=1)
    assert torch.all((gram - exact).abs() <= gamma * norms[:, None] * norms[None, :] + 1e-300)
    assert torch.equal(gram, gram.T)


@needs_compiler
def test_multi_krum_selects_and_averages_the_same_with_and_without_the_kernels(torch_path):
    from fedchain.aggregation import multi_krum

    g = torch.Generator().manual_seed(12)
    x = torch.randn(9, 50_001, generator=g)
    x[7] += 5.0  # an outlier Krum must leave out
    w = [int(v) for v in torch.randint(1, 100, (9,), generator=g)]
    native_out, native_rows = multi_krum(x, 2, 6, w)
    torch_out, torch_rows = torch_path(lambda: multi_krum(x, 2, 6, w))
    assert native_rows == torch_rows and 7 not in native_rows
    assert same_bytes(native_out, torch_out)


# ---------------------------------------------------------------- median and trimmed mean


def same_or_both_nan(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Byte-equal, except that a NaN may have any bit pattern (torch's own NaN bits differ between its vector
    body and scalar tail); NaN in the same places."""
    x, y = a.numpy(), b.numpy()
    nan = np.isnan(x)
    return a.shape == b.shape and bool((nan == np.isnan(y)).all()) and x[~nan].tobytes() == y[~nan].tobytes()


def special_rows(k: int, d: int, seed: int, kind: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "ties":  # few distinct values, signed zeros
        x = torch.randint(-2, 3, (k, d), generator=g).float()
        x[torch.rand(k, d, generator=g) < 0.5] *= -1.0  # 0 * -1 = -0.0
        return x
    if kind == "subnormal":  # where halving is inexact: the fused a/2 + b/2 shows
        return torch.randint(-7, 8, (k, d), generator=g).float() * 2.0**-149
    x = torch.randn(k, d, generator=g) * torch.logspace(-3, 3, k)[torch.randperm(k, generator=g)][:, None]
    if kind == "nonfinite":
        u = torch.rand(k, d, generator=g)
        x[u < 0.02] = float("nan")
        x[(u >= 0.02) & (u < 0.05)] = float("inf")
        x[(u >= 0.05) & (u < 0.08)] = -float("inf")
    return x


KINDS = ["normal", "ties", "nonfinite", "subnormal"]


@needs_compiler
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])  # it restores
@given(
    k=st.integers(1, 70),
    d=st.sampled_from([1, 63, 64, 65, 200, 1_000]),
    kind=st.sampled_from(KINDS),
    beta=st.sampled_from([0.0, 0.1, 0.2, 0.25, 0.3, 0.49]),
    seed=st.integers(0, 2**31 - 1),
)
def test_native_median_and_trimmed_mean_match_the_torch_path(torch_path, k, d, kind, beta, seed):
    x = special_rows(k, d, seed, kind)
    assert same_or_both_nan(coordinate_median(x), torch_path(lambda: coordinate_median(x)))
    native, native_outside = _trimmed_mean(x, beta, count_outside=True)
    reference, reference_outside = torch_path(lambda: _trimmed_mean(x, beta, count_outside=True))
    assert same_or_both_nan(native, reference) and native_outside == reference_outside


@needs_compiler
@pytest.mark.parametrize("k", [10, 11, 16, 17, 32, 50, 51])
def test_native_rules_on_large_buffers_and_views_match_the_torch_path(torch_path, k):
    # Several spans (one per worker thread), partial last blocks, a view with a storage offset.
    big = torch.randn(k, 140_003, generator=torch.Generator().manual_seed(k))
    x = big[:, 2:]
    for rule in (RuleConfig("median"), RuleConfig("trimmed-mean", beta=0.1), RuleConfig("trimmed-mean", beta=0.3)):
        native = aggregate(rule, x, None)
        reference = torch_path(lambda: aggregate(rule, x, None))  # noqa: B023 - called at once
        assert same_bytes(native.vector, reference.vector) and native.discarded == reference.discarded


@needs_compiler
@pytest.mark.parametrize("k", [7, 16, 17])
def test_native_rank_network_sorts_every_zero_one_input(torch_path, k):
    # 0-1 principle over the register network and the steps after it: every rank, from the trimmed mean with no
    # cut (the sum of all ranks) down to single ranks through the medians of k and k - 1 rows.
    cols = torch.arange(2**k)
    x = ((cols[None, :] >> torch.arange(k)[:, None]) & 1).float()
    expected = x.sort(dim=0).values
    median = coordinate_median(x)
    lo, hi = (k - 1) // 2, k // 2
    assert torch.equal(median, (expected[lo] + expected[hi]) / 2)
    assert same_bytes(trimmed_mean(x, 0.0), torch_path(lambda: trimmed_mean(x, 0.0)))
    assert same_bytes(coordinate_median(x[1:]), torch_path(lambda: coordinate_median(x[1:])))


@needs_compiler
def test_native_median_agrees_with_numpy_and_trimmed_mean_with_scipy():
    from scipy.stats import trim_mean

    x = torch.randn(21, 5_000, generator=torch.Generator().manual_seed(3))
    assert np.allclose(coordinate_median(x).double().numpy(), np.median(x.double().numpy(), axis=0), rtol=0, atol=1e-6)
    assert np.allclose(trimmed_mean(x, 0.2).double().numpy(), trim_mean(x.double().numpy(), 0.2, axis=0), atol=1e-6)


def test_rank_rules_refuse_bad_input_with_and_without_the_kernel(torch_path):
    for run in (lambda f: f(), torch_path):
        with pytest.raises(AggregationError):
            run(lambda: trimmed_mean(torch.zeros(3, 4), 0.5))
        with pytest.raises(AggregationError):
            run(lambda: coordinate_median(torch.zeros(3, 4, dtype=torch.float64)))
