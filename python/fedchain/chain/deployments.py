"""The deployments file: where the contracts of a network live. Written by `ape run deploy` and `fedchain devnet`."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from fedchain.chain.errors import ArtifactsError
from fedchain.core.spec import format_validation_error

DEFAULT_DEPLOYMENTS = Path("deployments") / "local.json"


class Deployments(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    chain_id: int
    network: str = "local"
    block: int = 0
    deployer: str = ""
    contracts: dict[str, str]

    def address(self, name: str) -> str:
        if name not in self.contracts:
            raise ArtifactsError(f"the deployments file names no {name!r}; it has {sorted(self.contracts)}")
        return self.contracts[name]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.model_dump(), indent=2, sort_keys=True) + "\n")
        tmp.replace(path)


def load_deployments(path: Path | str = DEFAULT_DEPLOYMENTS) -> Deployments:
    path = Path(path)
    try:
        return Deployments.model_validate_json(path.read_text())
    except FileNotFoundError as exc:
        raise ArtifactsError(
            f"no deployments file at {path}: start a devnet (`fedchain devnet`), deploy (`ape run deploy`), "
            "or pass --deployments"
        ) from exc
    except ValidationError as exc:
        raise ArtifactsError(
            format_validation_error(exc, f"deployments file {path} (malformed)")
            + "\ngive the file `fedchain devnet` or `ape run deploy` wrote, or deploy again") from exc
