"""Local training, evaluation, and a fast loss oracle for contribution scoring.

    model = build_model(spec)
    result = train_local(model, global_state, x, y, spec.training, seed=7, device=pick_device())
    delta_vec = layout.flatten(result.delta)           # what the contributor submits (with result.num_samples)
    ev = evaluate(model, apply_delta(global_state, delta_vec, layout), x_test, y_test)

On CPU, training is deterministic for a seed (same bytes). With several torch processes on few cores, call
`torch.set_num_threads(1)` in each.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from fedchain.errors import FedchainError
from fedchain.models import ParamLayout, StateDict
from fedchain.spec import TrainingConfig


class TrainingError(FedchainError, ValueError):
    """Raised when training or evaluation cannot run on the given model, state or data."""


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and CUDA) global RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(prefer: str | None = None) -> torch.device:
    """`prefer` if given (e.g. "cpu", "cuda:1"), else CUDA when available, else CPU."""
    if prefer:
        return torch.device(prefer)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _as_tensors(x: np.ndarray | Tensor, y: np.ndarray | Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
    xt = torch.as_tensor(x, dtype=torch.float32).to(device)
    yt = torch.as_tensor(y, dtype=torch.int64).to(device)
    if xt.shape[0] != yt.shape[0] or yt.dim() != 1:
        raise TrainingError(f"x has {xt.shape[0]} samples and y shape {tuple(yt.shape)}: expected y of shape (N,)")
    if xt.shape[0] == 0:
        raise TrainingError("no samples to train or evaluate on")
    return xt, yt


@dataclass(frozen=True)
class TrainResult:
    delta: StateDict  # trained - base, float32 on CPU, the float state entries only (ParamLayout's)
    num_samples: int
    train_loss: float  # mean loss over the last epoch (before each step's update)
    seconds: float


@dataclass(frozen=True)
class EvalResult:
    loss: float  # mean cross-entropy
    accuracy: float  # in [0, 1]
    samples: int


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
) -> TrainResult:
    """Train `model` from `base_state` on (x, y) for cfg.local_epochs; return the update (trained - base).

    Shuffling and any dropout draw from a generator seeded with `seed` (the caller's RNG is left as it was).
    FedProx: with cfg.fedprox_mu > 0 the loss adds mu/2 * ||w - w_base||^2 over the trainable parameters.
    The model is left holding the trained weights.
    """
    device = torch.device(device) if device is not None else pick_device()
    t0 = time.perf_counter()
    xt, yt = _as_tensors(x, y, device)
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
                loss = F.cross_entropy(model(xt[idx]), yt[idx])
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


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    state: Mapping[str, Tensor] | None,
    x: np.ndarray | Tensor,
    y: np.ndarray | Tensor,
    batch_size: int = 1000,
    device: torch.device | str | None = None,
) -> EvalResult:
    """Mean cross-entropy and accuracy of `model` loaded with `state` (None: as it is) on (x, y)."""
    device = torch.device(device) if device is not None else pick_device()
    if state is not None:
        model.load_state_dict(dict(state))
    model.to(device).eval()
    xt, yt = _as_tensors(x, y, device)
    xt = _channels_last_model_and_images(model, xt)
    loss_sum, correct = 0.0, 0
    for i in range(0, xt.shape[0], batch_size):
        logits = model(xt[i : i + batch_size])
        loss_sum += F.cross_entropy(logits, yt[i : i + batch_size], reduction="sum").item()
        correct += int((logits.argmax(1) == yt[i : i + batch_size]).sum())
    n = xt.shape[0]
    return EvalResult(loss_sum / n, correct / n, n)


def _channels_last_model_and_images(model: nn.Module, x: Tensor) -> Tensor:
    """For image batches (N, C, H, W): the model's kernels and the images channels-last (NHWC), in which oneDNN
    trained a small CNN about 1.7x faster on one CPU thread (measured); other inputs are returned as they are."""
    if x.dim() != 4:
        return x
    model.to(memory_format=torch.channels_last)
    return x.contiguous(memory_format=torch.channels_last)


def _channels_last(t: Tensor) -> Tensor:
    # convolution kernels (4-d) follow the input's memory format; a copy of a small kernel costs microseconds
    return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t


class LossEvaluator:
    """Loss (and accuracy) of base + delta on a fixed evaluation set, fast enough to call hundreds of times a round.

    One model, no weight copies into it: each call runs `torch.func.functional_call` with views into one reused
    vector `base + delta`, a single forward pass over (x, y) (use a fixed subset: `max_samples`, chosen with `seed`),
    under inference mode, in eval mode (BatchNorm uses the state's running statistics; dropout is off).

        ev = LossEvaluator(model, layout, global_state, x_test, y_test, max_samples=500)
        ev(delta_vec)            # -> float loss;  ev.base_loss is ev(zeros)
        ev.accuracy(delta_vec)   # -> float in [0, 1]
    """

    def __init__(
        self,
        model: nn.Module,
        layout: ParamLayout,
        base_state: Mapping[str, Tensor],
        x: np.ndarray | Tensor,
        y: np.ndarray | Tensor,
        device: torch.device | str | None = None,
        max_samples: int | None = None,
        seed: int = 0,
        batch_size: int = 2000,
    ) -> None:
        self.device = torch.device(device) if device is not None else pick_device()
        self.model = model.to(self.device).eval()
        self.layout = layout
        if max_samples is not None and max_samples < len(y):
            idx = np.sort(np.random.default_rng(seed).choice(len(y), size=max_samples, replace=False))
            x, y = x[idx], y[idx]
        self.x, self.y = _as_tensors(x, y, self.device)
        if self.x.dim() == 4:
            # NHWC: oneDNN's convolutions run about 3x faster on the CPU with image and weights channels-last
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.samples = int(self.y.shape[0])
        self.batch_size = batch_size
        self._base = layout.flatten(base_state).to(self.device)
        self._work = torch.empty_like(self._base)
        self._views = layout.unflatten(self._work)
        # entries outside the layout (integer buffers) stay as in the base state
        self._fixed = {k: v.to(self.device) for k, v in base_state.items() if k not in self._views}
        self.base_loss = self(None)

    @torch.inference_mode()
    def _logits(self, delta_vec: Tensor | None) -> Tensor:
        if delta_vec is None:
            self._work.copy_(self._base)
        else:
            if delta_vec.shape != self._base.shape:
                raise TrainingError(f"delta has shape {tuple(delta_vec.shape)}, expected ({self.layout.total},)")
            torch.add(self._base, delta_vec.to(self.device, torch.float32), out=self._work)
        tensors = {**self._fixed, **{k: _channels_last(v) for k, v in self._views.items()}}
        outs = [
            functional_call(self.model, tensors, (self.x[i : i + self.batch_size],))
            for i in range(0, self.samples, self.batch_size)
        ]
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    def replica(self) -> LossEvaluator:
        """An equivalent evaluator for another thread: the same data and base (shared, read-only), its own copy of
        the model and its own work vector. One evaluator must not be called from two threads at once."""
        twin = copy.copy(self)
        twin.model = copy.deepcopy(self.model)
        twin._work = torch.empty_like(self._base)
        twin._views = self.layout.unflatten(twin._work)
        return twin

    def __call__(self, delta_vec: Tensor | None) -> float:
        """Mean cross-entropy of base + delta (None: the base itself)."""
        return float(F.cross_entropy(self._logits(delta_vec), self.y))

    def accuracy(self, delta_vec: Tensor | None) -> float:
        return float((self._logits(delta_vec).argmax(1) == self.y).float().mean())

    def evaluate(self, delta_vec: Tensor | None) -> EvalResult:
        logits = self._logits(delta_vec)
        return EvalResult(
            float(F.cross_entropy(logits, self.y)), float((logits.argmax(1) == self.y).float().mean()), self.samples
        )
