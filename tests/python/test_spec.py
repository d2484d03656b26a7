"""fedchain.spec: the task spec document."""

import json

import pytest

from fedchain.spec import ScoringConfig, SpecError, TaskSpec, TrainingConfig, load_spec_file, mnist_spec

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
    assert obj["format"] == "fedchain-task-spec/1" and obj["model_config"]["channels"] == [16, 32]


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
        ({"architecture": "resnet"}, "unknown architecture; known: cnn, mlp"),
        ({"input_shape": [1, 0, 28]}, "input_shape: every dimension must be >= 1"),
        ({"num_classes": 1}, "num_classes: Input should be greater than or equal to 2"),
        ({"validator_sealing_keys": ["abcd"]}, "64 hex characters"),
        ({"validator_sealing_keys": []}, "sealed task needs at least one"),
        ({"aggregation": {"beta": 0.1}}, "must name its rule"),
        ({"format": "fedchain-task-spec/2"}, "format: Input should be 'fedchain-task-spec/1'"),
        ({"colour": "blue"}, "colour: unknown field"),
        ({"training": {"learning_rate": 0}}, "training.learning_rate: Input should be greater than 0"),
        ({"training": {"optimizer": "rmsprop"}}, "training.optimizer"),
        ({"scoring": {"method": "loo"}}, "scoring.method"),
        ({"max_update_bytes": 0}, "max_update_bytes"),
    ],
)
def test_invalid_spec_rejected_with_field_in_message(change, message):
    obj = {**mnist_spec(sealing_keys=[KEY]).to_json_obj(), **change}
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace("[", r"\[")):
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
    with pytest.raises(Exception):
        spec.name = "other"  # type: ignore[misc]


def test_unsealed_spec_needs_no_keys():
    assert mnist_spec().sealed is False
    assert mnist_spec(sealing_keys=[KEY]).sealed is True


def test_num_parameters_of_default_cnn():
    assert mnist_spec().num_parameters() == 43_082
