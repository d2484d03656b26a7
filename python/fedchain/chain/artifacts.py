"""Compiled contract artifacts (ABI and bytecode) as written by `ape compile` to .build/__local__.json."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from fedchain.chain.errors import ArtifactsError

# The project root when running from a checkout: python/fedchain/chain/ -> three levels up.
_CHECKOUT_ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class ContractArtifact:
    name: str
    abi: list[dict]
    bytecode: str


def manifest_path() -> Path:
    """Where the compiled manifest is: $FEDCHAIN_ARTIFACTS, else ./.build, else the checkout's .build."""
    if env := os.environ.get("FEDCHAIN_ARTIFACTS"):
        return Path(env)
    for root in (Path.cwd(), _CHECKOUT_ROOT):
        candidate = root / ".build" / "__local__.json"
        if candidate.exists():
            return candidate
    return _CHECKOUT_ROOT / ".build" / "__local__.json"


@lru_cache(maxsize=4)
def _load_manifest(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ArtifactsError(
            f"compiled contracts not found at {path}: run `make setup` and `.venv/bin/ape compile` "
            "in the fedchain checkout, or set FEDCHAIN_ARTIFACTS to the manifest"
        ) from exc
    except json.JSONDecodeError as exc:
        raise ArtifactsError(f"compiled contracts manifest {path} is not valid JSON: {exc}") from exc


def load_artifact(name: str) -> ContractArtifact:
    """ABI and deployment bytecode of contract `name`."""
    path = manifest_path()
    types = _load_manifest(path).get("contractTypes", {})
    if name not in types:
        raise ArtifactsError(f"contract {name!r} is not in {path}; known: {', '.join(sorted(types))}")
    entry = types[name]
    bytecode = (entry.get("deploymentBytecode") or {}).get("bytecode", "0x")
    return ContractArtifact(name=name, abi=entry["abi"], bytecode=bytecode)
