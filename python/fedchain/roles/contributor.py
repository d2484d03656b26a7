"""The contributor client: stake, follow the task's rounds, train locally, seal, pin, submit, claim.

    fedchain contribute --task 0 --data shard.npz --keystore me.json
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from eth_account.signers.local import LocalAccount

from fedchain.chain.errors import TransactionRevertedError
from fedchain.chain.protocol import Protocol, RoundPhase
from fedchain.content.client import IpfsClient
from fedchain.core.cid import cid_to_digest
from fedchain.core.envelope import UpdateEnvelope, encode_update
from fedchain.core.sealing import SealBinding, seal
from fedchain.learning.evaluation import pick_device
from fedchain.learning.kinds import kind_of
from fedchain.learning.models import build_model
from fedchain.learning.trainers import LocalData, Trainer, TrainResult, trainer_for
from fedchain.views.follow import TaskFollower
from fedchain.views.rewards import claimable_rewards
from fedchain.views.taskview import TaskView

log = logging.getLogger(__name__)
STALL_CHECK_SECONDS = 5.0  # how often a waiting contributor checks for a missed aggregation deadline


@dataclass(frozen=True)
class ContributorConfig:
    task_id: int
    data_path: Path
    state_dir: Path                      # block cursor and progress, so a restart resumes
    poll_interval: float = 0.5           # seconds between chain polls
    seed: int = 0
    progress: bool = True                # show a progress bar while training
    claim_at_end: bool = True
    device: str | None = None            # None: CUDA when available, else CPU
    trainer: Trainer | None = field(default=None, repr=False)  # None: the one the task's spec asks for


@dataclass
class RoundOutcome:
    round: int
    cid: str
    num_samples: int
    train_seconds: float
    tx_gas: int


class Contributor:
    def __init__(self, protocol: Protocol, ipfs: IpfsClient, account: LocalAccount, config: ContributorConfig) -> None:
        self.protocol = protocol
        self.ipfs = ipfs
        self.account = account
        self.config = config
        self.task = TaskView(protocol, ipfs, config.task_id)
        self.device = torch.device(config.device) if config.device else pick_device()
        self._trainer = config.trainer
        self._cursor_path = config.state_dir / f"contributor-{account.address}-task{config.task_id}.cursor.json"

    @property
    def trainer(self) -> Trainer:
        """The configured trainer, else the one the task's spec asks for (read when first needed)."""
        if self._trainer is None:
            self._trainer = trainer_for(self.task.spec)
        return self._trainer

    # ─── the loop ───
    def run(self, *, max_rounds: int | None = None) -> list[RoundOutcome]:
        """Contribute to every round until the task ends (or `max_rounds` submissions); then claim."""
        data = kind_of(self.task.spec).load_data(self.config.data_path, self.task.spec)
        outcomes: list[RoundOutcome] = []
        attempted: set[int] = set()  # rounds tried in this process: a refused submission is not retried
        follower = TaskFollower(
            self.protocol, self.config.task_id, self._cursor_path,
            start_block=self.protocol.deployments.block,
        )
        while max_rounds is None or len(outcomes) < max_rounds:
            info = self.task.info()
            if info.ended:
                break
            round_index = info.current_round
            if round_index in attempted or self._already_submitted(round_index) or not self._open_now(round_index):
                self._wait_for_news(follower, round_index)
                continue
            attempted.add(round_index)
            # Stake can fall below the task's minimum (a slash, an unstake): top it up before training.
            try:
                self.protocol.ensure_stake(self.account, info.min_contributor_stake)
            except TransactionRevertedError as exc:
                log.error("cannot stake the task's minimum, so no longer contributing: %s", exc)
                break
            outcome = self.contribute_round(round_index, data)
            if outcome is not None:
                outcomes.append(outcome)
        if self.config.claim_at_end:
            self.wait_for_end()
            self.claim()
        return outcomes

    def _wait_for_news(self, follower: TaskFollower, round_index: int) -> None:
        """Sleep until the task logs an event (a new round, a result, the end). Deadlines pass without events,
        so now and then check whether the validator went silent and the round must be expired."""
        last_check = time.monotonic()
        while not follower.poll():
            if time.monotonic() - last_check >= STALL_CHECK_SECONDS:
                self._expire_if_stalled(round_index)
                last_check = time.monotonic()
            time.sleep(self.config.poll_interval)

    def _already_submitted(self, round_index: int) -> bool:
        # The chain is the truth after a crash: never submit twice.
        return self.protocol.submission_of(self.config.task_id, round_index, self.account.address) != b"\x00" * 32

    def _open_now(self, round_index: int) -> bool:
        info = self.protocol.round(self.config.task_id, round_index)
        # Anvil's view of "now" is its last block: also check the stored deadline against the wall clock.
        return info.phase == RoundPhase.OPEN and time.time() < info.submission_deadline

    def _expire_if_stalled(self, round_index: int) -> None:
        """Liveness: once the validator missed the aggregation deadline, expire the round so the next one opens."""
        info = self.protocol.round(self.config.task_id, round_index)
        if info.phase in (RoundPhase.OPEN, RoundPhase.AGGREGATING) and time.time() >= info.aggregation_deadline:
            self.protocol.chain.sync_clock()  # Anvil's clock only moves with transactions
            info = self.protocol.round(self.config.task_id, round_index)
        if info.phase != RoundPhase.EXPIRED:
            return
        try:
            self.protocol.expire_round(self.account, self.config.task_id, round_index)
            log.warning("round %d expired: the validator missed its deadline; its budget rolls over", round_index)
        except TransactionRevertedError:
            pass  # another participant expired it first

    def contribute_round(self, round_index: int, data: LocalData) -> RoundOutcome | None:
        spec = self.task.spec
        base = self.task.global_model(round_index)
        model = build_model(spec)
        seed = self.config.seed * 1_000_003 + round_index
        log.info("round %d: training on %d samples from %s", round_index, len(data), base.cid)
        result: TrainResult = self.trainer.train(
            model, base.state, data, spec, seed=seed, device=self.device, progress=self.config.progress
        )
        payload = self.build_payload(round_index, base.cid, result.num_samples, result.delta)
        cid = self.ipfs.add_bytes(payload)
        try:
            tx = self.protocol.submit_update(
                self.account, self.config.task_id, round_index, cid_to_digest(cid), result.num_samples
            )
        except TransactionRevertedError as exc:
            # The window closed (or the round filled up) while training: skip this round, nothing is lost.
            log.warning("round %d: submission refused: %s", round_index, exc)
            return None
        return RoundOutcome(round_index, cid, result.num_samples, result.seconds, tx.gas_used)

    def build_payload(self, round_index: int, base_cid: str, num_samples: int, delta: dict[str, torch.Tensor]) -> bytes:
        """The update envelope, sealed to the task's validators when the task says so."""
        spec = self.task.spec
        envelope = UpdateEnvelope(
            task_id=self.config.task_id, round=round_index, base_model_cid=base_cid, num_samples=num_samples,
            contributor=self.account.address, tensors=delta,
        )
        data = encode_update(envelope)
        if not spec.sealed:
            return data
        recipients = [bytes.fromhex(k) for k in spec.validator_sealing_keys]
        return seal(data, recipients, SealBinding(self.config.task_id, round_index, self.account.address))

    # ─── rewards ───
    def wait_for_end(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.task.info().ended:
            if deadline is not None and time.monotonic() > deadline:
                return
            time.sleep(self.config.poll_interval)

    def claim(self) -> int:
        """Claim every finalized round's reward not yet claimed, in one transaction. Returns the amount."""
        claims = claimable_rewards(self.protocol, self.ipfs, self.config.task_id, self.account.address)
        if not claims:
            return 0
        self.protocol.claim_many(self.account, self.config.task_id, [(c.round, c.amount, c.proof) for c in claims])
        total = sum(c.amount for c in claims)
        log.info("claimed %d over %d round(s)", total, len(claims))
        return total
