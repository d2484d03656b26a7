"""A validator's round as a function: from the round's inputs to a typed outcome. No chain, no IPFS, no files.

    inputs = RoundInputs(task_id, round, spec, updates, submission_order, rows, base_state, base_cid, holdout, budget)
    outcome = compute_outcome(inputs, model)          # verdicts, merged model, scores, rewards, slashes
    report = outcome.report(model_cid)                # the round report, built in one place

Every step is a deterministic function of the inputs and the spec (screening thresholds, the rule, scoring, the
slashing policy and rounding all come from the spec), so two validators given the same inputs reach the same
outcome: this is what a committee of validators compares and combines.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor, nn

from fedchain.aggregation import RuleConfig, aggregate
from fedchain.chain.units import format_fed
from fedchain.core.policy import has_diverged, round_score, sample_count_reason, sample_weights, slash_decisions
from fedchain.core.reasons import Reason, discarded_by
from fedchain.core.report import RoundReport, UpdateRecord
from fedchain.core.spec import PolicyConfig, TaskSpec
from fedchain.learning.evaluation import EvalResult, LossEvaluator, evaluate
from fedchain.learning.kinds import kind_of
from fedchain.learning.models import ParamLayout, StateDict, apply_delta
from fedchain.learning.scoring import (
    ScoringError,
    fedavg_combine,
    gradient_shapley,
    marginal_scores,
    rewards_from_scores,
    share_combine,
    tmc_shapley,
)
from fedchain.learning.screening import ScreeningConfig, screen
from fedchain.learning.trainers import LocalData

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SubmittedUpdate:
    """One on-chain submission and what fetching it found (`rejection`: a reason code, None if it decoded)."""

    contributor: str
    cid: str
    digest: bytes
    num_samples: int
    rejection: str | None = None
    pseudo_labels: dict[str, object] | None = None  # its pseudo-label record's summary (fedchain.unlabelled.checks)
    epsilon_micro: int | None = None  # a private task's: the cumulative spend its submission declared on chain


@dataclass(frozen=True)
class RoundInputs:
    """Everything a round's outcome depends on. `updates[i]` is row i of `rows`, in canonical (address) order."""

    task_id: int
    round: int
    spec: TaskSpec
    updates: Sequence[SubmittedUpdate]
    submission_order: Sequence[int]  # row indices, earliest on chain first (informative only: never who keeps standing)
    rows: Tensor  # (K, D) float32 decoded deltas; a rejected row's content is ignored
    base_state: StateDict
    base_cid: str
    holdout: LocalData  # the validator's held-out data
    budget: int  # tokens this round pays out (the round's share plus any carry)


@dataclass(frozen=True)
class ComputeSettings:
    """How to compute (never what): the same outcome on any device and thread count."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    # Torch threads per scoring worker. More help on a dedicated machine, but on a shared one ATen's threads wait on
    # each other (measured here: one thread 1.2 s, two threads 5-7 s for the same round under load).
    scoring_threads: int = 1
    # Scoring workers: permutation walks valued in parallel, each with its own model copy and one torch thread
    # (None: one per CPU, at most 4; on a GPU, 1). Measured on 2 idle cores: 1.67x faster than one worker.
    scoring_workers: int | None = None

    def workers(self) -> int:
        if self.scoring_workers is not None:
            return max(1, self.scoring_workers)
        if self.device.type != "cpu":
            return 1
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return min(4, cpus)


@dataclass(frozen=True)
class Verdict:
    """What the round decided about one update."""

    contributor: str
    cid: str
    digest: bytes
    num_samples: int
    status: str = "accepted"  # accepted | rejected | discarded
    reason: str | None = None
    score: float = 0.0
    reward: int = 0
    slashed: bool = False
    pseudo_labels: dict[str, object] | None = None


@dataclass(frozen=True)
class RoundOutcome:
    """A round's typed outcome: verdicts in canonical order, the new global state and how it was reached."""

    task_id: int
    round: int
    base_cid: str
    verdicts: tuple[Verdict, ...]
    aggregation: dict[str, object]  # the rule and its parameters, as the report records them
    scoring: dict[str, object]  # method, parameters, evaluations used
    new_state: StateDict
    metrics: EvalResult
    budget: int
    seconds: dict[str, float] = field(default_factory=dict)
    privacy: dict[str, int] = field(default_factory=dict)  # a private task's spends: contributor -> micro-epsilon

    @property
    def rewards(self) -> dict[str, int]:
        """Non-zero rewards by contributor: the leaves of the round's reward tree."""
        return {v.contributor: v.reward for v in self.verdicts if v.reward > 0}

    @property
    def slashes(self) -> list[tuple[str, str]]:
        """(contributor, 0x digest as evidence) of every slashed update."""
        return [(v.contributor, "0x" + v.digest.hex()) for v in self.verdicts if v.slashed]

    def report(self, model_cid: str) -> RoundReport:
        """The round report for this outcome once its model is pinned at `model_cid`."""
        rewards = self.rewards
        return RoundReport(
            task_id=self.task_id, round=self.round, base_model_cid=self.base_cid, model_cid=model_cid,
            aggregation=self.aggregation, scoring=self.scoring,
            metrics={"test_accuracy": self.metrics.accuracy, "test_loss": self.metrics.loss,
                     "eval_samples": self.metrics.samples,
                     **({"privacy_epsilon_micro": dict(self.privacy)} if self.privacy else {})},
            budget=self.budget, total_rewards=sum(rewards.values()),
            rewards_root="0x" + "00" * 32,  # replaced below: the root is computed from the report's own rewards
            updates=[
                UpdateRecord(contributor=v.contributor, cid=v.cid, num_samples=v.num_samples, status=v.status,
                             reason=v.reason, score=v.score, reward=v.reward, slashed=v.slashed,
                             pseudo_labels=v.pseudo_labels)
                for v in self.verdicts
            ],
        ).with_rewards_root()


def compute_outcome(inputs: RoundInputs, model: nn.Module, settings: ComputeSettings | None = None) -> RoundOutcome:
    """Screen, merge, score, split the budget and decide slashes for one round; see the module docstring.

    `model` is a module of the task's architecture, used for evaluation (its weights are overwritten).
    """
    settings = settings or ComputeSettings()
    spec, policy = inputs.spec, inputs.spec.policy
    layout = ParamLayout.from_state_dict(inputs.base_state)
    timer = _Timer()
    merged = merge(inputs)
    verdicts, weights, selected, delta, rule = merged.verdicts, merged.weights, merged.selected, merged.delta, merged.rule
    timer.lap("aggregate")

    with _torch_threads(settings.scoring_threads):
        scores, scoring_info = _score(inputs, model, layout, weights, selected, settings)
    scores = {row: round_score(score, policy) for row, score in scores.items()}
    timer.lap("score")

    by_address = {verdicts[row].contributor: s for row, s in scores.items()}
    rewards = rewards_from_scores(by_address, inputs.budget) if by_address else {}
    rejections = [v.reason if v.status == "rejected" else None for v in verdicts]
    objective = kind_of(spec).objective
    x, y = inputs.holdout.x, inputs.holdout.y
    # Judging the base model costs an evaluation: only a non-finite update needs it.
    diverged = Reason.NON_FINITE in rejections and has_diverged(
        evaluate(model, inputs.base_state, x, y, device=settings.device, objective=objective).loss,
        spec.num_classes, policy,
    )
    slashed = slash_decisions(rejections, policy, model_diverged=diverged)
    verdicts = [
        replace(v, score=scores.get(row, 0.0), reward=rewards.get(v.contributor, 0), slashed=slashed[row])
        for row, v in enumerate(verdicts)
    ]

    new_state = apply_delta(inputs.base_state, delta, layout)
    metrics = evaluate(model, new_state, x, y, device=settings.device, objective=objective)
    if not (bool(torch.isfinite(delta).all()) and math.isfinite(metrics.loss)):
        # Never publish a broken model: keep the previous one (the round's updates keep their verdicts).
        log.warning("round %d: the merged model is not finite; the global model stays as it was", inputs.round)
        new_state = {name: tensor.clone() for name, tensor in inputs.base_state.items()}
        metrics = evaluate(model, new_state, x, y, device=settings.device, objective=objective)
    timer.lap("evaluate")
    log.info(
        "round %d: %d selected, %d rejected, accuracy %.4f, rewards %s",
        inputs.round, len(selected), sum(v.status == "rejected" for v in verdicts), metrics.accuracy,
        format_fed(sum(rewards.values())),
    )
    return RoundOutcome(
        task_id=inputs.task_id, round=inputs.round, base_cid=inputs.base_cid, verdicts=tuple(verdicts),
        aggregation=rule.to_dict(), scoring=scoring_info, new_state=new_state, metrics=metrics,
        budget=inputs.budget, seconds=timer.laps,
        privacy={u.contributor: u.epsilon_micro for u in inputs.updates if u.epsilon_micro is not None},
    )


@dataclass(frozen=True)
class Merge:
    """Screening and the robust rule: the part of a round that needs no held-out data (anyone can recompute it)."""

    verdicts: list[Verdict]  # statuses and reasons; scores, rewards and slashes not yet decided
    weights: list[int]  # per row: its weight (its sample count as the policy trusts it), 0 if rejected before screening
    selected: list[int]  # rows the rule merged
    delta: Tensor  # (D,) the merged update
    rule: RuleConfig


def merge(inputs: RoundInputs) -> Merge:
    """Screen the rows and merge the accepted ones with the spec's rule."""
    spec, policy = inputs.spec, inputs.spec.policy
    layout = ParamLayout.from_state_dict(inputs.base_state)
    verdicts = [Verdict(u.contributor, u.cid, u.digest, u.num_samples, pseudo_labels=u.pseudo_labels)
                for u in inputs.updates]
    weights = [u.num_samples for u in inputs.updates]
    pre_rejected: dict[int, str] = {}
    for row, update in enumerate(inputs.updates):
        reason = update.rejection or sample_count_reason(update.num_samples, policy)
        if reason is not None:
            pre_rejected[row] = str(reason)
            weights[row] = 0  # never reaches the merge; kept in range for the screening statistics' bookkeeping

    screening = screen(inputs.rows, inputs.submission_order, config=_screening_config(spec), pre_rejected=pre_rejected)
    for row, reason in screening.rejected.items():
        verdicts[row] = replace(verdicts[row], status="rejected", reason=str(reason))
    accepted = list(screening.accepted)
    # Self-reported counts weigh updates only as far as the policy trusts them (an inflated claim buys nothing).
    for row, weight in sample_weights({row: weights[row] for row in accepted}, policy).items():
        weights[row] = weight

    rule = RuleConfig.from_dict(spec.aggregation.model_dump())
    delta = torch.zeros(layout.total, dtype=torch.float32)
    selected: list[int] = []
    if accepted:
        kept = inputs.rows if len(accepted) == len(verdicts) else inputs.rows[accepted]
        agg = aggregate(rule, kept, [weights[i] for i in accepted], clip_in_place=False)
        delta = agg.vector
        selected = [accepted[i] for i in agg.selected]
        for i in agg.discarded:
            verdicts[accepted[i]] = replace(verdicts[accepted[i]], status="discarded", reason=discarded_by(rule.name))
    return Merge(verdicts, weights, selected, delta, rule)


def _screening_config(spec: TaskSpec) -> ScreeningConfig:
    config = ScreeningConfig(**spec.policy.screening.model_dump())
    if spec.sealed:
        # Near-duplicates matter only when updates are public: a sealed update cannot be seen, so cannot be copied
        # (a resubmission of the same sealed bytes is a replay, caught while fetching). Honest updates can also look
        # alike, e.g. when every contributor trains from a diverged model, so only exact copies are checked here.
        config = replace(config, duplicate_cosine=1.0)
    return config


def _score(
    inputs: RoundInputs, model: nn.Module, layout: ParamLayout, weights: list[int], rows: list[int],
    settings: ComputeSettings,
) -> tuple[dict[int, float], dict[str, object]]:
    scoring = inputs.spec.scoring
    # The spec's scoring fields as the report records them (gradient_points only where the method uses it).
    params = {k: v for k, v in scoring.model_dump().items()
              if k != "method" and (k != "gradient_points" or scoring.method == "gradient-shapley")}
    if not rows or scoring.method == "equal":
        scores = {r: 1.0 / len(rows) for r in rows}
        return scores, {"method": scoring.method, **params, "evaluations": 0}
    loss_of = LossEvaluator(
        model, layout, inputs.base_state, inputs.holdout.x, inputs.holdout.y, settings.device,
        max_samples=scoring.eval_samples, seed=scoring.seed, objective=kind_of(inputs.spec).objective,
    )
    evaluator = _finite_loss(loss_of, inputs.spec.policy)
    combine = share_combine(inputs.rows, weights, rows) if scoring.coalition == "share" else fedavg_combine
    if scoring.method == "marginal":
        result = marginal_scores(inputs.rows, weights, rows, evaluator, combine)
    elif scoring.method == "gradient-shapley":
        try:
            result = gradient_shapley(inputs.rows, weights, rows, loss_of.gradient, evaluator, scoring.gradient_points)
        except ScoringError as exc:
            # A path along which the model breaks has no gradient to integrate: leave-one-out still values it
            # (non-finite losses capped), and the report says so. Deterministic: the same inputs fail the same way.
            log.warning("round %d: gradient-shapley failed (%s); scoring by leave-one-out", inputs.round, exc)
            result = marginal_scores(inputs.rows, weights, rows, evaluator, combine)
            result = replace(result, params={"fallback": "marginal"})
    else:
        evaluators = [evaluator] + [
            _finite_loss(loss_of.replica(), inputs.spec.policy) for _ in range(settings.workers() - 1)
        ]
        result = tmc_shapley(
            inputs.rows, weights, rows, evaluators, permutations=scoring.permutations,
            truncation_tol=scoring.truncation_tol, seed=scoring.seed, combine=combine,
        )
    # The report names the method as the spec does.
    return dict(result.scores), {"method": scoring.method, **result.params, "evaluations": result.evaluations}


def _finite_loss(loss_of: LossEvaluator, policy: PolicyConfig) -> Callable[[Tensor], float]:
    def evaluator(delta: Tensor) -> float:
        # A coalition whose merged update breaks the model is worth as little as can be, not an error.
        loss = loss_of(delta)
        return loss if math.isfinite(loss) else policy.loss_cap

    return evaluator


@contextlib.contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class _Timer:
    def __init__(self) -> None:
        self._last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self._last, 4)
        self._last = now
