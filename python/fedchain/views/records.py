"""Typed read models over the event index: what each task, round and contributor did, as the chain logged it.

    submissions(index, task_id, round_index)   # == protocol.submissions(...), without scanning logs
    finalizations(index, task_id)              # == protocol.finalizations(...)
    task_record(index, task_id)                # the task's rounds folded from its events: deadlines, submissions,
                                               # result or expiry, claims, slashes; .phase(now) by the wall clock
    cached_report(index, ipfs, digest)         # a round report, read from IPFS once and kept in the index

Everything here is confirmed data: the index stops its `confirmations` blocks below the head.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedchain.chain.protocol import Finalization, PseudoLabelDeclaration, Submission, without_displaced
from fedchain.content.client import IpfsClient
from fedchain.core.cid import digest_to_cid
from fedchain.core.report import RoundReport
from fedchain.core.spec import TaskSpec
from fedchain.views.index import EventIndex, IndexedLog

REPORT_MAX_BYTES = 16 << 20
SPEC_MAX_BYTES = 1 << 20


@dataclass(frozen=True)
class TaskCreation:
    task_id: int
    owner: str
    reward_token: str
    budget: int
    spec_digest: bytes
    initial_model_digest: bytes
    block_number: int


@dataclass(frozen=True)
class RewardClaim:
    task_id: int
    round: int
    contributor: str
    amount: int
    block_number: int


@dataclass(frozen=True)
class Slash:
    task_id: int
    round: int
    account: str
    amount: int
    evidence: bytes
    block_number: int


@dataclass(frozen=True)
class RoundRecord:
    round: int
    submission_deadline: int     # moved to the closing block's time when the round filled up
    aggregation_deadline: int
    closed_at: int | None        # when maxContributors was reached (SubmissionsClosed), if it was
    submissions: tuple[Submission, ...]
    finalization: Finalization | None
    rolled_over: int | None      # set when the round expired (RoundExpired): the budget carried to the next
    claims: tuple[RewardClaim, ...]
    slashes: tuple[Slash, ...]

    def phase(self, now: float) -> str:
        """open, aggregating, finalized or expired: by its events, and for an undecided round by its deadlines and
        the wall clock (an expiry nobody recorded yet is expired all the same)."""
        if self.finalization is not None:
            return "finalized"
        if self.rolled_over is not None or now >= self.aggregation_deadline:
            return "expired"
        if self.closed_at is not None or now >= self.submission_deadline:
            return "aggregating"
        return "open"


@dataclass(frozen=True)
class TaskRecord:
    created: TaskCreation
    rounds: tuple[RoundRecord, ...]  # the rounds opened so far
    cancelled: bool
    ended: bool
    unallocated: int             # refundable when the task ended (TaskEnded)
    refunded: int

    @property
    def allocated(self) -> int:
        return sum(r.finalization.total_rewards for r in self.rounds if r.finalization is not None)

    @property
    def paid_out(self) -> int:
        return sum(c.amount for r in self.rounds for c in r.claims)


def _bytes(text: str) -> bytes:
    return bytes.fromhex(text[2:])


def _submission(e: IndexedLog) -> Submission:
    a = e.args
    return Submission(a["taskId"], a["round"], a["contributor"], _bytes(a["digest"]), a["numSamples"], e.block_number,
                      e.log_index)


def _finalization(e: IndexedLog) -> Finalization:
    a = e.args
    return Finalization(a["taskId"], a["round"], _bytes(a["modelDigest"]), _bytes(a["reportDigest"]),
                        _bytes(a["rewardsRoot"]), a["totalRewards"], e.block_number)


def submissions(index: EventIndex, task_id: int, round_index: int | None = None) -> list[Submission]:
    """UpdateSubmitted, in chain order, less those a later UpdateDisplaced took out of their round."""
    logs = index.logs(task_id=task_id, events=("UpdateSubmitted", "UpdateDisplaced"), round_index=round_index)
    return _still_in(logs)


def _still_in(logs: list[IndexedLog]) -> list[Submission]:
    submitted = [_submission(e) for e in logs if e.event == "UpdateSubmitted"]
    return without_displaced(submitted, [((e.args["taskId"], e.args["round"], e.args["displaced"]),
                                          (e.block_number, e.log_index)) for e in logs if e.event == "UpdateDisplaced"])


def pseudo_label_declarations(index: EventIndex, task_id: int,
                              round_index: int | None = None) -> list[PseudoLabelDeclaration]:
    """PseudoLabelsDeclared, in chain order (== protocol.pseudo_label_declarations(...))."""
    return [PseudoLabelDeclaration(e.args["taskId"], e.args["round"], e.args["contributor"], _bytes(e.args["labelsRoot"]),
                                   e.args["summary"], _bytes(e.args["histogram"]), e.block_number, e.log_index)
            for e in index.logs(task_id=task_id, events=("PseudoLabelsDeclared",), round_index=round_index)]


def finalizations(index: EventIndex, task_id: int, round_index: int | None = None) -> list[Finalization]:
    """RoundFinalized, in chain order: the model and report digests live only there."""
    return [_finalization(e) for e in index.logs(task_id=task_id, events=("RoundFinalized",), round_index=round_index)]


def claims(index: EventIndex, task_id: int) -> list[RewardClaim]:
    return [RewardClaim(e.args["taskId"], e.args["round"], e.args["contributor"], e.args["amount"], e.block_number)
            for e in index.logs(task_id=task_id, events=("RewardClaimed",))]


@dataclass(frozen=True)
class PrivacySpend:
    """A private submission's declared cumulative spend for its task (PrivacySpent), in micro-epsilon."""

    task_id: int
    round: int
    contributor: str
    epsilon_micro: int
    block_number: int


def privacy_cap(index: EventIndex, task_id: int) -> int | None:
    """The task's per-contributor cap in micro-epsilon (PrivacyCapSet), None for a plain task."""
    found = index.logs(task_id=task_id, events=("PrivacyCapSet",), contract="TaskManager")
    return int(found[0].args["epsilonCap"]) if found else None


def privacy_spends(index: EventIndex, task_id: int, round_index: int | None = None) -> list[PrivacySpend]:
    """PrivacySpent, in chain order: each contributor's latest is its spend for the task so far."""
    return [PrivacySpend(e.args["taskId"], e.args["round"], e.args["contributor"], e.args["epsilon"], e.block_number)
            for e in index.logs(task_id=task_id, events=("PrivacySpent",), round_index=round_index,
                                contract="TaskManager")]


def slashes(index: EventIndex, task_id: int) -> list[Slash]:
    return [Slash(e.args["taskId"], e.args["round"], e.args["account"], e.args["amount"], _bytes(e.args["evidence"]),
                  e.block_number)
            for e in index.logs(task_id=task_id, events=("Slashed",), contract="TaskManager")]


def task_creations(index: EventIndex) -> list[TaskCreation]:
    return [TaskCreation(e.args["taskId"], e.args["owner"], e.args["rewardToken"], e.args["budget"],
                         _bytes(e.args["specDigest"]), _bytes(e.args["initialModelDigest"]), e.block_number)
            for e in index.logs(events=("TaskCreated",))]


def task_record(index: EventIndex, task_id: int) -> TaskRecord | None:
    """The task as its events tell it; None if the index has not seen it created."""
    events = index.logs(task_id=task_id, contract="TaskManager")
    created = next((e for e in events if e.event == "TaskCreated"), None)
    if created is None:
        return None
    rounds: dict[int, dict] = {}
    flags = {"cancelled": False, "ended": False, "unallocated": 0, "refunded": 0}
    for e in events:
        a = e.args
        if e.event == "RoundOpened":
            rounds[a["round"]] = {"submission_deadline": a["submissionDeadline"], "closed_at": None,
                                  "aggregation_deadline": a["aggregationDeadline"], "submissions": [],
                                  "finalization": None, "rolled_over": None, "claims": [], "slashes": []}
        elif e.event == "TaskCancelled":
            flags["cancelled"] = True
        elif e.event == "TaskEnded":
            flags.update(ended=True, unallocated=a["unallocated"])
        elif e.event == "RefundWithdrawn":
            flags["refunded"] += a["amount"]
        elif a.get("round") in rounds:
            _fold_round(rounds[a["round"]], e)
    c = created.args
    creation = TaskCreation(task_id, c["owner"], c["rewardToken"], c["budget"], _bytes(c["specDigest"]),
                            _bytes(c["initialModelDigest"]), created.block_number)
    records = tuple(
        RoundRecord(number, r["submission_deadline"], r["aggregation_deadline"], r["closed_at"],
                    tuple(r["submissions"]), r["finalization"], r["rolled_over"], tuple(r["claims"]),
                    tuple(r["slashes"]))
        for number, r in sorted(rounds.items())
    )
    return TaskRecord(creation, records, bool(flags["cancelled"]), bool(flags["ended"]), int(flags["unallocated"]),
                      int(flags["refunded"]))


def _fold_round(state: dict, e: IndexedLog) -> None:
    a = e.args
    if e.event == "UpdateSubmitted":
        state["submissions"].append(_submission(e))
    elif e.event == "UpdateDisplaced":  # its slot went to a contributor holding more stake
        state["submissions"] = [s for s in state["submissions"] if s.contributor != a["displaced"]]
    elif e.event == "SubmissionsClosed":
        state.update(closed_at=a["closedAt"], submission_deadline=a["closedAt"],
                     aggregation_deadline=a["aggregationDeadline"])
    elif e.event == "RoundFinalized":
        state["finalization"] = _finalization(e)
    elif e.event == "RoundExpired":
        state["rolled_over"] = a["rolledOver"]
    elif e.event == "RewardClaimed":
        state["claims"].append(RewardClaim(a["taskId"], a["round"], a["contributor"], a["amount"], e.block_number))
    elif e.event == "Slashed":
        state["slashes"].append(Slash(a["taskId"], a["round"], a["account"], a["amount"], _bytes(a["evidence"]),
                                      e.block_number))


def cached_report(index: EventIndex, ipfs: IpfsClient, digest: bytes) -> RoundReport:
    """The round report with this digest (fetched from IPFS once, verified against its CID, then kept)."""
    body = index.content(digest, "report", lambda: ipfs.cat(digest_to_cid(digest), max_size=REPORT_MAX_BYTES))
    return RoundReport.from_json_bytes(body)


def cached_spec(index: EventIndex, ipfs: IpfsClient, digest: bytes) -> TaskSpec:
    """The task spec with this digest (fetched from IPFS once, verified, kept)."""
    body = index.content(digest, "spec", lambda: ipfs.cat(digest_to_cid(digest), max_size=SPEC_MAX_BYTES))
    return TaskSpec.from_json_bytes(body)
