"""fedchain.core.spec: the task spec document."""

import json

import pytest
from pydantic import ValidationError

from fedchain.core.spec import (
    PRINTABLE_ASCII,
    MultiKrumRule,
    ScoringConfig,
    SpecError,
    TaskSpec,
    TrainingConfig,
    TrimmedMeanRule,
    load_spec_file,
    mnist_spec,
    shakespeare_spec,
)
from fedchain.learning.kinds import check_spec, num_parameters

KEY = "ab" * 32


def test_round_trip_preserves_the_spec():
    spec = mnist_spec(sealing_keys=[KEY])
    assert TaskSpec.from_json_bytes(spec.to_json_bytes()) == spec


def test_bytes_are_canonical_whatever_the_input_order():
    spec = mnist_spec(sealing_keys=[KEY])
    shuffled = json.dumps(dict(reversed(list(spec.to_json_obj().items()))), indent=2).encode()
    assert TaskSpec.from_json_bytes(shuffled).to_json_bytes() == spec.to_json_bytes()


def test_canonical_bytes_are_sorted_and_compact():
    data = mnist_spec(sealing_keys=[KEY]).to_json_bytes()
    obj = json.loads(data)
    assert data == json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    assert obj["format"] == "fedchain-task-spec/2" and obj["model_config"]["channels"] == [16, 32]
    assert obj["protocol_version"] == 1 and obj["kind"] == "classification"
    assert obj["aggregation"] == {"rule": "fedavg", "clip_multiple": None}


def test_model_config_alias_round_trips():
    spec = mnist_spec("mlp")
    assert spec.arch_config == {"hidden": [128]}
    assert spec.to_json_obj()["model_config"] == {"hidden": [128]}


def test_sealing_keys_normalised_to_lowercase_hex():
    spec = mnist_spec(sealing_keys=["0x" + "AB" * 32])
    assert spec.validator_sealing_keys == [KEY]


def test_load_spec_file(tmp_path):
    path = tmp_path / "spec.json"
    path.write_bytes(mnist_spec(sealing_keys=[KEY]).to_json_bytes())
    assert load_spec_file(path).name == "mnist-cnn"


def test_missing_spec_file_names_the_path(tmp_path):
    with pytest.raises(SpecError, match="nope.json.*not found"):
        load_spec_file(tmp_path / "nope.json")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"architecture": "Res Net!"}, "architecture: must be a lower-case architecture name"),
        ({"input_shape": [1, 0, 28]}, "input_shape: every dimension must be >= 1"),
        ({"num_classes": 1}, "num_classes: Input should be greater than or equal to 2"),
        ({"validator_sealing_keys": ["abcd"]}, "64 hex characters"),
        ({"validator_sealing_keys": []}, "sealed task needs at least one"),
        ({"aggregation": {"beta": 0.1}}, "aggregation: unknown rule None"),
        ({"aggregation": {"rule": "krum", "beta": 7}}, "aggregation: unknown rule 'krum': use one of fedavg"),
        ({"aggregation": {"rule": "trimmed-mean", "beta": 7}}, "aggregation.trimmed-mean.beta: Input should be less than 0.5"),
        ({"aggregation": {"rule": "fedavg", "beta": 0.2}}, "aggregation.fedavg.beta: unknown field"),
        ({"aggregation": {"rule": "multi-krum", "f": -1}}, "aggregation.multi-krum.f"),
        ({"aggregation": {"rule": "median", "clip_multiple": 0}}, "aggregation.median.clip_multiple"),
        ({"format": "fedchain-task-spec/1"}, "format: this fedchain reads 'fedchain-task-spec/2' specs"),
        ({"protocol_version": 2}, "protocol version 2 is not implemented by this fedchain \\(it implements 1\\)"),
        ({"kind": "regression"}, "kind: Input should be 'classification'"),
        ({"policy": {"score_decimals": 20}}, "policy.score_decimals"),
        ({"policy": {"slash_reasons": ["free-rider"]}}, "policy.slash_reasons: .* cannot slash"),
        ({"policy": {"max_samples_per_update": 0}}, "policy.max_samples_per_update"),
        ({"policy": {"screening": {"outlier_ratio": 1}}}, "policy.screening.outlier_ratio"),
        ({"privacy": {"delta": 0.5}}, "privacy.epsilon_cap: Field required"),
        ({"unlabelled": {"confidence_threshold": 2}}, "unlabelled.confidence_threshold"),
        ({"colour": "blue"}, "colour: unknown field"),
        ({"training": {"learning_rate": 0}}, "training.learning_rate: Input should be greater than 0"),
        ({"training": {"optimizer": "rmsprop"}}, "training.optimizer"),
        ({"scoring": {"method": "loo"}}, "scoring.method"),
        ({"max_update_bytes": 0}, "max_update_bytes"),
    ],
)
def test_invalid_spec_rejected_with_field_in_message(change, message):
    obj = {**mnist_spec(sealing_keys=[KEY]).to_json_obj(), **change}
    with pytest.raises(SpecError, match=message):
        TaskSpec.from_json_bytes(json.dumps(obj))


def test_missing_field_reported():
    obj = mnist_spec(sealing_keys=[KEY]).to_json_obj()
    del obj["num_classes"]
    with pytest.raises(SpecError, match="num_classes: Field required"):
        TaskSpec.from_json_bytes(json.dumps(obj))


@pytest.mark.parametrize("data", [b"{not json", b"[1, 2]", b'{"name": "a", "name": "b"}'])
def test_bad_json_rejected(data):
    with pytest.raises(SpecError):
        TaskSpec.from_json_bytes(data)


def test_constructor_errors_are_spec_errors_and_value_errors():
    with pytest.raises(ValueError, match="momentum"):
        TrainingConfig(momentum=1.5)
    with pytest.raises(SpecError, match="permutations"):
        ScoringConfig(permutations=0)


def test_specs_are_frozen():
    spec = mnist_spec()
    with pytest.raises(ValidationError):
        spec.name = "other"  # type: ignore[misc]


def test_unsealed_spec_needs_no_keys():
    assert mnist_spec().sealed is False
    assert mnist_spec(sealing_keys=[KEY]).sealed is True


def test_num_parameters_of_default_cnn():
    assert num_parameters(mnist_spec()) == 43_082


def test_rule_parameters_are_typed_and_written_in_full():
    spec = mnist_spec(aggregation={"rule": "trimmed-mean"})
    assert isinstance(spec.aggregation, TrimmedMeanRule) and spec.aggregation.beta == 0.1
    assert spec.to_json_obj()["aggregation"] == {"rule": "trimmed-mean", "beta": 0.1, "clip_multiple": None}
    krum = mnist_spec(aggregation=MultiKrumRule(rule="multi-krum", f=2))
    assert TaskSpec.from_json_bytes(krum.to_json_bytes()).aggregation == krum.aggregation


def test_policy_defaults_are_todays_validator_values():
    policy = mnist_spec().policy
    assert (policy.score_decimals, policy.diverged_loss_factor, policy.loss_cap) == (6, 10.0, 1e6)
    assert policy.screening.duplicate_cosine == 0.99 and policy.max_samples_per_update == 100_000_000


def test_optional_sections_round_trip():
    obj = {**mnist_spec().to_json_obj(), "privacy": {"epsilon_cap": 8.0}, "unlabelled": {}}
    spec = TaskSpec.from_json_bytes(json.dumps(obj))
    assert spec.privacy is not None and spec.privacy.delta == 1e-5 and spec.unlabelled.confidence_threshold == 0.95
    assert TaskSpec.from_json_bytes(spec.to_json_bytes()) == spec


# ---------------------------------------------------------------- checks that need the learning layer


def test_check_spec_accepts_the_presets():
    for arch in ("cnn", "mlp"):
        check_spec(mnist_spec(arch), max_contributors=5)
    check_spec(TaskSpec.from_json_bytes(json.dumps({**mnist_spec().to_json_obj(), "unlabelled": {}})))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"architecture": "resnet"}, "architecture: unknown architecture 'resnet'; known architectures: char-lstm, cnn, mlp"),
        ({"model_config": {"channels": [16], "depth": 3}}, "architecture: bad model_config"),
        ({"input_shape": [784]}, "cnn needs a \\(channels, height, width\\) input_shape"),
        ({"privacy": {"epsilon_cap": 1.0, "accountant_version": "opacus-0.9"}},
         "privacy.accountant_version is 'opacus-0.9' but this fedchain computes with 'opacus-1.6.0'"),
        ({"unlabelled": {}, "privacy": {"epsilon_cap": 1.0}},
         "unlabelled: pseudo-labelling with differential privacy is not designed yet"),
    ],
)
def test_check_spec_refuses_a_spec_whose_model_or_trainer_cannot_run(change, message):
    spec = TaskSpec.from_json_bytes(json.dumps({**mnist_spec().to_json_obj(), **change}))
    with pytest.raises(SpecError, match=message):
        check_spec(spec)


def test_check_spec_refuses_a_multi_krum_that_a_full_round_cannot_satisfy():
    spec = mnist_spec(aggregation={"rule": "multi-krum", "f": 50})
    with pytest.raises(SpecError, match="multi-krum with f=50 needs at least 103 contributors"):
        check_spec(spec, max_contributors=5)
    check_spec(mnist_spec(aggregation={"rule": "multi-krum", "f": 1}), max_contributors=5)


# ---------------------------------------------------------------- the next-token kind and its text section


def test_the_text_preset_round_trips_and_reads_printable_ascii():
    spec = shakespeare_spec(sealing_keys=[KEY])
    assert TaskSpec.from_json_bytes(spec.to_json_bytes()) == spec
    obj = spec.to_json_obj()
    assert obj["kind"] == "next-token" and obj["input_shape"] == [80] and obj["num_classes"] == 95
    assert obj["text"] == {"vocabulary": PRINTABLE_ASCII, "unknown": None}
    assert mnist_spec().to_json_obj()["text"] is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"text": None}, "a next-token task needs a text section"),
        ({"num_classes": 96}, "num_classes is its vocabulary's size, 95, got 96"),
        ({"input_shape": [1, 80]}, r"input_shape is \(window,\), one number, got \[1, 80\]"),
        ({"text": {"vocabulary": "abca"}}, "text.vocabulary: characters listed more than once: \\['a'\\]"),
        ({"text": {"vocabulary": "ab\t"}}, "text.vocabulary: characters that text never holds"),
        ({"text": {"vocabulary": PRINTABLE_ASCII, "unknown": "é"}}, "unknown must be one character of the vocabulary"),
        ({"kind": "classification"}, "text: only a next-token task reads text"),
        ({"kind": "regression"}, "kind"),
    ],
)
def test_a_next_token_spec_must_fit_its_vocabulary(change, message):
    obj = {**shakespeare_spec().to_json_obj(), **change}
    with pytest.raises(SpecError, match=message):
        TaskSpec.model_validate(obj)
