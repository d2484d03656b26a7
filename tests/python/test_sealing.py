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


@pytest.mark.parametrize("data", [b"FCSEAL1\n", b"FCSEAL1\n\x00\x00\x00\x05{}", b"FCSEAL1\n\xff\xff\xff\xff{}"])
def test_broken_header_is_malformed(data: bytes) -> None:
    assert _reason(read_binding, data) == "malformed"


def test_recipient_keys_must_be_32_bytes() -> None:
    with pytest.raises(SealError):
        seal(b"x", [b"short"], BINDING)
    with pytest.raises(SealError):
        seal(b"x", [], BINDING)
