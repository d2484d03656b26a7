"""Errors of the chain adapter."""

from __future__ import annotations

from fedchain.chain.units import format_fed
from fedchain.errors import FedchainError

# Custom-error arguments that are token amounts (fedchain's contracts and OpenZeppelin's ERC20): shown in FED.
AMOUNT_ARGS = frozenset({
    "active", "allowance", "amount", "available", "balance", "claimed", "expected", "minContributorStake", "needed",
    "received", "registryMinimum", "requested", "required", "rewardPerRound", "slashAmount", "staked",
    "totalRewards",
})


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
        rendered = ", ".join(f"{k}={_render(v, amount=k in AMOUNT_ARGS)}" for k, v in args.items())
        super().__init__(f"{action} reverted: {error_name}({rendered})")
        self.action = action
        self.error_name = error_name
        self.error_args = args
        self.raw = raw


class TaskNotFoundError(ChainError, LookupError):
    """Raised when a task id does not exist on the chain."""

    def __init__(self, task_id: int, count: int, rpc_url: str) -> None:
        there = f"{count} task(s) there: ids 0..{count - 1}" if count else "no task exists there yet"
        super().__init__(f"task {task_id} does not exist on {rpc_url} ({there}); `fedchain task create` makes one")
        self.task_id = task_id


class ArtifactsError(ChainError, FileNotFoundError):
    """Raised when compiled contract artifacts or the deployments file cannot be found or read."""


def _render(value: object, *, amount: bool = False) -> str:
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if amount and isinstance(value, int) and not isinstance(value, bool):
        return format_fed(value)
    return str(value)
