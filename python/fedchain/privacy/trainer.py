"""DP-SGD local training through Opacus: Poisson sampling, per-sample gradient clipping, Gaussian noise.

    trainer = DPTrainer(budget=PrivacyBudget(task_id, spec.privacy), rounds_left=5)
    result = trainer.train(model, base_state, LocalData(x, y), spec, seed=7, device=torch.device("cpu"))
    result.declaration.record()        # the update's "privacy/1" extension; result.declaration.epsilon_micro on chain

Each round takes `local_epochs x floor(1 / q)` steps, q = batch_size / num_samples (Opacus's Poisson loader's
count), each sample joining each batch independently with probability q. Noise: the smallest multiplier, at least
the spec's minimum, with which this round and the `rounds_left - 1` after it (at the same q and steps) keep the
contributor's cumulative epsilon within the cap; the training is recorded in the budget before it runs, and refused
(BudgetExhaustedError, saying what was spent) when no multiplier up to MAX_NOISE_FACTOR x max(1, the minimum) fits.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from fedchain.core.spec import PrivacyConfig, SpecError, TaskSpec
from fedchain.learning.evaluation import CLASSIFICATION, Objective, as_tensors
from fedchain.learning.models import ParamLayout
from fedchain.learning.trainers import LocalData, TrainResult, _optimizer
from fedchain.privacy.accounting import (
    BudgetExhaustedError,
    Steps,
    check_accountant,
    epsilon,
    installed_accountant_version,
    noise_for_budget,
    to_micro,
)
from fedchain.privacy.budget import PrivacyBudget, Spend
from fedchain.privacy.declaration import PrivacyDeclaration, declared_sample_rate
from fedchain.privacy.layers import check_trainable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrivateTrainResult(TrainResult):
    declaration: PrivacyDeclaration | None = None  # always set by DPTrainer


def round_steps(spec: TaskSpec, num_samples: int) -> tuple[float, int]:
    """(sample rate, steps) of one round of DP-SGD for a contributor holding `num_samples` samples."""
    q = declared_sample_rate(spec.training.batch_size, num_samples)
    return q, spec.training.local_epochs * int(1 / q)


@dataclass
class DPTrainer:
    """The `Trainer` of a spec with a privacy section (fedchain.learning.trainers.trainer_for picks it)."""

    objective: Objective = CLASSIFICATION
    budget: PrivacyBudget | None = None  # None: a fresh in-memory one per task (tests, benchmarks)
    rounds_left: int = 1  # rounds still to train in this task, this one included: the noise spreads the cap over them
    round_index: int = 0  # the round this training is for (recorded in the budget)

    def plan(self, spec: TaskSpec, num_samples: int, budget: PrivacyBudget) -> Steps:
        """This round's steps and noise (BudgetExhaustedError if the cap allows no more training)."""
        cfg = _privacy(spec)
        q, steps = round_steps(spec, num_samples)
        sigma = noise_for_budget(budget.history, cfg, q, steps, max(1, self.rounds_left))
        return Steps(sigma, q, steps)

    def train(
        self, model: nn.Module, base_state: Mapping[str, Tensor], data: LocalData, spec: TaskSpec, *,
        seed: int, device: torch.device, progress: bool = True,
    ) -> PrivateTrainResult:
        cfg = _privacy(spec)
        check_accountant(cfg)
        if self.budget is None:
            self.budget = PrivacyBudget(0, cfg)
        budget = self.budget
        spent = budget.spent()
        try:
            planned = self.plan(spec, len(data), budget)
        except BudgetExhaustedError:
            log.error("privacy budget spent: %s; no more training for this task", budget.describe())
            raise
        total = epsilon([*budget.history, planned], cfg)
        if total > cfg.epsilon_cap:  # noise_for_budget keeps within the cap: a guard against float edge cases
            raise BudgetExhaustedError(f"another round would spend epsilon {total:.4f}, past the cap "
                                       f"{cfg.epsilon_cap:g} (spent so far: {spent:.4f})", spent, cfg.epsilon_cap)
        micro = to_micro(total)
        declaration = PrivacyDeclaration(
            accountant=cfg.accountant, accountant_version=installed_accountant_version(),
            clipping_norm=cfg.clipping_norm, delta=cfg.delta, noise_multiplier=planned.noise_multiplier,
            sample_rate=planned.sample_rate, steps=planned.steps, earlier=tuple(budget.history), epsilon_micro=micro,
        )
        budget.record(Spend(self.round_index, planned, micro))  # before any step touches the data
        log.info("DP-SGD: noise %.4f, q %.5f, %d steps: epsilon %.4f -> %.4f of the cap %g (%s, delta %g)",
                 planned.noise_multiplier, planned.sample_rate, planned.steps, spent, total, cfg.epsilon_cap,
                 cfg.accountant, cfg.delta)
        t0 = time.perf_counter()
        delta, loss = _dp_sgd(model, base_state, data, spec, planned, cfg, self.objective, seed, device, progress)
        return PrivateTrainResult(delta, len(data), loss, time.perf_counter() - t0, declaration=declaration)


def check_private_spec(spec: TaskSpec) -> None:
    """SpecError unless this installation can train and account the private task: its accountant version is the
    installed one, and its model (as built for a private task) has per-sample gradients in Opacus."""
    from fedchain.learning.models import build_model
    from fedchain.privacy.accounting import AccountingError

    try:
        check_accountant(_privacy(spec))
    except AccountingError as exc:
        raise SpecError(str(exc), [("privacy.accountant_version", str(exc))]) from exc
    try:
        check_trainable(build_model(spec))
    except ValueError as exc:
        raise SpecError(f"privacy: {exc}", [("architecture", str(exc))]) from exc


def _privacy(spec: TaskSpec) -> PrivacyConfig:
    if spec.privacy is None:
        raise SpecError("DPTrainer trains private tasks only: this spec has no privacy section",
                        [("privacy", "missing")])
    return spec.privacy


def _dp_sgd(model: nn.Module, base_state: Mapping[str, Tensor], data: LocalData, spec: TaskSpec, plan: Steps,
            cfg: PrivacyConfig, objective: Objective, seed: int, device: torch.device,
            progress: bool) -> tuple[dict[str, Tensor], float]:
    """Run `plan` on the data from `base_state`; (delta = trained - base over the layout, mean loss of the last epoch)."""
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer
    from tqdm.auto import tqdm

    xt, yt = as_tensors(data.x, data.y, device, objective)
    n = xt.shape[0]
    layout = ParamLayout.from_state_dict(base_state)
    model.load_state_dict(dict(base_state))
    model.to(device).train()
    check_trainable(model)
    gsm = GradSampleModule(model, batch_first=True, loss_reduction="mean")
    params = [p for p in model.parameters() if p.requires_grad]
    devices = [device.index or 0] if device.type == "cuda" else []
    epochs = spec.training.local_epochs
    per_epoch = plan.steps // epochs
    bar = tqdm(total=plan.steps, desc="DP-SGD", unit="step", disable=not progress, leave=False)
    loss_sum, seen = 0.0, 0
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            sampling = torch.Generator().manual_seed(seed)
            noise = torch.Generator(device=device).manual_seed(seed + 1)
            optimizer = DPOptimizer(_optimizer(params, spec.training), noise_multiplier=plan.noise_multiplier,
                                    max_grad_norm=cfg.clipping_norm, expected_batch_size=spec.training.batch_size,
                                    loss_reduction="mean", generator=noise)
            for step in range(plan.steps):
                if step % per_epoch == 0:
                    loss_sum, seen = 0.0, 0
                idx = torch.nonzero(torch.rand(n, generator=sampling) < plan.sample_rate).flatten().to(device)
                optimizer.zero_grad(set_to_none=True)
                if idx.numel() == 0:  # an empty Poisson batch still takes a (noise-only) step
                    for p in params:
                        setattr(p, "grad_sample", torch.zeros((0, *p.shape), device=device))  # noqa: B010
                else:
                    loss = objective.loss(gsm(xt[idx]), yt[idx])
                    loss_sum += loss.item() * idx.numel()
                    seen += idx.numel()
                    with warnings.catch_warnings():  # integer or data inputs need no gradient: Opacus's hooks warn
                        warnings.filterwarnings("ignore", message="Full backward hook is firing")
                        loss.backward()
                optimizer.step()
                bar.update(1)
            bar.set_postfix(epochs=epochs, loss=f"{loss_sum / max(seen, 1):.4f}")
    finally:
        bar.close()
        gsm._close()  # hooks and per-sample gradients off the caller's model
    trained = model.state_dict()
    delta = {e.name: (trained[e.name].detach().to("cpu", torch.float32)
                      - base_state[e.name].detach().to("cpu", torch.float32)).contiguous() for e in layout.entries}
    return delta, loss_sum / max(seen, 1)
