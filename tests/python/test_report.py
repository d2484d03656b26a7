"""fedchain.core.report: the round report and its canonical bytes."""

import json

import pytest

from fedchain.core.merkle import RewardTree
from fedchain.core.report import ReportError, RoundReport, UpdateRecord, canonical_json

A, B, C = "0x" + "aa" * 20, "0x" + "bb" * 20, "0x" + "cc" * 20
BIG = 10**24 + 1  # beyond JSON's safe integers


def _report(**changes):
    updates = [
        UpdateRecord(contributor=A, cid="QmA", num_samples=800, status="accepted", score=0.6000000000004, reward=BIG),
        UpdateRecord(contributor=B, cid="QmB", num_samples=300, status="accepted", score=0.4, reward=5),
        UpdateRecord(contributor=C, cid="QmC", num_samples=10, status="rejected", reason="non-finite", slashed=True),
    ]
    fields = dict(
        task_id=1, round=0, base_model_cid="QmBase", model_cid="QmNew", aggregation={"rule": "fedavg"},
        scoring={"method": "tmc-shapley", "permutations": 50, "evaluations": 120},
        metrics={"test_accuracy": 0.95123456789123, "test_loss": 0.1, "eval_samples": 1000},
        budget=2 * BIG, total_rewards=BIG + 5,
        rewards_root=RewardTree(1, 0, {A: BIG, B: 5}).root_hex, updates=updates,
    )
    return RoundReport(**{**fields, **changes})


def test_amounts_are_decimal_strings():
    obj = json.loads(canonical_json(_report()))
    assert obj["budget"] == str(2 * BIG) and obj["total_rewards"] == str(BIG + 5)
    assert [u["reward"] for u in obj["updates"]] == [str(BIG), "5", "0"]


def test_canonical_bytes_are_stable_and_round_trip():
    report = _report()
    data = canonical_json(report)
    again = RoundReport.from_json_bytes(data)
    assert again == report and canonical_json(again) == data
    assert data == json.dumps(json.loads(data), sort_keys=True, separators=(",", ":")).encode()


def test_floats_rounded_to_fixed_precision():
    obj = json.loads(canonical_json(_report()))
    assert obj["updates"][0]["score"] == 0.6
    assert obj["metrics"]["test_accuracy"] == 0.951234568


def test_tiny_float_noise_gives_identical_bytes():
    a = _report(metrics={"test_loss": 0.1 + 0.2})
    b = _report(metrics={"test_loss": 0.3})
    assert canonical_json(a) == canonical_json(b)


def test_addresses_checksummed():
    assert _report().updates[0].contributor == "0xaAaAaAaaAaAaAaaAaAAAAAAAAaaaAaAaAaaAaaAa"


def test_rewards_root_recomputes():
    _report().check_rewards_root()
    with pytest.raises(ReportError, match="does not match"):
        _report(rewards_root="0x" + "11" * 32).check_rewards_root()


def test_total_must_equal_sum_of_rewards():
    with pytest.raises(ReportError, match="differs from the sum"):
        _report(total_rewards=BIG)


def test_total_cannot_exceed_budget():
    with pytest.raises(ReportError, match="exceeds the budget"):
        _report(budget=BIG)


def test_rejected_update_cannot_be_rewarded():
    with pytest.raises(ReportError, match="rejected update cannot be rewarded"):
        UpdateRecord(contributor=A, cid="Qm", num_samples=1, status="rejected", reward=1)


@pytest.mark.parametrize(
    "change, match",
    [
        ({"status": "maybe"}, "status"),
        ({"contributor": "0x12"}, "contributor"),
        ({"reward": "-5"}, "reward"),
        ({"reward": "007"}, "reward"),
        ({"score": float("nan")}, "score"),
        ({"score": -0.1}, "score"),
    ],
)
def test_invalid_update_records(change, match):
    fields = dict(contributor=A, cid="Qm", num_samples=1, status="accepted", score=0.5, reward=1)
    with pytest.raises(ReportError, match=match):
        UpdateRecord(**{**fields, **change})


def test_non_finite_metric_refused():
    with pytest.raises(ReportError, match="non-finite"):
        _report(metrics={"test_loss": float("inf")})


def test_from_json_rejects_garbage_and_unknown_fields():
    with pytest.raises(ReportError, match="not valid JSON"):
        RoundReport.from_json_bytes(b"{")
    obj = json.loads(canonical_json(_report()))
    obj["extra"] = 1
    with pytest.raises(ReportError, match="extra: unknown field"):
        RoundReport.from_json_bytes(json.dumps(obj))
