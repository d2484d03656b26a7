"""The validator: collect a round's updates, check them, merge, score, publish the model and report, post.

    fedchain validate --task 0 --holdout test.npz --sealing-key validator.key --keystore validator.json

Every step of a round is a deterministic function of the chain's submissions and IPFS content, and the
computed result is checkpointed before it is posted: killed at any moment and restarted, the validator
recomputes (or reloads) the same result, loses no update and counts none twice.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account.signers.local import LocalAccount

from fedchain.aggregation import RuleConfig, aggregate, canonical_order
from fedchain.chain.protocol import Protocol, RoundPhase, Submission
from fedchain.content.cid import cid_to_digest, digest_to_cid
from fedchain.content.client import IpfsClient
from fedchain.content.errors import ContentError, ContentTooLargeError
from fedchain.envelope import EnvelopeError, decode_update, encode_model
from fedchain.merkle import RewardTree
from fedchain.models import apply_delta, build_model
from fedchain.report import RoundReport, UpdateRecord, canonical_json
from fedchain.scoring import fedavg_combine, marginal_scores, rewards_from_scores, share_combine, tmc_shapley
from fedchain.screening import ScreeningConfig, screen
from fedchain.sealing import SealBinding, SealError, open_sealed, read_binding
from fedchain.state import read_json, write_json_atomic
from fedchain.taskview import TaskView
from fedchain.training import LossEvaluator, evaluate, pick_device

log = logging.getLogger(__name__)

# Rejections that prove bad faith: the contributor is slashed with the update's digest as evidence.
# Anything else (unavailable content, outliers, updates the robust rule discards, zero scores) only forfeits the reward.
SLASHABLE_REASONS = frozenset(
    {"malformed", "bad-metadata", "unexpected-tensor", "missing-tensor", "wrong-shape", "wrong-dtype",
     "non-finite", "too-large", "replay", "duplicate", "wrong-base", "tampered", "not-a-recipient", "not-sealed"}
)


SCORE_DECIMALS = 6
SEALED_SCREENING = ScreeningConfig(duplicate_cosine=1.0)  # only exact copies, which sealing already rules out
DIVERGED_LOSS_FACTOR = 10.0  # base loss above this multiple of ln(classes): honest training may blow up
LOSS_CAP = 1e6  # the loss a scoring coalition is given when its merged model's loss is not finite


def slash_decisions(rejections: list[str | None], *, model_diverged: bool = False) -> list[bool]:
    """Which updates to slash, given each one's rejection reason (None: not rejected).

    Only reasons that prove bad faith slash. A non-finite update proves it only when it was trained from a sane
    global model that others trained from without blowing up: when the round's base model has diverged, or half
    the round or more is non-finite, the model is to blame, and nobody is slashed for it.
    """
    non_finite = sum(reason == "non-finite" for reason in rejections)
    blame_model = model_diverged or non_finite * 2 >= len(rejections)
    return [
        reason in SLASHABLE_REASONS and not (reason == "non-finite" and blame_model)
        for reason in rejections
    ]


def has_diverged(loss: float, num_classes: int) -> bool:
    """A model whose held-out loss is far above a uniform guess's (ln C) has diverged."""
    return not math.isfinite(loss) or loss > DIVERGED_LOSS_FACTOR * math.log(max(num_classes, 2))


@dataclass(frozen=True)
class ValidatorConfig:
    task_id: int
    holdout_path: Path                   # the validator's held-out data (.npz with x, y)
    state_dir: Path                      # checkpoints, so a restart resumes
    poll_interval: float = 0.5
    fetch_timeout: float = 30.0          # seconds to fetch one update
    device: str | None = None
    # Torch threads per scoring worker. More help on a dedicated machine, but on a shared one ATen's threads wait on
    # each other (measured here: one thread 1.2 s, two threads 5-7 s for the same round under load).
    scoring_threads: int = 1
    # Scoring workers: permutation walks valued in parallel, each worker with its own model copy and one torch
    # thread, so a stolen core slows one walk instead of stalling every op (None: one per CPU, at most 4; on a
    # GPU, 1). Measured on 2 idle cores: 1.67x faster than one worker.
    scoring_workers: int | None = None


@dataclass
class UpdateVerdict:
    submission: Submission
    cid: str
    status: str = "accepted"            # accepted | rejected | discarded
    reason: str | None = None
    score: float = 0.0
    reward: int = 0
    slashed: bool = False


@dataclass
class RoundResult:
    round: int
    model_cid: str
    report_cid: str
    rewards_root: str
    total_rewards: int
    slashes: list[tuple[str, str]]
    test_accuracy: float
    test_loss: float
    seconds: dict[str, float] = field(default_factory=dict)


class Validator:
    def __init__(
        self,
        protocol: Protocol,
        ipfs: IpfsClient,
        account: LocalAccount,
        sealing_key: X25519PrivateKey | None,
        config: ValidatorConfig,
    ) -> None:
        from fedchain.data import load_npz

        self.protocol = protocol
        self.ipfs = ipfs
        self.account = account
        self.sealing_key = sealing_key
        self.config = config
        self.task = TaskView(protocol, ipfs, config.task_id)
        self.device = torch.device(config.device) if config.device else pick_device()
        self.x_test, self.y_test = load_npz(config.holdout_path, self.task.spec)
        self.model = build_model(self.task.spec).to(self.device)
        self._checkpoint_dir = config.state_dir / f"validator-task{config.task_id}"
        if self.task.spec.sealed and sealing_key is None:
            from fedchain.errors import ConfigError

            raise ConfigError("this task's updates are sealed: pass the validator's --sealing-key")

    # ─── the loop ───
    def run(self, *, max_rounds: int | None = None) -> list[RoundResult]:
        results: list[RoundResult] = []
        while max_rounds is None or len(results) < max_rounds:
            info = self.task.info()
            if info.ended:
                break
            round_index = info.current_round
            if not self._ready_to_aggregate(round_index):
                time.sleep(self.config.poll_interval)
                continue
            results.append(self.finalize_round(round_index))
        return results

    def _ready_to_aggregate(self, round_index: int) -> bool:
        info = self.protocol.round(self.config.task_id, round_index)
        if info.phase == RoundPhase.OPEN and time.time() >= info.submission_deadline:
            # The deadline passed by the wall clock: on Anvil, move the chain's clock so the phase catches up.
            self.protocol.chain.sync_clock()
            info = self.protocol.round(self.config.task_id, round_index)
        return info.phase == RoundPhase.AGGREGATING

    def finalize_round(self, round_index: int) -> RoundResult:
        """Compute (or reload) the round's result and post it unless it is already on chain."""
        path = self._checkpoint_dir / f"round-{round_index}.json"
        saved = read_json(path)
        if saved is not None:
            result = RoundResult(**{**saved, "slashes": [tuple(s) for s in saved["slashes"]]})
            log.info("round %d: resuming from checkpoint", round_index)
        else:
            result = self.compute_round(round_index)
            write_json_atomic(path, asdict(result))
        if self.protocol.round(self.config.task_id, round_index).phase != RoundPhase.FINALIZED:
            started = time.perf_counter()
            tx = self.protocol.post_result(
                self.account, self.config.task_id, round_index,
                cid_to_digest(result.model_cid), cid_to_digest(result.report_cid),
                bytes.fromhex(result.rewards_root[2:]), result.total_rewards,
                [(addr, bytes.fromhex(evidence[2:])) for addr, evidence in result.slashes],
            )
            result.seconds["post"] = time.perf_counter() - started
            result.seconds["post_gas"] = float(tx.gas_used)
        return result

    # ─── one round ───
    def compute_round(self, round_index: int) -> RoundResult:
        timer = _Timer()
        task_id = self.config.task_id
        spec = self.task.spec
        layout = self.task.layout
        base = self.task.global_model(round_index)
        on_chain = self.protocol.submissions(task_id, round_index)  # in chain order (block, log index)
        log.info("round %d: aggregating %d submission(s)", round_index, len(on_chain))
        # Rows in canonical order (by contributor address): the result never depends on arrival order.
        rows = [on_chain[i] for i in canonical_order([s.contributor for s in on_chain])]
        row_of = {s.contributor: i for i, s in enumerate(rows)}
        submission_order = [row_of[s.contributor] for s in on_chain]
        verdicts = [UpdateVerdict(s, digest_to_cid(s.digest)) for s in rows]

        buffer = torch.zeros(len(rows), layout.total, dtype=torch.float32)  # (K, D), each update decoded into its row
        weights = [s.num_samples for s in rows]
        pre_rejected: dict[int, str] = {}
        seen = self._digests_before(round_index)
        for sub in on_chain:  # chain order, so that the first of identical bytes is the original
            row = row_of[sub.contributor]
            reason = "replay" if sub.digest in seen else self._load_update(verdicts[row], round_index, base.cid, buffer[row])
            seen.add(sub.digest)
            if reason is not None:
                pre_rejected[row] = reason
        timer.lap("fetch_verify")

        # Near-duplicates matter only when updates are public: a sealed update cannot be seen, so cannot be copied
        # (a resubmission of the same sealed bytes is a replay, caught above). Honest updates can also look alike,
        # e.g. when every contributor trains from a diverged model, so this check is not run where it is not needed.
        screening = screen(
            buffer, submission_order, config=SEALED_SCREENING if spec.sealed else None, pre_rejected=pre_rejected
        )
        for row, reason in screening.rejected.items():
            verdicts[row].status, verdicts[row].reason = "rejected", reason
        accepted = list(screening.accepted)

        rule = RuleConfig.from_dict(spec.aggregation)
        delta = torch.zeros(layout.total, dtype=torch.float32)
        selected: list[int] = []
        if accepted:
            kept = buffer if len(accepted) == len(rows) else buffer[accepted]
            agg = aggregate(rule, kept, [weights[i] for i in accepted], clip_in_place=False)
            delta = agg.vector
            selected = [accepted[i] for i in agg.selected]
            for i in agg.discarded:
                verdicts[accepted[i]].status = "discarded"
                verdicts[accepted[i]].reason = f"discarded-by-{rule.name}"
        timer.lap("aggregate")

        with _torch_threads(self.config.scoring_threads):
            scores, scoring_info = self._score(buffer, weights, selected, base.state)
        # Rounded, so that the last bits of a loss (which can depend on the CPU and its thread count) never move
        # a reward: the split is computed from these exact decimal-rounded shares.
        scores = {row: round(score, SCORE_DECIMALS) for row, score in scores.items()}
        timer.lap("score")
        info = self.task.info()
        budget = info.reward_per_round + info.carry
        by_address = {verdicts[row].submission.contributor: s for row, s in scores.items()}
        rewards = rewards_from_scores(by_address, budget) if by_address else {}
        rejections = [v.reason if v.status == "rejected" else None for v in verdicts]
        # Judging the base model costs an evaluation: only a non-finite update needs it.
        diverged = "non-finite" in rejections and has_diverged(
            evaluate(self.model, base.state, self.x_test, self.y_test, device=self.device).loss, spec.num_classes
        )
        slashed = slash_decisions(rejections, model_diverged=diverged)
        for row, verdict in enumerate(verdicts):
            verdict.score = scores.get(row, 0.0)
            verdict.reward = rewards.get(verdict.submission.contributor, 0)
            verdict.slashed = slashed[row]

        new_state = apply_delta(base.state, delta, layout)
        metrics = evaluate(self.model, new_state, self.x_test, self.y_test, device=self.device)
        if not (bool(torch.isfinite(delta).all()) and math.isfinite(metrics.loss)):
            # Never publish a broken model: keep the previous one (the round's updates keep their verdicts).
            log.warning("round %d: the merged model is not finite; the global model stays as it was", round_index)
            new_state = {name: tensor.clone() for name, tensor in base.state.items()}
            metrics = evaluate(self.model, new_state, self.x_test, self.y_test, device=self.device)
        model_bytes = encode_model(new_state, {"task_id": task_id, "round": round_index, "base_model_cid": base.cid})
        model_cid = self.ipfs.add_bytes(model_bytes)
        timer.lap("evaluate")

        entitled = {a: r for a, r in rewards.items() if r > 0}
        tree = RewardTree(task_id, round_index, entitled)
        report = RoundReport(
            task_id=task_id, round=round_index, base_model_cid=base.cid, model_cid=model_cid,
            aggregation=rule.to_dict(), scoring=scoring_info,
            metrics={"test_accuracy": metrics.accuracy, "test_loss": metrics.loss, "eval_samples": metrics.samples},
            budget=budget, total_rewards=sum(entitled.values()), rewards_root="0x" + tree.root.hex(),
            updates=[
                UpdateRecord(
                    contributor=v.submission.contributor, cid=v.cid, num_samples=v.submission.num_samples,
                    status=v.status, reason=v.reason, score=v.score, reward=v.reward, slashed=v.slashed,
                )
                for v in verdicts
            ],
        )
        report_cid = self.ipfs.add_bytes(canonical_json(report))
        timer.lap("publish")
        slashes = [(v.submission.contributor, "0x" + v.submission.digest.hex()) for v in verdicts if v.slashed]
        log.info(
            "round %d: %d selected, %d rejected, accuracy %.4f, rewards %d",
            round_index, len(selected), len(pre_rejected) + len(screening.rejected) - len(pre_rejected),
            metrics.accuracy, report.total_rewards,
        )
        return RoundResult(
            round=round_index, model_cid=model_cid, report_cid=report_cid, rewards_root="0x" + tree.root.hex(),
            total_rewards=report.total_rewards, slashes=slashes, test_accuracy=metrics.accuracy,
            test_loss=metrics.loss, seconds=timer.laps,
        )

    def _digests_before(self, round_index: int) -> set[bytes]:
        """Digests submitted in earlier rounds of this task: the same bytes again are a replay."""
        return {s.digest for s in self.protocol.submissions(self.config.task_id) if s.round < round_index}

    def _load_update(self, verdict: UpdateVerdict, round_index: int, base_cid: str, row: torch.Tensor) -> str | None:
        """Fetch, verify, open and decode one update into `row`; the reason code if it is rejected."""
        sub = verdict.submission
        spec = self.task.spec
        try:
            data = self.ipfs.cat(verdict.cid, max_size=spec.max_update_bytes)
        except ContentError as exc:
            log.warning("update %s from %s rejected: %s", verdict.cid, sub.contributor, exc)
            return "too-large" if isinstance(exc, ContentTooLargeError) else "unavailable"
        try:
            if spec.sealed:
                binding = SealBinding(self.config.task_id, round_index, sub.contributor)
                if read_binding(data) != binding:
                    return "replay"  # sealed for another sender or round
                data = open_sealed(data, self.sealing_key, binding)
            envelope = decode_update(data, self.task.layout.expected_tensors(), max_bytes=spec.max_update_bytes)
        except (SealError, EnvelopeError) as exc:
            return exc.reason
        if (envelope.task_id, envelope.round) != (self.config.task_id, round_index):
            return "replay"
        if envelope.contributor.lower() != sub.contributor.lower():
            return "replay"
        if envelope.base_model_cid != base_cid:
            return "wrong-base"
        if envelope.num_samples != sub.num_samples:
            return "bad-metadata"
        self.task.layout.flatten_into(envelope.tensors, row)
        return None

    def _scoring_workers(self) -> int:
        if self.config.scoring_workers is not None:
            return max(1, self.config.scoring_workers)
        if self.device.type != "cpu":
            return 1
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return min(4, cpus)

    def _score(self, buffer: torch.Tensor, weights: list[int], rows: list[int], base_state: dict) -> tuple[dict[int, float], dict]:
        scoring = self.task.spec.scoring
        params = {k: v for k, v in scoring.model_dump().items() if k != "method"}
        if not rows:
            return {}, {"method": scoring.method, **params, "evaluations": 0}
        if scoring.method == "equal":
            return {r: 1.0 / len(rows) for r in rows}, {"method": "equal", **params, "evaluations": 0}
        loss_of = LossEvaluator(
            self.model, self.task.layout, base_state, self.x_test, self.y_test, self.device,
            max_samples=scoring.eval_samples, seed=scoring.seed,
        )
        evaluator = _finite_loss(loss_of)
        combine = share_combine(buffer, weights, rows) if scoring.coalition == "share" else fedavg_combine
        if scoring.method == "marginal":
            result = marginal_scores(buffer, weights, rows, evaluator, combine)
        else:
            evaluators = [evaluator] + [_finite_loss(loss_of.replica()) for _ in range(self._scoring_workers() - 1)]
            result = tmc_shapley(
                buffer, weights, rows, evaluators, permutations=scoring.permutations,
                truncation_tol=scoring.truncation_tol, seed=scoring.seed, combine=combine,
            )
        return dict(result.scores), {"method": result.method, **result.params, "evaluations": result.evaluations}


def _finite_loss(loss_of: LossEvaluator):
    def evaluator(delta: torch.Tensor) -> float:
        # A coalition whose merged update breaks the model is worth as little as can be, not an error.
        loss = loss_of(delta)
        return loss if math.isfinite(loss) else LOSS_CAP

    return evaluator


@contextlib.contextmanager
def _torch_threads(count: int):
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
