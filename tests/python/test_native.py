"""FedAvg's native kernel: the same bytes as the torch path, built safely, and optional."""

from __future__ import annotations

import os
import stat

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedchain.aggregation import _native, fedavg
from fedchain.aggregation.rules import fedavg_steps

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
