"""The validator: collect a round's updates, compute the round's outcome, publish it, post it; the loop around it.

    fedchain validate --task 0 --holdout test.npz --sealing-key validator.key --keystore validator.json

A round is three steps: `collect` reads the chain's submissions and fetches, verifies, opens and decodes each update
(fedchain.roles.collect, shared with committee members); `compute_outcome` is a function of those inputs (fedchain.roles.round); `publish`
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

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account.signers.local import LocalAccount

from fedchain.chain.errors import ChainError, TransactionRevertedError
from fedchain.chain.protocol import Protocol, RoundPhase
from fedchain.content.client import IpfsClient
from fedchain.content.errors import ContentError
from fedchain.core.cid import cid_to_digest
from fedchain.errors import ConfigError
from fedchain.roles.collect import UpdateCollector
from fedchain.roles.publish import publish
from fedchain.roles.retry import OutageError, patiently
from fedchain.roles.round import ComputeSettings, RoundInputs, compute_outcome
from fedchain.state import check_bound_dir, read_bound_json, write_bound_json

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
    confirmations: int | None = None     # blocks deep the events acted on must be (None: 0 on a devnet, 3 elsewhere)


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
        self.config = config
        self._checkpoint_dir = config.state_dir / f"validator-task{config.task_id}"
        check_bound_dir(self._checkpoint_dir, protocol.binding())  # another chain's checkpoints: refused at once
        self.collector = UpdateCollector(protocol, ipfs, config.task_id, config.holdout_path, sealing_key,
                                         config.device, confirmations=config.confirmations)
        self.task = self.collector.task
        self.device = self.collector.device
        self.model = self.collector.model
        self.settings = ComputeSettings(self.device, config.scoring_threads, config.scoring_workers)
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
                self._prefetch(round_index)
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

    def _prefetch(self, round_index: int) -> None:
        """Fetch the open round's updates submitted so far (UpdateCollector.prefetch); a failure only costs the
        head start: collecting the round fetches what is missing."""
        try:
            if self.protocol.round(self.config.task_id, round_index).phase == RoundPhase.OPEN:
                self.collector.prefetch(round_index)
        except (ContentError, ChainError) as exc:
            log.debug("round %d: prefetch skipped: %s", round_index, exc)

    def _ready_to_aggregate(self, round_index: int) -> bool:
        info = self.protocol.round(self.config.task_id, round_index)
        now = time.time()
        if info.phase == RoundPhase.OPEN and self.protocol.close_full_round(self.account, self.config.task_id,
                                                                            round_index):
            info = self.protocol.round(self.config.task_id, round_index)  # full and open min_open: closed now
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
            write_bound_json(path, asdict(result), self.protocol.binding())  # the round's anatomy, with its post
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
        subs = self.collector.confirmed_submissions(round_index, self._deadline(round_index))
        return [(s.contributor, "0x" + s.digest.hex()) for s in subs]

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
        return self.collector.deadline(round_index)

    def collect(self, round_index: int) -> RoundInputs:
        """The round's inputs: its submissions in canonical order, each fetched, verified and decoded into its row."""
        return self.collector.collect(round_index)
