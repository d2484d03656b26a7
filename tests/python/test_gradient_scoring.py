"""gradient-shapley: exact on quadratic share games, close to exact Shapley on a real model, linear cost."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import spearmanr

from fedchain.learning.evaluation import LossEvaluator
from fedchain.learning.models import ParamLayout
from fedchain.learning.scoring import (
    ScoringError,
    exact_shapley,
    gauss_legendre,
    gradient_shapley,
    score_round,
    share_combine,
)


def quadratic_share_game(seed: int, k: int = 6, d: int = 30):
    """Updates of mixed quality; loss(base + v) = (v - t)^T H (v - t) with H positive definite (base = 0)."""
    g = torch.Generator().manual_seed(seed)
    target = torch.randn(d, generator=g, dtype=torch.float64)
    m = torch.randn(d, d, generator=g, dtype=torch.float64)
    hessian = m @ m.T / d + torch.eye(d, dtype=torch.float64)
    scales = torch.tensor([1.0, 0.5, 0.0, -0.5, 2.0, 1.5, 0.8, 0.2][:k], dtype=torch.float64)
    rows = torch.stack([s * target + 0.4 * torch.randn(d, generator=g, dtype=torch.float64) for s in scales])
    weights = [10, 20, 15, 5, 30, 12, 7, 9][:k]

    def loss(vector: torch.Tensor) -> float:
        e = vector.double() - target
        return float(e @ hessian @ e)

    def gradient(vector: torch.Tensor) -> torch.Tensor:
        return (2 * hessian @ (vector.double() - target)).float()

    return rows.float(), weights, loss, gradient


@pytest.mark.parametrize("seed", range(5))
def test_equals_exact_shapley_on_a_quadratic_share_game(seed):
    buffer, weights, loss, gradient = quadratic_share_game(seed)
    rows = list(range(buffer.shape[0]))
    exact = exact_shapley(buffer, weights, rows, loss, combine=share_combine(buffer, weights, rows))
    res = gradient_shapley(buffer, weights, rows, gradient, loss, points=1)
    mass = sum(abs(v) for v in exact.values())
    for r in rows:
        assert abs(res.raw[r] - exact[r]) <= 1e-4 * mass  # float32 rows; the games agree exactly in theory
    assert abs(res.params["completeness_gap"]) < 1e-4  # efficiency: the values sum to v(A)
    assert res.evaluations == 1 + 2


def test_costs_points_gradients_whatever_the_number_of_contributors():
    calls = []
    for k in (4, 40, 400):
        g = torch.Generator().manual_seed(k)
        buffer = torch.randn(k, 16, generator=g)
        count = 0

        def gradient(vector: torch.Tensor) -> torch.Tensor:
            nonlocal count
            count += 1
            return vector - 1.0

        res = gradient_shapley(buffer, [1] * k, range(k), gradient, points=3)
        calls.append((count, res.evaluations))
    assert calls == [(3, 3)] * 3


def test_is_deterministic_and_ignores_rows_outside_the_accepted_set():
    buffer, weights, loss, gradient = quadratic_share_game(1)
    a = gradient_shapley(buffer, weights, [0, 1, 4], gradient, loss)
    b = gradient_shapley(buffer, weights, [0, 1, 4], gradient, loss)
    assert a == b
    poisoned = buffer.clone()
    poisoned[2] = float("nan")  # a rejected row is never read
    c = gradient_shapley(poisoned, weights, [0, 1, 4], gradient, loss)
    assert c.raw == a.raw and set(c.scores) == {0, 1, 4}
    assert math.isclose(sum(a.scores.values()), 1.0)


def test_a_zero_update_earns_nothing_and_a_harmful_one_is_clipped():
    buffer, weights, loss, gradient = quadratic_share_game(2)
    buffer[2] = 0.0
    res = score_round(buffer, weights, range(6), loss, "gradient-shapley", gradient=gradient)
    assert res.raw[2] == 0.0 and res.scores[2] == 0.0
    assert res.raw[3] < 0 and res.scores[3] == 0.0  # the update against the target
    assert res.scores[0] > 0 and res.method == "gradient-shapley"


def test_bad_inputs_are_refused():
    buffer, weights, loss, gradient = quadratic_share_game(0)
    with pytest.raises(ScoringError, match="points"):
        gradient_shapley(buffer, weights, range(6), gradient, points=0)
    with pytest.raises(ScoringError, match="shape"):
        gradient_shapley(buffer, weights, range(6), lambda v: v[:3])
    with pytest.raises(ScoringError, match="not finite"):
        gradient_shapley(buffer, weights, range(6), lambda v: v * float("nan"))
    with pytest.raises(ScoringError, match="gradient="):
        score_round(buffer, weights, range(6), loss, "gradient-shapley")


def test_gauss_legendre_integrates_polynomials_exactly():
    for points in (1, 2, 3, 5):
        for degree in range(2 * points):
            assert math.isclose(sum(w * t**degree for t, w in gauss_legendre(points)), 1 / (degree + 1), rel_tol=1e-12)


def test_ranks_like_exact_shapley_on_a_real_model():
    """A small MLP and real gradients (autograd through LossEvaluator), 8 updates from different directions."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    layout = ParamLayout.from_state_dict(state)
    x = torch.randn(300, 12)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    # updates: gradient steps on different subsets (useful, of varied size), plus noise and a harmful one
    evaluator = LossEvaluator(model, layout, state, x, y, device="cpu")
    rows = []
    for i in range(6):
        part = slice(i * 40, i * 40 + 10 + 5 * i)
        sub = LossEvaluator(model, layout, state, x[part], y[part], device="cpu")
        rows.append(-0.8 * sub.gradient(None))
    rows.append(0.05 * torch.randn(layout.total))
    rows.append(0.5 * evaluator.gradient(None))
    buffer = torch.stack(rows)
    weights = [10 + 5 * i for i in range(6)] + [20, 20]
    accepted = list(range(8))
    exact = exact_shapley(buffer, weights, accepted, evaluator, combine=share_combine(buffer, weights, accepted))
    res = gradient_shapley(buffer, weights, accepted, evaluator.gradient, evaluator)
    rho = spearmanr([exact[r] for r in accepted], [res.raw[r] for r in accepted]).correlation
    assert rho >= 0.95
    assert abs(res.params["completeness_gap"]) < 0.05
    assert res.raw[7] < 0 and res.scores[7] == 0.0
