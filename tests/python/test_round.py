"""The validator's round as a function (fedchain.roles.round): inputs in, a typed outcome out. No chain, no IPFS."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from fedchain.core.report import canonical_json
from fedchain.core.spec import PolicyConfig, ScoringConfig, mnist_spec
from fedchain.learning.data import mnist_subset
from fedchain.learning.models import ParamLayout, build_model, initial_state
from fedchain.learning.trainers import LocalData, train_local
from fedchain.roles.round import ComputeSettings, RoundInputs, SubmittedUpdate, compute_outcome

ADDRESSES = [f"0x{i:040x}" for i in (0x11, 0x22, 0x33, 0x44)]
BASE_CID = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
BUDGET = 1_000 * 10**18
SETTINGS = ComputeSettings(scoring_workers=1)


@pytest.fixture(scope="module")
def trained():
    """Four honest MLP updates, each trained on its own slice of the MNIST subset, and a held-out set."""
    spec = mnist_spec("mlp", scoring=ScoringConfig(permutations=4, eval_samples=100))
    x, y = mnist_subset()
    shuffled = np.random.default_rng(0).permutation(len(y))  # the subset is sorted by class
    x, y = x[shuffled], y[shuffled]
    base = initial_state(spec, seed=0)
    layout = ParamLayout.from_state_dict(base)
    rows = torch.zeros(len(ADDRESSES), layout.total)
    for i in range(len(ADDRESSES)):
        part = slice(i * 200, (i + 1) * 200)
        result = train_local(build_model(spec), base, x[part], y[part], spec.training, seed=i, device="cpu",
                             progress=False)
        layout.flatten_into(result.delta, rows[i])
    return spec, base, rows, LocalData(x[4000:4300], y[4000:4300])


def _inputs(trained, *, spec=None, rejections=None, samples=None, order=None) -> RoundInputs:
    default_spec, base, rows, holdout = trained
    rejections, samples = rejections or {}, samples or {}
    updates = [
        SubmittedUpdate(a, f"cid-{i}", bytes([i + 1]) * 32, samples.get(i, 200), rejections.get(i))
        for i, a in enumerate(ADDRESSES)
    ]
    return RoundInputs(
        task_id=3, round=1, spec=spec or default_spec, updates=updates,
        submission_order=order or list(range(len(ADDRESSES))), rows=rows.clone(), base_state=base,
        base_cid=BASE_CID, holdout=holdout, budget=BUDGET,
    )


def _outcome(trained, **kwargs):
    spec = kwargs.get("spec") or trained[0]
    return compute_outcome(_inputs(trained, **kwargs), build_model(spec), SETTINGS)


def test_honest_updates_are_accepted_and_paid_the_whole_budget(trained):
    outcome = _outcome(trained)
    assert [v.status for v in outcome.verdicts] == ["accepted"] * 4
    assert sum(outcome.rewards.values()) == BUDGET and outcome.slashes == []
    assert outcome.metrics.accuracy > 0.5  # one round of four small shards already learns


def test_the_report_is_built_from_the_outcome_with_its_own_reward_root(trained):
    outcome = _outcome(trained)
    report = outcome.report("QmNewModel")
    assert report.rewards_root == report.reward_tree().root_hex
    assert {u.contributor.lower(): int(u.reward) for u in report.updates} == {
        a.lower(): r for a, r in outcome.rewards.items()
    }
    assert report.scoring["method"] == "tmc-shapley" and report.aggregation["rule"] == "fedavg"


def test_the_outcome_is_a_function_of_its_inputs(trained):
    first = canonical_json(_outcome(trained).report("QmX"))
    second = canonical_json(_outcome(trained, order=[3, 1, 0, 2]).report("QmX"))  # arrival order is irrelevant here
    assert first == second


def test_an_absurd_sample_count_is_rejected_and_the_round_still_completes(trained):
    outcome = _outcome(trained, samples={2: 2**30})
    verdict = outcome.verdicts[2]
    assert (verdict.status, verdict.reason, verdict.slashed, verdict.reward) == ("rejected", "too-many-samples",
                                                                                 False, 0)
    assert sum(outcome.rewards.values()) == BUDGET


def test_a_zero_sample_count_is_rejected_without_a_slash(trained):
    verdict = _outcome(trained, samples={0: 0}).verdicts[0]
    assert (verdict.status, verdict.reason, verdict.slashed) == ("rejected", "no-samples", False)


def test_provable_rejections_slash_with_the_digest_and_others_only_forfeit(trained):
    outcome = _outcome(trained, rejections={0: "replay", 1: "unavailable"})
    assert outcome.slashes == [(ADDRESSES[0], "0x" + "01" * 32)]
    assert [v.reward for v in outcome.verdicts[:2]] == [0, 0]


def test_the_spec_policy_decides_what_slashes(trained):
    spec = trained[0].model_copy(update={"policy": PolicyConfig(slash_reasons=())})
    assert _outcome(trained, spec=spec, rejections={0: "replay"}).slashes == []


def test_the_report_names_the_scoring_method_as_the_spec_does(trained):
    spec = trained[0].model_copy(update={"scoring": replace_scoring(trained[0].scoring, method="marginal")})
    assert _outcome(trained, spec=spec).scoring["method"] == "marginal"


def test_a_robust_rule_discard_is_not_a_slash(trained):
    spec = trained[0].model_copy(update={"aggregation": mnist_spec(aggregation={"rule": "multi-krum", "f": 1}).aggregation})
    inputs = _inputs(trained, spec=spec)
    inputs.rows[3] *= -5.0  # a sign-flipped update
    outcome = compute_outcome(inputs, build_model(spec), SETTINGS)
    assert outcome.verdicts[3].status == "discarded" and outcome.verdicts[3].reason == "discarded-by-multi-krum"
    assert not outcome.verdicts[3].slashed and outcome.verdicts[3].reward == 0


def test_every_update_rejected_keeps_the_base_model(trained):
    outcome = _outcome(trained, rejections={i: "unavailable" for i in range(4)})
    assert outcome.rewards == {}
    for name, tensor in trained[1].items():
        assert torch.equal(outcome.new_state[name], tensor)


def replace_scoring(scoring: ScoringConfig, **changes) -> ScoringConfig:
    return ScoringConfig(**{**scoring.model_dump(), **changes})


def test_compute_settings_do_not_change_the_outcome(trained):
    one = _outcome(trained)
    two = compute_outcome(_inputs(trained), build_model(trained[0]), replace(SETTINGS, scoring_workers=2))
    assert [v.score for v in one.verdicts] == [v.score for v in two.verdicts]
    assert np.array_equal(one.new_state["net.1.weight"].numpy(), two.new_state["net.1.weight"].numpy())


def _with_weighting(spec, weighting: str):
    return spec.model_copy(update={"policy": spec.policy.model_copy(update={"sample_weighting": weighting})})


def test_an_inflated_sample_count_buys_no_weight_and_no_reward(trained):
    """Row 2 claims ten times the 200 samples it trained on: under the default median-capped weighting its merge
    weight, the merged model and every reward are those of the honest claim; trusting claims pays the inflater."""
    spec = trained[0]
    assert spec.policy.sample_weighting == "median-capped"
    honest, inflated = _outcome(trained), _outcome(trained, samples={2: 2_000})
    assert [v.reward for v in inflated.verdicts] == [v.reward for v in honest.verdicts]
    assert all(torch.equal(inflated.new_state[k], honest.new_state[k]) for k in honest.new_state)
    trusting = _with_weighting(spec, "claimed")
    fair, gamed = _outcome(trained, spec=trusting), _outcome(trained, spec=trusting, samples={2: 2_000})
    assert gamed.verdicts[2].reward > fair.verdicts[2].reward  # what the cap prevents


def test_equal_weighting_ignores_counts(trained):
    spec = _with_weighting(trained[0], "equal")
    a, b = _outcome(trained, spec=spec), _outcome(trained, spec=spec, samples={0: 7, 1: 90_000})
    assert [v.reward for v in a.verdicts] == [v.reward for v in b.verdicts]


def test_gradient_shapley_scores_a_round_like_tmc_shapley(trained):
    spec = trained[0].model_copy(update={"scoring": replace_scoring(trained[0].scoring, method="gradient-shapley")})
    inputs = _inputs(trained, spec=spec)
    inputs.rows[3] *= -1.0  # a sign-flipped update: it earns nothing
    outcome = compute_outcome(inputs, build_model(spec), SETTINGS)
    assert outcome.scoring["method"] == "gradient-shapley" and outcome.scoring["evaluations"] == 3 + 2
    assert abs(outcome.scoring["completeness_gap"]) < 0.2
    assert outcome.verdicts[3].reward == 0 and all(v.reward > 0 for v in outcome.verdicts[:3])
    assert sum(outcome.rewards.values()) == BUDGET


def test_gradient_shapley_falls_back_to_leave_one_out_when_the_path_breaks_the_model(trained, monkeypatch):
    from fedchain.learning.evaluation import LossEvaluator

    spec = trained[0].model_copy(update={"scoring": replace_scoring(trained[0].scoring, method="gradient-shapley")})
    # a model that overflows somewhere along the path: its gradient there is not finite
    monkeypatch.setattr(LossEvaluator, "gradient", lambda self, delta: torch.full_like(delta, float("nan")))
    outcome = compute_outcome(_inputs(trained, spec=spec), build_model(spec), SETTINGS)
    marginal = _outcome(trained, spec=spec.model_copy(update={"scoring": replace_scoring(spec.scoring, method="marginal")}))
    assert outcome.scoring["method"] == "gradient-shapley" and outcome.scoring["fallback"] == "marginal"
    assert [v.score for v in outcome.verdicts] == [v.score for v in marginal.verdicts]
