"""What crosses the aggregation boundary: the rule's configuration, its result, its error, and row order.

Rows of the (K, D) update buffer are ordered by contributor address (`canonical_order`); every rule is a pure,
deterministic function of the rows in that order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from fedchain.errors import FedchainError

RULES = ("fedavg", "median", "trimmed-mean", "multi-krum")


class AggregationError(FedchainError, ValueError):
    """Raised when a rule's configuration or its inputs (buffer shape, dtype, weights) are invalid."""


@dataclass(frozen=True)
class RuleConfig:
    """The aggregation rule a task's spec names, with its parameters.

    `clip_multiple`, when set, first scales every row whose L2 norm exceeds `clip_multiple` x the median row
    norm down to that bound; it composes with any rule.
    """

    name: str  # "fedavg" | "median" | "trimmed-mean" | "multi-krum"
    beta: float = 0.1  # trimmed mean: fraction cut at each end per coordinate (int(beta * K) rows), 0 <= beta < 0.5
    f: int = 1  # multi-krum: number of Byzantine contributors tolerated; scores use the K - f - 2 nearest rows
    m: int | None = None  # multi-krum: rows averaged; None means K - f
    clip_multiple: float | None = None  # norm clipping bound as a multiple of the median row norm; None: no clipping

    def __post_init__(self) -> None:
        if self.name not in RULES:
            raise AggregationError(f"unknown aggregation rule {self.name!r}: use one of {', '.join(RULES)}")
        if isinstance(self.beta, bool) or not isinstance(self.beta, (int, float)) or not 0.0 <= self.beta < 0.5:
            raise AggregationError(f"beta={self.beta!r} must be a number in [0, 0.5)")
        if isinstance(self.f, bool) or not isinstance(self.f, int) or self.f < 0:
            raise AggregationError(f"f={self.f!r} must be an integer >= 0")
        if self.m is not None and (isinstance(self.m, bool) or not isinstance(self.m, int) or self.m < 1):
            raise AggregationError(f"m={self.m!r} must be an integer >= 1, or None for K - f")
        if self.clip_multiple is not None and (
            isinstance(self.clip_multiple, bool)
            or not isinstance(self.clip_multiple, (int, float))
            or not math.isfinite(self.clip_multiple)
            or self.clip_multiple <= 0
        ):
            raise AggregationError(f"clip_multiple={self.clip_multiple!r} must be a finite number > 0, or None")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RuleConfig:
        """Build from the task spec's JSON object, e.g. {"rule": "trimmed-mean", "beta": 0.2}.

        Unknown keys are refused so that typos do not pass silently.
        """
        if not isinstance(data, Mapping):
            raise AggregationError(f"aggregation spec must be a JSON object, got {type(data).__name__}")
        known = {"rule", "beta", "f", "m", "clip_multiple"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise AggregationError(f"unknown aggregation spec keys {unknown}: allowed keys are {sorted(known)}")
        if "rule" not in data:
            raise AggregationError("aggregation spec needs a 'rule' (one of " + ", ".join(RULES) + ")")
        fields = {k: v for k, v in data.items() if k != "rule"}
        return cls(name=data["rule"], **fields)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object for the task spec and the round report (every field, so a report is self-contained)."""
        fields = asdict(self)
        return {"rule": fields.pop("name"), **fields}


@dataclass(frozen=True)
class AggregationResult:
    """The aggregated delta and what the rule did with each row (row indices in canonical order)."""

    vector: torch.Tensor  # (D,) float32
    selected: list[int]  # rows that entered the aggregate
    discarded: list[int]  # rows the rule left out (see each rule's docstring for its definition)
    clip_factors: list[float] | None  # per-row scale applied by norm clipping; None when clipping is off


def _address_key(address: str | bytes) -> int:
    if isinstance(address, (bytes, bytearray)):
        return int.from_bytes(bytes(address), "big")
    if isinstance(address, str):
        text = address[2:] if address[:2] in ("0x", "0X") else address
        try:
            return int(text, 16)
        except ValueError:
            raise AggregationError(f"address {address!r} is not hexadecimal") from None
    raise AggregationError(f"address {address!r} must be a hex string or bytes")


def canonical_order(addresses: Sequence[str | bytes]) -> list[int]:
    """Indices that sort `addresses` by their numeric value (case-insensitive hex), the order rows must be in.

    `buffer[canonical_order(addrs)]` (or receiving row i from contributor `sorted_addrs[i]`) makes every rule's
    output independent of arrival order.

    Raises:
        AggregationError: if an address is not hex, or two entries name the same address.
    """
    keys = [_address_key(a) for a in addresses]
    if len(set(keys)) != len(keys):
        raise AggregationError("the same contributor address appears twice: one row per contributor per round")
    return sorted(range(len(keys)), key=keys.__getitem__)
