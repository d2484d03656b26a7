"""Private versions of the demo's tasks: a privacy section and training settings that suit DP-SGD.

DP-SGD adds noise of a fixed size to each step's sum of clipped gradients: the larger the batch, the smaller the
noise against the signal, and clipped gradients need a larger step. The image settings are the best of four tried
on the MNIST subset with 5 non-IID contributors, 5 rounds, epsilon 8 (final accuracy: batch 64 lr 0.5, 62%; batch
128 lr 1.0, 66%; batch 256 lr 2.0 with 3 epochs, 68%; batch 400 lr 2.0 with 4 epochs, 59%; BENCHMARKS.md section
10); the text settings are the plain task's optimizer with a larger batch, not tuned.
"""

from __future__ import annotations

from typing import Any

from fedchain.core.spec import PrivacyConfig, TaskSpec, TrainingConfig

DELTA = 1e-5  # far below 1 / (a contributor's samples), as delta must be
CLIPPING_NORM = 1.0
MIN_NOISE_MULTIPLIER = 0.5
PRIVATE_IMAGE_TRAINING: dict[str, Any] = {"local_epochs": 3, "batch_size": 256, "learning_rate": 2.0, "momentum": 0.5}
PRIVATE_TEXT_TRAINING: dict[str, Any] = {"local_epochs": 1, "batch_size": 64, "learning_rate": 0.01,
                                         "optimizer": "adam"}


def private_spec(spec: TaskSpec, epsilon: float) -> TaskSpec:
    """`spec` as a private task: each contributor may spend `epsilon` (delta DELTA, Opacus's RDP accountant)."""
    privacy = PrivacyConfig(epsilon_cap=epsilon, delta=DELTA, clipping_norm=CLIPPING_NORM,
                            min_noise_multiplier=MIN_NOISE_MULTIPLIER)
    training = PRIVATE_TEXT_TRAINING if spec.kind == "next-token" else PRIVATE_IMAGE_TRAINING
    return spec.model_copy(update={"privacy": privacy, "training": TrainingConfig(**training)})
