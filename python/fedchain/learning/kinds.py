"""Task kinds: what a task learns, as one seam. A kind owns its data checks, its objective (loss and accuracy) and
how a spec's model is checked, so a new kind plugs in without touching the validator or the contributor.

    kind = kind_of(spec)                    # Classification for "classification", NextToken for "next-token"
    data = kind.load_data("shard.npz", spec)   # a next-token task reads a UTF-8 .txt file (fedchain.learning.text)
    check_spec(spec, max_contributors=5)    # before a task is funded: the model builds, the rule can run
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import torch

from fedchain.core.spec import SpecError, TaskSpec
from fedchain.learning.data import load_npz
from fedchain.learning.evaluation import CLASSIFICATION, NEXT_TOKEN, Objective
from fedchain.learning.models import ModelError, ParamLayout, build_model
from fedchain.learning.text import load_text
from fedchain.learning.trainers import LocalData


class TaskKind(ABC):
    """One kind of learning task."""

    name: ClassVar[str]
    objective: ClassVar[Objective]

    @abstractmethod
    def load_data(self, path: str | Path, spec: TaskSpec) -> LocalData:
        """Read and check a data file for this task; raise DataError saying what to fix."""

    def check_spec(self, spec: TaskSpec) -> None:
        """Raise SpecError unless the spec's model builds, runs on one input of the spec's shape and gives the
        output the objective scores."""
        try:
            model = build_model(spec)
            with torch.no_grad():
                out = model.eval()(torch.zeros((1, *spec.input_shape), dtype=self.objective.input_dtype))
        except ModelError as exc:
            raise SpecError(f"architecture: {exc}", [("architecture", str(exc))]) from exc
        except (RuntimeError, ValueError, IndexError) as exc:
            problem = f"{spec.architecture} with model_config {spec.arch_config} cannot run on input {spec.input_shape}"
            raise SpecError(f"model_config: {problem}: {exc}", [("model_config", problem)]) from exc
        expected = self.output_shape(spec)
        if expected is not None and tuple(out.shape) != expected:
            problem = f"{spec.architecture} gives outputs of shape {tuple(out.shape)} for one input, expected {expected}"
            raise SpecError(f"architecture: {problem}", [("architecture", problem)])

    def output_shape(self, spec: TaskSpec) -> tuple[int, ...] | None:
        """The model's output for one input, when the kind requires one (None: not checked)."""
        return None


class Classification(TaskKind):
    """Single-label classification: inputs of the spec's shape, integer labels in [0, num_classes)."""

    name = "classification"
    objective = CLASSIFICATION

    def load_data(self, path: str | Path, spec: TaskSpec) -> LocalData:
        if spec.unlabelled is not None:  # labels may be -1 (fedchain.unlabelled.data)
            from fedchain.unlabelled.data import load_partly_labelled

            return LocalData(*load_partly_labelled(path, spec))
        x, y = load_npz(path, spec)
        return LocalData(x, y)


class NextToken(TaskKind):
    """Next-token prediction on text: windows of input_shape[0] token ids in, the next token at every position out
    (logits (B, window, vocabulary)). Data files are UTF-8 text (format: fedchain.learning.text), read with the
    spec's `text` vocabulary; num_classes is the vocabulary's size."""

    name = "next-token"
    objective = NEXT_TOKEN

    def load_data(self, path: str | Path, spec: TaskSpec) -> LocalData:
        x, y = load_text(path, spec)
        return LocalData(x, y)

    def output_shape(self, spec: TaskSpec) -> tuple[int, ...] | None:
        return (1, spec.input_shape[0], spec.num_classes)


KINDS: dict[str, TaskKind] = {kind.name: kind for kind in (Classification(), NextToken())}


def kind_of(spec: TaskSpec) -> TaskKind:
    try:
        return KINDS[spec.kind]
    except KeyError:
        raise SpecError(f"kind: {spec.kind!r} is not implemented here; known: {', '.join(KINDS)}") from None


def check_spec(spec: TaskSpec, *, max_contributors: int | None = None) -> None:
    """Everything about a spec that needs the learning stack, checked before a task is created and funded: the kind
    exists, the model builds and runs, the trainer it asks for exists, and the rule can run with a full round."""
    from fedchain.learning.trainers import trainer_for

    kind_of(spec).check_spec(spec)
    if spec.unlabelled is not None and spec.kind != "classification":
        raise SpecError(f"unlabelled: pseudo-labelling is for classification tasks only, not {spec.kind!r}; remove "
                        "the unlabelled section", [("unlabelled", "classification only")])
    if spec.unlabelled is not None and spec.privacy is not None:
        raise SpecError("unlabelled: pseudo-labelling with differential privacy is not designed yet (the pseudo-label "
                        "record would leak what the privacy budget protects); remove the privacy or the unlabelled "
                        "section", [("unlabelled", "not with privacy")])
    trainer_for(spec)
    if spec.privacy is not None:
        from fedchain.privacy.trainer import check_private_spec

        check_private_spec(spec)
    if max_contributors is not None:
        spec.check_contributors(max_contributors)


def num_parameters(spec: TaskSpec) -> int:
    """D: the length of this task's flat update vector."""
    return ParamLayout.from_model(build_model(spec)).total
