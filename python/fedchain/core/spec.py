"""The task spec: what a task trains, how, and how its contributions are merged and scored.

A spec is a JSON document stored in IPFS. Its bytes are canonical (RFC 8785 via the `rfc8785` package), so the same
spec always has the same CID:

    spec = mnist_spec(sealing_keys=[validator_x25519_pub_hex])
    data = spec.to_json_bytes()                  # canonical bytes, ready for IPFS
    assert TaskSpec.from_json_bytes(data) == spec

JSON layout (keys sorted by RFC 8785; `model_config` is the architecture's configuration; in Python it is the
attribute `arch_config`, since pydantic reserves the name `model_config`):

    {"aggregation": {"clip_multiple": null, "rule": "fedavg"}, "architecture": "cnn",
     "format": "fedchain-task-spec/2", "input_shape": [1, 28, 28], "kind": "classification",
     "max_update_bytes": 8388608, "model_config": {...}, "name": "mnist-cnn", "num_classes": 10,
     "policy": {...}, "privacy": null, "protocol_version": 1, "scoring": {...}, "sealed": true,
     "text": null, "training": {...}, "unlabelled": null, "validator_sealing_keys": ["<64 hex>"]}

Task kinds (`kind`): "classification" (inputs of `input_shape`, one label in [0, num_classes) each) and "next-token"
(character windows: `input_shape` is (window,), `num_classes` is the vocabulary's size, and the `text` section says
which character each id stands for; fedchain.learning.text reads text into windows by it).

The spec is the one typed source of protocol truth: every parameter that two validators must agree on (the rule and
its parameters, screening thresholds, what slashes, score rounding) is here, with today's values as defaults.
Part of the protocol core: validating a spec imports no torch. Whether the named architecture can be built for this
input shape is the learning layer's check (`fedchain.learning.kinds.check_spec`), run before a task is funded.

Every validation failure is raised as `SpecError` naming the field, the value and what is allowed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import rfc8785
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fedchain.core.reasons import PROVABLE, Reason
from fedchain.errors import FedchainError

SPEC_FORMAT = "fedchain-task-spec/2"
# The rules this code computes by (scoring, rounding, screening, slashing). A validator refuses any other version,
# so two versions of the code never silently compute different results for one task.
PROTOCOL_VERSION = 1
SUPPORTED_PROTOCOL_VERSIONS = frozenset({PROTOCOL_VERSION})
MAX_SAMPLES_LIMIT = 2**29 - 1  # the merge's exact-weight bound (fedchain.aggregation.rules.MAX_WEIGHT - 1)
_HEX_KEY = re.compile(r"^[0-9a-f]{64}$")
_ARCHITECTURE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


class SpecError(FedchainError, ValueError):
    """Raised when a task spec (or one of its parts) is invalid or cannot be read.

    `problems` lists (field path, message) pairs when the error comes from validation.
    """

    def __init__(self, message: str, problems: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


def validation_problems(exc: ValidationError) -> list[tuple[str, str]]:
    """(field path, message) per problem; errors raised by nested fedchain models are flattened into their paths."""
    out: list[tuple[str, str]] = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        inner = (err.get("ctx") or {}).get("error")
        if isinstance(inner, ValidationError):
            out += [(".".join(filter(None, (loc, sub))), msg) for sub, msg in validation_problems(inner)]
            continue
        problems = getattr(inner, "problems", None)
        if problems:
            out += [(".".join(filter(None, (loc, sub))), msg) for sub, msg in problems]
            continue
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; extra fields are not allowed)"
        elif err["type"] not in ("missing", "value_error") and "input" in err:
            got = repr(err["input"])
            msg += f" (got {got[:80] + '...' if len(got) > 80 else got})"
        out.append((loc, msg))
    return out


def format_problems(problems: list[tuple[str, str]], what: str) -> str:
    """`invalid {what}:` then one `  field.path: message` line per problem."""
    return f"invalid {what}:\n" + "\n".join(f"  {loc or '(top level)'}: {msg}" for loc, msg in problems)


def format_validation_error(exc: ValidationError, what: str) -> str:
    return format_problems(validation_problems(exc), what)


class StrictModel(BaseModel):
    """Frozen, no extra fields, and every validation error re-raised as `error_class` with a readable list of problems.

    Subclasses name their own error class (SpecError here, ReportError for round reports)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, protected_namespaces=())
    error_class: ClassVar[type[FedchainError]] = SpecError

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            problems = validation_problems(exc)
            raise self.error_class(format_problems(problems, type(self).__name__), problems) from exc

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Any:
        try:
            return super().model_validate(obj, **kwargs)
        except ValidationError as exc:
            problems = validation_problems(exc)
            raise cls.error_class(format_problems(problems, cls.__name__), problems) from exc



class TrainingConfig(StrictModel):
    """Local training settings. The defaults reach >= 93% on the MNIST subset with 5 non-IID shards in 5 rounds."""

    local_epochs: int = Field(2, ge=1, le=1000)  # passes over the contributor's data per round
    batch_size: int = Field(16, ge=1, le=1_000_000)
    learning_rate: float = Field(0.1, gt=0, le=10)
    momentum: float = Field(0.5, ge=0, lt=1)  # SGD momentum (ignored by adam)
    fedprox_mu: float = Field(0.0, ge=0)  # FedProx proximal weight; 0 = plain local SGD
    optimizer: Literal["sgd", "adam"] = "sgd"


# ---------------------------------------------------------------- aggregation: one typed model per rule


# Rows whose L2 norm exceeds clip_multiple x the median row norm are scaled down to it first (any rule; None: off).
ClipMultiple = Annotated[float | None, Field(gt=0, allow_inf_nan=False)]


class FedAvgRule(StrictModel):
    """Sample-weighted mean (McMahan et al.)."""

    rule: Literal["fedavg"] = "fedavg"
    clip_multiple: ClipMultiple = None


class MedianRule(StrictModel):
    """Coordinate-wise median."""

    rule: Literal["median"]
    clip_multiple: ClipMultiple = None


class TrimmedMeanRule(StrictModel):
    """Coordinate-wise mean after cutting int(beta x K) rows at each end."""

    rule: Literal["trimmed-mean"]
    beta: float = Field(0.1, ge=0, lt=0.5)
    clip_multiple: ClipMultiple = None


class MultiKrumRule(StrictModel):
    """Mean of the m rows nearest their K - f - 2 neighbours (Blanchard et al.); needs K >= 2f + 3."""

    rule: Literal["multi-krum"]
    f: int = Field(1, ge=0, le=1000)  # Byzantine contributors tolerated
    m: int | None = Field(None, ge=1)  # rows averaged; None: K - f
    clip_multiple: ClipMultiple = None

    def min_contributors(self) -> int:
        return 2 * self.f + 3


AggregationConfig = Annotated[
    FedAvgRule | MedianRule | TrimmedMeanRule | MultiKrumRule, Field(discriminator="rule")
]
RULE_NAMES = ("fedavg", "median", "trimmed-mean", "multi-krum")


# ---------------------------------------------------------------- policy: what the validator refuses and slashes


class ScreeningPolicy(StrictModel):
    """Thresholds of the pre-scoring checks (fedchain.learning.screening); defaults suit dense deltas."""

    duplicate_cosine: float = Field(0.99, gt=-1, le=1)  # a later row this similar to an earlier one copies it
    free_rider_fraction: float = Field(0.01, ge=0, lt=1)  # norm at most this fraction of the median: nothing learned
    outlier_ratio: float = Field(10.0, gt=1)  # norm above this multiple of the median norm is an outlier (at least)
    outlier_mad_z: float = Field(3.5, gt=0)  # ... or beyond this many robust standard deviations of log norm


class PolicyConfig(StrictModel):
    """What a validator refuses, what it slashes for, and how it rounds: the same for every validator of a task."""

    # Reasons that slash (with the update's digest as on-chain evidence); only provable reasons may be listed.
    slash_reasons: tuple[Reason, ...] = tuple(sorted(PROVABLE, key=lambda r: r.value))
    score_decimals: int = Field(6, ge=0, le=12)  # scores are rounded to this many decimals before the reward split
    diverged_loss_factor: float = Field(10.0, gt=1)  # base loss above this multiple of ln(classes): diverged model
    loss_cap: float = Field(1e6, gt=0, allow_inf_nan=False)  # a scoring coalition's loss when it is not finite
    # An update claiming more samples is rejected (not slashed): one absurd count must not stop every round.
    max_samples_per_update: int = Field(100_000_000, ge=1, le=MAX_SAMPLES_LIMIT)
    # How far a self-reported sample count is trusted when it weighs an update (FedAvg and scoring); nobody can
    # check it. "median-capped": at most the median claim of the round's accepted updates, so claiming more than
    # the honest majority buys nothing; "equal": counts ignored; "claimed": as reported (open to inflation).
    sample_weighting: Literal["median-capped", "equal", "claimed"] = "median-capped"
    screening: ScreeningPolicy = Field(default_factory=ScreeningPolicy)

    @field_validator("slash_reasons")
    @classmethod
    def _only_provable(cls, v: tuple[Reason, ...]) -> tuple[Reason, ...]:
        unprovable = sorted(r.value for r in v if r not in PROVABLE)
        if unprovable:
            allowed = ", ".join(sorted(r.value for r in PROVABLE))
            raise ValueError(f"{unprovable} cannot slash: no on-chain evidence proves them (allowed: {allowed})")
        if len(set(v)) != len(v):
            raise ValueError("a reason is listed twice")
        return tuple(sorted(v, key=lambda r: r.value))


# ---------------------------------------------------------------- optional sections, filled in by later features


class PrivacyConfig(StrictModel):
    """Differentially private training (DP-SGD) with each contributor's spend kept on chain."""

    epsilon_cap: float = Field(gt=0, le=4294, allow_inf_nan=False)  # each contributor's total for the task (the chain stores up to 4294.967295)
    delta: float = Field(1e-5, gt=0, lt=1)
    clipping_norm: float = Field(1.0, gt=0, allow_inf_nan=False)  # per-sample gradient L2 bound
    min_noise_multiplier: float = Field(1.0, gt=0, allow_inf_nan=False)
    accountant: Literal["rdp", "prv"] = "rdp"
    accountant_version: str = Field("opacus-1.6.0", min_length=1, max_length=64)


class UnlabelledConfig(StrictModel):
    """Learning from unlabelled data by pseudo-labelling (FixMatch-style)."""

    confidence_threshold: float = Field(0.95, gt=0, le=1)
    unlabelled_loss_weight: float = Field(1.0, ge=0, allow_inf_nan=False)
    unlabelled_ratio: int = Field(7, ge=1, le=64)  # unlabelled samples per labelled one in a batch
    adaptive_thresholds: bool = False  # per-class thresholds (FlexMatch)


class ScoringConfig(StrictModel):
    """How the validator values each accepted update (see fedchain.learning.scoring)."""

    # "gradient-shapley": Aumann-Shapley values from `gradient_points` gradients along the path to the round's aggregate,
    # a cost that does not grow with the permutations (fedchain.learning.scoring.gradient_shapley); share coalitions only.
    method: Literal["tmc-shapley", "marginal", "equal", "gradient-shapley"] = "tmc-shapley"
    # Budget: at most permutations x K forward passes over eval_samples (fewer: coalitions are cached, and small
    # rounds need at most 2**K). 20 permutations keep scoring of a 10-contributor round to a few seconds on a CPU.
    permutations: int = Field(20, ge=1, le=100_000)  # Monte-Carlo permutation budget per round
    truncation_tol: float = Field(0.05, ge=0)  # truncate a permutation when within this fraction of the full value
    seed: int = Field(0, ge=0, lt=2**63)
    eval_samples: int = Field(192, ge=1)  # fixed held-out subset for scoring: each coalition costs one forward pass over it
    # How a coalition's update is formed: "share" (each member's own term of the round's FedAvg, so that zero or noise
    # updates cannot earn by diluting the others; fedchain.learning.scoring.share_combine) or "fedavg" (the coalition's own
    # FedAvg). Measured on the same demo runs, "fedavg" then "share": a noise attacker's pay under FedAvg 19% -> 1.3%,
    # Spearman(data size, reward) 0.69 -> 0.95.
    coalition: Literal["fedavg", "share"] = "share"
    gradient_points: int = Field(3, ge=1, le=16)  # gradient-shapley: Gauss-Legendre nodes along the path

    @model_validator(mode="after")
    def _gradient_needs_shares(self) -> ScoringConfig:
        if self.method == "gradient-shapley" and self.coalition != "share":
            raise ValueError("gradient-shapley values coalitions as shares of the round's FedAvg: set coalition "
                             "to 'share' (or pick tmc-shapley or marginal for 'fedavg' coalitions)")
        return self


class TextConfig(StrictModel):
    """How a next-token task turns text into ids (fedchain.learning.text): character i of `vocabulary` is id i."""

    vocabulary: str = Field(min_length=2, max_length=4096)
    # A vocabulary character that stands in for any character outside the vocabulary; None: text holding such a
    # character is refused (with the characters named), so a contributor knows its text does not fit the task.
    unknown: str | None = None

    @field_validator("vocabulary")
    @classmethod
    def _distinct_printable(cls, v: str) -> str:
        repeated = sorted({c for c in v if v.count(c) > 1})
        if repeated:
            raise ValueError(f"characters listed more than once: {repeated!r}")
        # Text is read with every run of whitespace as one space: other whitespace can never occur.
        unusable = sorted({c for c in v if not c.isprintable()})
        if unusable:
            raise ValueError(f"characters that text never holds once its whitespace becomes single spaces: {unusable!r}")
        return v

    @model_validator(mode="after")
    def _unknown_in_vocabulary(self) -> TextConfig:
        if self.unknown is not None and (len(self.unknown) != 1 or self.unknown not in self.vocabulary):
            raise ValueError(f"unknown must be one character of the vocabulary, got {self.unknown!r}")
        return self


class TaskSpec(StrictModel):
    """A federated task: architecture, data shape, training, aggregation, scoring and sealing."""

    format: str = SPEC_FORMAT
    protocol_version: int = PROTOCOL_VERSION
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["classification", "next-token"] = "classification"  # the task kind (fedchain.learning.kinds)
    architecture: str = Field(min_length=1)
    arch_config: dict[str, Any] = Field(default_factory=dict, alias="model_config")
    input_shape: tuple[int, ...] = Field(min_length=1)
    num_classes: int = Field(ge=2)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    aggregation: AggregationConfig = Field(default_factory=FedAvgRule)
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    privacy: PrivacyConfig | None = None  # None: plain (non-private) training
    unlabelled: UnlabelledConfig | None = None  # None: contributors' data is labelled
    text: TextConfig | None = None  # next-token tasks only: the character vocabulary
    sealed: bool = True  # updates sealed to the validator's keys (False: anyone can read them)
    validator_sealing_keys: list[str] = Field(default_factory=list)  # hex X25519 public keys, 64 hex chars each
    max_update_bytes: int = Field(64 * 1024 * 1024, ge=1)

    @field_validator("format")
    @classmethod
    def _known_format(cls, v: str) -> str:
        if v != SPEC_FORMAT:
            raise ValueError(f"this fedchain reads {SPEC_FORMAT!r} specs, got {v!r}: write the spec anew with "
                             "`fedchain task init-spec` or use the fedchain version that wrote it")
        return v

    @field_validator("protocol_version")
    @classmethod
    def _implemented_version(cls, v: int) -> int:
        if v not in SUPPORTED_PROTOCOL_VERSIONS:
            have = ", ".join(map(str, sorted(SUPPORTED_PROTOCOL_VERSIONS)))
            raise ValueError(f"protocol version {v} is not implemented by this fedchain (it implements {have}); "
                             "use a fedchain release that implements it, so every validator computes the same result")
        return v

    @field_validator("input_shape")
    @classmethod
    def _positive_dims(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(d < 1 for d in v):
            raise ValueError(f"every dimension must be >= 1, got {list(v)}")
        return v

    @field_validator("validator_sealing_keys")
    @classmethod
    def _hex_keys(cls, v: list[str]) -> list[str]:
        out = []
        for i, key in enumerate(v):
            k = key.lower().removeprefix("0x")
            if not _HEX_KEY.match(k):
                raise ValueError(f"key {i} must be a 32-byte X25519 public key as 64 hex characters, got {key!r}")
            out.append(k)
        if len(set(out)) != len(out):
            raise ValueError("duplicate sealing key")
        return out

    @field_validator("aggregation", mode="before")
    @classmethod
    def _names_a_known_rule(cls, v: Any) -> Any:
        if isinstance(v, dict) and v.get("rule") not in RULE_NAMES:
            raise ValueError(f"unknown rule {v.get('rule')!r}: use one of {', '.join(RULE_NAMES)}, "
                             'e.g. {"rule": "trimmed-mean", "beta": 0.2}')
        return v

    @field_validator("architecture")
    @classmethod
    def _architecture_name(cls, v: str) -> str:
        # Whether it exists and builds is checked by fedchain.learning.kinds.check_spec (the core imports no torch).
        if not _ARCHITECTURE.match(v):
            raise ValueError("must be a lower-case architecture name such as 'cnn' or 'mlp'")
        return v

    @model_validator(mode="after")
    def _kind_fits_shape(self) -> TaskSpec:
        if self.kind == "classification":
            if self.text is not None:
                raise ValueError("text: only a next-token task reads text; remove the text section or set kind")
            return self
        if self.text is None:
            raise ValueError("a next-token task needs a text section with its vocabulary")
        if len(self.input_shape) != 1:
            raise ValueError(f"a next-token task's input_shape is (window,), one number, got {list(self.input_shape)}")
        if self.num_classes != len(self.text.vocabulary):
            raise ValueError(f"a next-token task's num_classes is its vocabulary's size, {len(self.text.vocabulary)}, "
                             f"got {self.num_classes}")
        return self

    @model_validator(mode="after")
    def _sealed_needs_keys(self) -> TaskSpec:
        if self.sealed and not self.validator_sealing_keys:
            raise ValueError(
                "a sealed task needs at least one validator_sealing_keys entry (or set sealed to false)"
            )
        return self

    # -- serialization ------------------------------------------------------------------------------------------------

    def to_json_obj(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    def to_json_bytes(self) -> bytes:
        """Canonical RFC 8785 JSON: the same spec always gives the same bytes (and CID)."""
        try:
            return rfc8785.dumps(self.to_json_obj())
        except rfc8785.CanonicalizationError as exc:
            raise SpecError(f"task spec cannot be written as canonical JSON: {exc}") from exc

    @classmethod
    def from_json_bytes(cls, data: bytes | str) -> TaskSpec:
        """Parse and validate a spec (canonical or not); duplicate JSON keys are refused."""
        try:
            obj = json.loads(data, object_pairs_hook=_no_duplicate_keys)
        except (ValueError, UnicodeDecodeError) as exc:
            raise SpecError(f"task spec is not valid JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise SpecError(f"task spec must be a JSON object, got {type(obj).__name__}")
        spec: TaskSpec = cls.model_validate(obj)
        return spec

    def check_contributors(self, max_contributors: int) -> None:
        """Refuse a rule that cannot run with a round of `max_contributors` (checked before a task is funded)."""
        if isinstance(self.aggregation, MultiKrumRule) and max_contributors < self.aggregation.min_contributors():
            f = self.aggregation.f
            raise SpecError(
                f"aggregation: multi-krum with f={f} needs at least {2 * f + 3} contributors a round (2f + 3), "
                f"but the task allows {max_contributors}: lower f or raise --max-contributors",
                [("aggregation.f", f"needs max_contributors >= {2 * f + 3}")],
            )


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def load_spec_file(path: str | Path) -> TaskSpec:
    """Read and validate a spec JSON file."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError as exc:
        raise SpecError(f"task spec file {str(p)!r} not found") from exc
    except OSError as exc:
        raise SpecError(f"cannot read task spec file {str(p)!r}: {exc}") from exc
    try:
        return TaskSpec.from_json_bytes(data)
    except SpecError as exc:
        raise SpecError(f"{p}: {exc}") from exc


MNIST_ARCH_CONFIGS: dict[str, dict[str, Any]] = {
    "cnn": {"channels": [16, 32], "hidden": 128, "pool_to": 3},  # 43,082 parameters
    "mlp": {"hidden": [128]},  # 101,770 parameters
}


def mnist_spec(
    architecture: str = "cnn",
    sealing_keys: list[str] | tuple[str, ...] = (),
    *,
    name: str | None = None,
    sealed: bool | None = None,
    training: TrainingConfig | None = None,
    aggregation: AggregationConfig | dict[str, Any] | None = None,
    scoring: ScoringConfig | None = None,
    max_update_bytes: int = 8 * 1024 * 1024,
    arch_config: dict[str, Any] | None = None,
) -> TaskSpec:
    """The demo's MNIST-subset task (1x28x28 images in [0, 1], 10 classes).

    `sealed` defaults to True when sealing keys are given and False otherwise.
    """
    if architecture not in MNIST_ARCH_CONFIGS and arch_config is None:
        raise SpecError(f"no MNIST preset for architecture {architecture!r}; presets: {', '.join(MNIST_ARCH_CONFIGS)}")
    return TaskSpec(
        name=name or f"mnist-{architecture}",
        architecture=architecture,
        model_config=dict(arch_config if arch_config is not None else MNIST_ARCH_CONFIGS[architecture]),  # type: ignore[call-arg]
        input_shape=(1, 28, 28),
        num_classes=10,
        training=training or TrainingConfig(),
        aggregation=aggregation or FedAvgRule(),
        scoring=scoring or ScoringConfig(),
        sealed=bool(sealing_keys) if sealed is None else sealed,
        validator_sealing_keys=list(sealing_keys),
        max_update_bytes=max_update_bytes,
    )


# The printable ASCII characters, space first: every character of the Shakespeare plays' speeches is one of them.
PRINTABLE_ASCII = "".join(chr(c) for c in range(32, 127))
SHAKESPEARE_WINDOW = 80  # characters a window holds (LEAF's Shakespeare reads 80 to predict the next one)
SHAKESPEARE_ARCH_CONFIG: dict[str, Any] = {"embed": 32, "hidden": 256, "layers": 1}  # char-lstm: 324,415 parameters
# Local training for the text task. Measured on the 5 roles with the most lines, 5 rounds of FedAvg: Adam at 0.01 with
# 2 local epochs reached 50% held-out accuracy; 1 epoch 47%; Adam at 0.003 (1 epoch) 40%; SGD at lr 1.0 32%.
SHAKESPEARE_TRAINING: dict[str, Any] = {"local_epochs": 2, "batch_size": 16, "learning_rate": 0.01, "optimizer": "adam"}


def shakespeare_spec(
    sealing_keys: list[str] | tuple[str, ...] = (),
    *,
    name: str = "shakespeare-char-lstm",
    window: int = SHAKESPEARE_WINDOW,
    sealed: bool | None = None,
    training: TrainingConfig | None = None,
    aggregation: AggregationConfig | dict[str, Any] | None = None,
    scoring: ScoringConfig | None = None,
    max_update_bytes: int = 8 * 1024 * 1024,
    arch_config: dict[str, Any] | None = None,
) -> TaskSpec:
    """The demo's text task: next-character prediction over windows of `window` printable-ASCII characters
    (95 ids), a character LSTM. `sealed` defaults to True when sealing keys are given and False otherwise."""
    return TaskSpec(
        name=name,
        kind="next-token",
        architecture="char-lstm",
        model_config=dict(arch_config if arch_config is not None else SHAKESPEARE_ARCH_CONFIG),  # type: ignore[call-arg]
        input_shape=(window,),
        num_classes=len(PRINTABLE_ASCII),
        text=TextConfig(vocabulary=PRINTABLE_ASCII),
        training=training or TrainingConfig(**SHAKESPEARE_TRAINING),
        aggregation=aggregation or FedAvgRule(),
        scoring=scoring or ScoringConfig(),
        sealed=bool(sealing_keys) if sealed is None else sealed,
        validator_sealing_keys=list(sealing_keys),
        max_update_bytes=max_update_bytes,
    )
