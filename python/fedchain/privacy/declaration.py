"""The "privacy/1" update extension: what a contributor declares about its DP-SGD training, and its check.

    {"accountant": "rdp", "accountant_version": "opacus-1.6.0", "clipping_norm": 1.0, "delta": 1e-05,
     "earlier": [[1.1, 0.02, 50]], "epsilon": 1234567, "noise_multiplier": 1.1, "sample_rate": 0.02, "steps": 50}

This round's noise multiplier, Poisson sample rate and steps; `earlier`: the same for each of its earlier private
submissions to the task, oldest first; `epsilon`: its cumulative spend for the task with this round, in
micro-epsilon (the value it declared on chain with submitPrivateUpdate).

A validator (`judge`) rejects and slashes (`bad-metadata`, provable from the envelope under the on-chain digest)
a declaration that breaks the spec: noise below `min_noise_multiplier`, clipping above `clipping_norm`, another
delta or accountant, a sample rate other than batch_size / num_samples, or an epsilon other than the one on chain.
It rejects without slashing (`privacy-accounting`) an epsilon more than 1% away from what the spec's accountant
gives for the declared history: accountants' floating point may differ in the last digits, a lie in the epsilon is
the contributor's own loss of privacy, and the chain's cap still bounds the declared spend.
Whether the noise was really added cannot be checked from the update (docs/PROTOCOL.md).

Importing this module registers the extension (the core refuses unknown ones): every party that decodes updates
imports it (fedchain.roles.collect).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from fedchain.core.envelope import register_extension
from fedchain.core.reasons import Reason
from fedchain.core.spec import PrivacyConfig, TaskSpec
from fedchain.privacy.accounting import Steps, epsilon, from_micro

log = logging.getLogger(__name__)

EXTENSION = "privacy/1"
EPSILON_TOLERANCE = 0.01  # a declared epsilon this far (relative) from the accountant's is rejected
MAX_HISTORY = 2**24  # a task has fewer rounds (uint24 on chain)
_FIELDS = ("accountant", "accountant_version", "clipping_norm", "delta", "earlier", "epsilon", "noise_multiplier",
           "sample_rate", "steps")


@dataclass(frozen=True)
class PrivacyDeclaration:
    accountant: str
    accountant_version: str
    clipping_norm: float
    delta: float
    noise_multiplier: float
    sample_rate: float
    steps: int
    earlier: tuple[Steps, ...]
    epsilon_micro: int  # cumulative, this round included

    @property
    def history(self) -> list[Steps]:
        return [*self.earlier, Steps(self.noise_multiplier, self.sample_rate, self.steps)]

    def record(self) -> dict[str, Any]:
        return {
            "accountant": self.accountant, "accountant_version": self.accountant_version,
            "clipping_norm": self.clipping_norm, "delta": self.delta, "earlier": [s.as_list() for s in self.earlier],
            "epsilon": self.epsilon_micro, "noise_multiplier": self.noise_multiplier,
            "sample_rate": self.sample_rate, "steps": self.steps,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> PrivacyDeclaration:
        """Parse a record (ValueError naming the field when it is not one)."""
        if sorted(record) != sorted(_FIELDS):
            raise ValueError(f"fields must be exactly {list(_FIELDS)}, got {sorted(record)}")
        earlier = record["earlier"]
        if not isinstance(earlier, list) or len(earlier) >= MAX_HISTORY:
            raise ValueError("earlier must be a list of [noise_multiplier, sample_rate, steps]")
        steps = []
        for i, entry in enumerate(earlier):
            if not isinstance(entry, list) or len(entry) != 3:
                raise ValueError(f"earlier[{i}] must be [noise_multiplier, sample_rate, steps]")
            steps.append(Steps(_positive(f"earlier[{i}][0]", entry[0]), _rate(f"earlier[{i}][1]", entry[1]),
                               _count(f"earlier[{i}][2]", entry[2])))
        return cls(
            accountant=_text("accountant", record["accountant"]),
            accountant_version=_text("accountant_version", record["accountant_version"]),
            clipping_norm=_positive("clipping_norm", record["clipping_norm"]),
            delta=_rate("delta", record["delta"]),
            noise_multiplier=_positive("noise_multiplier", record["noise_multiplier"]),
            sample_rate=_rate("sample_rate", record["sample_rate"]),
            steps=_count("steps", record["steps"]),
            earlier=tuple(steps),
            epsilon_micro=_count("epsilon", record["epsilon"], minimum=0, maximum=2**64 - 1),
        )


def _number(name: str, v: object) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {v!r:.40}")
    return float(v)


def _positive(name: str, v: object) -> float:
    x = _number(name, v)
    if x <= 0:
        raise ValueError(f"{name} must be positive, got {x!r}")
    return x


def _rate(name: str, v: object) -> float:
    x = _positive(name, v)
    if x > 1:
        raise ValueError(f"{name} must be in (0, 1], got {x!r}")
    return x


def _count(name: str, v: object, minimum: int = 1, maximum: int = 2**32) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not minimum <= v <= maximum:
        raise ValueError(f"{name} must be an integer in [{minimum}, {maximum}], got {v!r:.40}")
    return v


def _text(name: str, v: object) -> str:
    if not isinstance(v, str) or not 0 < len(v) <= 64:
        raise ValueError(f"{name} must be a short string, got {v!r:.40}")
    return v


def _check_record(record: dict[str, Any]) -> dict[str, Any]:
    # The record in canonical form: numbers as the declaration reads them (floats stay floats, counts integers).
    return PrivacyDeclaration.from_record(record).record()


register_extension(EXTENSION, _check_record)


def declared_sample_rate(batch_size: int, num_samples: int) -> float:
    """The Poisson sample rate a contributor with `num_samples` samples trains at: the expected batch is the spec's."""
    return min(1.0, batch_size / num_samples)


def judge(spec: TaskSpec, extensions: dict[str, dict[str, Any]], num_samples: int,
          on_chain_micro: int | None) -> Reason | None:
    """The reason to reject a private task's update for its declaration (None: it holds); logs why.

    `on_chain_micro`: the cumulative epsilon its submitPrivateUpdate declared (None: no such event).
    """
    cfg = spec.privacy
    record = extensions.get(EXTENSION)
    if cfg is None:
        return _fault("a privacy declaration in a task without a privacy section") if record is not None else None
    if record is None:
        return _fault("no privacy declaration in a private task's update")
    decl = PrivacyDeclaration.from_record(record)  # the envelope checked it on decode
    fault = _breaks_spec(decl, cfg, spec.training.batch_size, num_samples)
    if fault is not None:
        return _fault(fault)
    if on_chain_micro != decl.epsilon_micro:
        return _fault(f"declared epsilon {decl.epsilon_micro} micro-epsilon, but the chain records {on_chain_micro}")
    expected = epsilon(decl.history, cfg)
    if abs(from_micro(decl.epsilon_micro) - expected) > EPSILON_TOLERANCE * expected:
        log.warning("privacy: declared epsilon %.6f differs from the accountant's %.6f for the declared steps by "
                    "more than %.0f%%", from_micro(decl.epsilon_micro), expected, 100 * EPSILON_TOLERANCE)
        return Reason.PRIVACY_ACCOUNTING
    return None


def _breaks_spec(decl: PrivacyDeclaration, cfg: PrivacyConfig, batch_size: int, num_samples: int) -> str | None:
    if (decl.accountant, decl.accountant_version) != (cfg.accountant, cfg.accountant_version):
        return (f"accountant {decl.accountant} {decl.accountant_version}, the task's is "
                f"{cfg.accountant} {cfg.accountant_version}")
    if decl.delta != cfg.delta:
        return f"delta {decl.delta!r}, the task's is {cfg.delta!r}"
    if decl.clipping_norm > cfg.clipping_norm:
        return f"clipping norm {decl.clipping_norm!r} above the task's {cfg.clipping_norm!r}"
    low = [s.noise_multiplier for s in decl.history if s.noise_multiplier < cfg.min_noise_multiplier]
    if low:
        return f"noise multiplier {min(low)!r} below the task's minimum {cfg.min_noise_multiplier!r}"
    if num_samples < 1 or decl.sample_rate != declared_sample_rate(batch_size, num_samples):
        return (f"sample rate {decl.sample_rate!r}, but batch_size {batch_size} over the {num_samples} samples "
                f"declared on chain gives {declared_sample_rate(batch_size, max(num_samples, 1))!r}")
    return None


def _fault(why: str) -> Reason:
    log.warning("privacy: %s: rejected as bad metadata (provable from the update's content)", why)
    return Reason.BAD_METADATA
