"""Models Opacus can train: the layers its per-sample gradients cannot handle, replaced.

BatchNorm mixes samples within a batch (no per-sample gradient exists): it becomes GroupNorm over the same channels
(its weight and bias keep their names; the running statistics go). nn.LSTM's fused kernel hides the per-step
matrix products: it becomes Opacus's DPLSTM, the same computation written with Linear layers (same parameter names).
A private task's model is built this way by every party (fedchain.learning.models.build_model), so a plain task's
model is unchanged and a private task's is the same for its contributors and validators.
"""

from __future__ import annotations

import math

from torch import nn

GROUPS = 32  # GroupNorm groups at most (Wu & He's default), fewer when the channels do not divide by it


def dp_compatible(model: nn.Module) -> nn.Module:
    """`model` with BatchNorm replaced by GroupNorm and LSTM by DPLSTM, in place (the module is returned)."""
    for name, child in list(model.named_children()):
        replacement = _replacement(child)
        if replacement is not None:
            setattr(model, name, replacement)
        else:
            dp_compatible(child)
    return model


def _replacement(module: nn.Module) -> nn.Module | None:
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        channels = module.num_features
        return nn.GroupNorm(math.gcd(GROUPS, channels), channels, eps=module.eps, affine=module.affine)
    if isinstance(module, nn.LSTM):
        from opacus.layers import DPLSTM

        if module.proj_size:
            raise ValueError("an LSTM with proj_size cannot be trained privately (Opacus's DPLSTM has no projection)")
        lstm = DPLSTM(module.input_size, module.hidden_size, num_layers=module.num_layers, bias=module.bias,
                      batch_first=module.batch_first, dropout=module.dropout, bidirectional=module.bidirectional)
        _only_lstm_names(lstm)
        return lstm
    return None


def _only_lstm_names(lstm: nn.Module) -> None:
    """Keep DPLSTM's state under nn.LSTM's names only, also when nested in a model.

    DPLSTM registers each parameter twice (its cells' names, e.g. `l0.ih.weight`, and nn.LSTM's `weight_ih_l0`)
    and filters the first out of its own state_dict by returning a copy, which a parent module ignores (Opacus 1.6):
    nested, both would reach the update's layout. Saving drops the cells' names; loading fills them from nn.LSTM's.
    """
    old_to_new: dict[str, str] = lstm.old_to_new  # type: ignore[assignment]  # set by Opacus's RenameParamsMixin

    def drop_cell_names(module: nn.Module, state: dict[str, object], prefix: str, _meta: object) -> None:
        for old in old_to_new:
            state.pop(prefix + old, None)

    def fill_cell_names(state: dict[str, object], prefix: str, *_: object) -> None:
        for old, new in old_to_new.items():
            if prefix + new in state:
                state.setdefault(prefix + old, state[prefix + new])

    # Opacus's own filter returns a filtered copy, which a parent's state_dict never sees: filter in place instead.
    lstm._state_dict_hooks.clear()
    lstm._register_state_dict_hook(drop_cell_names)
    lstm._register_load_state_dict_pre_hook(fill_cell_names)


def check_trainable(model: nn.Module) -> None:
    """ValueError naming the layers Opacus cannot compute per-sample gradients for (none after dp_compatible)."""
    from opacus.validators import ModuleValidator

    errors = ModuleValidator.validate(model, strict=False)
    if errors:
        raise ValueError("this model cannot be trained with DP-SGD: " + "; ".join(str(e) for e in errors))
