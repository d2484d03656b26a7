"""The dashboard's read model: every task of the deployment as one JSON-ready snapshot, from the event index and IPFS.

    model = DashboardModel(protocol, index, ipfs)
    snapshot = model.snapshot(now=time.time())
    # {"chain": {...}, "tasks": [{budget, rounds (phase, deadlines, submissions, results, per-contributor rows),
    #   contributors, curve, current round, panels}], "transactions": [...]}

Everything comes from confirmed events (fedchain.views.records) and content read from IPFS by digest; the only chain
calls are a task's fixed parameters (read once) and token metadata. Amounts are {"units": decimal string of the
smallest unit, "text": for people}. Strings from the chain or IPFS are passed as data: the page escapes them.

A later feature adds what it shows per task as a panel, without changing the page's other parts:

    register_panel("committee", lambda model, task_id: {...} or None)   # the JSON the page's panel renders

and a renderer of the same name in the page (fedchain/web/static/app.js: `fedchain.registerPanel`); a panel without
a renderer is shown as a table of its fields.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from fedchain.chain.protocol import Protocol, TaskInfo
from fedchain.chain.units import format_fed
from fedchain.content.client import IpfsClient
from fedchain.core.cid import digest_to_cid
from fedchain.core.report import RoundReport
from fedchain.errors import FedchainError
from fedchain.views.index import EventIndex, IndexedTransaction
from fedchain.views.records import RoundRecord, TaskRecord, cached_report, cached_spec, task_creations, task_record

log = logging.getLogger(__name__)

RETRY_CONTENT_AFTER = 10.0   # seconds before content that could not be read from IPFS is asked for again
TRANSACTIONS_SHOWN = 30

PanelBuilder = Callable[["DashboardModel", int], Any]
PANELS: dict[str, PanelBuilder] = {}


def register_panel(name: str, builder: PanelBuilder) -> None:
    """Add a per-task panel: `builder(model, task_id)` returns its JSON (None: nothing to show for that task)."""
    PANELS[name] = builder


@dataclass(frozen=True)
class Token:
    address: str
    symbol: str
    decimals: int

    def amount(self, units: int) -> dict[str, str]:
        return {"units": str(units), "text": format_fed(units, decimals=self.decimals, symbol=self.symbol)}


@dataclass
class UpdateRow:
    contributor: str
    cid: str
    num_samples: int
    status: str                  # submitted (round undecided), accepted, rejected, discarded, or expired
    reason: str | None
    score: float | None
    reward: dict[str, str]
    slashed: dict[str, str]
    claimed: dict[str, str]
    claimable: dict[str, str]


@dataclass
class RoundRow:
    round: int
    phase: str
    submission_deadline: int
    aggregation_deadline: int
    closed_early: bool
    submissions: int
    accepted: int | None
    accuracy: float | None
    loss: float | None
    total_rewards: dict[str, str]
    model_cid: str | None
    report_cid: str | None
    base_model_cid: str | None
    report_error: str | None
    updates: list[UpdateRow] = field(default_factory=list)


class DashboardModel:
    """Snapshots of every task the index has seen. Thread-safe; per-task parameters and content are kept."""

    def __init__(self, protocol: Protocol, index: EventIndex, ipfs: IpfsClient) -> None:
        self.protocol = protocol
        self.index = index
        self.ipfs = ipfs
        self._lock = threading.Lock()
        self._infos: dict[int, TaskInfo] = {}
        self._tokens: dict[str, Token] = {}
        self._claim_deadlines: dict[int, int] = {}
        self._failed: dict[bytes, float] = {}  # content digest -> when it last could not be read

    def snapshot(self, now: float | None = None, head: int | None = None, error: str | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        tasks = [self._task(t.task_id, now) for t in task_creations(self.index)]
        return {
            "now": now,
            "chain": {
                "chain_id": self.protocol.chain.chain_id, "contracts": dict(self.protocol.deployments.contracts),
                "indexed_block": self.index.cursor, "head": head, "confirmations": self.index.confirmations,
                "error": error,
            },
            "tasks": [t for t in tasks if t is not None],
            "transactions": [_transaction(t) for t in self.index.transactions(TRANSACTIONS_SHOWN)],
        }

    # ─── a task ───
    def _task(self, task_id: int, now: float) -> dict[str, Any] | None:
        record = task_record(self.index, task_id)
        if record is None:
            return None
        info = self._info(task_id)
        token = self._token(record.created.reward_token)
        claim_deadline = self._claim_deadline(task_id) if record.ended else None
        claims_open = claim_deadline is None or now <= claim_deadline
        rounds = [self._round(r, token, now, claims_open) for r in record.rounds]
        spec, spec_error = self._spec(record)
        state = "ended" if record.ended else "cancelled" if record.cancelled else "running"
        return {
            "task_id": task_id, "state": state, "owner": record.created.owner, "validator": info.validator,
            "spec": spec, "spec_error": spec_error, "spec_cid": digest_to_cid(record.created.spec_digest),
            "initial_model_cid": digest_to_cid(record.created.initial_model_digest),
            "token": asdict(token), "num_rounds": info.num_rounds, "max_contributors": info.max_contributors,
            "submission_window": info.submission_window, "aggregation_window": info.aggregation_window,
            "reward_per_round": token.amount(info.reward_per_round), "budget": token.amount(record.created.budget),
            "allocated": token.amount(record.allocated), "paid_out": token.amount(record.paid_out),
            "refunded": token.amount(record.refunded), "claim_deadline": claim_deadline,
            "unallocated": token.amount(record.created.budget - record.allocated),
            "current": _current(record, rounds, info, now),
            "rounds": [asdict(r) for r in rounds],
            "contributors": _contributors(rounds, token),
            "curve": [{"round": r.round, "accuracy": r.accuracy, "loss": r.loss} for r in rounds
                      if r.accuracy is not None],
            "panels": self._panels(task_id),
        }

    def _round(self, r: RoundRecord, token: Token, now: float, claims_open: bool) -> RoundRow:
        phase = r.phase(now)
        report, error = self._report(r)
        row = RoundRow(
            round=r.round, phase=phase, submission_deadline=r.submission_deadline,
            aggregation_deadline=r.aggregation_deadline, closed_early=r.closed_at is not None,
            submissions=len(r.submissions), accepted=None, accuracy=None, loss=None,
            total_rewards=token.amount(r.finalization.total_rewards if r.finalization else 0),
            model_cid=digest_to_cid(r.finalization.model_digest) if r.finalization else None,
            report_cid=digest_to_cid(r.finalization.report_digest) if r.finalization else None,
            base_model_cid=report.base_model_cid if report else None, report_error=error,
        )
        claimed: dict[str, int] = {}
        for c in r.claims:
            claimed[c.contributor] = claimed.get(c.contributor, 0) + c.amount
        slashed = {s.account: s.amount for s in r.slashes}
        if report is not None:
            row.accepted = sum(u.status == "accepted" for u in report.updates)
            row.accuracy = _number(report.metrics.get("test_accuracy"))
            row.loss = _number(report.metrics.get("test_loss"))
            for u in report.updates:
                got = claimed.get(u.contributor, 0)
                row.updates.append(UpdateRow(
                    u.contributor, u.cid, u.num_samples, u.status, u.reason, u.score, token.amount(u.reward),
                    token.amount(slashed.get(u.contributor, 0)), token.amount(got),
                    token.amount(u.reward - got if claims_open else 0)))
        else:
            status = "expired" if phase == "expired" else "submitted"
            for s in r.submissions:
                row.updates.append(UpdateRow(
                    s.contributor, digest_to_cid(s.digest), s.num_samples, status, None, None, token.amount(0),
                    token.amount(slashed.get(s.contributor, 0)), token.amount(0), token.amount(0)))
        return row

    def _panels(self, task_id: int) -> dict[str, Any]:
        out = {}
        for name, builder in sorted(PANELS.items()):
            try:
                value = builder(self, task_id)
            except Exception as exc:  # one broken panel must not take the page down
                log.warning("dashboard panel %s failed for task %d: %s", name, task_id, exc)
                value = {"error": f"{type(exc).__name__}: {exc}"}
            if value is not None:
                out[name] = value
        return out

    # ─── what is read once ───
    def _info(self, task_id: int) -> TaskInfo:
        """The task's parameters (fixed at creation; what changes is read from events instead)."""
        with self._lock:
            if task_id not in self._infos:
                self._infos[task_id] = self.protocol.task(task_id)
            return self._infos[task_id]

    def _claim_deadline(self, task_id: int) -> int:
        """When an ended task stops accepting claims (fixed once it ended)."""
        with self._lock:
            if task_id not in self._claim_deadlines:
                self._claim_deadlines[task_id] = self.protocol.claim_deadline(task_id)
            return self._claim_deadlines[task_id]

    def _token(self, address: str) -> Token:
        with self._lock:
            if address not in self._tokens:
                symbol, decimals = self.protocol.token_meta(address)
                self._tokens[address] = Token(address, symbol, decimals)
            return self._tokens[address]

    def _content_ready(self, digest: bytes) -> bool:
        failed = self._failed.get(digest)
        return failed is None or time.monotonic() - failed > RETRY_CONTENT_AFTER

    def _report(self, r: RoundRecord) -> tuple[RoundReport | None, str | None]:
        if r.finalization is None:
            return None, None
        digest = r.finalization.report_digest
        if not self._content_ready(digest):
            return None, "the report could not be read from IPFS; trying again shortly"
        try:
            report = cached_report(self.index, self.ipfs, digest)
        except FedchainError as exc:
            self._failed[digest] = time.monotonic()
            return None, f"the report could not be read: {exc}"
        return report, None

    def _spec(self, record: TaskRecord) -> tuple[dict[str, Any] | None, str | None]:
        digest = record.created.spec_digest
        if not self._content_ready(digest):
            return None, "the spec could not be read from IPFS; trying again shortly"
        try:
            spec = cached_spec(self.index, self.ipfs, digest)
        except FedchainError as exc:
            self._failed[digest] = time.monotonic()
            return None, f"the spec could not be read: {exc}"
        return {"name": spec.name, "kind": spec.kind, "architecture": spec.architecture,
                "aggregation": spec.aggregation.rule, "scoring": spec.scoring.method, "sealed": spec.sealed}, None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _current(record: TaskRecord, rounds: list[RoundRow], info: TaskInfo, now: float) -> dict[str, Any] | None:
    """The round now running: its phase by the clock, the deadline that matters and who has submitted."""
    if record.ended or not rounds:
        return None
    r, last = rounds[-1], record.rounds[-1]
    deadline = {"open": r.submission_deadline, "aggregating": r.aggregation_deadline}.get(r.phase)
    waiting = {
        "open": f"submissions: {r.submissions} of {info.max_contributors}; it closes when all have submitted, else "
                "at its deadline",
        "aggregating": "the validator's result (the round expires at its deadline otherwise)",
        "expired": "anyone to record the expiry; then the next round opens with this round's budget",
        "finalized": "the next round to open",
    }[r.phase]
    return {"round": r.round, "phase": r.phase, "deadline": deadline, "waiting_for": waiting,
            "submitted": [s.contributor for s in last.submissions], "max_contributors": info.max_contributors}


def _contributors(rounds: list[RoundRow], token: Token) -> list[dict[str, Any]]:
    totals: dict[str, dict[str, Any]] = {}
    for r in rounds:
        for u in r.updates:
            t = totals.setdefault(u.contributor, {"updates": 0, "accepted": 0, "scores": [], "earned": 0,
                                                  "claimed": 0, "claimable": 0, "slashed": 0})
            t["updates"] += 1
            t["accepted"] += u.status == "accepted"
            if u.score is not None and u.status == "accepted":
                t["scores"].append(u.score)
            for key, amount in (("earned", u.reward), ("claimed", u.claimed), ("claimable", u.claimable),
                                ("slashed", u.slashed)):
                t[key] += int(amount["units"])
    return [
        {"contributor": address, "updates": t["updates"], "accepted": t["accepted"],
         "mean_score": sum(t["scores"]) / len(t["scores"]) if t["scores"] else None,
         **{key: token.amount(t[key]) for key in ("earned", "claimed", "claimable", "slashed")}}
        for address, t in sorted(totals.items(), key=lambda item: -item[1]["earned"])
    ]


def _transaction(t: IndexedTransaction) -> dict[str, Any]:
    return {**asdict(t), "error_text": None if t.error is None else _describe_error(t.error, t.error_args or {})}


def _describe_error(name: str, args: dict[str, Any]) -> str:
    """`TaskManagerInvalidProof(taskId=0, round=1, …)`: a decoded custom error as one line."""
    return f"{name}({', '.join(f'{k}={v}' for k, v in args.items())})"
