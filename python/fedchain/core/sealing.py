"""Sealed envelopes: an update encrypted to one or more validators, bound to its task, round and contributor.

Construction (all primitives from `cryptography`):
- a fresh random 32-byte content key and a fresh ephemeral X25519 key pair per envelope;
- per recipient: shared = X25519(ephemeral, recipient); kek = HKDF-SHA256(shared, salt = ephemeral pub ||
  recipient pub, info = "fedchain-seal-v1 key-wrap"); the content key is wrapped with ChaCha20-Poly1305 under kek,
  with the binding (task, round, contributor, ephemeral key) as associated data;
- the plaintext is cut into 1 MiB chunks, each sealed with ChaCha20-Poly1305 under the content key, nonce =
  chunk counter (11 bytes) || last-chunk flag, associated data = sha256 of the whole header. Reordering,
  truncation, extension and any header edit are detected; a 40 MB model never needs one giant AEAD call;
- the header commits to the content key (`kc` = sha256("fedchain-seal-v2 key" || content key)) and to the
  plaintext (`pc` = sha256("fedchain-seal-v2 plaintext" || content key || sha256(plaintext))). ChaCha20-Poly1305
  alone is not key-committing: without these, a sender could wrap different content keys for different recipients
  and show validators of one committee different updates under one CID. Every recipient checks both, so all who
  open an envelope read the same bytes; `pc` is keyed, so outsiders cannot test guesses of a plaintext against it.

Layout: b"FCSEAL2\\n" | u32 big-endian header length | header (canonical JSON, readable) | sealed chunks.
The header shows the claimed binding, so a validator can check it against the chain before decrypting
(`read_binding`); `open_sealed` refuses an envelope whose binding differs from the one expected (a replay under
another task, round or contributor) and, since the binding is authenticated, any edit of it.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fedchain.core.reasons import Reason
from fedchain.errors import FedchainError

MAGIC = b"FCSEAL2\n"
VERSION = 2
ALGORITHM = "X25519-HKDF-SHA256-ChaCha20Poly1305"
CHUNK_SIZE = 1 << 20
TAG_SIZE = 16
_MAX_HEADER = 1 << 20
_MAX_RECIPIENTS = 256
_ZERO_NONCE = bytes(12)


# ---------------------------------------------------------------- errors


class SealError(FedchainError, ValueError):
    """Raised when an envelope cannot be sealed or opened; `reason` is a short code for reports."""

    reason: ClassVar[str] = Reason.MALFORMED


class NotSealedError(SealError):
    """Raised when the bytes are not a sealed envelope at all (no magic prefix)."""

    reason = Reason.NOT_SEALED


class MalformedSealError(SealError):
    """Raised when a sealed envelope's header or chunk layout is broken."""

    reason = Reason.MALFORMED


class NotARecipientError(SealError):
    """Raised when the key given is not one the envelope was sealed to."""

    reason = Reason.NOT_A_RECIPIENT


class TamperedError(SealError):
    """Raised when authentication fails: the header or the ciphertext was changed."""

    reason = Reason.TAMPERED


class BindingMismatchError(SealError):
    """Raised when the envelope is bound to another task, round or contributor than expected (a replay)."""

    reason = Reason.BINDING_MISMATCH


# ---------------------------------------------------------------- the binding


@dataclass(frozen=True)
class SealBinding:
    """What a sealed update is bound to: it cannot be presented under another task, round or contributor."""

    task_id: int
    round: int
    contributor: str  # 0x address; compared case-insensitively

    def as_json(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "round": self.round, "contributor": self.contributor}

    def matches(self, other: SealBinding) -> bool:
        return (self.task_id, self.round, self.contributor.lower()) == (
            other.task_id, other.round, other.contributor.lower())


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _key_id(public: bytes) -> str:
    return hashlib.sha256(b"fedchain-seal-kid" + public).hexdigest()[:16]


def _kek(shared: bytes, ephemeral_pub: bytes, recipient_pub: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral_pub + recipient_pub,
                info=b"fedchain-seal-v1 key-wrap").derive(shared)


def _key_commitment(content_key: bytes) -> str:
    return hashlib.sha256(b"fedchain-seal-v2 key" + content_key).hexdigest()


def _plaintext_commitment(content_key: bytes, plaintext: bytes | memoryview) -> str:
    digest = hashlib.sha256(plaintext).digest()
    return hashlib.sha256(b"fedchain-seal-v2 plaintext" + content_key + digest).hexdigest()


def _nonce(index: int, last: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def _raw_public(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


# ---------------------------------------------------------------- sealing


def seal(plaintext: bytes, recipients: Sequence[bytes], binding: SealBinding) -> bytes:
    """Encrypt `plaintext` to each raw 32-byte X25519 public key in `recipients`, bound to `binding`."""
    if not recipients:
        raise SealError("seal needs at least one recipient public key")
    if len(recipients) > _MAX_RECIPIENTS:
        raise SealError(f"at most {_MAX_RECIPIENTS} recipients, got {len(recipients)}")
    ephemeral = X25519PrivateKey.generate()
    eph_pub = _raw_public(ephemeral.public_key())
    content_key = ChaCha20Poly1305.generate_key()
    core = {"v": VERSION, "alg": ALGORITHM, "chunk": CHUNK_SIZE, "epk": eph_pub.hex(), **binding.as_json(),
            "kc": _key_commitment(content_key), "pc": _plaintext_commitment(content_key, plaintext)}
    core_aad = _canonical(core)
    wrapped = []
    for pub in recipients:
        if not isinstance(pub, (bytes, bytearray)) or len(pub) != 32:
            raise SealError(f"a recipient public key is 32 raw bytes, got {pub!r:.40}")
        shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(bytes(pub)))
        kek = _kek(shared, eph_pub, bytes(pub))
        wrapped.append({"kid": _key_id(bytes(pub)), "key": ChaCha20Poly1305(kek).encrypt(_ZERO_NONCE, content_key, core_aad).hex()})
    header = _canonical({**core, "recipients": wrapped})
    aad = hashlib.sha256(header).digest()
    aead = ChaCha20Poly1305(content_key)
    view = memoryview(plaintext)
    count = max(1, -(-len(view) // CHUNK_SIZE))
    parts = [MAGIC, struct.pack(">I", len(header)), header]
    for i in range(count):
        parts.append(aead.encrypt(_nonce(i, i == count - 1), view[i * CHUNK_SIZE : (i + 1) * CHUNK_SIZE], aad))
    return b"".join(parts)


# ---------------------------------------------------------------- opening


def _parse(sealed: bytes) -> tuple[dict[str, Any], bytes, int]:
    """(header object, header bytes, offset of the first chunk)."""
    if not isinstance(sealed, (bytes, bytearray, memoryview)) or bytes(sealed[: len(MAGIC)]) != MAGIC:
        raise NotSealedError("these bytes are not a fedchain sealed envelope (no FCSEAL2 prefix)")
    if len(sealed) < len(MAGIC) + 4:
        raise MalformedSealError("sealed envelope truncated inside its header length")
    (n,) = struct.unpack(">I", sealed[len(MAGIC) : len(MAGIC) + 4])
    start = len(MAGIC) + 4
    if n > _MAX_HEADER or start + n > len(sealed):
        raise MalformedSealError(f"sealed header length {n} runs past the end of the {len(sealed)}-byte envelope")
    header_bytes = bytes(sealed[start : start + n])
    try:
        header = json.loads(header_bytes)
        if not isinstance(header, dict) or header.get("v") != VERSION or header.get("alg") != ALGORITHM:
            raise ValueError(f"unsupported version or algorithm {header.get('v')!r}/{header.get('alg')!r}")
        int(header["task_id"]), int(header["round"]), str(header["contributor"])
        bytes.fromhex(header["epk"]), bytes.fromhex(header["kc"]), bytes.fromhex(header["pc"])
        if int(header["chunk"]) != CHUNK_SIZE or not isinstance(header["recipients"], list):
            raise ValueError("bad chunk size or recipients")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise MalformedSealError(f"sealed header is not valid: {exc}") from None
    return header, header_bytes, start + n


def read_binding(sealed: bytes) -> SealBinding:
    """The binding an envelope claims (no key needed; authenticated only by open_sealed)."""
    header, _, _ = _parse(sealed)
    return SealBinding(int(header["task_id"]), int(header["round"]), str(header["contributor"]))


def _private(private_key: X25519PrivateKey | bytes) -> X25519PrivateKey:
    if isinstance(private_key, X25519PrivateKey):
        return private_key
    if isinstance(private_key, (bytes, bytearray)) and len(private_key) == 32:
        return X25519PrivateKey.from_private_bytes(bytes(private_key))
    raise SealError("the private key must be an X25519PrivateKey or 32 raw bytes")


def open_sealed(sealed: bytes, private_key: X25519PrivateKey | bytes, expected: SealBinding) -> bytes:
    """Decrypt an envelope sealed to `private_key`, refusing it unless bound to `expected`.

    Raises:
        NotSealedError, MalformedSealError, BindingMismatchError, NotARecipientError, TamperedError.
    """
    header, header_bytes, offset = _parse(sealed)
    claimed = SealBinding(int(header["task_id"]), int(header["round"]), str(header["contributor"]))
    if not claimed.matches(expected):
        raise BindingMismatchError(f"envelope is bound to {claimed}, expected {expected}")
    key = _private(private_key)
    my_pub = _raw_public(key.public_key())
    kid = _key_id(my_pub)
    entries = [r for r in header["recipients"] if isinstance(r, dict) and r.get("kid") == kid]
    if not entries:
        raise NotARecipientError(f"this envelope is not sealed to public key {my_pub.hex()}")
    eph_pub = bytes.fromhex(header["epk"])
    core = {k: v for k, v in header.items() if k != "recipients"}
    try:
        kek = _kek(key.exchange(X25519PublicKey.from_public_bytes(eph_pub)), eph_pub, my_pub)
        content_key = ChaCha20Poly1305(kek).decrypt(_ZERO_NONCE, bytes.fromhex(entries[0]["key"]), _canonical(core))
    except (InvalidTag, ValueError, TypeError):
        raise TamperedError("the wrapped key does not authenticate: the header was changed") from None
    if _key_commitment(content_key) != header["kc"]:
        raise TamperedError("the content key wrapped for this recipient is not the one the header commits to")
    aad = hashlib.sha256(header_bytes).digest()
    aead = ChaCha20Poly1305(content_key)
    body = memoryview(sealed)[offset:]
    step = CHUNK_SIZE + TAG_SIZE
    count = max(1, -(-len(body) // step))
    out = []
    try:
        for i in range(count):
            out.append(aead.decrypt(_nonce(i, i == count - 1), bytes(body[i * step : (i + 1) * step]), aad))
    except InvalidTag:
        raise TamperedError(f"chunk {i} of the envelope does not authenticate: it was changed or cut") from None
    plaintext = b"".join(out)
    if _plaintext_commitment(content_key, plaintext) != header["pc"]:
        raise TamperedError("the plaintext is not the one the header commits to")
    return plaintext


def public_key_of(private_key: X25519PrivateKey | bytes) -> bytes:
    return _raw_public(_private(private_key).public_key())


def random_private_key() -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(os.urandom(32))
