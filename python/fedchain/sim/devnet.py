"""The local devnet: Anvil plus the embedded IPFS node, contracts deployed, test accounts funded.

    fedchain devnet            # runs until Ctrl-C
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from eth_account import Account
from eth_account.signers.local import LocalAccount

from fedchain.errors import FedchainError

if TYPE_CHECKING:
    from fedchain.chain.client import Chain
    from fedchain.chain.deployments import Deployments

log = logging.getLogger(__name__)

# Anvil's well-known development mnemonic: throwaway keys for a local chain only, never for real funds.
DEV_MNEMONIC = "test test test test test test test test test test test junk"
_CHECKOUT_ROOT = Path(__file__).resolve().parents[3]


class DevnetError(FedchainError):
    """Raised when the devnet's processes cannot be started."""


def dev_account(index: int) -> LocalAccount:
    """The `index`-th account of the development mnemonic (funded with ETH by Anvil)."""
    Account.enable_unaudited_hdwallet_features()
    return Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")


def find_anvil() -> str:
    """An Anvil already on PATH (foundryup) wins; otherwise the npm package's binary in the checkout."""
    if found := shutil.which("anvil"):
        return found
    bundled = _CHECKOUT_ROOT / "node_modules" / ".bin" / "anvil"
    if bundled.exists():
        return str(bundled)
    raise DevnetError("no anvil binary: run `make setup` (installs it from npm) or install Foundry")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class AnvilProcess:
    port: int
    process: subprocess.Popen
    rpc_url: str = field(init=False)

    def __post_init__(self) -> None:
        self.rpc_url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_anvil(port: int | None = None, *, chain_id: int = 31337, accounts: int = 30, log_path: Path | None = None) -> AnvilProcess:
    """Start Anvil on loopback and wait until it answers JSON-RPC."""
    port = port or free_port()
    if port_in_use(port):
        raise DevnetError(f"port {port} is already in use: is a devnet already running? Choose another with --anvil-port")
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    cmd = [
        find_anvil(), "--host", "127.0.0.1", "--port", str(port), "--chain-id", str(chain_id),
        "--accounts", str(accounts), "--mnemonic", DEV_MNEMONIC, "--silent",
    ]
    process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    handle = AnvilProcess(port, process)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DevnetError(f"anvil exited with code {process.returncode} (command: {' '.join(cmd[:5])} ...)")
        if port_in_use(port):
            return handle
        time.sleep(0.05)
    handle.stop()
    raise DevnetError(f"anvil did not start listening on port {port} within 20 s")


@dataclass
class Devnet:
    rpc_url: str
    ipfs_api: str
    deployments_path: Path
    deployments: Deployments
    chain: Chain


DEV_FED_GRANT = 1_000_000 * 10**18  # FED minted to each funded development account


def fund_dev_accounts(net: Devnet, count: int, amount: int = DEV_FED_GRANT) -> list[str]:
    """Mint FED to the first `count` development accounts (Anvil already gave them ETH)."""
    from fedchain.chain.protocol import Protocol

    protocol = Protocol(net.chain, net.deployments)
    deployer = dev_account(0)
    funded = []
    for index in range(count):
        address = dev_account(index).address
        net.chain.send(protocol.token.functions.mint(address, amount), deployer, action="mint")
        funded.append(str(address))
    return funded


@contextlib.contextmanager
def running_devnet(
    workdir: Path,
    *,
    anvil_port: int | None = None,
    ipfs_port: int | None = None,
    deployments_path: Path | None = None,
) -> Iterator[Devnet]:
    """Start Anvil and the embedded IPFS node, deploy the contracts, and stop everything on exit."""
    from fedchain.chain.client import Chain
    from fedchain.chain.deploy import deploy_all
    from fedchain.content.node import start_node_process

    workdir.mkdir(parents=True, exist_ok=True)
    anvil = start_anvil(anvil_port, log_path=workdir / "anvil.log")
    ipfs = None
    try:
        ipfs = start_node_process(workdir / "ipfs", port=ipfs_port or free_port())
        chain = Chain(anvil.rpc_url)
        deployments = deploy_all(chain, dev_account(0), network="local")
        path = deployments_path or workdir / "deployments.json"
        deployments.save(path)
        yield Devnet(anvil.rpc_url, ipfs.api_url, path, deployments, chain)
    finally:
        if ipfs is not None:
            ipfs.stop()
        anvil.stop()
