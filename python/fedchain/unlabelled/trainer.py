"""FixMatch-style pseudo-labelling against the global model (`PseudoLabelTrainer`, behind the `Trainer` seam).

Each round the contributor labels its unlabelled samples with the round's global model (the teacher, frozen for the
round, on the unaugmented inputs): a sample whose top class has confidence >= the threshold (the spec's
`confidence_threshold`, or FlexMatch's per-class thresholds with `adaptive_thresholds`) gets that class as its
pseudo-label. Local training then minimises, per step,

    (CE(model(weak(x_l)), y_l) + w * CE(model(strong(x_u)), pseudo(x_u))) / (1 + w),   w = unlabelled_loss_weight

over a batch of the spec's batch_size samples, 1 labelled for every `unlabelled_ratio` pseudo-labelled ones, for
local_epochs epochs of as many steps as supervised training over all the contributor's samples would take (only
labelled batches while no sample passes the threshold).
The labels trained on are exactly those the record declares (fedchain.unlabelled.record): anyone holding a disclosed
sample and the round's global model can recompute its label and confidence bucket.

The update's sample count is labelled + pseudo-labelled samples. Deterministic on a CPU for a seed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from fedchain.core.spec import TaskSpec, UnlabelledConfig
from fedchain.learning.evaluation import CLASSIFICATION, Objective, _channels_last_model_and_images
from fedchain.learning.models import ParamLayout
from fedchain.learning.trainers import LocalData, TrainResult, _optimizer
from fedchain.unlabelled.augment import Augmentation
from fedchain.unlabelled.record import PseudoLabels, sample_digest

EXTRA = "pseudo-labels"  # the TrainResult.extras key holding the PseudoLabels


def class_thresholds(confidence: np.ndarray, predicted: np.ndarray, num_classes: int, cfg: UnlabelledConfig
                     ) -> np.ndarray:
    """The threshold for each class: the spec's, or FlexMatch's curriculum thresholds (Zhang et al. 2021),
    tau_c = M(beta_c) * tau with M(x) = x / (2 - x) and beta_c = sigma_c / max(max_c sigma_c, unused), where sigma_c
    counts samples predicted c above tau and `unused` those below it (the warm-up normalisation)."""
    tau = cfg.confidence_threshold
    if not cfg.adaptive_thresholds:
        return np.full(num_classes, tau, np.float64)
    above = confidence >= tau
    sigma = np.bincount(predicted[above], minlength=num_classes).astype(np.float64)
    unused = float((~above).sum())
    scale = max(sigma.max(initial=0.0), unused, 1.0)
    beta = sigma / scale
    return tau * beta / (2.0 - beta)


@torch.no_grad()
def predict(model: nn.Module, base_state: Mapping[str, Tensor], x: np.ndarray, device: torch.device,
            batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """(top class int64, its softmax probability float64) of the global model for each input."""
    model.load_state_dict(dict(base_state))
    model.to(device).eval()
    labels, confs = [], []
    for i in range(0, len(x), batch_size):
        probs = torch.softmax(model(torch.as_tensor(x[i:i + batch_size], device=device)).float(), dim=1)
        conf, label = probs.max(dim=1)
        labels.append(label.cpu().numpy())
        confs.append(conf.double().cpu().numpy())
    if not labels:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    return np.concatenate(labels).astype(np.int64), np.concatenate(confs)


def pseudo_label(model: nn.Module, base_state: Mapping[str, Tensor], x_unlabelled: np.ndarray, cfg: UnlabelledConfig,
                 num_classes: int, device: torch.device) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indices into x_unlabelled that pass their class's threshold, their labels, their confidences)."""
    predicted, confidence = predict(model, base_state, x_unlabelled, device)
    thresholds = class_thresholds(confidence, predicted, num_classes, cfg)
    chosen = np.flatnonzero(confidence >= thresholds[predicted]) if len(predicted) else np.zeros(0, np.int64)
    return chosen, predicted[chosen], confidence[chosen]


@dataclass(frozen=True)
class PseudoLabelTrainer:
    """Pseudo-labelling by the spec's `unlabelled` section; `label_map` lets an attacker rewrite its pseudo-labels
    (fedchain.sim.attacks: trained on and declared as rewritten)."""

    objective: Objective = CLASSIFICATION
    augmentation: Augmentation = field(default_factory=Augmentation)
    label_map: Callable[[np.ndarray, int], np.ndarray] | None = None

    def train(
        self, model: nn.Module, base_state: Mapping[str, Tensor], data: LocalData, spec: TaskSpec, *,
        seed: int, device: torch.device, progress: bool = True,
    ) -> TrainResult:
        cfg = spec.unlabelled or UnlabelledConfig()
        t0 = time.perf_counter()
        has_label = data.y >= 0
        x_l, y_l = data.x[has_label], data.y[has_label]
        x_u = data.x[~has_label]
        chosen, labels, confidence = pseudo_label(model, base_state, x_u, cfg, spec.num_classes, device)
        if self.label_map is not None:
            labels = np.asarray(self.label_map(labels, spec.num_classes), dtype=np.int64)
        x_p = x_u[chosen]
        declared = PseudoLabels(
            threshold=cfg.confidence_threshold, adaptive=cfg.adaptive_thresholds, num_classes=spec.num_classes,
            labelled=len(y_l), unlabelled_seen=len(x_u), sample_digests=tuple(sample_digest(s) for s in x_p),
            labels=tuple(int(v) for v in labels), confidences=tuple(float(c) for c in confidence),
        )
        if len(x_p) == 0 and len(y_l) == 0:  # nothing to learn from: the global model unchanged
            zeros = {e.name: torch.zeros(e.shape, dtype=torch.float32)
                     for e in ParamLayout.from_state_dict(base_state).entries}
            return TrainResult(zeros, 0, 0.0, time.perf_counter() - t0, extras={EXTRA: declared})
        delta, loss = self._fixmatch(model, base_state, (x_l, y_l), (x_p, labels), len(data), spec, seed, device,
                                     progress)
        return TrainResult(delta, len(y_l) + len(x_p), loss, time.perf_counter() - t0, extras={EXTRA: declared})

    def _fixmatch(
        self, model: nn.Module, base_state: Mapping[str, Tensor], labelled: tuple[np.ndarray, np.ndarray],
        pseudo: tuple[np.ndarray, np.ndarray], held: int, spec: TaskSpec, seed: int, device: torch.device,
        progress: bool,
    ) -> tuple[dict[str, Tensor], float]:
        cfg, tcfg = spec.unlabelled or UnlabelledConfig(), spec.training
        xl = torch.as_tensor(labelled[0], device=device)
        yl = torch.as_tensor(labelled[1], device=device)
        xp = torch.as_tensor(pseudo[0], device=device)
        yp = torch.as_tensor(pseudo[1], device=device)
        n_l, n_p = len(yl), len(yp)
        # A step's batch: batch_size samples, 1 labelled for every unlabelled_ratio pseudo-labelled ones. An epoch is
        # as many steps as supervised training over all the contributor's samples would take (FixMatch keeps the
        # number of steps fixed whatever the share of samples above the threshold).
        per_l = 0 if n_l == 0 else max(1, round(tcfg.batch_size / (1 + cfg.unlabelled_ratio)))
        per_l = tcfg.batch_size if n_p == 0 else per_l  # nothing above the threshold yet: labelled batches only
        per_u = 0 if n_p == 0 else max(1, tcfg.batch_size - per_l)
        steps = (held + tcfg.batch_size - 1) // tcfg.batch_size
        layout = ParamLayout.from_state_dict(base_state)
        model.load_state_dict(dict(base_state))
        model.to(device).train()
        images = xp.dim() == 4
        if images:  # channels-last kernels before the optimizer holds the parameters (as train_local)
            _channels_last_model_and_images(model, xp[:1])
        params = [p for p in model.parameters() if p.requires_grad]
        opt = _optimizer(params, tcfg)
        from tqdm.auto import tqdm

        bar = tqdm(total=tcfg.local_epochs * steps, desc="pseudo-labelling", unit="batch", disable=not progress,
                   leave=False)
        devices = [device.index or 0] if device.type == "cuda" else []
        loss_sum, aug = 0.0, self.augmentation
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            gen = torch.Generator().manual_seed(seed)
            for _ in range(tcfg.local_epochs):
                order_u = _cycled(n_p, steps * per_u, gen).to(device)
                order_l = _cycled(n_l, steps * per_l, gen).to(device)
                loss_sum = 0.0
                for step in range(steps):
                    # One forward pass over the step's labelled (weak) and pseudo-labelled (strong) views together.
                    il = order_l[step * per_l:(step + 1) * per_l]
                    iu = order_u[step * per_u:(step + 1) * per_u]
                    views = [aug.weak(xl[il], gen)] if per_l else []
                    views += [aug.strong(xp[iu], gen)] if per_u else []
                    logits = model(_layout(torch.cat(views) if len(views) > 1 else views[0], images))
                    loss, weight = torch.zeros((), device=device), 0.0
                    if per_l:
                        loss = loss + self.objective.loss(logits[:per_l], yl[il])
                        weight += 1.0
                    if per_u:
                        loss = loss + cfg.unlabelled_loss_weight * self.objective.loss(logits[len(il):], yp[iu])
                        weight += cfg.unlabelled_loss_weight
                    # Divided by the weights' sum: the step is as large as a supervised one at the spec's learning
                    # rate (the plain sum, FixMatch's, diverged here at lr 0.1).
                    loss = loss / max(weight, 1e-12)
                    loss_sum += loss.item()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    bar.update(1)
        bar.close()
        trained = model.state_dict()
        delta = {e.name: (trained[e.name].detach().to("cpu", torch.float32)
                          - base_state[e.name].detach().to("cpu", torch.float32)).contiguous() for e in layout.entries}
        return delta, loss_sum / max(steps, 1)


def _layout(x: Tensor, images: bool) -> Tensor:
    return x.contiguous(memory_format=torch.channels_last) if images else x


def _cycled(n: int, count: int, gen: torch.Generator) -> Tensor:
    """`count` indices into range(n): fresh permutations back to back (each labelled sample used equally often)."""
    if n == 0 or count == 0:
        return torch.zeros(0, dtype=torch.int64)
    reps = (count + n - 1) // n
    return torch.cat([torch.randperm(n, generator=gen) for _ in range(reps)])[:count]
