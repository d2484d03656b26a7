"""Aggregation rules: hand-computed cases, reference implementations, and properties (Hypothesis)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import trim_mean

from fedchain.aggregation import (
    AggregationError,
    RuleConfig,
    aggregate,
    canonical_order,
    clip_to_median_norm,
    coordinate_median,
    fedavg,
    krum_scores,
    multi_krum,
    reproducible_gram,
    row_norms,
    sq_distances,
    trimmed_mean,
)
from fedchain.aggregation import rules as rules_mod
from fedchain.aggregation._sortnet import batcher_network, pruned_network, sort_rows
from fedchain.errors import FedchainError

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def t(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def same_bytes(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.numpy().tobytes() == b.numpy().tobytes()


# ---------------------------------------------------------------- hand-computed


def test_fedavg_weights_rows_by_sample_count():
    assert fedavg(t([[1, 2], [3, 4]]), [1, 3]).tolist() == [2.5, 3.5]


def test_fedavg_skips_zero_weight_rows():
    assert fedavg(t([[1, 2], [100, -100], [3, 4]]), torch.tensor([1, 0, 1])).tolist() == [2.0, 3.0]


def test_fedavg_over_chosen_rows():
    assert fedavg(t([[1.0], [5.0], [9.0]]), [1, 1, 2], rows=[2, 0]).tolist() == [pytest.approx(19 / 3)]


def test_median_odd_picks_middle_value():
    assert coordinate_median(t([[1, 5], [3, -1], [2, 0]])).tolist() == [2.0, 0.0]


def test_median_even_averages_middle_values():
    assert coordinate_median(t([[1], [2], [3], [10]])).tolist() == [2.5]


def test_trimmed_mean_cuts_int_beta_k_each_end():
    buf = t([[1, -7], [2, 0], [3, 1], [4, 2], [100, 3]])
    assert trimmed_mean(buf, 0.2).tolist() == [3.0, 1.0]


def test_multi_krum_hand_computed_scores_and_selection():
    buf = t([[0], [1], [2], [3], [100]])
    # n_closest = 5 - 1 - 2 = 2: row0 1+4, row1 1+1, row2 1+1, row3 1+4, row4 97^2+98^2
    assert krum_scores(sq_distances(reproducible_gram(buf)), 2) == [5.0, 2.0, 2.0, 5.0, 19013.0]
    vector, selected = multi_krum(buf, f=1, m=3)
    assert selected == [0, 1, 2]  # the tie at 5.0 goes to the lower row
    assert vector.tolist() == [1.0]


def test_multi_krum_single_krum_and_weighted_average():
    buf = t([[0], [1], [2], [3], [100]])
    assert multi_krum(buf, f=1, m=1)[1] == [1]
    vector, selected = multi_krum(buf, f=1, m=2, weights=[1, 1, 3, 1, 1])
    assert selected == [1, 2] and vector.tolist() == [pytest.approx(7 / 4)]


def test_clip_scales_rows_above_multiple_of_median_norm_in_place():
    buf = t([[1, 0], [0, 2], [10, 0]])
    factors = clip_to_median_norm(buf, 2.0)
    assert factors.tolist() == [1.0, 1.0, pytest.approx(0.4)]
    assert buf[2].tolist() == [pytest.approx(4.0), 0.0] and buf[0].tolist() == [1.0, 0.0]


def test_aggregate_clip_composes_with_median_and_can_spare_the_buffer():
    buf = t([[1, 0], [0, 2], [10, 0]])
    result = aggregate(RuleConfig("median", clip_multiple=2.0), buf, [1, 1, 1], clip_in_place=False)
    assert result.clip_factors == [1.0, 1.0, pytest.approx(0.4)]
    assert result.vector.tolist() == [1.0, 0.0]
    assert buf[2].tolist() == [10.0, 0.0]


def test_aggregate_reports_discards_per_rule():
    buf = t([[0, 0, 0], [1, 1, 1], [2, 2, 2], [3, 3, 3], [100, 100, 100]])
    w = [1, 1, 1, 1, 0]
    assert aggregate(RuleConfig("fedavg"), buf, w).discarded == [4]
    assert aggregate(RuleConfig("median"), buf, w).discarded == []
    trimmed = aggregate(RuleConfig("trimmed-mean", beta=0.2), buf, w)
    assert trimmed.discarded == [0, 4] and trimmed.selected == [1, 2, 3]
    krum = aggregate(RuleConfig("multi-krum", f=1, m=3), buf, [1] * 5)
    assert krum.selected == [0, 1, 2] and krum.discarded == [3, 4] and krum.clip_factors is None


def test_trimmed_mean_matches_scipy_trim_mean():
    x = torch.randn(9, 1000, generator=torch.Generator().manual_seed(1))
    expected = trim_mean(x.double().numpy(), 0.25, axis=0)
    assert np.allclose(trimmed_mean(x, 0.25).double().numpy(), expected, rtol=0, atol=1e-6)


def test_median_matches_numpy_median_for_even_and_odd_k():
    g = torch.Generator().manual_seed(2)
    for k in (2, 5, 8, 13):
        x = torch.randn(k, 5000, generator=g)
        expected = np.median(x.double().numpy(), axis=0)
        assert np.allclose(coordinate_median(x).double().numpy(), expected, rtol=0, atol=1e-6)


def test_fedavg_matches_float64_reference_across_chunks():
    x = torch.randn(6, 140_001, generator=torch.Generator().manual_seed(3))
    w = [5, 1, 7, 2, 9, 4]
    ref = (x.double() * torch.tensor(w, dtype=torch.float64)[:, None]).sum(0) / sum(w)
    assert torch.allclose(fedavg(x, w).double(), ref, rtol=0, atol=4e-7)


def test_fedavg_is_a_running_mean_of_fused_lerps():
    assert rules_mod.fused_multiply_add()  # true on every AVX2/AVX512/ARM64 build: the fast path is in use
    x = torch.randn(3, 1000, generator=torch.Generator().manual_seed(8))
    steps = rules_mod.fedavg_steps([3, 5, 2], [0, 1, 2])
    assert steps == [pytest.approx(5 / 8), pytest.approx(2 / 10)]
    expected = x[0].clone()
    for i, step in zip((1, 2), steps):
        expected = torch.lerp(expected, x[i], step)
    assert torch.equal(fedavg(x, [3, 5, 2]), expected)


def test_fedavg_fallback_without_fused_multiply_add_agrees_to_rounding(monkeypatch):
    x = torch.randn(5, 3000, generator=torch.Generator().manual_seed(9))
    fast = fedavg(x, [1, 2, 3, 4, 5])
    monkeypatch.setattr(rules_mod, "fused_multiply_add", lambda: False)
    monkeypatch.setattr(rules_mod._native, "library", lambda: None)  # the torch path, as without a compiler
    slow = fedavg(x, [1, 2, 3, 4, 5])
    assert torch.allclose(fast, slow, rtol=0, atol=1e-6) and not torch.equal(fast, slow)


# ---------------------------------------------------------------- config and validation


def test_rule_config_round_trips_through_dict():
    cfg = RuleConfig("multi-krum", f=2, m=5, clip_multiple=3.0)
    assert RuleConfig.from_dict(cfg.to_dict()) == cfg
    assert RuleConfig.from_dict({"rule": "median"}).to_dict() == {
        "rule": "median", "beta": 0.1, "f": 1, "m": None, "clip_multiple": None,
    }


@pytest.mark.parametrize(
    "spec",
    [
        {"rule": "mean"},
        {"rule": "fedavg", "betta": 0.1},
        {"beta": 0.1},
        {"rule": "trimmed-mean", "beta": 0.5},
        {"rule": "multi-krum", "f": -1},
        {"rule": "multi-krum", "m": 0},
        {"rule": "fedavg", "clip_multiple": 0},
        {"rule": "fedavg", "clip_multiple": float("inf")},
    ],
)
def test_rule_config_refuses_bad_specs(spec):
    with pytest.raises(AggregationError):
        RuleConfig.from_dict(spec)


def test_aggregation_error_is_a_fedchain_value_error():
    assert issubclass(AggregationError, FedchainError) and issubclass(AggregationError, ValueError)


@pytest.mark.parametrize(
    "weights", [[1.5, 1], [-1, 2], [0, 0], [1], [2**29, 1], torch.tensor([1.0, 2.0]), [True, 1]]
)
def test_fedavg_refuses_bad_weights(weights):
    with pytest.raises(AggregationError):
        fedavg(t([[1], [2]]), weights)


@pytest.mark.parametrize("buf", [torch.zeros(2, 3, dtype=torch.float64), torch.zeros(3), torch.zeros(0, 3)])
def test_rules_refuse_malformed_buffers(buf):
    with pytest.raises(AggregationError):
        coordinate_median(buf)


def test_multi_krum_caps_m_at_k():
    assert multi_krum(t([[1], [2], [3]]), f=0, m=4)[1] == [0, 1, 2]


def test_multi_krum_refuses_m_below_one():
    with pytest.raises(AggregationError):
        multi_krum(t([[1], [2], [3]]), f=0, m=0)


def test_canonical_order_sorts_addresses_case_insensitively():
    addrs = ["0xBB00000000000000000000000000000000000000", "0x0a00000000000000000000000000000000000000",
             "0xab00000000000000000000000000000000000000"]
    assert canonical_order(addrs) == [1, 2, 0]


def test_canonical_order_refuses_duplicate_addresses():
    with pytest.raises(AggregationError):
        canonical_order(["0xAB", "0xab"])


# ---------------------------------------------------------------- sorting network


@pytest.mark.parametrize("k", range(1, 13))
def test_sorting_network_sorts_every_zero_one_input(k):
    # 0-1 principle: a comparator network that sorts all 2^k binary inputs sorts everything.
    cols = torch.arange(2**k)
    buf = ((cols[None, :] >> torch.arange(k)[:, None]) & 1).float()
    ranked, _ = sort_rows([buf[i].clone() for i in range(k)], torch.empty(2**k), batcher_network(k))
    out = torch.stack(ranked)
    assert torch.equal(out, torch.sort(buf, dim=0).values)


def test_pruned_network_still_places_the_wanted_ranks():
    x = torch.randn(11, 3000, generator=torch.Generator().manual_seed(4))
    ranked, _ = sort_rows([r.clone() for r in x], torch.empty(3000), pruned_network(11, (5,)))
    assert torch.equal(ranked[5], torch.sort(x, dim=0).values[5])


# ---------------------------------------------------------------- properties


def addresses(k: int):
    return st.lists(st.binary(min_size=20, max_size=20), min_size=k, max_size=k, unique=True)


@st.composite
def rounds(draw, min_k=1, max_k=8, max_d=40):
    k = draw(st.integers(min_k, max_k))
    d = draw(st.integers(1, max_d))
    seed = draw(st.integers(0, 2**31 - 1))
    scale = draw(st.sampled_from([1e-3, 1.0, 1e3]))
    x = torch.randn(k, d, generator=torch.Generator().manual_seed(seed)) * scale
    if draw(st.booleans()):  # exact repeats and zeros stress ties
        x[draw(st.integers(0, k - 1))] = x[0]
        x[:, 0] = 0.0
    weights = draw(st.lists(st.integers(1, 1000), min_size=k, max_size=k))
    return x, weights, draw(addresses(k)), draw(st.permutations(list(range(k))))


CONFIGS = [
    RuleConfig("fedavg"),
    RuleConfig("median"),
    RuleConfig("trimmed-mean", beta=0.2),
    RuleConfig("multi-krum", f=1),
    RuleConfig("trimmed-mean", beta=0.1, clip_multiple=1.5),
    RuleConfig("multi-krum", f=1, m=2, clip_multiple=2.0),
]


@FAST
@given(rounds(), st.sampled_from(CONFIGS))
def test_same_rows_in_any_arrival_order_give_the_same_bytes(data, config):
    x, w, addrs, arrival = data
    # Contributors arrive in `arrival` order; the receiver sorts rows by address before aggregating.
    arrived_x, arrived_w, arrived_a = x[arrival], [w[i] for i in arrival], [addrs[i] for i in arrival]
    order = canonical_order(arrived_a)
    again = canonical_order(addrs)
    first = aggregate(config, arrived_x[order].contiguous(), [arrived_w[i] for i in order])
    second = aggregate(config, x[again].contiguous(), [w[i] for i in again])
    assert same_bytes(first.vector, second.vector)
    assert first.selected == second.selected and first.clip_factors == second.clip_factors


@FAST
@given(rounds(min_k=1, max_k=9), st.sampled_from(CONFIGS))
def test_identical_rows_aggregate_to_that_row(data, config):
    x, w, _, _ = data
    buf = x[:1].repeat(x.shape[0], 1).contiguous()
    assert torch.equal(aggregate(config, buf, w).vector, x[0])


@st.composite
def honest_and_outlier(draw, min_k):
    k = draw(st.integers(min_k, 9))
    d = draw(st.integers(1, 20))
    seed = draw(st.integers(0, 2**31 - 1))
    honest = torch.rand(k - 1, d, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    outlier = torch.tensor(draw(st.lists(st.floats(-(2.0**100), 2.0**100, width=32), min_size=d, max_size=d)))
    position = draw(st.integers(0, k - 1))
    buf = torch.cat([honest[:position], outlier[None], honest[position:]]).contiguous()
    return buf, honest


@FAST
@given(honest_and_outlier(min_k=3))
def test_one_outlier_moves_the_median_only_within_the_honest_range(data):
    buf, honest = data
    out = coordinate_median(buf)
    assert bool((out >= honest.min(0).values).all()) and bool((out <= honest.max(0).values).all())


@FAST
@given(honest_and_outlier(min_k=3))
def test_one_outlier_moves_the_trimmed_mean_only_within_the_honest_range(data):
    buf, honest = data
    beta = max(0.1, 1.0 / buf.shape[0])  # cut at least one row per end
    out = trimmed_mean(buf, beta)
    assert bool((out >= honest.min(0).values - 1e-6).all()) and bool((out <= honest.max(0).values + 1e-6).all())


@FAST
@given(honest_and_outlier(min_k=5))
def test_one_outlier_moves_multi_krum_at_most_a_few_honest_diameters(data):
    buf, honest = data
    out, _ = multi_krum(buf, f=1)
    h = honest.double()
    diameter = torch.cdist(h, h).max().item()
    distance = (out.double() - h.mean(0)).norm().item()
    assert distance <= (math.sqrt(buf.shape[0]) + 2) * diameter + 1e-5


@FAST
@given(rounds(min_k=2), st.floats(0.5, 4.0))
def test_clipping_bounds_every_norm_by_the_multiple_of_the_median(data, multiple):
    x, _, _, _ = data
    before = row_norms(x)
    median = float(np.median(before))
    clip_to_median_norm(x, multiple)
    assert all(n <= multiple * median * (1 + 1e-6) + 1e-30 for n in row_norms(x))


# ---------------------------------------------------------------- reproducibility machinery


def test_results_do_not_depend_on_thread_count():
    x = torch.randn(7, 100_003, generator=torch.Generator().manual_seed(5))
    w = [3, 1, 4, 1, 5, 9, 2]
    before = torch.get_num_threads()
    try:
        outs = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            outs.append([aggregate(c, x.clone(), w).vector for c in CONFIGS] + [reproducible_gram(x)])
    finally:
        torch.set_num_threads(before)
    for other in outs[1:]:
        assert all(same_bytes(a, b) for a, b in zip(outs[0], other))


def test_reproducible_gram_is_equivariant_to_the_bit_and_accurate():
    x = torch.randn(5, 20_000, generator=torch.Generator().manual_seed(6))
    perm = [3, 0, 4, 1, 2]
    g, gp = reproducible_gram(x), reproducible_gram(x[perm].contiguous())
    assert same_bytes(gp, g[perm][:, perm])
    assert torch.allclose(g, x.double() @ x.double().T, rtol=1e-12, atol=0)


def test_multi_krum_falls_back_to_reproducible_distances_on_near_ties(monkeypatch):
    calls = []
    original = rules_mod.reproducible_gram
    monkeypatch.setattr(rules_mod, "reproducible_gram", lambda b: calls.append(1) or original(b))
    # Rows 3 and 4 are identical and tie exactly for the fourth and last place.
    buf = t([[0.0], [0.1], [0.2], [5.0], [5.0], [50.0]])
    assert multi_krum(buf, f=1, m=4)[1] == [0, 1, 2, 3]
    assert calls
    calls.clear()
    buf[4] = 6.0  # now clearly separated: the fast distances are certified, no fallback
    assert multi_krum(buf, f=1, m=4)[1] == [0, 1, 2, 3]
    assert not calls


def test_fedavg_writes_into_a_given_output_and_refuses_a_bad_one():
    x = torch.randn(4, 10_001, generator=torch.Generator().manual_seed(21))
    out = torch.full((10_001,), float("nan"))
    assert fedavg(x, [1, 2, 3, 4], out=out) is out
    assert same_bytes(out, fedavg(x, [1, 2, 3, 4]))
    for bad, message in [
        (torch.empty(10_000), "shape"),
        (torch.empty(10_001, dtype=torch.float64), "float32"),
        (torch.empty(2, 10_001)[:, 0], "shape"),
        (torch.empty(20_002)[::2], "contiguous"),
        (x[2], "share memory"),
    ]:
        with pytest.raises(AggregationError, match=message):
            fedavg(x, [1, 2, 3, 4], out=bad)


def test_trimmed_mean_keeps_typical_rows_even_when_beta_cuts_most_values():
    # beta 0.35 of 10 rows cuts 3 at each end: a typical row is outside the kept band in 60% of coordinates, which
    # is chance, not a sign of attack; rows extreme in every coordinate are still discarded.
    g = torch.Generator().manual_seed(31)
    honest = torch.randn(8, 20_000, generator=g)
    buf = torch.cat([honest, honest[:1] + 50.0, -honest[1:2] - 50.0])
    result = aggregate(RuleConfig("trimmed-mean", beta=0.35), buf, [1] * 10)
    assert result.discarded == [8, 9]


def test_trimmed_discards_threshold_is_halfway_between_chance_and_always():
    from fedchain.aggregation.rules import trimmed_discards

    # K=10, cut=3: chance is 60% of coordinates, the threshold 80%
    assert trimmed_discards([80, 81, 60, 0, 0, 0, 0, 0, 0, 0], 100, 3) == [1]
    assert trimmed_discards([51, 0, 0, 0], 100, 0) == [0]  # no cut: nothing is ever outside, the threshold is 50%
