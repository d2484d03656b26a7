"""The validator: collect a round's updates, compute the round's outcome, publish it, post it; the loop around it.

    fedchain validate --task 0 --holdout test.npz --sealing-key validator.key --keystore validator.json

A round is three steps: `collect` reads the chain's submissions and fetches, verifies, opens and decodes each update
(fedchain.roles.round.RoundInputs); `compute_outcome` is a function of those inputs (fedchain.roles.round); `publish`
pins the model and report (fedchain.roles.publish). The result is checkpointed before it is posted: killed at any
moment and restarted, the validator recomputes (or reloads) the same result, loses no update and counts none twice.
A checkpoint is bound to the deployment it was computed on and records the submissions it was computed from; it is
posted only if both still match the chain.

Outages: while its own IPFS node is down the validator waits and retries (until the round's aggregation deadline)
instead of exiting or marking updates unavailable; an update is `unavailable` only when its node answers and the
content cannot be fetched. A round whose aggregation deadline passed without a result is expired, and the loop goes on.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account.signers.local import LocalAccount

from fedchain.aggregation import canonical_order
from fedchain.chain.errors import TransactionRevertedError
from fedchain.chain.protocol import Protocol, RoundPhase, Submission
from fedchain.content.client import IpfsClient
from fedchain.content.errors import ContentError, ContentTooLargeError
from fedchain.core.cid import cid_to_digest, digest_to_cid
from fedchain.core.envelope import EnvelopeError, decode_update
from fedchain.core.reasons import Reason
from fedchain.core.sealing import SealBinding, SealError, open_sealed, read_binding
from fedchain.errors import ConfigError
from fedchain.learning.evaluation import pick_device
from fedchain.learning.kinds import kind_of
from fedchain.learning.models import build_model
from fedchain.roles.publish import publish
from fedchain.roles.retry import OutageError, node_is_up, patiently
from fedchain.roles.round import ComputeSettings, RoundInputs, SubmittedUpdate, compute_outcome
from fedchain.state import check_bound_dir, read_bound_json, write_bound_json
from fedchain.views.taskview import TaskView

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ValidatorConfig:
    task_id: int
    holdout_path: Path                   # the validator's held-out data (.npz with x, y)
    state_dir: Path                      # checkpoints, so a restart resumes
    poll_interval: float = 0.5
    device: str | None = None
    scoring_threads: int = 1             # torch threads per scoring worker (see ComputeSettings)
    scoring_workers: int | None = None   # None: one per CPU, at most 4 (see ComputeSettings)


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
    # The submissions the result was computed from, in chain order: (contributor, digest 0x…)
    submissions: list[tuple[str, str]] = field(default_factory=list)


class Validator:
    def __init__(
        self,
        protocol: Protocol,
        ipfs: IpfsClient,
        account: LocalAccount,
        sealing_key: X25519PrivateKey | None,
        config: ValidatorConfig,
    ) -> None:
        self.protocol = protocol
        self.ipfs = ipfs
        self.account = account
        self.sealing_key = sealing_key
        self.config = config
        self.task = TaskView(protocol, ipfs, config.task_id)
        self.device = torch.device(config.device) if config.device else pick_device()
        self.holdout = kind_of(self.task.spec).load_data(config.holdout_path, self.task.spec)
        self.model = build_model(self.task.spec).to(self.device)
        self.settings = ComputeSettings(self.device, config.scoring_threads, config.scoring_workers)
        self._checkpoint_dir = config.state_dir / f"validator-task{config.task_id}"
        check_bound_dir(self._checkpoint_dir, protocol.binding())  # another chain's checkpoints: refused at once
        if self.task.spec.sealed and sealing_key is None:
            raise ConfigError("this task's updates are sealed: pass the validator's --sealing-key")
        validator = self.task.info().validator
        if validator.lower() != account.address.lower():
            raise ConfigError(
                f"task {config.task_id}'s validator is {validator}, not {account.address}: use that account's keystore"
            )

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
            try:
                results.append(self.finalize_round(round_index))
            except OutageError as exc:
                log.error("round %d: no result: %s; the round expires and the task goes on", round_index, exc)
            except TransactionRevertedError as exc:
                late = self.protocol.round(self.config.task_id, round_index)
                if late.phase != RoundPhase.EXPIRED and time.time() < late.aggregation_deadline:
                    raise
                log.error("round %d: the result came too late (%s); the round expires and the task goes on",
                          round_index, exc)
        return results

    def _ready_to_aggregate(self, round_index: int) -> bool:
        info = self.protocol.round(self.config.task_id, round_index)
        now = time.time()
        if (info.phase == RoundPhase.OPEN and now >= info.submission_deadline
                or info.phase == RoundPhase.AGGREGATING and now >= info.aggregation_deadline):
            # A deadline passed by the wall clock: on Anvil, move the chain's clock so the phase catches up.
            self.protocol.chain.sync_clock()
            info = self.protocol.round(self.config.task_id, round_index)
        if info.phase == RoundPhase.EXPIRED:
            self._expire(round_index)
        return info.phase == RoundPhase.AGGREGATING

    def _expire(self, round_index: int) -> None:
        """Record the expiry of a round whose aggregation deadline passed (the validator was down, or started late),
        so that the next round opens."""
        try:
            self.protocol.expire_round(self.account, self.config.task_id, round_index)
        except TransactionRevertedError:
            return  # someone else recorded it first
        log.warning("round %d expired: its aggregation deadline passed without a result (this validator was not "
                    "running, or could not finish); its budget rolls over to the next round", round_index)

    def finalize_round(self, round_index: int) -> RoundResult:
        """Compute (or reload) the round's result and post it unless it is already on chain."""
        path = self._checkpoint_dir / f"round-{round_index}.json"
        on_chain = self._submission_list(round_index)
        result = self._load_checkpoint(path, round_index, on_chain)
        if result is None:
            result = self.compute_round(round_index)
            write_bound_json(path, asdict(result), self.protocol.binding())
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

    def _load_checkpoint(self, path: Path, round_index: int, on_chain: list[tuple[str, str]]) -> RoundResult | None:
        """The checkpointed result of this round, if it was computed on this deployment from exactly the
        submissions the chain holds (StateMismatchError for another deployment's)."""
        saved = read_bound_json(path, self.protocol.binding())
        if saved is None:
            return None
        submissions = [(str(a), str(d)) for a, d in saved.get("submissions", [])]
        if submissions != on_chain:
            log.warning("round %d: the checkpoint %s was computed from other submissions than the chain holds "
                        "(%d there, %d on chain): recomputing", round_index, path, len(submissions), len(on_chain))
            return None
        log.info("round %d: resuming from checkpoint", round_index)
        return RoundResult(**{**saved, "slashes": [tuple(s) for s in saved["slashes"]], "submissions": submissions})

    def _submission_list(self, round_index: int) -> list[tuple[str, str]]:
        return [(s.contributor, "0x" + s.digest.hex()) for s in self.protocol.submissions(self.config.task_id, round_index)]

    # ─── one round ───
    def compute_round(self, round_index: int) -> RoundResult:
        """Collect the round's inputs, compute its outcome and publish it (not yet posted on chain)."""
        started = time.perf_counter()
        inputs = self.collect(round_index)
        fetch_seconds = time.perf_counter() - started
        outcome = compute_outcome(inputs, self.model, self.settings)
        deadline = self._deadline(round_index)
        published = patiently(f"publish round {round_index}'s model and report", lambda: publish(outcome, self.ipfs),
                              until=deadline)
        return RoundResult(
            round=round_index, model_cid=published.model_cid, report_cid=published.report_cid,
            rewards_root=published.rewards_root, total_rewards=published.report.total_rewards,
            slashes=outcome.slashes, test_accuracy=outcome.metrics.accuracy, test_loss=outcome.metrics.loss,
            seconds={"fetch_verify": round(fetch_seconds, 4), **outcome.seconds,
                     "publish": round(published.seconds, 4)},
            submissions=[(inputs.updates[i].contributor, "0x" + inputs.updates[i].digest.hex())
                         for i in inputs.submission_order],
        )

    def _deadline(self, round_index: int) -> float:
        return float(self.protocol.round(self.config.task_id, round_index).aggregation_deadline)

    def collect(self, round_index: int) -> RoundInputs:
        """The round's inputs: its submissions in canonical order, each fetched, verified and decoded into its row."""
        task_id = self.config.task_id
        deadline = self._deadline(round_index)
        base = patiently(f"fetch round {round_index}'s base model", lambda: self.task.global_model(round_index),
                         until=deadline)
        on_chain = self.protocol.submissions(task_id, round_index)  # in chain order (block, log index)
        log.info("round %d: aggregating %d submission(s)", round_index, len(on_chain))
        # Rows in canonical order (by contributor address): the result never depends on arrival order.
        subs = [on_chain[i] for i in canonical_order([s.contributor for s in on_chain])]
        row_of = {s.contributor: i for i, s in enumerate(subs)}
        rows = torch.zeros(len(subs), self.task.layout.total, dtype=torch.float32)  # (K, D)
        rejections: dict[int, str] = {}
        seen = self._digests_before(round_index)
        for sub in on_chain:  # chain order, so that the first of identical bytes is the original
            row = row_of[sub.contributor]
            reason = (Reason.REPLAY if sub.digest in seen
                      else self._load_update(sub, round_index, base.cid, rows[row], deadline))
            seen.add(sub.digest)
            if reason is not None:
                rejections[row] = str(reason)
        info = self.task.info()
        return RoundInputs(
            task_id=task_id, round=round_index, spec=self.task.spec,
            updates=[SubmittedUpdate(s.contributor, digest_to_cid(s.digest), s.digest, s.num_samples, rejections.get(i))
                     for i, s in enumerate(subs)],
            submission_order=[row_of[s.contributor] for s in on_chain], rows=rows, base_state=base.state,
            base_cid=base.cid, holdout=self.holdout, budget=info.reward_per_round + info.carry,
        )

    def _digests_before(self, round_index: int) -> set[bytes]:
        """Digests submitted in earlier rounds of this task: the same bytes again are a replay."""
        return {s.digest for s in self.protocol.submissions(self.config.task_id) if s.round < round_index}

    def _fetch_update(self, sub: Submission, deadline: float) -> bytes | Reason:
        """The update's bytes; a reason code only for the update's own fault: while our own node is down, wait."""
        cid = digest_to_cid(sub.digest)
        while True:
            try:
                return self.ipfs.cat(cid, max_size=self.task.spec.max_update_bytes)
            except ContentTooLargeError as exc:
                log.warning("update %s from %s rejected: %s", cid, sub.contributor, exc)
                return Reason.TOO_LARGE
            except ContentError as exc:
                if node_is_up(self.ipfs):
                    log.warning("update %s from %s is unavailable: %s", cid, sub.contributor, exc)
                    return Reason.UNAVAILABLE
                log.warning("cannot fetch update %s: this validator's IPFS node at %s is down; waiting for it "
                            "(the update is not marked unavailable for that)", cid, self.ipfs.api)
                patiently("reach this validator's IPFS node", self.ipfs.version, until=deadline)

    def _load_update(self, sub: Submission, round_index: int, base_cid: str, row: torch.Tensor,
                     deadline: float) -> str | None:
        """Fetch, verify, open and decode one update into `row`; the reason code if it is rejected."""
        spec = self.task.spec
        fetched = self._fetch_update(sub, deadline)
        if isinstance(fetched, Reason):
            return fetched
        data = fetched
        try:
            if spec.sealed:
                binding = SealBinding(self.config.task_id, round_index, sub.contributor)
                if read_binding(data) != binding:
                    return Reason.REPLAY  # sealed for another sender or round
                assert self.sealing_key is not None  # checked in __init__ for sealed tasks
                data = open_sealed(data, self.sealing_key, binding)
            envelope = decode_update(data, self.task.layout.expected_tensors(), max_bytes=spec.max_update_bytes)
        except (SealError, EnvelopeError) as exc:
            return exc.reason
        if (envelope.task_id, envelope.round) != (self.config.task_id, round_index):
            return Reason.REPLAY
        if envelope.contributor.lower() != sub.contributor.lower():
            return Reason.REPLAY
        if envelope.base_model_cid != base_cid:
            return Reason.WRONG_BASE
        if envelope.num_samples != sub.num_samples:
            return Reason.BAD_METADATA
        self.task.layout.flatten_into(envelope.tensors, row)
        return None
