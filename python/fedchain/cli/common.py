"""Options and helpers shared by the commands that talk to a chain or IPFS."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console

from fedchain.errors import ConfigError, FedchainError

DEFAULT_RPC_URL = "http://127.0.0.1:8545"
DEFAULT_IPFS_API = "http://127.0.0.1:5001"
DEFAULT_DEPLOYMENTS = Path("deployments/local.json")

console = Console(stderr=True)

RpcUrl = typer.Option(DEFAULT_RPC_URL, "--rpc-url", envvar="FEDCHAIN_RPC_URL", help="JSON-RPC endpoint of the chain.")
IpfsApi = typer.Option(DEFAULT_IPFS_API, "--ipfs-api", envvar="FEDCHAIN_IPFS_API", help="Kubo RPC API address (URL or multiaddr).")
DeploymentsOpt = typer.Option(
    DEFAULT_DEPLOYMENTS, "--deployments", envvar="FEDCHAIN_DEPLOYMENTS", help="Deployments file written by `fedchain devnet` or `ape run deploy`."
)
Keystore = typer.Option(..., "--keystore", help="Encrypted keystore of the account (password from $FEDCHAIN_PASSWORD or a prompt).")
PasswordEnv = typer.Option("FEDCHAIN_PASSWORD", "--password-env", help="Environment variable holding the keystore password.")
StateDir = typer.Option(Path(".fedchain/state"), "--state-dir",
                        help="Local state (checkpoints, progress) so a restart resumes; bound to the chain it was made on.")
IndexDir = typer.Option(Path(".fedchain/state/index"), "--index-dir", envvar="FEDCHAIN_INDEX_DIR",
                        help="Where the event index is kept: one SQLite database per deployment, followed from where it "
                        "stopped on each call.")
Confirmations = typer.Option(
    None, "--confirmations", min=0, envvar="FEDCHAIN_CONFIRMATIONS",
    help="Blocks the event index stays below the chain's head (default: 0 on a local devnet, 3 elsewhere).")

F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(func: F) -> F:
    """Show fedchain errors as one clear line (no traceback) and exit with status 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except FedchainError as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "httpcore", "web3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def connect(rpc_url: str, ipfs_api: str, deployments: Path):
    """The deployed protocol and an IPFS client; clear errors when either is unreachable."""
    from fedchain.content.client import IpfsClient

    return connect_chain(rpc_url, deployments), IpfsClient(ipfs_api)


def connect_chain(rpc_url: str, deployments: Path):
    """The deployed protocol (no IPFS needed); clear errors when the chain or its deployment is not there."""
    from eth_utils import to_checksum_address

    from fedchain.chain.client import Chain
    from fedchain.chain.deployments import load_deployments
    from fedchain.chain.errors import ChainError
    from fedchain.chain.protocol import Protocol

    chain = Chain(rpc_url)
    deployed = load_deployments(deployments)
    if deployed.chain_id != chain.chain_id:
        raise ChainError(
            f"{deployments} is for chain {deployed.chain_id} but {rpc_url} is chain {chain.chain_id}: "
            "pass the matching --deployments or --rpc-url"
        )
    if not chain.w3.eth.get_code(to_checksum_address(deployed.address("TaskManager"))):
        raise ChainError(
            f"no TaskManager code at {deployed.address('TaskManager')} on {rpc_url}: the chain was reset "
            f"since {deployments} was written; start the devnet again (`fedchain devnet`) or redeploy"
        )
    return Protocol(chain, deployed)


def synced_index(protocol, index_dir: Path, confirmations: int | None):
    """The deployment's event index in `index_dir`, brought up to the head less `confirmations` blocks."""
    from fedchain.views.index import EventIndex, default_confirmations

    if confirmations is None:
        confirmations = default_confirmations(protocol.chain.chain_id)
    index = EventIndex.open(protocol, index_dir, confirmations=confirmations)
    with console.status(f"reading the chain's events from block {index.cursor + 1}…"):
        index.sync()
    return index


def load_account(keystore: Path, password_env: str):
    from fedchain.chain.accounts import load_keystore, resolve_password

    return load_keystore(keystore, resolve_password(password_env))


def parse_address(text: str, option: str) -> str:
    """A checksummed address, or a one-line error naming the option."""
    from eth_utils import is_hex_address, to_checksum_address

    if not is_hex_address(text.strip()):
        raise ConfigError(f"{option} {text!r} is not an address: give 0x and 40 hex digits, e.g. what "
                          "`fedchain account address --keystore FILE` prints")
    return to_checksum_address(text.strip())


def parse_amount(text: str, option: str, *, allow_all: bool = False) -> int:
    """FED as typed by a person (exact decimal), in the token's smallest unit; ALL for 'all' when allowed."""
    from fedchain.chain.units import AmountError, parse_fed

    try:
        return parse_fed(text, allow_all=allow_all)
    except AmountError as exc:
        raise AmountError(f"{option}: {exc}") from None


def sealing_password(key: Path, password_env: str, option: str) -> str | None:
    """The sealing key's password if the key is encrypted (from `password_env`, else a prompt), else None."""
    import os

    from fedchain.core.keys import is_encrypted

    if not is_encrypted(key):
        return None
    if (value := os.environ.get(password_env)) is not None:
        return value
    if sys.stdin.isatty():
        return typer.prompt(f"Password of {key}", hide_input=True)
    raise ConfigError(f"{key} is password-protected: set ${password_env} (or name another variable with {option})")
