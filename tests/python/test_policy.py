"""The slashing policy and the spec's policy section: pure decisions every validator makes identically."""

from __future__ import annotations

import pytest

from fedchain.core.policy import has_diverged, round_score, sample_count_reason, slash_decisions
from fedchain.core.reasons import PROVABLE, Reason
from fedchain.core.spec import PolicyConfig, SpecError

POLICY = PolicyConfig()


def test_provably_bad_rejections_slash_and_the_rest_do_not():
    reasons = [None, "replay", "wrong-base", "malformed", "free-rider", "norm-outlier", "unavailable", "non-finite"]
    assert slash_decisions(reasons, POLICY) == [False, True, True, True, False, False, False, True]


def test_nobody_is_slashed_for_non_finite_updates_when_the_model_diverged():
    # most of the round blew up: the global model is to blame, not the contributors
    assert slash_decisions(["non-finite", "non-finite", None, "replay"], POLICY) == [False, False, False, True]


def test_nobody_is_slashed_for_a_non_finite_update_trained_from_a_diverged_model():
    assert slash_decisions([None, None, None, "non-finite"], POLICY) == [False, False, False, True]
    assert slash_decisions([None, None, None, "non-finite"], POLICY, model_diverged=True) == [False] * 4
    assert slash_decisions(["replay", "non-finite"], POLICY, model_diverged=True) == [True, False]


def test_a_model_diverged_when_its_loss_is_far_above_a_uniform_guess():
    assert not has_diverged(2.3, 10, POLICY) and not has_diverged(0.1, 10, POLICY)
    assert has_diverged(1e6, 10, POLICY) and has_diverged(float("inf"), 10, POLICY)
    assert has_diverged(float("nan"), 10, POLICY)
    assert not has_diverged(30.0, 10, PolicyConfig(diverged_loss_factor=20.0))


def test_the_policy_decides_which_reasons_slash():
    lenient = PolicyConfig(slash_reasons=(Reason.REPLAY,))
    assert slash_decisions(["replay", "wrong-base", "malformed"], lenient) == [True, False, False]


def test_default_slash_reasons_are_exactly_the_provable_ones():
    assert set(POLICY.slash_reasons) == PROVABLE
    assert Reason.UNAVAILABLE not in PROVABLE and Reason.TOO_MANY_SAMPLES not in PROVABLE


# duplicate: two near-copies prove that one copied the other, not which one (a front-runner picks chain order)
@pytest.mark.parametrize("reason", ["unavailable", "too-many-samples", "free-rider", "norm-outlier", "duplicate"])
def test_a_reason_without_evidence_cannot_be_made_to_slash(reason: str):
    with pytest.raises(SpecError, match="cannot slash"):
        PolicyConfig(slash_reasons=(reason,))


def test_absurd_and_zero_sample_counts_are_rejections_not_slashes():
    assert sample_count_reason(POLICY.max_samples_per_update + 1, POLICY) == Reason.TOO_MANY_SAMPLES
    assert sample_count_reason(2**29, POLICY) == Reason.TOO_MANY_SAMPLES
    assert sample_count_reason(0, POLICY) == Reason.NO_SAMPLES
    assert sample_count_reason(500, POLICY) is None
    assert slash_decisions(["too-many-samples", "no-samples"], POLICY) == [False, False]


def test_max_samples_per_update_stays_within_what_the_merge_weighs_exactly():
    from fedchain.aggregation.rules import MAX_WEIGHT

    with pytest.raises(SpecError, match="max_samples_per_update"):
        PolicyConfig(max_samples_per_update=MAX_WEIGHT)
    assert PolicyConfig(max_samples_per_update=MAX_WEIGHT - 1).max_samples_per_update == MAX_WEIGHT - 1


def test_scores_are_rounded_to_the_policy_decimals():
    assert round_score(0.123456789, POLICY) == 0.123457
    assert round_score(0.123456789, PolicyConfig(score_decimals=2)) == 0.12


def test_sample_weights_cap_each_claim_at_the_lower_median():
    from fedchain.core.policy import sample_weights

    claims = {0: 200, 1: 250, 2: 10_000, 3: 180}
    assert sample_weights(claims, PolicyConfig()) == {0: 200, 1: 200, 2: 200, 3: 180}  # lower median of 4: 200
    assert sample_weights(claims, PolicyConfig(sample_weighting="claimed")) == claims
    assert sample_weights(claims, PolicyConfig(sample_weighting="equal")) == dict.fromkeys(claims, 1)
    assert sample_weights({}, PolicyConfig()) == {}
