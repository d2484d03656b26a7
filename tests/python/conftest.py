"""Shared fixtures: a real devnet (Anvil + the embedded IPFS node, contracts deployed) for end-to-end tests."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True, scope="session")
def _index_dir(tmp_path_factory):
    """`fedchain status` and `claim` run without --index-dir keep their event index in a temporary folder, not in
    the checkout's .fedchain/."""
    os.environ.setdefault("FEDCHAIN_INDEX_DIR", str(tmp_path_factory.mktemp("index")))


@pytest.fixture(scope="module")
def devnet(tmp_path_factory):
    """Anvil and the embedded IPFS node with fresh deployments; stopped after the module."""
    from fedchain.sim.devnet import running_devnet

    workdir = tmp_path_factory.mktemp("devnet")
    with running_devnet(workdir) as net:
        yield net


@pytest.fixture(scope="module")
def protocol(devnet):
    from fedchain.chain.protocol import Protocol

    return Protocol(devnet.chain, devnet.deployments)


@pytest.fixture(scope="module")
def ipfs(devnet):
    from fedchain.content.client import IpfsClient

    return IpfsClient(devnet.ipfs_api)
