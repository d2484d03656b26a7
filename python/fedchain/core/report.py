"""The round report: what the validator decided in a round, as canonical JSON stored in IPFS.

Canonical bytes (`canonical_json`, `RoundReport.to_json_bytes`):
  - RFC 8785 (JSON Canonicalization Scheme) via the `rfc8785` package: keys sorted, no whitespace, ES6 number format;
  - token amounts (`budget`, `total_rewards`, each update's `reward`) are decimal strings: they exceed JSON's safe
    integer range; any other integer in the free-form dicts must stay within +-(2**53 - 1);
  - every float (scores, metrics, and floats inside `aggregation` / `scoring` / `metrics`) is rounded to
    FLOAT_DECIMALS (9) decimal places with Python's round() (round-half-even on the binary value) before
    serialization, and -0.0 is written as 0, so the bytes do not depend on the last bits of a float computation;
    NaN and infinities are refused. The rounding happens when the report is built, so
    RoundReport.from_json_bytes(r.to_json_bytes()) == r;
  - addresses are checksummed (EIP-55); `rewards_root` is 0x-prefixed lowercase hex.

Checked invariants: total_rewards == the sum of the updates' rewards <= budget; only accepted, unslashed updates are
rewarded; `rewards_root` can be recomputed from the report (`reward_tree()`).

    {"aggregation": {"rule": "fedavg"}, "base_model_cid": "Qm...", "budget": "1000000000000000000000",
     "format": "fedchain-round-report/1", "metrics": {"eval_samples": 1000, "test_accuracy": 0.9512, "test_loss": 0.16},
     "model_cid": "Qm...", "rewards_root": "0x...", "round": 0, "scoring": {"method": "tmc-shapley", ...},
     "task_id": 1, "total_rewards": "1000000000000000000000",
     "updates": [{"cid": "Qm...", "contributor": "0x...", "num_samples": 812, "reason": null, "reward": "...",
                  "score": 0.25, "slashed": false, "status": "accepted"}]}
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any, ClassVar, Literal

import rfc8785
from pydantic import ConfigDict, Field, PlainSerializer, field_validator, model_validator
from pydantic.functional_validators import BeforeValidator

from fedchain.core.merkle import MerkleError, RewardTree, normalize_address
from fedchain.core.spec import StrictModel
from fedchain.errors import FedchainError

REPORT_FORMAT = "fedchain-round-report/1"
FLOAT_DECIMALS = 9
_UINT256_MAX = 2**256 - 1
_DECIMAL = re.compile(r"^(0|[1-9][0-9]*)$")


class ReportError(FedchainError, ValueError):
    """Raised when a round report is invalid or cannot be serialized or parsed.

    `problems` lists (field path, message) pairs when the error comes from validation.
    """

    def __init__(self, message: str, problems: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


def _parse_amount(v: Any) -> int:
    if isinstance(v, bool):
        raise ValueError("amount must be an integer or a decimal string, not a boolean")
    if isinstance(v, str):
        if not _DECIMAL.match(v):
            raise ValueError(f"amount must be a decimal string of digits without sign or leading zeros, got {v!r}")
        v = int(v)
    if not isinstance(v, int):
        raise ValueError(f"amount must be an integer or a decimal string, got {type(v).__name__}")
    if not 0 <= v <= _UINT256_MAX:
        raise ValueError(f"amount must be in [0, 2**256), got {v}")
    return v


# An integer token amount in Python; a decimal string in JSON.
Amount = Annotated[int, BeforeValidator(_parse_amount), PlainSerializer(str, return_type=str, when_used="json")]


def round_floats(obj: Any, decimals: int = FLOAT_DECIMALS) -> Any:
    """Recursively round floats (NaN/inf refused, -0.0 -> 0.0) in dicts, lists and tuples."""
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ReportError(f"non-finite number {obj} cannot go into a report")
        return round(obj, decimals) + 0.0  # + 0.0 turns -0.0 into 0.0
    if isinstance(obj, dict):
        return {k: round_floats(v, decimals) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [round_floats(v, decimals) for v in obj]
    return obj


class _ReportModel(StrictModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    error_class: ClassVar[type[FedchainError]] = ReportError


class UpdateRecord(_ReportModel):
    """One submitted update and the validator's verdict on it."""

    contributor: str  # checksummed address
    cid: str = Field(min_length=1)
    num_samples: int = Field(ge=0)
    status: Literal["accepted", "rejected", "discarded"]
    reason: str | None = None  # a reason code for rejected / discarded updates
    score: float = Field(0.0, ge=0)  # normalised per round; 0 unless accepted
    reward: Amount = 0
    slashed: bool = False
    # The summary of the update's pseudo-label record (fedchain.unlabelled.checks), when it carried one; left out
    # of the JSON when None, so reports of tasks without unlabelled data keep their bytes.
    pseudo_labels: dict[str, Any] | None = None

    @field_validator("contributor")
    @classmethod
    def _address(cls, v: str) -> str:
        try:
            return normalize_address(v)
        except MerkleError as exc:
            raise ValueError(str(exc)) from exc

    @field_validator("score")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError(f"score must be finite, got {v}")
        return round(v, FLOAT_DECIMALS) + 0.0

    @model_validator(mode="after")
    def _rewards_only_when_accepted(self) -> UpdateRecord:
        if self.reward and (self.status != "accepted" or self.slashed):
            raise ValueError(f"a {self.status}{' slashed' if self.slashed else ''} update cannot be rewarded")
        return self


class RoundReport(_ReportModel):
    """A round's outcome: the merged model, how it was merged and scored, and every update's verdict and reward."""

    format: Literal["fedchain-round-report/1"] = "fedchain-round-report/1"
    task_id: int = Field(ge=0)
    round: int = Field(ge=0)
    base_model_cid: str = Field(min_length=1)
    model_cid: str = Field(min_length=1)
    aggregation: dict[str, Any] = Field(default_factory=dict)  # rule name + parameters
    scoring: dict[str, Any] = Field(default_factory=dict)  # method + parameters + evaluations used
    metrics: dict[str, Any] = Field(default_factory=dict)  # test_accuracy, test_loss, eval_samples
    budget: Amount
    total_rewards: Amount
    rewards_root: str = Field(pattern=r"^0x[0-9a-f]{64}$")
    updates: list[UpdateRecord] = Field(default_factory=list)

    @field_validator("aggregation", "scoring", "metrics")
    @classmethod
    def _rounded(cls, v: dict[str, Any]) -> dict[str, Any]:
        rounded: dict[str, Any] = round_floats(v)
        return rounded

    @field_validator("rewards_root", mode="before")
    @classmethod
    def _lower_root(cls, v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v

    @model_validator(mode="after")
    def _totals(self) -> RoundReport:
        paid = sum(u.reward for u in self.updates)
        if paid != self.total_rewards:
            raise ValueError(f"total_rewards {self.total_rewards} differs from the sum of update rewards {paid}")
        if self.total_rewards > self.budget:
            raise ValueError(f"total_rewards {self.total_rewards} exceeds the budget {self.budget}")
        return self

    # -- rewards ------------------------------------------------------------------------------------------------------

    def reward_entries(self) -> dict[str, int]:
        """{contributor: total reward} for contributors with a non-zero reward (the leaves of the reward tree)."""
        out: dict[str, int] = {}
        for u in self.updates:
            if u.reward:
                out[u.contributor] = out.get(u.contributor, 0) + u.reward
        return out

    def reward_tree(self) -> RewardTree:
        return RewardTree(self.task_id, self.round, self.reward_entries())

    def with_rewards_root(self) -> RoundReport:
        """This report with `rewards_root` set to the root of its own rewards (the one place leaves are built)."""
        return self.model_copy(update={"rewards_root": self.reward_tree().root_hex})

    def check_rewards_root(self) -> None:
        """Raise ReportError unless rewards_root is the root of reward_tree()."""
        root = self.reward_tree().root_hex
        if root != self.rewards_root:
            raise ReportError(f"rewards_root {self.rewards_root} does not match the report's rewards (root {root})")

    # -- serialization ------------------------------------------------------------------------------------------------

    def to_json_bytes(self) -> bytes:
        return canonical_json(self)

    @classmethod
    def from_json_bytes(cls, data: bytes | str) -> RoundReport:
        try:
            obj = json.loads(data.decode("utf-8") if isinstance(data, bytes) else data)  # never guess UTF-16
        except (ValueError, UnicodeDecodeError) as exc:
            raise ReportError(f"round report is not valid JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise ReportError(f"round report must be a JSON object, got {type(obj).__name__}")
        report: RoundReport = cls.model_validate(obj)
        return report


def canonical_json(report: RoundReport) -> bytes:
    """RFC 8785 bytes of the report, floats rounded to FLOAT_DECIMALS places, amounts as decimal strings."""
    obj = round_floats(report.model_dump(mode="json"))
    for update in obj["updates"]:
        if update.get("pseudo_labels") is None:
            update.pop("pseudo_labels", None)
    try:
        return rfc8785.dumps(obj)
    except rfc8785.CanonicalizationError as exc:
        raise ReportError(
            f"round report cannot be written as canonical JSON: {exc} (write large integers as decimal strings)"
        ) from exc
