"""Update envelopes and model files: deterministic safetensors bytes, strict validation with reason codes."""

from __future__ import annotations

import json
import struct
import subprocess
import sys

import pytest
import torch

from fedchain.core.envelope import (
    METADATA_KEY,
    EnvelopeError,
    UpdateEnvelope,
    decode_model,
    decode_update,
    encode_model,
    encode_update,
    register_extension,
    spec_of,
)

CID = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
ADDR = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
SPEC = {"fc.bias": ((3,), "float32"), "fc.weight": ((3, 4), "float32")}


def _tensors(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"fc.weight": torch.randn(3, 4, generator=g), "fc.bias": torch.randn(3, generator=g)}


def _env(**overrides: object) -> UpdateEnvelope:
    fields: dict[str, object] = dict(task_id=7, round=0, base_model_cid=CID, num_samples=500, contributor=ADDR,
                                     tensors=_tensors())
    fields.update(overrides)
    return UpdateEnvelope(**fields)  # type: ignore[arg-type]


def _reason(data: bytes, spec: object = SPEC, max_bytes: int = 1 << 20) -> str:
    with pytest.raises(EnvelopeError) as info:
        decode_update(data, spec, max_bytes)  # type: ignore[arg-type]
    return info.value.reason


def _rewrite_metadata(data: bytes, meta_value: str) -> bytes:
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    header["__metadata__"] = {"fedchain": meta_value}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data[8 + n :]


def test_round_trip_keeps_every_field_and_tensor() -> None:
    env = decode_update(encode_update(_env()), SPEC, 1 << 20)
    assert (env.task_id, env.round, env.base_model_cid, env.num_samples, env.contributor) == (7, 0, CID, 500, ADDR)
    for name, t in _tensors().items():
        assert torch.equal(torch.from_numpy(env.tensors[name].copy()), t)


def test_identical_content_gives_identical_bytes_in_another_process() -> None:
    code = (
        "import sys, torch; sys.path[:0] = sys.argv[1:];"
        "from fedchain.core.envelope import UpdateEnvelope, encode_update; import hashlib;"
        "g = torch.Generator().manual_seed(0);"
        "t = {'fc.weight': torch.randn(3, 4, generator=g), 'fc.bias': torch.randn(3, generator=g)};"
        f"e = UpdateEnvelope(7, 0, '{CID}', 500, '{ADDR}', dict(reversed(list(t.items()))));"
        "print(hashlib.sha256(encode_update(e)).hexdigest())"
    )
    outs = {subprocess.run([sys.executable, "-c", code, *sys.path], capture_output=True, text=True,
                           check=True).stdout.strip()}
    import hashlib

    assert outs == {hashlib.sha256(encode_update(_env())).hexdigest()}


def test_lower_case_contributor_is_normalised_to_checksum() -> None:
    assert _env(contributor=ADDR.lower()).contributor == ADDR


@pytest.mark.parametrize(
    "overrides",
    [{"contributor": "0x123"}, {"contributor": ADDR[:-1] + "D"}, {"base_model_cid": "nope"}, {"round": -1},
     {"num_samples": True}, {"task_id": "7"}],
)
def test_bad_fields_are_refused_at_construction(overrides: dict[str, object]) -> None:
    with pytest.raises(EnvelopeError) as info:
        _env(**overrides)
    assert info.value.reason == "bad-metadata"


def test_updates_must_be_float32() -> None:
    with pytest.raises(EnvelopeError) as info:
        encode_update(_env(tensors={"fc.weight": torch.zeros(3, 4, dtype=torch.float64), "fc.bias": torch.zeros(3)}))
    assert info.value.reason == "wrong-dtype"


@pytest.mark.parametrize("data", [b"", b"\x00" * 7, b"garbage garbage garbage", b"\xff" * 64])
def test_garbage_is_malformed(data: bytes) -> None:
    assert _reason(data) == "malformed"


@pytest.mark.parametrize("cut", [8, 20, -1, -16])
def test_truncated_envelope_is_malformed(cut: int) -> None:
    data = encode_update(_env())
    assert _reason(data[:cut]) == "malformed"


def test_oversize_is_refused_before_parsing() -> None:
    assert _reason(encode_update(_env()), max_bytes=100) == "too-large"


def test_wrong_shape() -> None:
    data = encode_update(_env(tensors={"fc.weight": torch.zeros(4, 3), "fc.bias": torch.zeros(3)}))
    assert _reason(data) == "wrong-shape"


def test_wrong_dtype_in_the_file() -> None:
    data = encode_model({"fc.weight": torch.zeros(3, 4, dtype=torch.float16), "fc.bias": torch.zeros(3)}, {})
    spec = {"fc.weight": ((3, 4), "float32"), "fc.bias": ((3,), "float32")}
    with pytest.raises(EnvelopeError) as info:
        decode_model(data, spec)
    assert info.value.reason == "wrong-dtype"


def test_missing_and_unexpected_tensors() -> None:
    only_weight = encode_update(_env(tensors={"fc.weight": torch.zeros(3, 4)}))
    assert _reason(only_weight) == "missing-tensor"
    extra = encode_update(_env(tensors={**_tensors(), "evil": torch.zeros(1)}))
    assert _reason(extra) == "unexpected-tensor"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_values(value: float) -> None:
    t = _tensors()
    t["fc.bias"][1] = value
    assert _reason(encode_update(_env(tensors=t))) == "non-finite"


@pytest.mark.parametrize(
    "meta",
    [
        "not json",
        '{"format":"fedchain-model","version":1,"metadata":{}}',
        json.dumps({"format": "fedchain-update", "version": 1}),  # not canonical (spaces)
        '{"base_model_cid":"x","contributor":"0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed","format":"fedchain-update","num_samples":1,"round":0,"task_id":1,"version":1}',
        '{"base_model_cid":"QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o","contributor":"0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed","format":"fedchain-update","num_samples":1,"round":0,"task_id":1,"version":1}',
        '{"base_model_cid":"QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o","contributor":"0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed","format":"fedchain-update","num_samples":1,"round":0,"task_id":1,"version":2}',
        '{"base_model_cid":"QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o","contributor":"0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed","extra":1,"format":"fedchain-update","num_samples":1,"round":0,"task_id":1,"version":1}',
    ],
)
def test_bad_metadata(meta: str) -> None:
    assert _reason(_rewrite_metadata(encode_update(_env()), meta)) == "bad-metadata"


def test_model_round_trip_with_metadata_and_any_dtype() -> None:
    tensors = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "steps": torch.tensor([3], dtype=torch.int64)}
    data = encode_model(tensors, {"task_id": 1, "round": 2, "arch": "mlp"})
    assert data == encode_model(dict(reversed(list(tensors.items()))), {"arch": "mlp", "round": 2, "task_id": 1})
    got, meta = decode_model(data, spec_of(tensors))
    assert meta == {"task_id": 1, "round": 2, "arch": "mlp"}
    assert (got["w"] == tensors["w"].numpy()).all() and (got["steps"] == tensors["steps"].numpy()).all()
    assert got["steps"].dtype.name == "int64"


def test_a_model_file_is_not_an_update() -> None:
    data = encode_model(_tensors(), {})
    assert _reason(data) == "bad-metadata"


def test_bytes_are_those_of_the_torch_encoding_the_network_already_carries() -> None:
    from safetensors.torch import save

    env = _env()
    old = save({k: env.tensors[k] for k in sorted(env.tensors)}, metadata={METADATA_KEY: canonical(env.metadata())})
    assert encode_update(env) == old


def canonical(meta: dict) -> str:
    return json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _check_demo_record(value: dict) -> dict:
    if set(value) != {"spent"} or not isinstance(value["spent"], int):
        raise ValueError("needs exactly one integer field 'spent'")
    return value


register_extension("demo-record/1", _check_demo_record)


def test_an_update_without_extensions_has_no_extensions_field() -> None:
    assert "extensions" not in _env().metadata()


def test_a_registered_extension_round_trips_in_the_metadata() -> None:
    data = encode_update(_env(extensions={"demo-record/1": {"spent": 3}}))
    env = decode_update(data, SPEC, 1 << 20)
    assert env.extensions == {"demo-record/1": {"spent": 3}}
    assert data != encode_update(_env())


@pytest.mark.parametrize(
    ("extensions", "message"),
    [
        ({"unknown/1": {}}, "unknown extension 'unknown/1'"),
        ({"demo-record/1": {"spent": "x"}}, "needs exactly one integer field"),
        ({"demo-record/1": [1]}, "must be a JSON object"),
    ],
)
def test_unknown_or_invalid_extensions_are_bad_metadata(extensions: dict, message: str) -> None:
    with pytest.raises(EnvelopeError, match=message) as info:
        _env(extensions=extensions)
    assert info.value.reason == "bad-metadata"
    meta = {**_env().metadata(), "extensions": extensions}
    assert _reason(_rewrite_metadata(encode_update(_env()), canonical(meta))) == "bad-metadata"


def test_an_empty_extensions_object_is_refused_on_the_wire() -> None:
    meta = {**_env().metadata(), "extensions": {}}
    assert _reason(_rewrite_metadata(encode_update(_env()), canonical(meta))) == "bad-metadata"


def test_extension_keys_are_versioned_names() -> None:
    with pytest.raises(EnvelopeError, match="name/1"):
        register_extension("NoVersion", _check_demo_record)
