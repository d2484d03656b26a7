"""Update envelopes and model files: safetensors (never pickle), deterministic bytes, strict validation.

Part of the protocol core: NumPy and safetensors only, no torch (tensors are accepted, arrays come out).

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray
from safetensors import SafetensorError
from safetensors.numpy import load as _st_load
from safetensors.numpy import save as _st_save

from fedchain.core.reasons import Reason
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

# Tensors go in as NumPy arrays or torch tensors (converted without importing torch here) and come out as read-only
# NumPy arrays: the protocol core reads and writes envelopes without the learning stack.
ArrayLike = Any
_EXTENSION_KEY = re.compile(r"^[a-z][a-z0-9-]{0,39}/[1-9][0-9]{0,3}$")


# ---------------------------------------------------------------- errors


class EnvelopeError(FedchainError, ValueError):
    """Raised when an update envelope or model file cannot be encoded or is not acceptable; see `reason`."""

    reason: ClassVar[str] = Reason.MALFORMED


class MalformedEnvelopeError(EnvelopeError):
    """Raised when the bytes are not a safetensors file (truncated, garbage, bad header or offsets)."""

    reason = Reason.MALFORMED


class EnvelopeTooLargeError(EnvelopeError):
    """Raised when the file is bigger than the cap."""

    reason = Reason.TOO_LARGE


class UnexpectedTensorError(EnvelopeError):
    """Raised when the file holds a tensor the model spec does not name."""

    reason = Reason.UNEXPECTED_TENSOR


class MissingTensorError(EnvelopeError):
    """Raised when a tensor of the model spec is absent."""

    reason = Reason.MISSING_TENSOR


class WrongShapeError(EnvelopeError):
    """Raised when a tensor's shape differs from the model spec."""

    reason = Reason.WRONG_SHAPE


class WrongDtypeError(EnvelopeError):
    """Raised when a tensor's dtype differs from the model spec (updates are float32)."""

    reason = Reason.WRONG_DTYPE


class NonFiniteError(EnvelopeError):
    """Raised when a tensor holds NaN or an infinity."""

    reason = Reason.NON_FINITE


class BadMetadataError(EnvelopeError):
    """Raised when the fedchain metadata is missing, not canonical JSON, or has a wrong field."""

    reason = Reason.BAD_METADATA


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
    from fedchain.core.cid import InvalidCidError, parse_cid

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
    tensors: dict[str, ArrayLike] = field(repr=False)  # decoded: read-only float32 NumPy arrays
    # Versioned records added by later protocol features ({"name/version": {...}}), e.g. a privacy ledger entry.
    # Absent when empty, so an update without extensions has the same bytes as before extensions existed.
    extensions: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("task_id", "round", "num_samples"):
            _check_uint(name, getattr(self, name))
        _check_cid(self.base_model_cid)
        object.__setattr__(self, "contributor", _checksum_address(self.contributor))
        object.__setattr__(self, "extensions", check_extensions(self.extensions))

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "format": UPDATE_FORMAT,
            "version": FORMAT_VERSION,
            "task_id": self.task_id,
            "round": self.round,
            "base_model_cid": self.base_model_cid,
            "num_samples": self.num_samples,
            "contributor": self.contributor,
        }
        if self.extensions:
            meta["extensions"] = self.extensions
        return meta


# ---------------------------------------------------------------- extensions

# name/version -> a checker that returns the record in canonical form or raises ValueError with what is wrong.
_EXTENSIONS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def register_extension(key: str, check: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Make `key` ("name/version") a known update extension, validated by `check` on encode and decode.

    A new feature adds a new key (or a new version of one); the envelope format itself does not change.
    """
    if not _EXTENSION_KEY.match(key):
        raise EnvelopeError(f"extension key {key!r} must look like 'name/1' (lower-case name, version >= 1)")
    if key in _EXTENSIONS and _EXTENSIONS[key] is not check:
        raise EnvelopeError(f"extension {key!r} is already registered")
    _EXTENSIONS[key] = check


def known_extensions() -> list[str]:
    return sorted(_EXTENSIONS)


def check_extensions(extensions: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each extension known and valid; an unknown one is refused, since two validators must read the same fields."""
    if not isinstance(extensions, Mapping):
        raise BadMetadataError(f"extensions must be a JSON object, got {type(extensions).__name__}")
    out: dict[str, dict[str, Any]] = {}
    for key in sorted(extensions):
        value = extensions[key]
        check = _EXTENSIONS.get(key)
        if check is None:
            known = ", ".join(known_extensions()) or "none"
            raise BadMetadataError(f"unknown extension {key!r} (this fedchain knows: {known})")
        if not isinstance(value, dict):
            raise BadMetadataError(f"extension {key!r} must be a JSON object, got {type(value).__name__}")
        try:
            out[key] = check(value)
        except ValueError as exc:
            raise BadMetadataError(f"extension {key!r}: {exc}") from None
    return out


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, ASCII only, no NaN: the same value always gives the same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def dtype_name(dtype: Any) -> str:
    """"float32" for np.float32, np.dtype("float32") or torch.float32."""
    return str(dtype).removeprefix("torch.").removeprefix("<class 'numpy.").removesuffix("'>")


def _as_array(name: str, t: ArrayLike) -> NDArray[Any]:
    if isinstance(t, np.ndarray):
        return np.ascontiguousarray(t)
    if hasattr(t, "detach") and hasattr(t, "numpy"):  # a torch tensor, converted without importing torch
        try:
            return np.ascontiguousarray(t.detach().cpu().numpy())
        except TypeError as exc:  # e.g. bfloat16, which NumPy has no dtype for
            raise WrongDtypeError(f"{name} is {dtype_name(t.dtype)}, which this format cannot carry") from exc
    raise EnvelopeError(f"{name} is a {type(t).__name__}, not an array or tensor")


def _prepare(tensors: Mapping[str, ArrayLike], only_dtype: str | None) -> dict[str, NDArray[Any]]:
    if not tensors:
        raise EnvelopeError("no tensors to encode")
    out: dict[str, NDArray[Any]] = {}
    for name in sorted(tensors):
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise EnvelopeError(f"invalid tensor name {name!r}")
        t = tensors[name]
        if only_dtype is not None and dtype_name(t.dtype) != only_dtype:
            raise WrongDtypeError(f"{name} is {dtype_name(t.dtype)}; updates carry {only_dtype} deltas")
        out[name] = _as_array(name, t)
    return out


def _save(tensors: dict[str, NDArray[Any]], metadata: dict[str, Any]) -> bytes:
    return _st_save(tensors, metadata={METADATA_KEY: canonical_json(metadata)})


def encode_update(env: UpdateEnvelope) -> bytes:
    """The envelope as safetensors bytes; identical content gives identical bytes.

    Non-finite values are not refused here (decode_update refuses them), so tests can build bad updates.
    """
    return _save(_prepare(env.tensors, "float32"), env.metadata())


def encode_model(tensors: Mapping[str, ArrayLike], metadata: Mapping[str, Any]) -> bytes:
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


def _load(data: bytes) -> dict[str, NDArray[Any]]:
    try:
        tensors = _st_load(bytes(data))
    except (SafetensorError, ValueError, RuntimeError, TypeError) as exc:
        raise MalformedEnvelopeError(f"not a valid safetensors file: {exc}") from None
    return {name: tensors[name] for name in sorted(tensors)}


def _check_finite(tensors: Mapping[str, NDArray[Any]]) -> None:
    for name, t in tensors.items():
        if np.issubdtype(t.dtype, np.floating) and not bool(np.isfinite(t).all()):
            raise NonFiniteError(f"{name} holds NaN or infinite values")


def decode_update(data: bytes, expected: TensorSpec, max_bytes: int = DEFAULT_MAX_BYTES) -> UpdateEnvelope:
    """Parse and validate an update against the task's model spec.

    Raises:
        EnvelopeError: one subclass per failure, checked in this order: too-large, malformed, bad-metadata,
            unexpected-tensor / missing-tensor, wrong-dtype, wrong-shape, malformed (offsets), non-finite.
    """
    header = _header(data, max_bytes)
    meta = _metadata(header, UPDATE_FORMAT)
    extra = set(meta) - {
        "format", "version", "task_id", "round", "base_model_cid", "num_samples", "contributor", "extensions"
    }
    if extra:
        raise BadMetadataError(f"unknown metadata fields {sorted(extra)}")
    if "extensions" in meta and not meta["extensions"]:
        raise BadMetadataError("an empty extensions object must be left out (one content, one encoding)")
    _check_spec(header, expected)
    tensors = _load(data)
    _check_finite(tensors)
    try:
        env = UpdateEnvelope(meta.get("task_id"), meta.get("round"), meta.get("base_model_cid"),  # type: ignore[arg-type]
                             meta.get("num_samples"), meta.get("contributor"), tensors,  # type: ignore[arg-type]
                             meta.get("extensions", {}))
    except TypeError as exc:
        raise BadMetadataError(str(exc)) from None
    if canonical_json(env.extensions) != canonical_json(meta.get("extensions", {})):
        raise BadMetadataError("extensions are not in their canonical form")
    if env.contributor != meta.get("contributor"):
        raise BadMetadataError(f"contributor {meta.get('contributor')} is not in EIP-55 checksum form")
    return env


def decode_model(data: bytes, expected: TensorSpec | None = None,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
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


def spec_of(tensors: Mapping[str, ArrayLike]) -> dict[str, tuple[tuple[int, ...], str]]:
    """The TensorSpec describing `tensors` (handy to build a task's model spec from a model)."""
    return {name: (tuple(t.shape), dtype_name(t.dtype)) for name, t in sorted(tensors.items())}
