"""CID parsing and the CIDv0 <-> chain digest convention."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedchain.content.errors import InvalidCidError
from fedchain.core.cid import (
    DAG_PB,
    RAW,
    cid_from_bytes,
    cid_to_digest,
    cid_to_v0,
    cid_to_v1,
    digest_to_cid,
    parse_cid,
    parse_ipfs_path,
)

HELLO_V0 = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
HELLO_RAW_V1 = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"


def test_v0_round_trips_through_the_digest() -> None:
    digest = cid_to_digest(HELLO_V0)
    assert len(digest) == 32
    assert digest_to_cid(digest) == HELLO_V0


@given(st.binary(min_size=32, max_size=32))
def test_any_digest_round_trips(digest: bytes) -> None:
    assert cid_to_digest(digest_to_cid(digest)) == digest


def test_v1_dag_pb_gives_the_same_digest_as_its_v0() -> None:
    v1 = cid_to_v1(HELLO_V0)
    assert v1.startswith("bafybei")
    assert cid_to_digest(v1) == cid_to_digest(HELLO_V0)
    assert cid_to_v0(v1) == HELLO_V0


def test_raw_cid_has_no_chain_digest() -> None:
    with pytest.raises(InvalidCidError, match="raw"):
        cid_to_digest(HELLO_RAW_V1)


def test_raw_v1_parses_to_sha256_of_the_bytes() -> None:
    cid = parse_cid(HELLO_RAW_V1)
    assert (cid.version, cid.codec) == (1, RAW)
    assert cid.digest == hashlib.sha256(b"hello world").digest()
    assert cid.encode() == HELLO_RAW_V1


def test_other_multibases_parse_to_the_same_cid() -> None:
    cid = parse_cid(HELLO_RAW_V1)
    assert parse_cid("f" + cid.to_bytes().hex()) == cid
    assert parse_cid(HELLO_RAW_V1.upper()) == cid


def test_binary_form_round_trips() -> None:
    for text in (HELLO_V0, HELLO_RAW_V1, cid_to_v1(HELLO_V0)):
        cid = parse_cid(text)
        assert cid_from_bytes(cid.to_bytes()) == cid
    assert parse_cid(HELLO_V0).codec == DAG_PB


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "Qm",
        HELLO_V0[:-1],
        HELLO_V0 + "a",
        HELLO_V0[:-1] + "0",  # '0' is not base58
        "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5",  # truncated
        "xafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e",  # unknown multibase
        "b" + "a" * 58,
        "../../etc/passwd",
        "Qm" + "1" * 44,
        "ü" * 46,
        "z" * 500,
    ],
)
def test_invalid_cid_strings_are_refused(text: str) -> None:
    try:
        cid = parse_cid(text)
    except InvalidCidError:
        return
    # A 46-char base58 string that happens to decode to 0x1220+32 bytes is a valid CIDv0 by construction.
    assert cid.encode() == text


@pytest.mark.parametrize("bad", [b"", b"\x00" * 31, b"\x00" * 33, "00" * 32])
def test_digest_to_cid_refuses_wrong_lengths(bad: object) -> None:
    with pytest.raises(InvalidCidError):
        digest_to_cid(bad)  # type: ignore[arg-type]


def test_non_sha256_multihash_is_refused() -> None:
    identity = "f" + (b"\x01\x55\x00\x05hello").hex()
    with pytest.raises(InvalidCidError, match="sha2-256"):
        parse_cid(identity)


@pytest.mark.parametrize(
    "arg",
    ["../" + HELLO_V0, "/etc/passwd", f"/ipfs/{HELLO_V0}/../x", f"{HELLO_V0}/a", "/ipns/example.com",
     f"/ipfs/{HELLO_V0}/..", "..", "/", "C:\\x", f"..\\{HELLO_V0}"],
)
def test_path_tricks_are_refused(arg: str) -> None:
    with pytest.raises(InvalidCidError):
        parse_ipfs_path(arg)


def test_ipfs_prefix_is_accepted() -> None:
    assert parse_ipfs_path(f"/ipfs/{HELLO_V0}").encode() == HELLO_V0
    assert parse_ipfs_path(HELLO_V0).encode() == HELLO_V0
