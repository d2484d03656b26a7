"""Sealed envelopes: only a recipient opens them; tampering, truncation and replays are refused."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fedchain.core.keys import public_key_bytes
from fedchain.core.sealing import CHUNK_SIZE, SealBinding, SealError, open_sealed, read_binding, seal

BINDING = SealBinding(task_id=3, round=1, contributor="0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed")


@pytest.fixture(scope="module")
def keys() -> list[X25519PrivateKey]:
    return [X25519PrivateKey.generate() for _ in range(3)]


def _reason(fn: object, *args: object) -> str:
    with pytest.raises(SealError) as info:
        fn(*args)  # type: ignore[operator]
    return info.value.reason


@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, 2 * CHUNK_SIZE + 5])
def test_every_recipient_opens_it(keys: list[X25519PrivateKey], size: int) -> None:
    plaintext = os.urandom(size)
    sealed = seal(plaintext, [public_key_bytes(k) for k in keys[:2]], BINDING)
    for k in keys[:2]:
        assert open_sealed(sealed, k, BINDING) == plaintext


def test_binding_is_readable_without_a_key(keys: list[X25519PrivateKey]) -> None:
    sealed = seal(b"x", [public_key_bytes(keys[0])], BINDING)
    assert read_binding(sealed) == BINDING


def test_two_seals_of_the_same_update_differ(keys: list[X25519PrivateKey]) -> None:
    pubs = [public_key_bytes(keys[0])]
    assert seal(b"same", pubs, BINDING) != seal(b"same", pubs, BINDING)


def test_wrong_key_is_not_a_recipient(keys: list[X25519PrivateKey]) -> None:
    sealed = seal(b"secret", [public_key_bytes(keys[0])], BINDING)
    assert _reason(open_sealed, sealed, keys[2], BINDING) == "not-a-recipient"


@pytest.mark.parametrize(
    "other",
    [SealBinding(3, 2, BINDING.contributor), SealBinding(4, 1, BINDING.contributor),
     SealBinding(3, 1, "0x0000000000000000000000000000000000000001")],
)
def test_replay_under_another_round_task_or_contributor(keys: list[X25519PrivateKey], other: SealBinding) -> None:
    sealed = seal(b"secret", [public_key_bytes(keys[0])], BINDING)
    assert _reason(open_sealed, sealed, keys[0], other) == "binding-mismatch"


def test_contributor_case_does_not_matter(keys: list[X25519PrivateKey]) -> None:
    sealed = seal(b"ok", [public_key_bytes(keys[0])], BINDING)
    lower = SealBinding(3, 1, BINDING.contributor.lower())
    assert open_sealed(sealed, keys[0], lower) == b"ok"


def test_edited_binding_in_the_header_is_detected(keys: list[X25519PrivateKey]) -> None:
    sealed = seal(b"secret", [public_key_bytes(keys[0])], BINDING)
    forged = sealed.replace(b'"round":1', b'"round":2', 1)
    assert _reason(open_sealed, forged, keys[0], SealBinding(3, 2, BINDING.contributor)) == "tampered"


@pytest.mark.parametrize("where", [-1, -17, -CHUNK_SIZE - 100])
def test_flipped_ciphertext_bit_is_tampering(keys: list[X25519PrivateKey], where: int) -> None:
    sealed = bytearray(seal(os.urandom(2 * CHUNK_SIZE), [public_key_bytes(keys[0])], BINDING))
    sealed[where] ^= 1
    assert _reason(open_sealed, bytes(sealed), keys[0], BINDING) == "tampered"


@pytest.mark.parametrize("keep_chunks", [0, 1])
def test_truncation_at_a_chunk_boundary_is_tampering(keys: list[X25519PrivateKey], keep_chunks: int) -> None:
    sealed = seal(os.urandom(2 * CHUNK_SIZE), [public_key_bytes(keys[0])], BINDING)
    body = len(sealed) - 2 * (CHUNK_SIZE + 16)
    cut = sealed[: body + keep_chunks * (CHUNK_SIZE + 16)]
    assert _reason(open_sealed, cut, keys[0], BINDING) == "tampered"


def test_plain_bytes_are_not_sealed(keys: list[X25519PrivateKey]) -> None:
    assert _reason(open_sealed, b"safetensors bytes", keys[0], BINDING) == "not-sealed"
    assert _reason(read_binding, b"") == "not-sealed"


@pytest.mark.parametrize("data", [b"FCSEAL2\n", b"FCSEAL2\n\x00\x00\x00\x05{}", b"FCSEAL2\n\xff\xff\xff\xff{}"])
def test_broken_header_is_malformed(data: bytes) -> None:
    assert _reason(read_binding, data) == "malformed"


def test_recipient_keys_must_be_32_bytes() -> None:
    with pytest.raises(SealError):
        seal(b"x", [b"short"], BINDING)
    with pytest.raises(SealError):
        seal(b"x", [], BINDING)


def _equivocating_seal(plaintext: bytes, keys: list[X25519PrivateKey], header_key: bytes, other_key: bytes,
                       plaintext_commitment: str | None = None) -> bytes:
    """A sender's forgery: the header commits to `header_key`, but recipient 1 is given `other_key`."""
    import hashlib
    import struct

    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    from fedchain.core import sealing as s

    ephemeral = X25519PrivateKey.generate()
    eph_pub = s._raw_public(ephemeral.public_key())
    core = {"v": s.VERSION, "alg": s.ALGORITHM, "chunk": s.CHUNK_SIZE, "epk": eph_pub.hex(), **BINDING.as_json(),
            "kc": s._key_commitment(header_key),
            "pc": plaintext_commitment or s._plaintext_commitment(header_key, plaintext)}
    wrapped = []
    for key, content_key in ((keys[0], header_key), (keys[1], other_key)):
        pub = public_key_bytes(key)
        kek = s._kek(ephemeral.exchange(key.public_key()), eph_pub, pub)
        wrapped.append({"kid": s._key_id(pub),
                        "key": ChaCha20Poly1305(kek).encrypt(s._ZERO_NONCE, content_key, s._canonical(core)).hex()})
    header = s._canonical({**core, "recipients": wrapped})
    chunk = ChaCha20Poly1305(header_key).encrypt(s._nonce(0, True), plaintext, hashlib.sha256(header).digest())
    return s.MAGIC + struct.pack(">I", len(header)) + header + chunk


def test_a_recipient_given_another_content_key_than_the_header_commits_to_refuses_it(keys):
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    key_a, key_b = ChaCha20Poly1305.generate_key(), ChaCha20Poly1305.generate_key()
    sealed = _equivocating_seal(b"update", keys, key_a, key_b)
    assert open_sealed(sealed, keys[0], BINDING) == b"update"
    with pytest.raises(SealError, match="not the one the header commits to") as info:
        open_sealed(sealed, keys[1], BINDING)
    assert info.value.reason == "tampered"


def test_a_plaintext_that_is_not_the_committed_one_is_refused(keys):
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    key = ChaCha20Poly1305.generate_key()
    sealed = _equivocating_seal(b"update", keys, key, key, plaintext_commitment="00" * 32)
    with pytest.raises(SealError, match="plaintext is not the one the header commits to"):
        open_sealed(sealed, keys[0], BINDING)


def test_the_plaintext_commitment_cannot_be_tested_without_the_key(keys):
    import hashlib
    import json
    import struct

    sealed = seal(b"\x00" * 64, [public_key_bytes(keys[0])], BINDING)
    (n,) = struct.unpack(">I", sealed[8:12])
    header = json.loads(sealed[12 : 12 + n])
    assert header["pc"] != hashlib.sha256(b"\x00" * 64).hexdigest()  # keyed by the content key
