"""The contributor client: stake, follow the task's rounds, train locally, seal, pin, submit, claim.

    fedchain contribute --task 0 --data shard.npz --keystore me.json

A trained update is written to the state directory before it is pinned and submitted, and removed only once the
chain holds its digest (or the round closed without it): an IPFS outage is waited out with backoff while the
round is open, and a contributor restarted in the same round submits the update it already trained.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from eth_account.signers.local import LocalAccount

from fedchain.chain.errors import ChainError, TransactionRevertedError
from fedchain.chain.protocol import Protocol, RoundPhase
from fedchain.chain.units import format_fed
from fedchain.content.client import IpfsClient
from fedchain.core.cid import cid_to_digest
from fedchain.core.envelope import UpdateEnvelope, encode_update
from fedchain.core.sealing import SealBinding, seal
from fedchain.errors import FedchainError
from fedchain.learning.evaluation import pick_device
from fedchain.learning.kinds import kind_of
from fedchain.learning.models import build_model
from fedchain.learning.trainers import LocalData, Trainer, TrainResult, trainer_for
from fedchain.privacy.accounting import BudgetExhaustedError
from fedchain.privacy.budget import PrivacyBudget
from fedchain.privacy.declaration import EXTENSION as DECLARATION
from fedchain.privacy.trainer import DPTrainer, PrivateTrainResult
from fedchain.roles.retry import STARTUP_WAIT, OutageError, patiently
from fedchain.state import check_bound_dir, read_bound_json, write_bound_json, write_bytes_atomic
from fedchain.unlabelled.record import EXTENSION as PSEUDO_LABELS
from fedchain.unlabelled.record import PseudoLabelRecord
from fedchain.unlabelled.trainer import EXTRA as PSEUDO_LABEL_EXTRA
from fedchain.views.follow import TaskFollower
from fedchain.views.rewards import claimable_rewards
from fedchain.views.taskview import TaskView

log = logging.getLogger(__name__)
STALL_CHECK_SECONDS = 5.0  # how often a waiting contributor checks for a missed aggregation deadline
CLAIM_CONFIRMATION_WAIT = 600.0  # seconds to wait for the results to be confirmed before claiming the confirmed ones


class CannotStakeError(FedchainError):
    """Raised when the account cannot reach the task's minimum stake (too few FED, or no ETH for gas)."""


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
    confirmations: int | None = None     # blocks deep the base model and results must be (None: 0 on a devnet, else 3)


_Declared = tuple[bytes, int, bytes]  # a pseudo-label declaration: (root, packed summary, histogram)
_Pending = tuple[bytes, int, float, "_Declared | None"]  # (payload, sample count, training seconds, declaration)


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
        self.task = TaskView(protocol, ipfs, config.task_id, config.confirmations)
        self.device = torch.device(config.device) if config.device else pick_device()
        self._trainer = config.trainer
        self.claimed = 0  # what claim() claimed in this process, in the smallest unit
        self._cursor_path = config.state_dir / f"contributor-{account.address}-task{config.task_id}.cursor.json"
        self._pending_dir = config.state_dir / f"contributor-{account.address}-task{config.task_id}"
        check_bound_dir(self._pending_dir, protocol.binding())  # refuse another chain's updates at once

    @property
    def trainer(self) -> Trainer:
        """The configured trainer, else the one the task's spec asks for (read when first needed); a private task's
        keeps this contributor's spend for the task in the state directory."""
        if self._trainer is None:
            self._trainer = trainer_for(self.task.spec)
        if isinstance(self._trainer, DPTrainer) and self._trainer.budget is None:
            self._trainer.budget = self.privacy_budget()
        return self._trainer

    def privacy_budget(self) -> PrivacyBudget:
        """This contributor's privacy spend for the task, as saved in the state directory (private tasks only)."""
        cfg = self.task.spec.privacy
        if cfg is None:
            raise FedchainError(f"task {self.config.task_id} is not private: it keeps no privacy budget")
        path = self.config.state_dir / f"contributor-{self.account.address}-task{self.config.task_id}.privacy.json"
        return PrivacyBudget.open(path, self.protocol.binding(), self.config.task_id, cfg)

    # ─── the loop ───
    def run(self, *, max_rounds: int | None = None) -> list[RoundOutcome]:
        """Contribute to every round until the task ends (or `max_rounds` submissions); then claim what was earned:
        at the end of the task, or with `max_rounds` once the rounds it submitted to are over."""
        spec = patiently("fetch the task's spec", lambda: self.task.spec, until=time.time() + STARTUP_WAIT)
        data = kind_of(spec).load_data(self.config.data_path, spec)
        outcomes: list[RoundOutcome] = []
        attempted: set[int] = set()  # rounds tried in this process: a refused submission is not retried
        stopped: CannotStakeError | None = None  # could no longer stake after contributing: claim, then say so
        follower = TaskFollower(
            self.protocol, self.config.task_id, self._cursor_path,
            start_block=self.protocol.deployments.block,
        )
        info = self.task.info()
        if info.ended:
            log.info("task %d has ended: nothing to train; claiming what is owed", self.config.task_id)
        else:
            self.check_can_stake(info.min_contributor_stake)  # a clear error now, not after waiting for a round
        while max_rounds is None or len(outcomes) < max_rounds:
            info = self.task.info()
            if info.ended:
                break
            round_index = info.current_round
            submitted = self._already_submitted(round_index)
            closed = not submitted and not self._open_now(round_index)
            # Submitted just before a crash (the chain has it), or kept down past the window: no round takes the
            # update trained before the restart any more.
            self._drop_stale_pending(round_index, this_round=submitted or closed)
            if round_index in attempted or submitted or closed:
                self._wait_for_news(follower, round_index)
                continue
            attempted.add(round_index)
            # Stake can fall below the task's minimum (a slash, an unstake): top it up before training.
            try:
                self.top_up_stake(info.min_contributor_stake)
            except CannotStakeError as exc:
                if not outcomes:
                    raise
                log.error("%s; claiming what the rounds it submitted to earned, then stopping", exc)
                stopped = exc
                break
            try:
                outcome = self.contribute_round(round_index, data)
            except BudgetExhaustedError as exc:
                log.error("task %d: stopping: %s", self.config.task_id, exc)
                break
            if outcome is not None:
                outcomes.append(outcome)
        if self.config.claim_at_end:
            self._claim_at_end(outcomes)
        if stopped is not None:
            raise stopped
        return outcomes

    def _claim_at_end(self, outcomes: list[RoundOutcome]) -> None:
        if self.task.info().ended:
            self.wait_for_end()
        else:
            log.info("stopping after %d submission(s): waiting for rounds %s to be decided, then claiming; "
                     "rewards of the task's other rounds are not this run's", len(outcomes),
                     [o.round for o in outcomes])
            self.wait_for_rounds([o.round for o in outcomes])
        self.claim()

    def check_can_stake(self, minimum: int) -> None:
        """CannotStakeError, saying what is missing, unless this account holds or can stake the task's minimum."""
        address = self.account.address
        active = self.protocol.active_stake(address)
        missing = minimum - active
        if missing <= 0:
            return
        balance = self.protocol.balance_of(address)
        if balance < missing:
            raise CannotStakeError(
                f"{address} cannot stake the {format_fed(minimum)} task {self.config.task_id} requires: it has "
                f"{format_fed(active)} staked and holds {format_fed(balance)}, {format_fed(missing - balance)} too "
                "few. Send it FED (on a devnet: `fedchain account fund --to ADDRESS --fed 1000`) and start again"
            )
        if self.protocol.eth_balance(address) == 0:
            raise CannotStakeError(
                f"{address} has no ETH to pay gas for staking and submitting: send it some (on a devnet: "
                "`fedchain account fund --to ADDRESS --eth 1`) and start again"
            )

    def top_up_stake(self, minimum: int) -> None:
        self.check_can_stake(minimum)
        try:
            self.protocol.ensure_stake(self.account, minimum)
        except ChainError as exc:  # a revert, or gas the account cannot pay
            raise CannotStakeError(
                f"{self.account.address} could not stake the {format_fed(minimum)} task {self.config.task_id} "
                f"requires: {exc}"
            ) from exc

    def _wait_for_news(self, follower: TaskFollower, round_index: int) -> None:
        """Sleep until the task logs an event (a new round, a result, the end). Deadlines pass without events,
        so now and then check whether the validator went silent and the round must be expired."""
        last_check = time.monotonic()
        while not follower.poll():
            if time.monotonic() - last_check >= STALL_CHECK_SECONDS:
                self._expire_if_stalled(round_index)
                last_check = time.monotonic()
            time.sleep(self.config.poll_interval)

    def expire_if_stalled(self, round_index: int) -> None:
        """Expire round `round_index` if its validator missed the aggregation deadline (liveness; see run)."""
        self._expire_if_stalled(round_index)

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
        """Train (or reuse the update already trained for this round), pin and submit; None if the round closed."""
        deadline = float(self.protocol.round(self.config.task_id, round_index).submission_deadline)
        events = self.task.events
        # The base model is the latest finalization before the round: final once the round's opening is confirmed.
        if not events.wait_for(f"round {round_index}'s opening", lambda: events.round_opened(self.config.task_id,
                                                                                             round_index),
                               until=deadline, poll=self.config.poll_interval):
            log.warning("round %d: its opening was not %d blocks deep before its submission deadline: skipped",
                        round_index, events.confirmations)
            return None
        try:
            pending = self._load_pending(round_index)
            if pending is None:
                pending = self._train(round_index, data, deadline)
            payload, num_samples, seconds, declared = pending
            cid = patiently(f"pin round {round_index}'s update", lambda: self.ipfs.add_bytes(payload), until=deadline)
        except OutageError as exc:
            log.error("round %d: the update was not submitted: %s", round_index, exc)
            self._drop_pending(round_index)
            return None
        try:
            if declared is None:
                tx = self.protocol.submit_update(
                    self.account, self.config.task_id, round_index, cid_to_digest(cid), num_samples,
                    epsilon=self._declared_epsilon(round_index),
                )
            else:  # the pseudo-label summary goes in the submission's event
                root, summary, histogram = declared
                tx = self.protocol.submit_update_with_pseudo_labels(
                    self.account, self.config.task_id, round_index, cid_to_digest(cid), num_samples, root, summary,
                    histogram,
                )
        except TransactionRevertedError as exc:
            # The window closed (or the round filled up) while training: skip this round.
            log.warning("round %d: submission refused: %s", round_index, exc)
            self._drop_pending(round_index)
            return None
        self._drop_pending(round_index)
        return RoundOutcome(round_index, cid, num_samples, seconds, tx.gas_used)

    def _train(self, round_index: int, data: LocalData, deadline: float) -> _Pending:
        spec = self.task.spec
        base = patiently(f"fetch round {round_index}'s base model", lambda: self.task.global_model(round_index),
                         until=deadline)
        model = build_model(spec)
        seed = self.config.seed * 1_000_003 + round_index
        log.info("round %d: training on %d samples from %s", round_index, len(data), base.cid)
        trainer = self.trainer
        if isinstance(trainer, DPTrainer):  # its noise spreads the cap over the rounds left
            trainer.round_index, trainer.rounds_left = round_index, self.task.info().num_rounds - round_index
        result: TrainResult = trainer.train(
            model, base.state, data, spec, seed=seed, device=self.device, progress=self.config.progress
        )
        record = self.pseudo_label_record(result)
        extensions: dict[str, dict[str, Any]] = {} if record is None else {PSEUDO_LABELS: record.to_json()}
        if isinstance(result, PrivateTrainResult) and result.declaration is not None:
            extensions[DECLARATION] = result.declaration.record()
        declared = None if record is None else (record.root, record.summary(), record.histogram_bytes())
        if record is not None:
            log.info("round %d: %d of %d unlabelled samples pseudo-labelled (threshold %.2f), %d labelled",
                     round_index, record.pseudo_labelled, record.unlabelled_seen, record.threshold_bp / 1e4,
                     record.labelled)
        payload = (self.build_payload(round_index, base.cid, result.num_samples, result.delta) if not extensions
                   else self.build_payload(round_index, base.cid, result.num_samples, result.delta, extensions))
        self._save_pending(round_index, base.cid, payload, result.num_samples, result.seconds, declared)
        return payload, result.num_samples, result.seconds, declared

    def pseudo_label_record(self, result: TrainResult) -> PseudoLabelRecord | None:
        """The record of what a pseudo-labelling trainer labelled, its samples committed with this contributor's
        salt secret (so that it can later prove single labels); None for a supervised trainer."""
        labels = result.extras.get(PSEUDO_LABEL_EXTRA)
        return None if labels is None else PseudoLabelRecord.build(labels, self._salt_secret())

    def _salt_secret(self) -> bytes:
        """32 random bytes kept in the state directory (never printed): the salts of the sample commitments."""
        path = self.config.state_dir / f"contributor-{self.account.address}-pseudo-label-salt.bin"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(os.urandom(32))
        return path.read_bytes()

    # ─── the trained update, kept on disk until the chain has its digest ───
    def _pending_paths(self, round_index: int) -> tuple[Path, Path]:
        return self._pending_dir / f"round-{round_index}.json", self._pending_dir / f"round-{round_index}.update"

    def _save_pending(self, round_index: int, base_cid: str, payload: bytes, num_samples: int, seconds: float,
                      declared: _Declared | None = None) -> None:
        meta, blob = self._pending_paths(round_index)
        write_bytes_atomic(blob, payload)
        value = {"round": round_index, "base_model_cid": base_cid, "num_samples": num_samples,
                 "train_seconds": seconds, "files": [blob.name]}
        if declared is not None:
            value["pseudo_labels"] = {"root": declared[0].hex(), "summary": str(declared[1]),
                                      "histogram": declared[2].hex()}
        write_bound_json(meta, value, self.protocol.binding())

    def _load_pending(self, round_index: int) -> _Pending | None:
        meta_path, blob = self._pending_paths(round_index)
        meta = read_bound_json(meta_path, self.protocol.binding())
        if meta is None or not blob.exists():
            return None
        if meta.get("base_model_cid") != self.task.base_model_cid(round_index):
            self._drop_pending(round_index)
            return None
        log.info("round %d: submitting the update trained before the restart (%s)", round_index, blob)
        pl = meta.get("pseudo_labels")
        declared = None if pl is None else (bytes.fromhex(pl["root"]), int(pl["summary"]), bytes.fromhex(pl["histogram"]))
        return blob.read_bytes(), int(meta["num_samples"]), float(meta.get("train_seconds", 0.0)), declared

    def _drop_stale_pending(self, round_index: int, *, this_round: bool) -> None:
        """Remove the updates trained for rounds before `round_index` (and for it too with `this_round`): a
        contributor restarted after its round's window finds one it can no longer submit in its state directory."""
        for meta in self._pending_dir.glob("round-*.json"):
            index = meta.stem.removeprefix("round-")
            if index.isdigit() and (int(index) < round_index or this_round and int(index) == round_index):
                log.info("round %s: removing the update trained before the restart: it was submitted, or the "
                         "round's window closed without it", index)
                self._drop_pending(int(index))

    def _drop_pending(self, round_index: int) -> None:
        for path in self._pending_paths(round_index):
            path.unlink(missing_ok=True)

    def _declared_epsilon(self, round_index: int) -> int | None:
        """A private task's cumulative spend with this round's update (micro-epsilon), as its envelope declares."""
        if self.task.spec.privacy is None:
            return None
        spend = self.privacy_budget().last_for(round_index)
        if spend is None:
            raise FedchainError(f"round {round_index}: no privacy spend recorded for the update to submit")
        return spend.epsilon_micro

    def build_payload(self, round_index: int, base_cid: str, num_samples: int, delta: dict[str, torch.Tensor],
                      extensions: dict[str, dict[str, Any]] | None = None) -> bytes:
        """The update envelope (with its extension records), sealed to the task's validators when the task says so."""
        spec = self.task.spec
        envelope = UpdateEnvelope(
            task_id=self.config.task_id, round=round_index, base_model_cid=base_cid, num_samples=num_samples,
            contributor=self.account.address, tensors=delta, extensions=dict(extensions or {}),
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

    def wait_for_rounds(self, rounds: list[int]) -> None:
        """Wait until each of `rounds` is finalized or expired (expiring it once its validator missed the deadline)."""
        for round_index in rounds:
            while True:
                phase = self.protocol.round(self.config.task_id, round_index).phase
                if phase in (RoundPhase.OPEN, RoundPhase.AGGREGATING, RoundPhase.EXPIRED):
                    self._expire_if_stalled(round_index)  # records an expiry nobody recorded yet
                if phase in (RoundPhase.FINALIZED, RoundPhase.EXPIRED):
                    break
                time.sleep(self.config.poll_interval)

    def claim(self) -> int:
        """Claim every finalized round's reward not yet claimed, in one transaction, once the results are confirmed.
        Returns the amount."""
        events, task_id = self.task.events, self.config.task_id
        finalized = {r for r in range(self.task.info().num_rounds)
                     if self.protocol.round(task_id, r).phase == RoundPhase.FINALIZED}
        if not events.wait_for("the task's results", lambda: finalized <= {f.round for f in events.finalizations(task_id)},
                               until=time.time() + CLAIM_CONFIRMATION_WAIT, poll=self.config.poll_interval):
            log.warning("some results of task %d are not %d blocks deep yet: claiming the confirmed ones; claim the "
                        "rest later with `fedchain claim`", task_id, events.confirmations)
        claims = patiently("read the round reports to claim", lambda: claimable_rewards(
            self.protocol, self.ipfs, task_id, self.account.address, index=events.index), until=time.time() + 600)
        if not claims:
            log.info("nothing to claim in task %d", self.config.task_id)
            return 0
        self.protocol.claim_many(self.account, self.config.task_id, [(c.round, c.amount, c.proof) for c in claims])
        total = sum(c.amount for c in claims)
        self.claimed += total
        log.info("claimed %s over round(s) %s", format_fed(total), [c.round for c in claims])
        return total
