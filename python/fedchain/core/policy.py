"""The slashing policy as pure functions of a round's verdicts: what every validator must decide identically.

The thresholds come from the task spec's `policy` section (`fedchain.core.spec.PolicyConfig`), so two validators
of one task apply the same rules, and a task owner can see them before contributors stake.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from fedchain.core.reasons import Reason
from fedchain.core.spec import PolicyConfig


def slash_decisions(
    rejections: Sequence[str | None], policy: PolicyConfig, *, model_diverged: bool = False
) -> list[bool]:
    """Which updates to slash, given each one's rejection reason (None: not rejected).

    Only the policy's slash reasons slash. A non-finite update proves bad faith only when it was trained from a sane
    global model that others trained from without blowing up: when the round's base model has diverged, or half
    the round or more is non-finite, the model is to blame, and nobody is slashed for it.
    """
    slashing = {str(r) for r in policy.slash_reasons}
    non_finite = sum(reason == Reason.NON_FINITE for reason in rejections)
    blame_model = model_diverged or non_finite * 2 >= len(rejections)
    return [
        reason is not None and str(reason) in slashing and not (reason == Reason.NON_FINITE and blame_model)
        for reason in rejections
    ]


def has_diverged(loss: float, num_classes: int, policy: PolicyConfig) -> bool:
    """A model whose held-out loss is far above a uniform guess's (ln C) has diverged."""
    return not math.isfinite(loss) or loss > policy.diverged_loss_factor * math.log(max(num_classes, 2))


def sample_count_reason(num_samples: int, policy: PolicyConfig) -> Reason | None:
    """Claimed sample counts the merge cannot take: too many (one absurd count must not stop a round) or none."""
    if num_samples > policy.max_samples_per_update:
        return Reason.TOO_MANY_SAMPLES
    if num_samples == 0:
        return Reason.NO_SAMPLES
    return None


def sample_weights(claims: Mapping[int, int], policy: PolicyConfig) -> dict[int, int]:
    """The merge and scoring weight of each accepted row from its claimed sample count, as far as the policy trusts
    a count nobody can check. Under "median-capped" a row weighs at most the (lower) median claim of the accepted
    rows: inflating a claim past what the honest majority reports buys no weight, and so no reward."""
    if policy.sample_weighting == "equal":
        return {row: 1 for row in claims}
    if policy.sample_weighting == "claimed" or not claims:
        return dict(claims)
    ordered = sorted(claims.values())
    cap = ordered[(len(ordered) - 1) // 2]  # the lower median: an integer, the same on every machine
    return {row: min(count, cap) for row, count in claims.items()}


def round_score(score: float, policy: PolicyConfig) -> float:
    """Scores are rounded before the reward split, so the last bits of a loss (which can depend on the CPU and its
    thread count) never move a reward."""
    return round(score, policy.score_decimals)
