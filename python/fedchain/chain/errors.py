"""Errors of the chain adapter."""

from __future__ import annotations

from fedchain.errors import FedchainError


class ChainError(FedchainError):
    """Raised when talking to the chain fails."""


class RpcUnreachableError(ChainError, ConnectionError):
    """Raised when the JSON-RPC endpoint does not answer."""

    def __init__(self, url: str, cause: str = "") -> None:
        detail = f": {cause}" if cause else ""
        super().__init__(
            f"cannot reach the chain's JSON-RPC endpoint at {url}{detail}. "
            "Is the devnet running (`fedchain devnet`)? Otherwise pass --rpc-url."
        )
        self.url = url


class TransactionRevertedError(ChainError):
    """Raised when a transaction (or its gas estimate) reverts; carries the decoded custom error."""

    def __init__(self, action: str, error_name: str, args: dict[str, object], raw: str = "") -> None:
        rendered = ", ".join(f"{k}={_render(v)}" for k, v in args.items())
        super().__init__(f"{action} reverted: {error_name}({rendered})")
        self.action = action
        self.error_name = error_name
        self.error_args = args
        self.raw = raw


class ArtifactsError(ChainError, FileNotFoundError):
    """Raised when compiled contract artifacts or the deployments file cannot be found or read."""


def _render(value: object) -> str:
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    return str(value)
