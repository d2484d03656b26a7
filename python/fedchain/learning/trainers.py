"""Local training behind one seam, `Trainer`: supervised today; differentially private and pseudo-labelling trainers
are added beside it, and the demo's attackers wrap one (fedchain.sim.attacks).

    trainer = trainer_for(spec)
    result = trainer.train(model, global_state, LocalData(x, y), spec, seed=7, device=pick_device())
    delta_vec = layout.flatten(result.delta)           # what the contributor submits (with result.num_samples)

On CPU, training is deterministic for a seed (same bytes). With several torch processes on few cores, call
`torch.set_num_threads(1)` in each.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from fedchain.core.spec import TaskSpec, TrainingConfig
from fedchain.learning.evaluation import (
    CLASSIFICATION,
    Objective,
    _channels_last_model_and_images,
    as_tensors,
    pick_device,
)
from fedchain.learning.models import ParamLayout, StateDict


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and CUDA) global RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)



@dataclass(frozen=True)
class LocalData:
    """A contributor's own data, already checked against the task (fedchain.learning.kinds)."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class TrainResult:
    delta: StateDict  # trained - base, float32 on CPU, the float state entries only (ParamLayout's)
    num_samples: int
    train_loss: float  # mean loss over the last epoch (before each step's update)
    seconds: float
    # A trainer's side outputs by name, for the contributor to record with the update (e.g. "pseudo-labels").
    extras: Mapping[str, Any] = field(default_factory=dict)

def _optimizer(params: list[nn.Parameter], cfg: TrainingConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.learning_rate)
    return torch.optim.SGD(params, lr=cfg.learning_rate, momentum=cfg.momentum)

def train_local(
    model: nn.Module,
    base_state: Mapping[str, Tensor],
    x: np.ndarray | Tensor,
    y: np.ndarray | Tensor,
    cfg: TrainingConfig,
    seed: int,
    device: torch.device | str | None = None,
    progress: bool = True,
    desc: str = "training",
    objective: Objective = CLASSIFICATION,
) -> TrainResult:
    """Train `model` from `base_state` on (x, y) for cfg.local_epochs; return the update (trained - base).

    Shuffling and any dropout draw from a generator seeded with `seed` (the caller's RNG is left as it was).
    FedProx: with cfg.fedprox_mu > 0 the loss adds mu/2 * ||w - w_base||^2 over the trainable parameters.
    The model is left holding the trained weights.
    """
    device = torch.device(device) if device is not None else pick_device()
    t0 = time.perf_counter()
    xt, yt = as_tensors(x, y, device, objective)
    n = xt.shape[0]
    layout = ParamLayout.from_state_dict(base_state)
    model.load_state_dict(dict(base_state))
    model.to(device).train()
    xt = _channels_last_model_and_images(model, xt)
    params = [p for p in model.parameters() if p.requires_grad]
    anchors = [p.detach().clone() for p in params] if cfg.fedprox_mu > 0 else []
    opt = _optimizer(params, cfg)
    batches_per_epoch = (n + cfg.batch_size - 1) // cfg.batch_size
    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.local_epochs * batches_per_epoch, desc=desc, unit="batch", disable=not progress, leave=False)
    devices = [device.index or 0] if device.type == "cuda" else []
    loss_sum = 0.0
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        for epoch in range(cfg.local_epochs):
            perm = torch.randperm(n, generator=gen).to(device)
            loss_sum = 0.0
            for b in range(batches_per_epoch):
                idx = perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]
                loss = objective.loss(model(xt[idx]), yt[idx])
                loss_sum += loss.item() * idx.numel()
                if anchors:
                    prox = sum(((p - a) ** 2).sum() for p, a in zip(params, anchors))
                    loss = loss + 0.5 * cfg.fedprox_mu * prox
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / n:.4f}")
    bar.close()
    trained = model.state_dict()
    delta = {
        e.name: (
            trained[e.name].detach().to("cpu", torch.float32) - base_state[e.name].detach().to("cpu", torch.float32)
        ).contiguous()  # back to the standard layout, as files and flat vectors expect
        for e in layout.entries
    }
    return TrainResult(delta, n, loss_sum / n, time.perf_counter() - t0)



class Trainer(Protocol):
    """Trains the task's model from the global state on a contributor's data; returns the update (trained - base)."""

    def train(
        self, model: nn.Module, base_state: Mapping[str, Tensor], data: LocalData, spec: TaskSpec, *,
        seed: int, device: torch.device, progress: bool = True,
    ) -> TrainResult: ...


@dataclass(frozen=True)
class SupervisedTrainer:
    """Plain local SGD/Adam (FedProx optional) on labelled data, by the spec's `training` section."""

    objective: Objective = CLASSIFICATION

    def train(
        self, model: nn.Module, base_state: Mapping[str, Tensor], data: LocalData, spec: TaskSpec, *,
        seed: int, device: torch.device, progress: bool = True,
    ) -> TrainResult:
        return train_local(model, base_state, data.x, data.y, spec.training, seed=seed, device=device,
                           progress=progress, objective=self.objective)


def trainer_for(spec: TaskSpec) -> Trainer:
    """The trainer a task's spec asks for.

    Raises:
        SpecError: if the spec asks for training this version cannot do (its unlabelled-data section).
    """
    from fedchain.learning.kinds import kind_of

    if spec.unlabelled is not None:
        from fedchain.unlabelled.trainer import PseudoLabelTrainer

        return PseudoLabelTrainer(kind_of(spec).objective)
    if spec.privacy is not None:
        from fedchain.privacy.trainer import DPTrainer  # DP-SGD through Opacus (same layer as learning)

        return DPTrainer(kind_of(spec).objective)
    return SupervisedTrainer(kind_of(spec).objective)
