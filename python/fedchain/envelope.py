"""Update envelopes and model files: safetensors (never pickle), deterministic bytes, strict validation.

An update is the delta (trained - base) of every float32 tensor of the task's model, plus who made it for which
task, round and base model. Bytes are deterministic: safetensors orders tensors by dtype then name (all float32
here, so by name), and every piece of metadata is one canonical JSON value (sorted keys, no spaces) under one
safetensors metadata key, because safetensors keeps no stable order for several keys.

    data = encode_update(UpdateEnvelope(task_id=1, round=0, base_model_cid=cid, num_samples=500,
                                        contributor="0xAbC…", tensors={"fc.weight": delta}))
    env = decode_update(data, expected={"fc.weight": ((10, 784), "float32")}, max_bytes=64 << 20)

Each decoding failure raises its own EnvelopeError subclass whose `reason` goes into a validator's report.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save

from fedchain.errors import FedchainError

FORMAT_VERSION = 1
METADATA_KEY = "fedchain"
UPDATE_FORMAT = "fedchain-update"
MODEL_FORMAT = "fedchain-model"
DEFAULT_MAX_BYTES = 256 << 20
_MAX_HEADER = 16 << 20
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")

TensorSpec = Mapping[str, tuple[tuple[int, ...], str]]
"""Tensor name → (shape, dtype name such as "float32")."""


# ---------------------------------------------------------------- errors


class EnvelopeError(FedchainError, ValueError):
    """Raised when an update envelope or model file cannot be encoded or is not acceptable; see `reason`."""

    reason: ClassVar[str] = "malformed"


class MalformedEnvelopeError(EnvelopeError):
    """Raised when the bytes are not a safetensors file (truncated, garbage, bad header or offsets)."""

    reason = "malformed"


class EnvelopeTooLargeError(EnvelopeError):
    """Raised when the file is bigger than the cap."""

    reason = "too-large"


class UnexpectedTensorError(EnvelopeError):
    """Raised when the file holds a tensor the model spec does not name."""

    reason = "unexpected-tensor"


class MissingTensorError(EnvelopeError):
    """Raised when a tensor of the model spec is absent."""

    reason = "missing-tensor"


class WrongShapeError(EnvelopeError):
    """Raised when a tensor's shape differs from the model spec."""

    reason = "wrong-shape"


class WrongDtypeError(EnvelopeError):
    """Raised when a tensor's dtype differs from the model spec (updates are float32)."""

    reason = "wrong-dtype"


class NonFiniteError(EnvelopeError):
    """Raised when a tensor holds NaN or an infinity."""

    reason = "non-finite"


class BadMetadataError(EnvelopeError):
    """Raised when the fedchain metadata is missing, not canonical JSON, or has a wrong field."""

    reason = "bad-metadata"


# ---------------------------------------------------------------- the envelope


def _checksum_address(address: str) -> str:
    if not isinstance(address, str) or not _ADDRESS.fullmatch(address):
        raise BadMetadataError(f"contributor must be a 0x-prefixed 20-byte hex address, got {address!r:.60}")
    from eth_utils import to_checksum_address  # keccak; imported here to keep module import light

    checksummed = to_checksum_address(address)
    if address != checksummed and address not in (address.lower(), "0x" + address[2:].upper()):
        raise BadMetadataError(f"contributor {address} has a wrong EIP-55 checksum (expected {checksummed})")
    return checksummed


def _check_cid(value: str) -> None:
    from fedchain.content.cid import parse_cid
    from fedchain.content.errors import InvalidCidError

    try:
        parse_cid(value)
    except InvalidCidError as exc:
        raise BadMetadataError(f"base_model_cid: {exc}") from None


def _check_uint(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BadMetadataError(f"{name} must be a non-negative integer, got {value!r:.60}")


@dataclass(frozen=True, eq=False)  # eq=False: comparing dicts of tensors with == is ambiguous
class UpdateEnvelope:
    """One contributor's update for one round: float32 deltas (trained - base) by tensor name."""

    task_id: int
    round: int
    base_model_cid: str
    num_samples: int
    contributor: str  # 0x EIP-55 checksum address (a lower-case address is normalised to it)
    tensors: dict[str, torch.Tensor] = field(repr=False)

    def __post_init__(self) -> None:
        for name in ("task_id", "round", "num_samples"):
            _check_uint(name, getattr(self, name))
        _check_cid(self.base_model_cid)
        object.__setattr__(self, "contributor", _checksum_address(self.contributor))

    def metadata(self) -> dict[str, Any]:
        return {
            "format": UPDATE_FORMAT,
            "version": FORMAT_VERSION,
            "task_id": self.task_id,
            "round": self.round,
            "base_model_cid": self.base_model_cid,
            "num_samples": self.num_samples,
            "contributor": self.contributor,
        }


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, ASCII only, no NaN: the same value always gives the same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


# ---------------------------------------------------------------- encoding


def _prepare(tensors: Mapping[str, torch.Tensor], only_dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    if not tensors:
        raise EnvelopeError("no tensors to encode")
    out: dict[str, torch.Tensor] = {}
    for name in sorted(tensors):
        t = tensors[name]
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise EnvelopeError(f"invalid tensor name {name!r}")
        if not isinstance(t, torch.Tensor):
            raise EnvelopeError(f"{name} is a {type(t).__name__}, not a torch.Tensor")
        if only_dtype is not None and t.dtype != only_dtype:
            raise WrongDtypeError(f"{name} is {dtype_name(t.dtype)}; updates carry {dtype_name(only_dtype)} deltas")
        out[name] = t.detach().to("cpu").contiguous()
    return out


def _save(tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> bytes:
    return _st_save(tensors, metadata={METADATA_KEY: canonical_json(metadata)})


def encode_update(env: UpdateEnvelope) -> bytes:
    """The envelope as safetensors bytes; identical content gives identical bytes.

    Non-finite values are not refused here (decode_update refuses them), so tests can build bad updates.
    """
    return _save(_prepare(env.tensors, torch.float32), env.metadata())


def encode_model(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, Any]) -> bytes:
    """A global model as safetensors bytes with `metadata` (any JSON object) stored canonically."""
    try:
        meta = {"format": MODEL_FORMAT, "version": FORMAT_VERSION, "metadata": dict(metadata)}
        canonical_json(meta)
    except (TypeError, ValueError) as exc:
        raise BadMetadataError(f"model metadata must be a JSON object: {exc}") from None
    return _save(_prepare(tensors, None), meta)


# ---------------------------------------------------------------- decoding


def _header(data: bytes, max_bytes: int) -> dict[str, Any]:
    if len(data) > max_bytes:
        raise EnvelopeTooLargeError(f"file is {len(data)} bytes, over the cap of {max_bytes}")
    if len(data) < 8:
        raise MalformedEnvelopeError(f"file is {len(data)} bytes: too short for a safetensors header")
    (n,) = struct.unpack("<Q", data[:8])
    if n > min(len(data) - 8, _MAX_HEADER):
        raise MalformedEnvelopeError(f"safetensors header length {n} runs past the end of the {len(data)}-byte file")
    try:
        header = json.loads(bytes(data[8 : 8 + n]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedEnvelopeError(f"safetensors header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise MalformedEnvelopeError("safetensors header is not a JSON object")
    return header


def _metadata(header: dict[str, Any], expected_format: str) -> dict[str, Any]:
    raw = header.get("__metadata__")
    if not isinstance(raw, dict) or set(raw) != {METADATA_KEY} or not isinstance(raw[METADATA_KEY], str):
        raise BadMetadataError(f"expected exactly one metadata key {METADATA_KEY!r} holding canonical JSON")
    try:
        meta = json.loads(raw[METADATA_KEY])
    except ValueError as exc:
        raise BadMetadataError(f"metadata is not JSON: {exc}") from None
    if not isinstance(meta, dict) or canonical_json(meta) != raw[METADATA_KEY]:
        raise BadMetadataError("metadata is not a canonical JSON object")
    if meta.get("format") != expected_format:
        raise BadMetadataError(f"format is {meta.get('format')!r}, expected {expected_format!r}")
    if meta.get("version") != FORMAT_VERSION:
        raise BadMetadataError(f"format version {meta.get('version')!r} is not supported (expected {FORMAT_VERSION})")
    return meta


def _check_spec(header: dict[str, Any], expected: TensorSpec) -> None:
    """Names, dtypes and shapes from the header alone, before any tensor is materialised."""
    entries = {k: v for k, v in header.items() if k != "__metadata__"}
    for name in sorted(entries):
        if name not in expected:
            raise UnexpectedTensorError(f"tensor {name!r} is not in the model spec")
    for name in sorted(expected):
        if name not in entries:
            raise MissingTensorError(f"tensor {name!r} of the model spec is missing")
        entry = entries[name]
        if not isinstance(entry, dict):
            raise MalformedEnvelopeError(f"header entry of {name!r} is not an object")
        shape, dtype = expected[name]
        got_dtype = _ST_DTYPES.get(str(entry.get("dtype")), str(entry.get("dtype")))
        if got_dtype != dtype:
            raise WrongDtypeError(f"{name} is {got_dtype}, expected {dtype}")
        if list(entry.get("shape", [])) != list(shape):
            raise WrongShapeError(f"{name} has shape {tuple(entry.get('shape', []))}, expected {tuple(shape)}")


_ST_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
              "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


def _load(data: bytes) -> dict[str, torch.Tensor]:
    try:
        tensors = _st_load(bytes(data))
    except (SafetensorError, ValueError, RuntimeError, TypeError) as exc:
        raise MalformedEnvelopeError(f"not a valid safetensors file: {exc}") from None
    return {name: tensors[name] for name in sorted(tensors)}


def _check_finite(tensors: Mapping[str, torch.Tensor]) -> None:
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise NonFiniteError(f"{name} holds NaN or infinite values")


def decode_update(data: bytes, expected: TensorSpec, max_bytes: int = DEFAULT_MAX_BYTES) -> UpdateEnvelope:
    """Parse and validate an update against the task's model spec.

    Raises:
        EnvelopeError: one subclass per failure, checked in this order: too-large, malformed, bad-metadata,
            unexpected-tensor / missing-tensor, wrong-dtype, wrong-shape, malformed (offsets), non-finite.
    """
    header = _header(data, max_bytes)
    meta = _metadata(header, UPDATE_FORMAT)
    extra = set(meta) - {"format", "version", "task_id", "round", "base_model_cid", "num_samples", "contributor"}
    if extra:
        raise BadMetadataError(f"unknown metadata fields {sorted(extra)}")
    _check_spec(header, expected)
    tensors = _load(data)
    _check_finite(tensors)
    try:
        env = UpdateEnvelope(meta.get("task_id"), meta.get("round"), meta.get("base_model_cid"),  # type: ignore[arg-type]
                             meta.get("num_samples"), meta.get("contributor"), tensors)  # type: ignore[arg-type]
    except TypeError as exc:
        raise BadMetadataError(str(exc)) from None
    if env.contributor != meta.get("contributor"):
        raise BadMetadataError(f"contributor {meta.get('contributor')} is not in EIP-55 checksum form")
    return env


def decode_model(data: bytes, expected: TensorSpec | None = None,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Parse a global model file; return (tensors by name, the metadata given to encode_model)."""
    header = _header(data, max_bytes)
    meta = _metadata(header, MODEL_FORMAT)
    if not isinstance(meta.get("metadata"), dict):
        raise BadMetadataError("model metadata must be a JSON object")
    if expected is not None:
        _check_spec(header, expected)
    tensors = _load(data)
    _check_finite(tensors)
    return tensors, meta["metadata"]


def spec_of(tensors: Mapping[str, torch.Tensor]) -> dict[str, tuple[tuple[int, ...], str]]:
    """The TensorSpec describing `tensors` (handy to build a task's model spec from a model)."""
    return {name: (tuple(t.shape), dtype_name(t.dtype)) for name, t in sorted(tensors.items())}
