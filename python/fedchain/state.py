"""Local state files (block cursors, checkpoints, pending updates): crash-safe, and bound to the deployment they
belong to.

Writes go to a temporary file, are fsynced and renamed into place. State that only makes sense on one chain carries
a `StateBinding` (chain id, TaskManager address, the deployment block's hash) and is refused, with a message that
says what to do, when read against another deployment: a devnet restarted fresh repeats the chain id and the
contract addresses, so without the block hash an old checkpoint would be posted (and paid) on the new chain.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fedchain.errors import FedchainError

BINDING_KEY = "binding"
FILES_KEY = "files"  # names of companion files (beside the JSON) that belong to the same state


@dataclass(frozen=True)
class StateBinding:
    chain_id: int
    contract: str      # the TaskManager's address
    block: int         # the deployments file's block
    block_hash: str    # that block's hash on the chain the state was made on (0x…)

    def describe(self) -> str:
        return f"chain {self.chain_id}, TaskManager {self.contract}, block {self.block} {self.block_hash[:14]}…"

    @classmethod
    def from_json(cls, value: Any) -> StateBinding | None:
        try:
            return cls(int(value["chain_id"]), str(value["contract"]), int(value["block"]), str(value["block_hash"]))
        except (TypeError, KeyError, ValueError):
            return None


class StateMismatchError(FedchainError):
    """Raised when a local state file belongs to another chain or deployment than the one connected to."""

    def __init__(self, path: Path, found: StateBinding | None, expected: StateBinding) -> None:
        origin = f"was made on {found.describe()}" if found else "names no chain (an older fedchain wrote it)"
        super().__init__(
            f"{path} {origin}, but this is {expected.describe()}. The chain was reset or replaced since (a devnet "
            f"started fresh?): this state does not belong to it and is not used. Delete {path.parent} (`fedchain "
            "devnet --fresh` clears a devnet's), or pass another --state-dir"
        )
        self.path = path


class StateCorruptError(FedchainError):
    """Raised when a local state file cannot be read."""


def write_json_atomic(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as handle:
        json.dump(value, handle, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return default


def write_bytes_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_bound_json(path: Path, value: dict[str, Any], binding: StateBinding) -> None:
    """Write a JSON object that records the deployment it belongs to."""
    write_json_atomic(path, {**value, BINDING_KEY: asdict(binding)})


def read_bound_json(path: Path, binding: StateBinding) -> dict[str, Any] | None:
    """The object at `path` without its binding, None if there is none; StateMismatchError if it belongs to
    another deployment than `binding`."""
    try:
        value = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise StateCorruptError(f"{path} is not valid JSON ({exc}): delete it; it is rebuilt") from None
    if not isinstance(value, dict):
        raise StateCorruptError(f"{path} does not hold a state object: delete it; it is rebuilt")
    found = StateBinding.from_json(value.pop(BINDING_KEY, None))
    if found != binding:
        raise StateMismatchError(Path(path), found, binding)
    return value


def check_bound_dir(directory: Path, binding: StateBinding) -> None:
    """Refuse at once (StateMismatchError) if any state file under `directory` belongs to another deployment."""
    for path in _state_files(directory):
        read_bound_json(path, binding)


def superseded_state(directory: Path, current: StateBinding) -> list[Path]:
    """State files under `directory` made on an earlier chain at the same chain id and contract address as `current`
    (a devnet started anew repeats both): state that can never be used again."""
    found = []
    for path in _state_files(directory):
        try:
            value = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        binding = StateBinding.from_json(value.get(BINDING_KEY)) if isinstance(value, dict) else None
        if binding and binding != current and (binding.chain_id, binding.contract) == (current.chain_id, current.contract):
            found.append(path)
    return found


def delete_state(paths: list[Path]) -> list[Path]:
    """Delete state files and the companion files they name; return everything deleted."""
    removed: list[Path] = []
    for path in paths:
        try:
            names = json.loads(path.read_text()).get(FILES_KEY, [])
        except (OSError, ValueError, AttributeError):
            names = []
        for name in names:
            companion = path.parent / Path(str(name)).name
            if companion.exists():
                companion.unlink()
                removed.append(companion)
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _state_files(directory: Path) -> Iterator[Path]:
    if Path(directory).is_dir():
        yield from sorted(p for p in Path(directory).rglob("*.json") if not p.name.startswith("."))
