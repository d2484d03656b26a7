"""Model architectures and the flat parameter layout that updates travel in.

A task's spec names an architecture from a small registry (`mlp`, `cnn`, `char-lstm`; others register the same way) plus
its configuration. Everything that crosses a process boundary is a *flat float32 vector* of the model's floating-point
state: `ParamLayout` fixes the order (state-dict names sorted), so a (K, D) buffer of K updates has one row per update.
Integer buffers (BatchNorm's `num_batches_tracked`) are not part of the layout: they are not averaged.

    >>> spec = mnist_spec(sealed=False)          # from fedchain.core.spec
    >>> model = build_model(spec)
    >>> layout = ParamLayout.from_model(model)
    >>> state = initial_state(spec, seed=0)
    >>> vec = layout.flatten(state)              # Tensor(D) float32
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from fedchain.errors import FedchainError

if TYPE_CHECKING:
    from fedchain.core.spec import TaskSpec

StateDict = dict[str, Tensor]
# A factory builds a module from (input_shape, num_classes, **model_config).
ArchitectureFactory = Callable[..., nn.Module]

_REGISTRY: dict[str, ArchitectureFactory] = {}


class ModelError(FedchainError, ValueError):
    """Raised when an architecture is unknown or misconfigured, or a state does not fit a model's layout."""


# ---------------------------------------------------------------------------------------------------------------------
# REGISTRY
# ---------------------------------------------------------------------------------------------------------------------


def register_architecture(name: str) -> Callable[[ArchitectureFactory], ArchitectureFactory]:
    """Register a factory (an nn.Module class or a function) under `name`.

    The factory is called as `factory(input_shape, num_classes, **model_config)`.
    """

    def decorator(factory: ArchitectureFactory) -> ArchitectureFactory:
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ModelError(f"architecture {name!r} is already registered; pick another name")
        _REGISTRY[name] = factory
        return factory

    return decorator


def known_architectures() -> list[str]:
    """The registered architecture names, sorted."""
    return sorted(_REGISTRY)


def build_architecture(
    architecture: str, input_shape: tuple[int, ...], num_classes: int, config: Mapping[str, Any] | None = None
) -> nn.Module:
    """Build a fresh (randomly initialised from torch's global RNG) module; see `build_model` for a spec."""
    factory = _REGISTRY.get(architecture)
    if factory is None:
        raise ModelError(
            f"unknown architecture {architecture!r}; known architectures: {', '.join(known_architectures())}"
        )
    try:
        return factory(tuple(input_shape), int(num_classes), **dict(config or {}))
    except TypeError as exc:  # unknown or missing keyword in model_config
        raise ModelError(f"bad model_config {dict(config or {})!r} for architecture {architecture!r}: {exc}") from exc
    except ValueError as exc:
        raise ModelError(f"cannot build architecture {architecture!r} for input {tuple(input_shape)}: {exc}") from exc


def build_model(spec: TaskSpec) -> nn.Module:
    """Build the task's model (weights random from torch's global RNG; use `initial_state` for a seeded state).

    A private task's model has the layers DP-SGD cannot train replaced (fedchain.privacy.layers)."""
    model = build_architecture(spec.architecture, spec.input_shape, spec.num_classes, spec.arch_config)
    if spec.privacy is not None:
        from fedchain.privacy.layers import dp_compatible

        model = dp_compatible(model)
    return model


def initial_state(spec: TaskSpec, seed: int) -> StateDict:
    """The task's round-0 global state: the same bytes for the same spec and seed on every CPU.

    Uses a forked RNG so the caller's torch RNG is left untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(spec)
    return {name: t.detach().clone() for name, t in model.state_dict().items()}


# ---------------------------------------------------------------------------------------------------------------------
# ARCHITECTURES
# ---------------------------------------------------------------------------------------------------------------------


@register_architecture("mlp")
class MLP(nn.Module):
    """Fully connected net: flatten -> [Linear -> ReLU (-> Dropout)] * len(hidden) -> Linear.

    model_config: hidden (list of widths, default [128]), dropout (default 0.0).
    784-128-10 has 101,770 parameters.
    """

    def __init__(
        self, input_shape: tuple[int, ...], num_classes: int, hidden: list[int] | tuple[int, ...] = (128,),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if any(int(h) < 1 for h in hidden):
            raise ValueError(f"hidden widths must be positive, got {list(hidden)}")
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = int(h)
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)  # (B, *input_shape) -> (B, num_classes)


@register_architecture("cnn")
class CNN(nn.Module):
    """Small CNN for (C, H, W) images: [Conv3x3 (-> BN) -> ReLU -> MaxPool2] per channel entry, then a 2-layer head.

    model_config: channels (default [16, 32]), hidden (default 128), pool_to (spatial size before the head via
    adaptive max pooling, default 3), batch_norm (default False), dropout (default 0.0), init ("torch": PyTorch's
    default, the default; "kaiming": He-normal weights and zero biases for the ReLU layers, which starts learning
    faster but, at the default learning rate, made 5-round FedAvg on non-IID shards less stable in our runs).
    For 1x28x28 and 10 classes the defaults give 43,082 parameters.
    """

    def __init__(
        self, input_shape: tuple[int, ...], num_classes: int, channels: list[int] | tuple[int, ...] = (16, 32),
        hidden: int = 128, pool_to: int = 3, batch_norm: bool = False, dropout: float = 0.0, init: str = "torch",
    ) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(f"cnn needs a (channels, height, width) input_shape, got {tuple(input_shape)}")
        in_ch = input_shape[0]
        layers: list[nn.Module] = []
        for ch in channels:
            layers.append(nn.Conv2d(in_ch, int(ch), kernel_size=3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(int(ch)))
            layers += [nn.ReLU(), nn.MaxPool2d(2)]
            in_ch = int(ch)
        layers.append(nn.AdaptiveMaxPool2d(pool_to))
        self.features = nn.Sequential(*layers)
        head: list[nn.Module] = [nn.Flatten(), nn.Linear(in_ch * pool_to * pool_to, hidden), nn.ReLU()]
        if dropout > 0:
            head.append(nn.Dropout(dropout))
        head.append(nn.Linear(hidden, num_classes))
        self.head = nn.Sequential(*head)
        _init_relu_layers(self, init, last=head[-1])

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)  # (B, C, H, W) -> (B, channels[-1], pool_to, pool_to)
        return self.head(x)  # -> (B, num_classes)


@register_architecture("char-lstm")
class CharLSTM(nn.Module):
    """Next-character model for text windows: Embedding -> LSTM -> Linear over the vocabulary, at every position.

    model_config: embed (embedding width, default 32), hidden (LSTM width, default 256), layers (default 1), dropout
    (between LSTM layers, default 0.0). input_shape is (window,); num_classes is the vocabulary's size. For a
    95-character vocabulary the defaults give 331,999 parameters.
    """

    def __init__(
        self, input_shape: tuple[int, ...], num_classes: int, embed: int = 32, hidden: int = 256, layers: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if len(input_shape) != 1:
            raise ValueError(f"char-lstm reads windows of token ids: input_shape must be (window,), got {tuple(input_shape)}")
        if min(int(embed), int(hidden), int(layers)) < 1:
            raise ValueError(f"embed, hidden and layers must be positive, got {embed}, {hidden}, {layers}")
        self.embed = nn.Embedding(num_classes, int(embed))
        self.lstm = nn.LSTM(int(embed), int(hidden), num_layers=int(layers), batch_first=True,
                            dropout=float(dropout) if int(layers) > 1 else 0.0)
        self.head = nn.Linear(int(hidden), num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h, _ = self.lstm(self.embed(x))  # (B, T) ids -> (B, T, embed) -> (B, T, hidden)
        return self.head(h)  # -> (B, T, num_classes): logits of each next token


def _init_relu_layers(model: nn.Module, init: str, last: nn.Module) -> None:
    """He-normal init for conv/linear layers followed by ReLU (all but `last`); "torch" keeps PyTorch's default."""
    if init == "torch":
        return
    if init != "kaiming":
        raise ValueError(f"init must be 'kaiming' or 'torch', got {init!r}")
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)) and m is not last:
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ---------------------------------------------------------------------------------------------------------------------
# FLAT LAYOUT
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayoutEntry:
    """One tensor's place in the flat vector: vec[offset : offset + numel].view(shape)."""

    name: str
    shape: tuple[int, ...]
    offset: int
    numel: int


@dataclass(frozen=True)
class ParamLayout:
    """The model's floating-point state-dict entries sorted by name, packed into one float32 vector of length D.

    Integer buffers (e.g. BatchNorm's num_batches_tracked) are excluded: they are not averaged.
    """

    entries: tuple[LayoutEntry, ...]
    total: int  # D

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Tensor]) -> ParamLayout:
        entries: list[LayoutEntry] = []
        offset = 0
        for name in sorted(state):
            t = state[name]
            if not torch.is_floating_point(t):
                continue
            shape = tuple(int(s) for s in t.shape)
            entries.append(LayoutEntry(name, shape, offset, t.numel()))
            offset += t.numel()
        return cls(tuple(entries), offset)

    @classmethod
    def from_model(cls, model: nn.Module) -> ParamLayout:
        return cls.from_state_dict(model.state_dict())

    @property
    def D(self) -> int:  # noqa: N802 - the conventional name for the update dimension
        return self.total

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    def expected_tensors(self) -> dict[str, tuple[tuple[int, ...], str]]:
        """{name: (shape, "float32")}: what a decoded update must contain, exactly."""
        return {e.name: (e.shape, "float32") for e in self.entries}

    def check(self, state: Mapping[str, Tensor] | Mapping[str, np.ndarray]) -> None:
        """Raise ModelError unless `state` holds every layout tensor with the right shape (extra entries allowed)."""
        for e in self.entries:
            t = state.get(e.name)
            if t is None:
                raise ModelError(f"state is missing tensor {e.name!r} (expected shape {e.shape})")
            if tuple(t.shape) != e.shape:
                raise ModelError(f"tensor {e.name!r} has shape {tuple(t.shape)}, expected {e.shape}")
            floating = np.issubdtype(t.dtype, np.floating) if isinstance(t, np.ndarray) else torch.is_floating_point(t)
            if not floating:
                raise ModelError(f"tensor {e.name!r} has dtype {t.dtype}, expected a floating-point tensor")

    def flatten(self, state: Mapping[str, Tensor]) -> Tensor:
        """A new float32 CPU vector of length D with the layout's tensors in order."""
        out = torch.empty(self.total, dtype=torch.float32)
        self.flatten_into(state, out)
        return out

    def flatten_into(self, state: Mapping[str, Tensor] | Mapping[str, np.ndarray], out_row: Tensor) -> Tensor:
        """Write the layout's tensors into `out_row` (a float32 vector of length D, e.g. a row of a (K, D) buffer).

        `state` may hold NumPy arrays (as decoded envelopes do): they are copied straight into a CPU row."""
        if out_row.dim() != 1 or out_row.numel() != self.total or out_row.dtype != torch.float32:
            raise ModelError(
                f"out_row must be a float32 vector of length {self.total}, "
                f"got {out_row.dtype} of shape {tuple(out_row.shape)}"
            )
        self.check(state)
        for e in self.entries:
            src = state[e.name]
            if isinstance(src, np.ndarray) and out_row.device.type == "cpu":
                out_row[e.offset : e.offset + e.numel].numpy()[:] = src.reshape(-1)
            elif isinstance(src, np.ndarray):
                out_row[e.offset : e.offset + e.numel].copy_(torch.from_numpy(src.reshape(-1).copy()))
            else:
                out_row[e.offset : e.offset + e.numel].copy_(src.detach().reshape(-1))
        return out_row

    def unflatten(self, vec: Tensor) -> StateDict:
        """{name: tensor} *views* into `vec` (no copy: clone them if `vec` will change and you keep them)."""
        if vec.dim() != 1 or vec.numel() != self.total:
            raise ModelError(f"expected a vector of length {self.total}, got shape {tuple(vec.shape)}")
        return {e.name: vec[e.offset : e.offset + e.numel].view(e.shape) for e in self.entries}


def tensors_from_arrays(arrays: Mapping[str, np.ndarray]) -> StateDict:
    """Torch tensors (own, writable copies) from decoded envelope arrays."""
    return {name: torch.from_numpy(np.array(a)) for name, a in arrays.items()}


def apply_delta(state: Mapping[str, Tensor], delta_vec: Tensor, layout: ParamLayout) -> StateDict:
    """A new state: state + delta for the layout's float tensors; other entries (integer buffers) copied unchanged."""
    parts = layout.unflatten(delta_vec)
    layout.check(state)
    out: StateDict = {}
    for name, t in state.items():
        if name in parts:
            out[name] = (t.detach().to(torch.float32) + parts[name].to(t.device)).to(t.dtype)
        else:
            out[name] = t.detach().clone()
    return out
