"""A committee member: one of a task's staked validators, agreeing with the others on each round.

    fedchain validate --task 0 --holdout mine.npz --sealing-key me.key --keystore me.json   # on a committee task

A committee round, after submissions close (docs/PROTOCOL.md, "Committees"):

1. availability: fetch and open every submission; vote for the ones this member could fetch;
2. commit: once the input set is agreed on chain (updates that members holding a stake majority fetched), compute
   the round on it (`fedchain.roles.round.compute_outcome`: the same aggregate for every honest member, its own
   scores from its own held-out data), publish the model and report, and commit to the result with a salt;
3. reveal: reveal the result (the contract checks it against the commitment and the agreed inputs);
4. finalize: anyone may finalize; the contract computes the consensus and posts the round's result.

What is computed, the salt and each transaction sent are checkpointed (bound to the deployment) before the next step,
so a member killed at any point and restarted commits and reveals exactly once, the same values.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from eth_account.signers.local import LocalAccount

from fedchain.chain.committee import CommitteeInfo, Committees
from fedchain.chain.errors import ChainError, TransactionRevertedError
from fedchain.chain.protocol import Protocol, RoundInfo, RoundPhase
from fedchain.content.client import IpfsClient
from fedchain.content.errors import ContentError
from fedchain.core.cid import cid_to_digest
from fedchain.core.consensus import integer_scores
from fedchain.core.reasons import Reason
from fedchain.errors import ConfigError
from fedchain.roles.collect import UpdateCollector
from fedchain.roles.publish import publish
from fedchain.roles.round import ComputeSettings, RoundInputs, RoundOutcome, compute_outcome
from fedchain.state import check_bound_dir, read_bound_json, write_bound_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MemberResult:
    """What a member reveals for a round (over the agreed inputs, ascending by address)."""

    inputs: tuple[str, ...]
    model_digest: bytes
    report_digest: bytes
    scores: tuple[int, ...]
    slash: tuple[bool, ...]
    salt: bytes

    def to_json(self) -> dict[str, object]:
        return {"inputs": list(self.inputs), "model_digest": self.model_digest.hex(),
                "report_digest": self.report_digest.hex(), "scores": list(self.scores), "slash": list(self.slash),
                "salt": self.salt.hex()}

    @classmethod
    def from_json(cls, value: dict[str, object]) -> MemberResult:
        return cls(tuple(value["inputs"]), bytes.fromhex(str(value["model_digest"])),  # type: ignore[arg-type]
                   bytes.fromhex(str(value["report_digest"])), tuple(value["scores"]),  # type: ignore[arg-type]
                   tuple(value["slash"]), bytes.fromhex(str(value["salt"])))  # type: ignore[arg-type]


# A member's behaviour (honest, or an attacker in the demo): rewrites the scores it reveals, or stays silent.
ScoreRewrite = Callable[[int, Sequence[str], tuple[int, ...]], tuple[int, ...]]


@dataclass(frozen=True)
class Behaviour:
    name: str = "honest"
    rewrite: ScoreRewrite | None = None  # (round, inputs, honest integer scores) -> scores to reveal
    reveals: bool = True  # an offline member commits and never reveals


@dataclass(frozen=True)
class MemberConfig:
    task_id: int
    holdout_path: Path
    state_dir: Path
    poll_interval: float = 0.5
    device: str | None = None
    scoring_threads: int = 1
    scoring_workers: int | None = None


class CommitteeMember:
    def __init__(self, protocol: Protocol, committees: Committees, ipfs: IpfsClient, account: LocalAccount,
                 collector: UpdateCollector, config: MemberConfig, behaviour: Behaviour | None = None) -> None:
        self.protocol = protocol
        self.committees = committees
        self.ipfs = ipfs
        self.account = account
        self.collector = collector
        self.config = config
        self.behaviour = behaviour or Behaviour()
        self.settings = ComputeSettings(collector.device, config.scoring_threads, config.scoring_workers)
        committee_id = committees.committee_of_task(config.task_id)
        if committee_id == 0:
            raise ConfigError(f"task {config.task_id} has no committee: run `fedchain validate` as its validator")
        self.committee: CommitteeInfo = committees.committee(committee_id)
        if account.address.lower() not in [m.lower() for m in self.committee.members]:
            raise ConfigError(f"{account.address} is not a member of task {config.task_id}'s committee "
                              f"({', '.join(self.committee.members)}): use a member's keystore")
        self._collected: tuple[int, RoundInputs] | None = None  # the last round's inputs, fetched for the vote
        self._fetch_seconds = 0.0  # how long the last round's fetch took, and its computation's phases: checkpointed
        self._compute_seconds: dict[str, float] = {}
        self._dir = config.state_dir / f"member-{account.address}-task{config.task_id}"
        check_bound_dir(self._dir, protocol.binding())

    # ─── the loop ───
    def run(self, *, max_rounds: int | None = None) -> list[int]:
        """Serve every round until the task ends (or `max_rounds` rounds were served); returns the rounds served."""
        served: list[int] = []
        while max_rounds is None or len(served) < max_rounds:
            info = self.protocol.task(self.config.task_id)
            if info.ended:
                break
            round_index = info.current_round
            if self.serve_round(round_index):
                served.append(round_index)
            else:
                time.sleep(self.config.poll_interval)
        return served

    def serve_round(self, round_index: int) -> bool:
        """Take every step of the round that is due now; True once the round is over for this member."""
        task_id = self.config.task_id
        info = self._round_info(round_index)
        now = time.time()
        if info.phase == RoundPhase.OPEN and now < info.submission_deadline or info.phase == RoundPhase.PENDING:
            self._prefetch(round_index, info.phase)
            return False
        if info.phase in (RoundPhase.OPEN, RoundPhase.AGGREGATING):
            self.protocol.chain.sync_clock()
            info = self.protocol.round(task_id, round_index)
        if info.phase == RoundPhase.FINALIZED:
            return True
        if info.phase == RoundPhase.EXPIRED or now >= info.aggregation_deadline:
            self._expire(round_index)
            return True
        if info.phase != RoundPhase.AGGREGATING:
            return False
        status = self.committees.round_status(task_id, round_index)
        state = self._state(round_index)
        if now < status.availability_end:
            if not state.get("voted"):
                self._vote(round_index, state)
            return False
        if now < status.commit_end:
            if not state.get("committed"):
                self._commit(round_index, state)
            return False
        if now < status.reveal_end:
            if state.get("committed") and not state.get("revealed") and self.behaviour.reveals:
                self._reveal(round_index, state)
            self._finalize_if_everyone_revealed(round_index)
            return False
        self._finalize(round_index)
        return self.protocol.round(task_id, round_index).phase in (RoundPhase.FINALIZED, RoundPhase.EXPIRED)

    def _round_info(self, round_index: int) -> RoundInfo:
        """The round as the chain has it, after closing it if it is full and has been open its task's min_open."""
        info = self.protocol.round(self.config.task_id, round_index)
        if info.phase == RoundPhase.OPEN and self.protocol.close_full_round(self.account, self.config.task_id,
                                                                            round_index):
            info = self.protocol.round(self.config.task_id, round_index)
        return info

    def _prefetch(self, round_index: int, phase: RoundPhase) -> None:
        """While the round is open, fetch its updates submitted so far (UpdateCollector.prefetch); a failure only
        costs the head start: collecting the round fetches what is missing."""
        if phase != RoundPhase.OPEN:
            return
        try:
            self.collector.prefetch(round_index)
        except (ContentError, ChainError) as exc:
            log.debug("round %d: prefetch skipped: %s", round_index, exc)

    # ─── the steps ───
    def _vote(self, round_index: int, state: dict[str, object]) -> None:
        started = time.perf_counter()
        inputs = self.collector.collect(round_index)
        self._fetch_seconds = round(time.perf_counter() - started, 4)
        self._collected = (round_index, inputs)  # computing the round reuses them instead of fetching again
        available = sorted((u.contributor for u in inputs.updates if u.rejection != Reason.UNAVAILABLE),
                           key=lambda a: int(a, 16))
        self._send(lambda: self.committees.vote_availability(self.account, self.config.task_id, round_index, available),
                   "vote availability")
        log.info("round %d: voted that %d of %d update(s) are available", round_index, len(available),
                 len(inputs.updates))
        self._save(round_index, {**state, "voted": True, "seconds": {"fetch_verify": self._fetch_seconds}})

    def _commit(self, round_index: int, state: dict[str, object]) -> None:
        result = MemberResult.from_json(state["result"]) if "result" in state else None  # type: ignore[arg-type]
        if result is None:
            result = self.compute(round_index)
            seconds = {**dict(state.get("seconds") or {}), **self._compute_seconds}  # type: ignore[call-overload]
            state = {**state, "result": result.to_json(), "seconds": seconds}
            self._save(round_index, state)  # computed and salted before anything is sent: a restart reuses it
        self._send(lambda: self.committees.commit(self.account, self.config.task_id, round_index,
                                                  self._commitment(round_index, result)), "commit")
        self._save(round_index, {**state, "committed": True})

    def _reveal(self, round_index: int, state: dict[str, object]) -> None:
        result = MemberResult.from_json(state["result"])  # type: ignore[arg-type]
        self._send(lambda: self.committees.reveal(
            self.account, self.config.task_id, round_index, result.model_digest, result.report_digest,
            list(result.inputs), list(result.scores), list(result.slash), result.salt), "reveal")
        self._save(round_index, {**state, "revealed": True})

    def compute(self, round_index: int) -> MemberResult:
        """This member's result for the round, over the input set the committee agreed on."""
        cached = self._collected
        collected = cached[1] if cached is not None and cached[0] == round_index else self.collector.collect(round_index)
        agreed = self.committees.agreed_inputs(self.config.task_id, round_index,
                                               [u.contributor for u in collected.updates])
        inputs = restrict_to(collected, agreed)
        outcome = compute_outcome(inputs, self.collector.model, self.settings)
        published = publish(outcome, self.ipfs)
        self._compute_seconds = {**outcome.seconds, "publish": round(published.seconds, 4)}  # for the round's anatomy
        result = member_result(outcome, agreed, cid_to_digest(published.model_cid),
                               cid_to_digest(published.report_cid), salt=os.urandom(32))
        if self.behaviour.rewrite is not None:
            result = replace(result, scores=self.behaviour.rewrite(round_index, result.inputs, result.scores))
        log.info("round %d: computed on %d agreed input(s); model %s", round_index, len(agreed), published.model_cid)
        return result

    def _commitment(self, round_index: int, result: MemberResult) -> bytes:
        return self.committees.commitment(self.account.address, self.config.task_id, round_index,
                                          result.model_digest, result.report_digest, result.slash, result.scores,
                                          result.salt)

    def _finalize_if_everyone_revealed(self, round_index: int) -> None:
        """Finalize early once every member that committed has revealed (nobody is left to wait for)."""
        ballots = [self.committees.ballot(self.config.task_id, round_index, m) for m in self.committee.members]
        if all(b.revealed for b in ballots if b.commitment != bytes(32)):
            self._finalize(round_index)

    def _finalize(self, round_index: int) -> None:
        if self.protocol.round(self.config.task_id, round_index).phase != RoundPhase.FINALIZED:
            try:
                self.committees.finalize(self.account, self.config.task_id, round_index)
                log.info("round %d: finalized", round_index)
            except TransactionRevertedError as exc:
                log.info("round %d: not finalized by this member (%s)", round_index, exc)
        if time.time() >= self.committees.round_status(self.config.task_id, round_index).reveal_end:
            self._slash_non_revealers(round_index)

    def _slash_non_revealers(self, round_index: int) -> None:
        """A member that committed and did not reveal is slashed (its commitment is the evidence): a silent member
        cannot withhold a result it committed to, e.g. to see whether the others' consensus suits it."""
        for member in self.committee.members:
            ballot = self.committees.ballot(self.config.task_id, round_index, member)
            if ballot.commitment != bytes(32) and not ballot.revealed and not ballot.slashed:
                try:
                    self.committees.slash_non_revealer(self.account, self.config.task_id, round_index, member)
                    log.warning("round %d: member %s committed and did not reveal: slashed", round_index, member)
                except TransactionRevertedError as exc:
                    log.info("round %d: %s not slashed by this member (%s)", round_index, member, exc)

    def _expire(self, round_index: int) -> None:
        try:
            self.protocol.expire_round(self.account, self.config.task_id, round_index)
        except TransactionRevertedError:
            return

    def _send(self, action: Callable[[], object], what: str) -> None:
        """Send once; a refusal because it was already done (a restart after sending) is not an error."""
        try:
            action()
        except TransactionRevertedError as exc:
            if "Already" not in exc.error_name:
                raise
            log.info("%s: already done before a restart", what)

    # ─── checkpoints ───
    def _path(self, round_index: int) -> Path:
        return self._dir / f"round-{round_index}.json"

    def _state(self, round_index: int) -> dict[str, object]:
        return read_bound_json(self._path(round_index), self.protocol.binding()) or {}

    def _save(self, round_index: int, state: dict[str, object]) -> None:
        write_bound_json(self._path(round_index), state, self.protocol.binding())


def restrict_to(inputs: RoundInputs, agreed: Sequence[str]) -> RoundInputs:
    """The round's inputs with every update outside the agreed input set marked `unavailable` (for everyone)."""
    keep = {a.lower() for a in agreed}
    updates = [u if u.contributor.lower() in keep else replace(u, rejection=str(Reason.UNAVAILABLE))
               for u in inputs.updates]
    return replace(inputs, updates=updates)


def member_result(outcome: RoundOutcome, agreed: Sequence[str], model_digest: bytes, report_digest: bytes, *,
                  salt: bytes) -> MemberResult:
    """The reveal of an outcome: integer scores (summing to SCORE_SCALE) and slash verdicts over the agreed inputs,
    in ascending address order (the order the contract checks)."""
    by_address = {v.contributor.lower(): v for v in outcome.verdicts}
    order = sorted(agreed, key=lambda a: int(a, 16))
    verdicts = [by_address[a.lower()] for a in order]
    return MemberResult(tuple(order), model_digest, report_digest, integer_scores([v.score for v in verdicts]),
                        tuple(v.slashed for v in verdicts), salt)
