"""Privacy accounting: the epsilon a history of DP-SGD steps spends, by the accountant a task's spec names.

A history is a list of `Steps(noise_multiplier, sample_rate, steps)`: DP-SGD with Poisson sampling at `sample_rate`
and Gaussian noise of `noise_multiplier` x the clipping norm, for `steps` steps. The accountants are Opacus's ("rdp":
Renyi DP of the sampled Gaussian mechanism, Mironov et al. 2019; "prv": privacy random variables, Gopi et al. 2021),
pinned by version: the spec's `accountant_version` must name the installed Opacus, or two parties could compute
different epsilons for the same history.

On chain an epsilon is an integer in micro-epsilon (`EPSILON_SCALE`), rounded up (`to_micro`), so the ledger never
understates a spend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from fedchain.core.spec import PrivacyConfig
from fedchain.errors import FedchainError

EPSILON_SCALE = 1_000_000  # on-chain epsilons are micro-epsilon (IPrivacyLedger)
# The noise search's upper end, as a multiple of max(1, the spec's minimum): a round that needs more noise than this
# to fit in what is left of the cap would teach the model nothing, so the budget counts as spent.
MAX_NOISE_FACTOR = 100.0
NOISE_TOLERANCE = 1e-3  # the noise search stops within this fraction of the smallest noise that fits
PRV_EPS_ERROR = 0.01  # the PRV accountant's epsilon error bound (Opacus's default)


class AccountingError(FedchainError, ValueError):
    """The spec's accountant cannot be used here (unknown, or another version than the one installed)."""


class BudgetExhaustedError(FedchainError):
    """Training more would spend past the task's epsilon cap."""

    def __init__(self, message: str, spent: float, cap: float) -> None:
        super().__init__(message)
        self.spent = spent
        self.cap = cap


@dataclass(frozen=True)
class Steps:
    """`steps` DP-SGD steps with Poisson sampling at `sample_rate` and noise `noise_multiplier` (x clipping norm)."""

    noise_multiplier: float
    sample_rate: float
    steps: int

    def as_list(self) -> list[float | int]:
        return [self.noise_multiplier, self.sample_rate, self.steps]


def installed_accountant_version() -> str:
    """The accountant version this installation computes with, as the spec names it ("opacus-1.6.0")."""
    import opacus

    return f"opacus-{opacus.__version__}"


def check_accountant(cfg: PrivacyConfig) -> None:
    """Refuse a spec whose accountant this installation does not compute exactly."""
    have = installed_accountant_version()
    if cfg.accountant_version != have:
        raise AccountingError(
            f"privacy.accountant_version is {cfg.accountant_version!r} but this fedchain computes with {have!r}: "
            f"install the Opacus version the task names, or create the task with accountant_version {have!r}"
        )


def epsilon(history: Sequence[Steps], cfg: PrivacyConfig) -> float:
    """The (epsilon, cfg.delta)-DP guarantee of `history` by the spec's accountant (0 for no steps)."""
    check_accountant(cfg)
    steps = [s for s in history if s.steps > 0]
    if not steps:
        return 0.0
    if cfg.accountant == "rdp":
        return _rdp_epsilon(steps, cfg.delta)
    from opacus.accountants import create_accountant

    accountant = create_accountant(cfg.accountant)
    accountant.history = [(s.noise_multiplier, s.sample_rate, s.steps) for s in steps]
    return float(accountant.get_epsilon(cfg.delta, eps_error=PRV_EPS_ERROR))


def _rdp_epsilon(history: Sequence[Steps], delta: float) -> float:
    """Opacus's RDPAccountant.get_epsilon for `history`, computed the same way (its orders, compute_rdp's values:
    a step's RDP times the steps, summed in history order, then get_privacy_spent), with each (sample rate, noise)
    pair's per-step RDP computed once: a noise search evaluates many histories sharing all but their last entry."""
    from opacus.accountants.analysis import rdp as analysis

    rdp = sum(_rdp_per_step(s.sample_rate, s.noise_multiplier) * s.steps for s in history)
    eps, _ = analysis.get_privacy_spent(orders=_orders(), rdp=rdp, delta=delta)
    return float(eps)


def _orders() -> list[float]:
    from opacus.accountants import RDPAccountant

    return list(RDPAccountant.DEFAULT_ALPHAS)


@lru_cache(maxsize=4096)
def _rdp_per_step(sample_rate: float, noise_multiplier: float) -> Any:
    from opacus.accountants.analysis import rdp as analysis

    return analysis.compute_rdp(q=sample_rate, noise_multiplier=noise_multiplier, steps=1, orders=_orders())


def to_micro(eps: float) -> int:
    """`eps` in micro-epsilon, rounded up (the ledger's unit)."""
    if not math.isfinite(eps) or eps < 0:
        raise AccountingError(f"epsilon must be finite and non-negative, got {eps!r}")
    return math.ceil(round(eps * EPSILON_SCALE, 3))  # round first: 1.5 * 1e6 must stay 1500000, not 1500001


def from_micro(micro: int) -> float:
    return micro / EPSILON_SCALE


def noise_for_budget(history: Sequence[Steps], cfg: PrivacyConfig, sample_rate: float, steps: int,
                     rounds: int) -> float:
    """The smallest noise multiplier (at least the spec's minimum) with which `rounds` more rounds of `steps` steps
    each at `sample_rate`, after `history`, stay within the cap; the minimum itself when even that fits.

    Raises:
        BudgetExhaustedError: when not even MAX_NOISE_FACTOR x max(1, the minimum) fits.
    """
    def spend(sigma: float) -> float:
        return epsilon([*history, Steps(sigma, sample_rate, steps * rounds)], cfg)

    low = cfg.min_noise_multiplier
    if spend(low) <= cfg.epsilon_cap:
        return low
    ceiling = MAX_NOISE_FACTOR * max(low, 1.0)
    high = max(low, 1.0)
    while spend(high) > cfg.epsilon_cap:
        high *= 2
        if high > ceiling:
            spent = epsilon(history, cfg)
            raise BudgetExhaustedError(
                f"the privacy budget is spent: epsilon {spent:.4f} of the cap {cfg.epsilon_cap:g} already, and "
                f"{rounds} more round(s) of {steps} step(s) would exceed it even at noise {ceiling:g}",
                spent, cfg.epsilon_cap)
    # Bisection to NOISE_TOLERANCE: each step is one accountant call (up to ~0.5 s at large sample rates), and noise
    # that much above the tightest only leaves a little of the cap unspent.
    while high - low > NOISE_TOLERANCE * high:
        mid = (low + high) / 2
        if spend(mid) <= cfg.epsilon_cap:
            high = mid
        else:
            low = mid
    return high
