"""Screening: per-row verdicts with reason codes before scoring."""

from __future__ import annotations

import pytest
import torch

from fedchain.errors import FedchainError
from fedchain.learning.screening import (
    DUPLICATE,
    FREE_RIDER,
    NON_FINITE,
    NORM_OUTLIER,
    ScreeningConfig,
    ScreeningError,
    screen,
)

D = 2_000


def local_training_delta(samples: int, seed: int, lr: float = 0.01, batch: int = 32) -> torch.Tensor:
    """An honest delta: `samples // batch` SGD steps on a least-squares problem, from a shared start.

    More data means more local steps, so a larger delta: what a norm check must not punish.
    """
    g = torch.Generator().manual_seed(seed)
    truth = torch.linspace(-1, 1, D)
    w = torch.zeros(D)
    for _ in range(max(1, samples // batch)):
        x = torch.randn(batch, D, generator=g) / D**0.5
        y = x @ truth + 0.1 * torch.randn(batch, generator=g)
        w -= lr * x.T @ (x @ w - y) / batch * D
    return w


def honest_round(k: int = 8, samples: int = 640) -> torch.Tensor:
    return torch.stack([local_training_delta(samples, seed) for seed in range(k)])


def test_honest_round_is_all_accepted():
    result = screen(honest_round())
    assert result.accepted == list(range(8)) and result.rejected == {}


def test_non_finite_rows_are_rejected():
    buf = honest_round()
    buf[2, 5] = float("nan")
    buf[6, 0] = float("-inf")
    result = screen(buf)
    assert result.rejected == {2: NON_FINITE, 6: NON_FINITE}


def test_near_duplicates_are_all_rejected_whatever_the_chain_order():
    buf = honest_round()
    buf[5] = buf[1] * 1.5 + 1e-4 * torch.randn(D, generator=torch.Generator().manual_seed(9))
    # Row 5 landed on chain before row 1 (a front-runner re-wrapping row 1's update): the earlier row keeps no
    # standing, since chain order does not tell who trained it. duplicate_of names the earlier row, for the reader.
    order = [0, 5, 2, 3, 1, 4, 6, 7]
    result = screen(buf, submission_order=order)
    assert result.rejected == {1: DUPLICATE, 5: DUPLICATE} and result.duplicate_of == {1: 5}
    assert screen(buf).rejected == {1: DUPLICATE, 5: DUPLICATE} and screen(buf).duplicate_of == {5: 1}


def test_zero_update_is_a_free_rider():
    buf = honest_round()
    buf[3] = 0.0
    assert screen(buf).rejected == {3: FREE_RIDER}


def test_tiny_noise_on_the_global_model_is_a_free_rider():
    buf = honest_round()
    median = buf.norm(dim=1).median()
    buf[4] = torch.randn(D, generator=torch.Generator().manual_seed(1)) / D**0.5 * median * 0.002
    assert screen(buf).rejected == {4: FREE_RIDER}


def test_honest_contributor_with_five_times_the_data_is_not_an_outlier():
    buf = honest_round()
    buf[7] = local_training_delta(5 * 640, seed=7)
    assert buf[7].norm() > 1.5 * buf[0].norm()  # the larger dataset does give a larger delta
    assert screen(buf).rejected == {}


def test_update_scaled_fifty_times_is_a_norm_outlier():
    buf = honest_round()
    buf[6] *= 50.0
    assert screen(buf).rejected == {6: NORM_OUTLIER}


def test_each_row_gets_the_first_reason_that_applies():
    buf = honest_round()
    buf[1] = buf[0] * 50.0  # a copy, also huge: reported as the copy it is
    buf[2, 0] = float("inf")
    result = screen(buf)
    assert result.rejected == {0: DUPLICATE, 1: DUPLICATE, 2: NON_FINITE}


def test_pre_rejected_rows_keep_their_reason_and_leave_the_statistics():
    buf = honest_round()
    buf[0] *= 1000.0
    result = screen(buf, pre_rejected={0: "wrong-base"})
    assert result.rejected == {0: "wrong-base"} and 0 not in result.accepted


def test_verdicts_do_not_depend_on_thread_count():
    buf = honest_round()
    buf[5] = buf[1] + 1e-3
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = screen(buf)
        torch.set_num_threads(2)
        two = screen(buf)
    finally:
        torch.set_num_threads(before)
    assert one == two


@pytest.mark.parametrize("order", [[0, 1], [0, 0, 1, 2, 3, 4, 5, 6], list(range(9))])
def test_submission_order_must_be_a_permutation_of_the_rows(order):
    with pytest.raises(ScreeningError):
        screen(honest_round(), submission_order=order)


def test_bad_thresholds_are_refused():
    with pytest.raises(ScreeningError):
        ScreeningConfig(outlier_ratio=0.5)
    assert issubclass(ScreeningError, FedchainError)
