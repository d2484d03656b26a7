"""Attacker behaviours for the demo (proof of intelligence): pure functions, no I/O.

An update ("delta") is either a flat Tensor(D) or a {name: Tensor} dict (as `TrainResult.delta`); every update
function accepts both and returns the same kind, new tensors (inputs are never modified).

    label-flip   trains honestly on poisoned labels y -> num_classes - 1 - y         (stage "data")
    sign-flip    submits -scale * its honest update (scale 5)                         (stage "update")
    noise        submits Gaussian noise N(0, std^2) shaped like an update             (stage "update")
    free-rider   submits the global model unchanged (zero update) or tiny noise on it (stage "update")
    copycat      resubmits another contributor's update: the sealed bytes as they are, or, for unsealed tasks,
                 the update plus noise of rel_std times its RMS                      (stage "copy")
    pseudo-label-flip  pseudo-labels adversarially: each pseudo-label c becomes num_classes - 1 - c, trained on and
                 declared so (tasks with unlabelled data; wraps fedchain.unlabelled's trainer) (stage "pseudo-labels")

    mix = parse_attack_mix("label-flip:1,sign-flip:1")   # {"label-flip": 1, "sign-flip": 1}
    ATTACKS["sign-flip"].apply_update(delta, seed=3)
    trainer = ATTACKS["label-flip"].wrap(SupervisedTrainer())   # a contributor's trainer, poisoned
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from fedchain.core.spec import TaskSpec
from fedchain.errors import FedchainError
from fedchain.learning.trainers import LocalData, Trainer, TrainResult

Delta = Tensor | Mapping[str, Tensor]
D = TypeVar("D", Tensor, Mapping[str, Tensor])


class AttackError(FedchainError, ValueError):
    """Raised for an unknown attack name or a malformed attack mix."""


def _map(delta: Delta, fn: Callable[[Tensor, int], Tensor]) -> Any:
    """Apply fn(tensor, index) to a vector or to each tensor of a dict (in sorted-name order, for seeding)."""
    if isinstance(delta, Tensor):
        return fn(delta, 0)
    return {name: fn(delta[name], i) for i, name in enumerate(sorted(delta))}


def _noise_like(t: Tensor, std: float, gen: torch.Generator) -> Tensor:
    return torch.randn(t.shape, generator=gen, dtype=torch.float32).to(t.device, t.dtype) * std


def _rms(delta: Delta) -> float:
    tensors = [delta] if isinstance(delta, Tensor) else list(delta.values())
    n = sum(t.numel() for t in tensors)
    sq = sum(float((t.detach().double() ** 2).sum()) for t in tensors)
    return (sq / n) ** 0.5 if n else 0.0


# ---------------------------------------------------------------------------------------------------------------------
# BEHAVIOURS
# ---------------------------------------------------------------------------------------------------------------------


def label_flip(y: np.ndarray | Tensor, num_classes: int) -> np.ndarray | Tensor:
    """Data poisoning: every label c becomes num_classes - 1 - c (a new array)."""
    return (num_classes - 1) - y


def sign_flip(delta: D, scale: float = 5.0) -> D:
    """-scale * delta: pushes the global model against the honest direction."""
    return _map(delta, lambda t, _: t * (-scale))


def noise_update(delta_like: D, std: float = 0.05, seed: int = 0) -> D:
    """Gaussian noise N(0, std^2) with delta_like's shapes; the content of delta_like is ignored."""
    gen = torch.Generator().manual_seed(seed)
    return _map(delta_like, lambda t, _: _noise_like(t, std, gen))


def free_rider(delta_like: D, tiny_std: float = 0.0, seed: int = 0) -> D:
    """No work: zeros (the global model unchanged), or tiny noise N(0, tiny_std^2) to look different."""
    if tiny_std == 0.0:
        return _map(delta_like, lambda t, _: torch.zeros_like(t))
    return noise_update(delta_like, tiny_std, seed)


def perturb_copy(delta: D, rel_std: float = 0.01, seed: int = 0) -> D:
    """A copied update disguised with noise of rel_std times its root-mean-square value."""
    gen = torch.Generator().manual_seed(seed)
    std = rel_std * _rms(delta)
    return _map(delta, lambda t, _: t + _noise_like(t, std, gen))


# ---------------------------------------------------------------------------------------------------------------------
# REGISTRY
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attack:
    """A named attacker behaviour and the stage of the contributor's work it replaces.

    stage "data": train honestly on `apply_data(x, y, num_classes)`; "update": train (or not) and submit
    `apply_update(delta, seed)`; "copy": submit another contributor's update (`apply_update(victim_delta, seed)`
    for unsealed tasks; the sealed envelope bytes unchanged for sealed ones; fedchain.sim.adversary).
    `wrap(trainer)` turns an honest trainer into this attacker's (data and update stages).
    """

    name: str
    stage: Literal["data", "update", "copy", "pseudo-labels"]
    description: str
    params: Mapping[str, float] = field(default_factory=dict)  # defaults, overridable per call
    needs_training: bool = True  # whether the attacker trains at all before attacking

    def apply_data(self, x: np.ndarray, y: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
        if self.name == "label-flip":
            return x, np.asarray(label_flip(y, num_classes))
        return x, y

    def apply_update(self, delta: D, seed: int = 0, **overrides: float) -> D:
        p = {**self.params, **overrides}
        if self.name == "sign-flip":
            return sign_flip(delta, p["scale"])
        if self.name == "noise":
            return noise_update(delta, p["std"], seed)
        if self.name == "free-rider":
            return free_rider(delta, p["tiny_std"], seed)
        if self.name == "copycat":
            return perturb_copy(delta, p["rel_std"], seed)
        return delta

    def wrap(self, inner: Trainer) -> Trainer:
        """The attacker's trainer around an honest one (the copycat does not train: see fedchain.sim.adversary)."""
        if self.stage == "copy":
            raise AttackError("the copycat copies other updates instead of training; use CopycatContributor")
        if self.stage == "pseudo-labels":
            from fedchain.unlabelled.trainer import PseudoLabelTrainer

            if not isinstance(inner, PseudoLabelTrainer):
                raise AttackError(f"{self.name} rewrites pseudo-labels: it needs a task with unlabelled data")
            return replace(inner, label_map=lambda y, num_classes: np.asarray(label_flip(y, num_classes)))
        return AttackingTrainer(self, inner)


ATTACKS: dict[str, Attack] = {
    a.name: a
    for a in [
        Attack("label-flip", "data", "trains on labels y -> num_classes-1-y"),
        Attack("sign-flip", "update", "submits -scale x its honest update", {"scale": 5.0}),
        Attack("noise", "update", "submits Gaussian noise", {"std": 0.05}, needs_training=False),
        Attack("free-rider", "update", "submits the global model unchanged", {"tiny_std": 0.0},
               needs_training=False),
        Attack("copycat", "copy", "resubmits another contributor's update (perturbed when unsealed)",
               {"rel_std": 0.01}, needs_training=False),
        Attack("pseudo-label-flip", "pseudo-labels", "pseudo-labels c -> num_classes-1-c, trained on and declared"),
    ]
}


@dataclass(frozen=True)
class AttackingTrainer:
    """A trainer that poisons the data before, or rewrites the update after, an honest trainer's work."""

    attack: Attack
    inner: Trainer

    def train(
        self, model: nn.Module, base_state: Mapping[str, Tensor], data: LocalData, spec: TaskSpec, *,
        seed: int, device: torch.device, progress: bool = True,
    ) -> TrainResult:
        if self.attack.stage == "data":
            x, y = self.attack.apply_data(data.x, data.y, spec.num_classes)
            return self.inner.train(model, base_state, LocalData(x, y), spec, seed=seed, device=device,
                                    progress=progress)
        if self.attack.needs_training:
            result = self.inner.train(model, base_state, data, spec, seed=seed, device=device, progress=progress)
        else:  # nothing learned: an update shaped like the model's float state
            zeros = {k: torch.zeros_like(v, dtype=torch.float32)
                     for k, v in base_state.items() if torch.is_floating_point(v)}
            result = TrainResult(zeros, len(data), 0.0, 0.0)
        # One seed per tensor (sorted names), so each tensor's noise is independent and reproducible.
        delta = {name: self.attack.apply_update(t, seed=seed * 7919 + i)
                 for i, (name, t) in enumerate(sorted(result.delta.items()))}
        return replace(result, delta=delta)


def get_attack(name: str) -> Attack:
    try:
        return ATTACKS[name]
    except KeyError:
        raise AttackError(f"unknown attack {name!r}; known attacks: {', '.join(ATTACKS)}") from None


def parse_attack_mix(text: str) -> dict[str, int]:
    """"label-flip:1,sign-flip:2" -> {"label-flip": 1, "sign-flip": 2}; a bare name counts 1; "" -> {}."""
    mix: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            if text.strip():
                raise AttackError(f"empty entry in attack mix {text!r}; write NAME:COUNT entries separated by commas")
            continue
        name, sep, count_text = (s.strip() for s in part.partition(":"))
        get_attack(name)
        if name in mix:
            raise AttackError(f"attack {name!r} appears twice in {text!r}; give one count per attack")
        try:
            count = int(count_text) if sep else 1
        except ValueError:
            raise AttackError(f"count for {name!r} must be a positive integer, got {count_text!r}") from None
        if count < 1:
            raise AttackError(f"count for {name!r} must be a positive integer, got {count}")
        mix[name] = count
    return mix
