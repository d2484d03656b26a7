"""The local devnet: Anvil plus the embedded IPFS node, contracts deployed, test accounts funded.

    fedchain devnet            # runs until Ctrl-C; started again, it resumes the same chain
    fedchain devnet --fresh    # a new chain, and the local state that belonged to the old one cleared

With `persist`, Anvil loads its saved state at start and dumps it at exit (and every few seconds), and the devnet
keeps a record (`devnet.json`: the deployments and their StateBinding) beside it, so a restart resumes the chain
with its tasks, stakes and rewards instead of deploying an empty one. Both children live in sessions of their own
(a Ctrl-C reaches only the devnet, which stops them in order) and get SIGTERM if the devnet itself is killed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from eth_account import Account
from eth_account.signers.local import LocalAccount

from fedchain.errors import FedchainError
from fedchain.state import StateBinding, delete_state, superseded_state, write_json_atomic

if TYPE_CHECKING:
    from fedchain.chain.client import Chain
    from fedchain.chain.deployments import Deployments
    from fedchain.content.node import NodeProcess

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

    def stop(self, timeout: float = 30.0) -> None:
        """SIGINT (Anvil dumps its state, when it keeps one, then exits), SIGKILL if it does not exit in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


STATE_INTERVAL = 5  # seconds between Anvil's state dumps, so that even a killed devnet loses at most this much


def start_anvil(port: int | None = None, *, chain_id: int = 31337, accounts: int = 30, log_path: Path | None = None,
                state_file: Path | None = None) -> AnvilProcess:
    """Start Anvil on loopback and wait until it answers JSON-RPC. With `state_file`, Anvil loads the chain saved
    there (if any) and saves it there again."""
    from fedchain.content.node import die_with_parent

    port = port or free_port()
    if port_in_use(port):
        raise DevnetError(f"port {port} is already in use: is a devnet already running? Choose another with --anvil-port")
    cmd = [
        find_anvil(), "--host", "127.0.0.1", "--port", str(port), "--chain-id", str(chain_id),
        "--accounts", str(accounts), "--mnemonic", DEV_MNEMONIC, "--silent",
    ]
    if state_file is not None:
        cmd += ["--state", str(state_file), "--state-interval", str(STATE_INTERVAL)]
    with open(log_path, "ab") if log_path else contextlib.nullcontext(subprocess.DEVNULL) as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                   preexec_fn=die_with_parent())
    handle = AnvilProcess(port, process)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            hint = f"; could the saved chain {state_file} be damaged? `fedchain devnet --fresh` starts a new one" \
                if state_file is not None and state_file.exists() else ""
            raise DevnetError(f"anvil exited with code {process.returncode} (command: {' '.join(cmd[:5])} ...){hint}")
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
    resumed: bool = False                  # the chain was loaded from a saved state, not deployed anew
    state_file: Path | None = None         # where Anvil saves the chain (None: not kept)
    cleared: list[Path] = field(default_factory=list)  # the old chain and its local state, removed by --fresh
    stale: list[Path] = field(default_factory=list)    # state files of an earlier chain at these addresses, kept
    anvil: AnvilProcess | None = None
    ipfs_node: NodeProcess | None = None
    workdir: Path = Path(".")

    def check_alive(self) -> None:
        """Raise DevnetError, saying which and where its log is, if Anvil or the IPFS node has exited."""
        if self.ipfs_node is not None and (code := self.ipfs_node.proc.poll()) is not None:
            raise DevnetError(f"the IPFS node (pid {self.ipfs_node.pid}) exited with code {code} (its log: "
                              f"{self.workdir / 'ipfs.log'}). Stopping the devnet: start it again (the chain is kept)")
        if self.anvil is not None and (code := self.anvil.process.poll()) is not None:
            raise DevnetError(f"anvil (pid {self.anvil.process.pid}) exited with code {code}: stopping the devnet")


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


def fund_account(chain: Chain, deployments: Deployments, to: str, *, eth: int = 0, fed: int = 0) -> None:
    """Devnet only: send `eth` wei from development account 0 and mint `fed` FED units (it owns FedToken)."""
    from eth_utils import to_checksum_address

    from fedchain.chain.protocol import Protocol

    if not chain.is_dev_chain():
        raise DevnetError(
            f"{chain.rpc_url} is not a devnet (Anvil): there, ask the token's holders for FED and buy or request ETH "
            "for gas; `fedchain account fund` only works on a devnet"
        )
    protocol = Protocol(chain, deployments)
    funder = dev_account(0)
    owner = protocol.token.functions.owner().call()
    if fed and owner != funder.address:
        raise DevnetError(f"FedToken's owner is {owner}, not the development account 0 that would mint: this chain's "
                          "contracts were not deployed by `fedchain devnet`")
    if eth:
        chain.transfer_eth(funder, to_checksum_address(to), eth)
    if fed:
        chain.send(protocol.token.functions.mint(to_checksum_address(to), fed), funder, action="mint")


@contextlib.contextmanager
def running_devnet(
    workdir: Path,
    *,
    anvil_port: int | None = None,
    ipfs_port: int | None = None,
    deployments_path: Path | None = None,
    ipfs_repo: Path | None = None,
    persist: bool = False,
    fresh: bool = False,
    state_dir: Path | None = None,
) -> Iterator[Devnet]:
    """Start Anvil and the embedded IPFS node, deploy the contracts (or, with `persist`, resume the chain saved in
    `workdir`), and stop everything on exit. On a new chain, the state files in `state_dir` made on an earlier chain
    at the same addresses are listed (`Devnet.stale`); `fresh` forgets the saved chain first and deletes them."""
    from fedchain.content.node import start_node_process

    workdir.mkdir(parents=True, exist_ok=True)
    state_file = workdir / "anvil-state.json" if persist else None
    cleared = _forget_saved_chain(workdir) if fresh else []
    resume = state_file is not None and state_file.exists()
    anvil = start_anvil(anvil_port, log_path=workdir / "anvil.log", state_file=state_file)
    ipfs = None
    try:
        repo = ipfs_repo or workdir / "ipfs"
        repo.mkdir(parents=True, exist_ok=True)
        ipfs = start_node_process(repo, port=ipfs_port or free_port(), detach=True, log_path=workdir / "ipfs.log")
        chain, deployments = _resume(workdir, anvil) if resume else _deploy(workdir, anvil, persist)
        path = deployments_path or workdir / "deployments.json"
        deployments.save(path)
        stale = []
        if state_dir is not None and not resume:
            from fedchain.chain.protocol import Protocol

            stale = superseded_state(state_dir, Protocol(chain, deployments).binding())
            if fresh:
                cleared, stale = cleared + delete_state(stale), []
        yield Devnet(anvil.rpc_url, ipfs.api_url, path, deployments, chain, resumed=resume, state_file=state_file,
                     cleared=cleared, stale=stale, anvil=anvil, ipfs_node=ipfs, workdir=workdir)
    finally:
        with _signals_deferred():  # a second Ctrl-C must not leave Anvil half-saved or running
            if ipfs is not None:
                ipfs.stop()
            anvil.stop()


def _deploy(workdir: Path, anvil: AnvilProcess, persist: bool) -> tuple[Chain, Deployments]:
    from fedchain.chain.client import Chain
    from fedchain.chain.deploy import deploy_all
    from fedchain.chain.protocol import Protocol

    chain = Chain(anvil.rpc_url)
    deployments = deploy_all(chain, dev_account(0), network="local")
    if persist:
        binding = Protocol(chain, deployments).binding()
        write_json_atomic(workdir / "devnet.json", {"deployments": deployments.model_dump(), "binding": asdict(binding)})
    return chain, deployments


def _resume(workdir: Path, anvil: AnvilProcess) -> tuple[Chain, Deployments]:
    """The saved chain's deployments, checked against what Anvil loaded."""
    from fedchain.chain.client import Chain
    from fedchain.chain.deployments import Deployments
    from fedchain.chain.protocol import Protocol

    record_path = workdir / "devnet.json"
    try:
        record = json.loads(record_path.read_text())
        deployments = Deployments.model_validate(record["deployments"])
        binding = StateBinding.from_json(record["binding"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DevnetError(f"the saved chain in {workdir} has no readable record {record_path} ({exc}): start a new "
                          "chain with `fedchain devnet --fresh`") from None
    chain = Chain(anvil.rpc_url)
    if binding is None or Protocol(chain, deployments).binding() != binding:
        raise DevnetError(f"the chain Anvil loaded from {workdir} is not the one {record_path} describes: start a new "
                          "chain with `fedchain devnet --fresh`")
    return chain, deployments


def _forget_saved_chain(workdir: Path) -> list[Path]:
    """Delete the saved chain and its record; return what was deleted. (The local state that belonged to it is
    deleted once the new chain is up: every file bound to these addresses on another chain.)"""
    removed = []
    for path in (workdir / "anvil-state.json", workdir / "devnet.json"):
        if path.exists():
            path.unlink()
            removed.append(path)
    return removed


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Ignore SIGINT and SIGTERM while the devnet stops its children (main thread only; elsewhere, a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
