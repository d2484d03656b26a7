"""Evaluation: the objective a task kind trains and scores by, held-out metrics, and a fast loss oracle for scoring.

    ev = evaluate(model, state, x_test, y_test)                      # EvalResult(loss, accuracy, samples)
    oracle = LossEvaluator(model, layout, global_state, x_test, y_test, max_samples=500)
    oracle(delta_vec)                                                # loss of global + delta

The objective (loss and accuracy of a batch) comes from the task kind (fedchain.learning.kinds); classification's
is the default.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from fedchain.errors import FedchainError
from fedchain.learning.models import ParamLayout


class TrainingError(FedchainError, ValueError):
    """Raised when training or evaluation cannot run on the given model, state or data."""



@dataclass(frozen=True)
class Objective:
    """What a task kind minimises and reports: the loss over a batch's predictions, and how many of them are right.

    A sample may carry several predictions (a text window predicts each next character): losses are means over
    every prediction (every element of the targets), and accuracy is correct predictions over predictions."""

    # (model output, targets, reduction="mean" | "sum") -> loss over every prediction, with F.cross_entropy's signature
    loss: Callable[..., Tensor]
    correct: Callable[[Tensor, Tensor], int]  # (model output, targets) -> number of correct predictions
    target_dtype: torch.dtype = torch.int64
    input_dtype: torch.dtype = torch.float32  # what the model reads: float features, or int64 token ids
    target_dims: int = 1  # dimensions of y, the sample axis included: (N,) labels, (N, T) next tokens


def _classification_correct(logits: Tensor, y: Tensor) -> int:
    return int((logits.argmax(1) == y).sum())


def _next_token_loss(logits: Tensor, y: Tensor, reduction: str = "mean") -> Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction=reduction)


def _next_token_correct(logits: Tensor, y: Tensor) -> int:
    return int((logits.argmax(-1) == y).sum())


# Single-label classification: cross-entropy over class logits (B, C) and integer labels (B,).
CLASSIFICATION = Objective(loss=F.cross_entropy, correct=_classification_correct)
# Next-token prediction: token ids (B, T) in, logits (B, T, V) out, the next token (B, T) at every position.
NEXT_TOKEN = Objective(loss=_next_token_loss, correct=_next_token_correct, input_dtype=torch.int64, target_dims=2)


def pick_device(prefer: str | None = None) -> torch.device:
    """`prefer` if given (e.g. "cpu", "cuda:1"), else CUDA when available, else CPU."""
    if prefer:
        return torch.device(prefer)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")

def _as_tensors(
    x: np.ndarray | Tensor, y: np.ndarray | Tensor, device: torch.device, y_dtype: torch.dtype = torch.int64,
    x_dtype: torch.dtype = torch.float32, y_dims: int = 1,
) -> tuple[Tensor, Tensor]:
    xt = torch.as_tensor(x, dtype=x_dtype).to(device)
    yt = torch.as_tensor(y, dtype=y_dtype).to(device)
    if yt.dim() != y_dims or xt.shape[0] != yt.shape[0]:
        expected = "(N,)" if y_dims == 1 else f"(N, {', '.join('...' for _ in range(y_dims - 1))})"
        raise TrainingError(f"x has {xt.shape[0]} samples and y shape {tuple(yt.shape)}: expected y of shape {expected}")
    if xt.shape[0] == 0:
        raise TrainingError("no samples to train or evaluate on")
    return xt, yt

def as_tensors(
    x: np.ndarray | Tensor, y: np.ndarray | Tensor, device: torch.device, objective: Objective
) -> tuple[Tensor, Tensor]:
    """(x, y) as the objective's tensors on `device`, checked: one row of y per sample, at least one sample."""
    return _as_tensors(x, y, device, objective.target_dtype, objective.input_dtype, objective.target_dims)


@dataclass(frozen=True)
class EvalResult:
    loss: float  # mean cross-entropy per prediction
    accuracy: float  # in [0, 1]: correct predictions / predictions
    samples: int

@torch.inference_mode()
def evaluate(
    model: nn.Module,
    state: Mapping[str, Tensor] | None,
    x: np.ndarray | Tensor,
    y: np.ndarray | Tensor,
    batch_size: int = 1000,
    device: torch.device | str | None = None,
    objective: Objective = CLASSIFICATION,
) -> EvalResult:
    """Mean loss and accuracy of `model` loaded with `state` (None: as it is) on (x, y)."""
    device = torch.device(device) if device is not None else pick_device()
    if state is not None:
        model.load_state_dict(dict(state))
    model.to(device).eval()
    xt, yt = as_tensors(x, y, device, objective)
    xt = _channels_last_model_and_images(model, xt)
    loss_sum, correct = 0.0, 0
    for i in range(0, xt.shape[0], batch_size):
        logits = model(xt[i : i + batch_size])
        target = yt[i : i + batch_size]
        loss_sum += objective.loss(logits, target, reduction="sum").item()
        correct += objective.correct(logits, target)
    predictions = yt.numel()  # N for classification, N x T for next-token windows
    return EvalResult(loss_sum / predictions, correct / predictions, xt.shape[0])

def _channels_last_model_and_images(model: nn.Module, x: Tensor) -> Tensor:
    """For image batches (N, C, H, W): the model's kernels and the images channels-last (NHWC), in which oneDNN
    trained a small CNN about 1.7x faster on one CPU thread (measured); other inputs are returned as they are."""
    if x.dim() != 4:
        return x
    model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # accepted at run time
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
        objective: Objective = CLASSIFICATION,
    ) -> None:
        self.objective = objective
        self.device = torch.device(device) if device is not None else pick_device()
        self.model = model.to(self.device).eval()
        self.layout = layout
        if max_samples is not None and max_samples < len(y):
            idx = np.sort(np.random.default_rng(seed).choice(len(y), size=max_samples, replace=False))
            x, y = x[idx], y[idx]
        self.x, self.y = as_tensors(x, y, self.device, objective)
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

    def gradient(self, delta_vec: Tensor | None) -> Tensor:
        """The (D,) gradient of the mean loss at base + delta (None: the base) with respect to the flat parameter
        vector: one forward and one backward pass over (x, y), in eval mode like the loss."""
        point = self._base.clone() if delta_vec is None else self._base + delta_vec.to(self.device, torch.float32)
        if point.shape != self._base.shape:
            raise TrainingError(f"delta has shape {tuple(point.shape)}, expected ({self.layout.total},)")
        point.requires_grad_(True)
        with torch.enable_grad():
            views = self.layout.unflatten(point)
            tensors = {**self._fixed, **{k: _channels_last(v) for k, v in views.items()}}
            total = torch.zeros((), device=self.device)
            for i in range(0, self.samples, self.batch_size):
                logits = functional_call(self.model, tensors, (self.x[i : i + self.batch_size],))
                total = total + self.objective.loss(logits, self.y[i : i + self.batch_size], reduction="sum")
            (grad,) = torch.autograd.grad(total / self.y.numel(), point)
        return grad.detach().cpu()

    def __call__(self, delta_vec: Tensor | None) -> float:
        """Mean cross-entropy of base + delta (None: the base itself)."""
        return float(self.objective.loss(self._logits(delta_vec), self.y))

    def accuracy(self, delta_vec: Tensor | None) -> float:
        return self.objective.correct(self._logits(delta_vec), self.y) / self.y.numel()

    def evaluate(self, delta_vec: Tensor | None) -> EvalResult:
        logits = self._logits(delta_vec)
        return EvalResult(
            float(self.objective.loss(logits, self.y)), self.objective.correct(logits, self.y) / self.y.numel(),
            self.samples,
        )
