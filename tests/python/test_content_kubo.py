"""The client against a real Kubo daemon, when FEDCHAIN_TEST_KUBO_API names one (skipped otherwise)."""

from __future__ import annotations

import os
import random

import pytest

from fedchain.content.client import IpfsClient
from fedchain.content.unixfs import AddOptions, compute_cid

KUBO_API = os.environ.get("FEDCHAIN_TEST_KUBO_API")
pytestmark = pytest.mark.skipif(not KUBO_API, reason="set FEDCHAIN_TEST_KUBO_API=http://HOST:5001 to test against Kubo")


@pytest.fixture()
def kubo() -> IpfsClient:
    assert KUBO_API
    return IpfsClient(KUBO_API, timeout=60)


@pytest.mark.parametrize("size", [0, 11, 262_145, 174 * 262_144 + 1])
def test_kubo_gives_our_cids_and_the_bytes_back(kubo: IpfsClient, size: int) -> None:
    data = random.Random(size).randbytes(size)
    for version in (0, 1):
        cid = kubo.add_bytes(data, options=AddOptions(cid_version=version))
        assert cid == compute_cid(data, cid_version=version)
        assert kubo.cat(cid) == data


def test_kubo_pins(kubo: IpfsClient) -> None:
    cid = kubo.add_bytes(b"fedchain kubo pin test")
    assert kubo.pin_ls(cid, type="recursive")[cid] == "recursive"
    kubo.pin_rm(cid)
    assert kubo.version()["Version"]
