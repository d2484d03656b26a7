"""Scoring: leave-one-out and TMC-Shapley against exact values, screening + scoring end to end, rewards."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedchain.aggregation import fedavg
from fedchain.learning.scoring import (
    DEFAULT_PERMUTATIONS,
    DEFAULT_TRUNCATION_TOL,
    ScoringError,
    exact_shapley,
    marginal_scores,
    normalise,
    permutation,
    rewards_from_scores,
    score_round,
    share_combine,
    tmc_shapley,
)
from fedchain.learning.screening import DUPLICATE, FREE_RIDER, screen


def quadratic_game(seed: int, d: int = 20):
    """Five updates of mixed quality; loss(base + v) = |v - target|^2 (base = 0)."""
    g = torch.Generator().manual_seed(seed)
    target = torch.randn(d, generator=g)
    rows = [
        target + 0.3 * torch.randn(d, generator=g),  # good
        0.5 * target + 0.3 * torch.randn(d, generator=g),  # half-way
        0.5 * torch.randn(d, generator=g),  # noise
        -0.5 * target + 0.1 * torch.randn(d, generator=g),  # harmful
        2.0 * target + torch.randn(d, generator=g),  # overshoots
    ]
    buffer = torch.stack(rows).float()
    weights = [10, 20, 15, 5, 30]

    def evaluate(vector: torch.Tensor) -> float:
        return float(((vector.double() - target.double()) ** 2).sum())

    return buffer, weights, evaluate


# ---------------------------------------------------------------- the estimator's error, stated and tested


@pytest.mark.parametrize("seed", range(10))
def test_tmc_shapley_is_within_the_stated_error_of_exact_shapley(seed):
    buffer, weights, evaluate = quadratic_game(seed)
    exact = exact_shapley(buffer, weights, range(5), evaluate)
    res = tmc_shapley(buffer, weights, range(5), evaluate, seed=seed)
    assert res.params == {"permutations": DEFAULT_PERMUTATIONS, "truncation_tol": DEFAULT_TRUNCATION_TOL, "seed": seed}
    mass = sum(abs(v) for v in exact.values())
    v_all = sum(exact.values())  # efficiency: Shapley values sum to v(A)
    _, total = normalise(res.raw)
    exact_scores, _ = normalise(exact)
    for r in range(5):
        assert abs(res.raw[r] - exact[r]) <= 0.15 * mass
        assert abs(res.scores[r] - exact_scores[r]) <= 0.15
        # the reported standard error (in score units, so times the normaliser) covers the error
        assert abs(res.raw[r] - exact[r]) <= 3 * res.stderr[r] * total + DEFAULT_TRUNCATION_TOL * abs(v_all)


def test_tmc_shapley_is_reproducible_from_its_seed():
    buffer, weights, evaluate = quadratic_game(0)
    a = tmc_shapley(buffer, weights, range(5), evaluate, permutations=8, seed=7)
    b = tmc_shapley(buffer, weights, range(5), evaluate, permutations=8, seed=7)
    assert a == b
    assert permutation(list(range(10)), 7, 0) != permutation(list(range(10)), 8, 0)


def test_tmc_shapley_truncates_once_the_prefix_reaches_the_full_value():
    # Additive game: each row alone already gives the whole value, so truncation stops every walk after one step.
    buffer = torch.ones(6, 3)
    evaluate_calls = []

    def evaluate(v: torch.Tensor) -> float:
        evaluate_calls.append(1)
        return float(((v - 1.0) ** 2).sum())

    res = tmc_shapley(buffer, [1] * 6, range(6), evaluate, permutations=4, truncation_tol=0.01)
    assert res.evaluations == len(evaluate_calls) <= 2 + 6
    assert math.isclose(sum(res.scores.values()), 1.0)


@pytest.mark.parametrize("permutations", [0, 1, 2, 5, True])
def test_tmc_shapley_needs_an_even_budget_of_at_least_two_pairs(permutations):
    buffer, weights, evaluate = quadratic_game(0)
    with pytest.raises(ScoringError):
        tmc_shapley(buffer, weights, range(5), evaluate, permutations=permutations)


# ---------------------------------------------------------------- leave-one-out


def test_leave_one_out_hand_computed():
    # target 1, rows 1 and 0 with equal weights: v({0,1}) = 1 - 0.25, v({0}) = 1, v({1}) = 0.
    buffer = torch.tensor([[1.0], [0.0]])
    res = marginal_scores(buffer, [1, 1], [0, 1], lambda v: float((v - 1.0) ** 2))
    assert res.raw == {0: 0.75, 1: -0.25}
    assert res.scores == {0: 1.0, 1: 0.0}
    assert res.evaluations == 4 and res.method == "marginal"


def test_non_finite_loss_is_refused():
    with pytest.raises(ScoringError):
        marginal_scores(torch.ones(2, 2), [1, 1], [0, 1], lambda v: float("nan"))


# ---------------------------------------------------------------- screening + scoring


def attacked_round():
    g = torch.Generator().manual_seed(11)
    d = 50
    target = torch.randn(d, generator=g)
    honest = [0.8 * target + 0.2 * torch.randn(d, generator=g) for _ in range(4)]
    rows = honest + [torch.zeros(d), honest[1] * 1.01 + 1e-3 * torch.randn(d, generator=g)]
    buffer = torch.stack(rows).float().contiguous()

    def evaluate(vector: torch.Tensor) -> float:
        return float(((vector.double() - target.double()) ** 2).mean())

    return buffer, [100] * 6, evaluate


@pytest.mark.parametrize("method", ["tmc-shapley", "marginal"])
def test_free_rider_and_duplicate_score_zero_through_screening_and_scoring(method):
    buffer, weights, evaluate = attacked_round()
    verdicts = screen(buffer)
    # Row 5 copies row 1: neither keeps its standing (chain order cannot tell the original).
    assert verdicts.rejected == {1: DUPLICATE, 4: FREE_RIDER, 5: DUPLICATE}
    res = score_round(buffer, weights, verdicts.accepted, evaluate, method)
    assert all(res.scores.get(r, 0.0) == 0.0 for r in (1, 4, 5))
    assert math.isclose(sum(res.scores.values()), 1.0)
    if method == "tmc-shapley":  # leave-one-out can leave similar honest updates at 0: each is redundant alone
        assert all(res.scores[r] > 0 for r in (0, 2, 3))


@pytest.mark.parametrize("method", ["tmc-shapley", "marginal"])
def test_helpful_update_scores_more_than_a_useless_one(method):
    g = torch.Generator().manual_seed(12)
    target = torch.randn(40, generator=g)
    helpful = 0.9 * target
    useless = 0.05 * torch.randn(40, generator=g)  # tiny, unrelated to the target
    decent = 0.5 * target + 0.3 * torch.randn(40, generator=g)
    buffer = torch.stack([useless, helpful, decent]).float()
    res = score_round(buffer, [10, 10, 10], [0, 1, 2], lambda v: float(((v - target) ** 2).sum()), method)
    assert res.scores[1] > res.scores[0] and res.scores[1] > res.scores[2]
    assert math.isclose(sum(res.scores.values()), 1.0)


def test_round_where_nothing_helps_scores_all_zero():
    target = torch.ones(4)
    buffer = -torch.ones(3, 4)  # every update moves away from the target
    res = score_round(buffer, [1, 1, 1], [0, 1, 2], lambda v: float(((v - target) ** 2).sum()), "marginal")
    assert res.scores == {0: 0.0, 1: 0.0, 2: 0.0}


def test_unknown_method_is_refused():
    buffer, weights, evaluate = quadratic_game(0)
    with pytest.raises(ScoringError):
        score_round(buffer, weights, range(5), evaluate, "banzhaf")


# ---------------------------------------------------------------- rewards


def test_rewards_largest_remainder_with_ties_to_the_lower_address():
    scores = {"0xcc": 0.5, "0xBB": 0.25, "0xaa": 0.25}
    assert rewards_from_scores(scores, 10) == {"0xcc": 5, "0xBB": 2, "0xaa": 3}


def test_rewards_all_zero_scores_pay_nothing():
    assert rewards_from_scores({"0xaa": 0.0, "0xbb": 0.0}, 1000) == {"0xaa": 0, "0xbb": 0}


@pytest.mark.parametrize(
    "scores,budget",
    [({"0xaa": -0.1}, 10), ({"0xaa": float("nan")}, 10), ({"0xaa": 1.0}, -1), ({"0xaa": 1.0}, 1.5),
     ({"0xAA": 1.0, "0xaa": 1.0}, 10)],
)
def test_rewards_refuse_bad_inputs(scores, budget):
    with pytest.raises(ScoringError):
        rewards_from_scores(scores, budget)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.from_regex(r"0x[0-9a-f]{6}", fullmatch=True),
        st.one_of(st.just(0.0), st.floats(0, 1e6, allow_nan=False, allow_infinity=False), st.floats(0, 1e-300)),
        min_size=1,
        max_size=30,
    ),
    st.integers(0, 10**24),
)
def test_rewards_never_exceed_the_budget_and_spend_it_exactly_when_anyone_scored(scores, budget):
    amounts = rewards_from_scores(scores, budget)
    total = sum(Fraction(s) for s in scores.values())
    assert set(amounts) == set(scores)
    assert sum(amounts.values()) == (budget if total > 0 else 0)
    for a, s in scores.items():
        exact = budget * Fraction(s) / total if total > 0 else 0
        assert exact - 1 < amounts[a] < exact + 1 and amounts[a] >= 0
        if s == 0:
            assert amounts[a] == 0
    assert rewards_from_scores(dict(reversed(list(scores.items()))), budget) == amounts


# ---------------------------------------------------------------- coalition forms


def overshooting_round():
    """Two honest updates that overshoot the target (2t) and a zero update (a free-rider that screening missed)."""
    target = torch.randn(30, generator=torch.Generator().manual_seed(40))
    buffer = torch.stack([2 * target, 2 * target + 0.01, torch.zeros(30)]).float()

    def evaluate(vector: torch.Tensor) -> float:
        return float(((vector.double() - target.double()) ** 2).sum())

    return buffer, [1, 1, 2], evaluate


@pytest.mark.parametrize("method", ["tmc-shapley", "marginal"])
def test_share_coalitions_pay_nothing_for_diluting_overshooting_updates(method):
    buffer, weights, evaluate = overshooting_round()
    # A coalition's own FedAvg rewards the zero update for halving the overshoot...
    plain = score_round(buffer, weights, [0, 1, 2], evaluate, method)
    assert plain.scores[2] > 0.3
    # ...each member's own term of the round's FedAvg does not: the zero row adds nothing (up to float rounding).
    shared = score_round(buffer, weights, [0, 1, 2], evaluate, method, combine=share_combine(buffer, weights, [0, 1, 2]))
    assert abs(shared.raw[2]) < 1e-5 and shared.scores[2] < 1e-6
    assert shared.scores[0] > 0.4 and shared.scores[1] > 0.4


def test_share_combine_of_every_accepted_row_is_the_rounds_fedavg():
    buffer, weights, _ = quadratic_game(3)
    accepted = [0, 1, 3, 4]
    combine = share_combine(buffer, weights, accepted)
    assert torch.equal(combine(buffer, weights, accepted), fedavg(buffer, weights, rows=accepted))
    part = combine(buffer, weights, [1, 4])  # (w1 x1 + w4 x4) / (w0 + w1 + w3 + w4)
    expected = (20 * buffer[1].double() + 30 * buffer[4].double()) / 65
    assert torch.allclose(part.double(), expected, rtol=0, atol=1e-5)
    assert torch.equal(combine(buffer, [0, 0, 1, 1, 1], [0, 1]), torch.zeros(buffer.shape[1]))


def test_tmc_shapley_on_several_threads_gives_exactly_the_single_thread_result():
    buffer, weights, evaluate = quadratic_game(9)
    calls: list[str] = []

    def tracked(name: str):
        def ev(vector: torch.Tensor) -> float:
            calls.append(name)
            return evaluate(vector)

        return ev

    one = tmc_shapley(buffer, weights, range(5), evaluate, permutations=32, truncation_tol=0.01, seed=4)
    many = tmc_shapley(buffer, weights, range(5), [tracked("a"), tracked("b"), tracked("c")], permutations=32,
                       truncation_tol=0.01, seed=4)
    assert many.scores == one.scores and many.raw == one.raw and many.stderr == one.stderr
    assert many.evaluations == one.evaluations  # distinct coalitions, however the threads raced
    assert {"b", "c"} & set(calls)  # the extra evaluators were used
