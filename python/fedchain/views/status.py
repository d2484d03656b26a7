"""Read-only views of a task for people: per-round summaries with deadlines, a task's parameters, model downloads.

A round's phase is judged from its stored deadlines and the wall clock, not from the chain's view alone: Anvil's
`block.timestamp` is its last block's and lags the clock between transactions, so the chain can call a round
"open" minutes after its deadline.
"""

from __future__ import annotations

import time
from pathlib import Path

from fedchain.chain.protocol import Protocol, RoundInfo, RoundPhase, TaskInfo
from fedchain.chain.units import format_fed
from fedchain.content.client import IpfsClient
from fedchain.core.cid import digest_to_cid
from fedchain.errors import FedchainError
from fedchain.privacy.accounting import EPSILON_SCALE
from fedchain.state import write_bytes_atomic
from fedchain.views.index import EventIndex
from fedchain.views.records import cached_report, finalizations, privacy_cap, privacy_spends, pseudo_label_declarations
from fedchain.views.taskview import TaskView


def describe_time(seconds: float) -> str:
    """'in 41 s', 'in 5 min', '2 h ago': a duration relative to now, for people."""
    span = abs(seconds)
    text = (f"{span:.0f} s" if span < 120 else f"{span / 60:.0f} min" if span < 7200
            else f"{span / 3600:.0f} h" if span < 172_800 else f"{span / 86_400:.0f} days")
    return f"in {text}" if seconds >= 0 else f"{text} ago"


def clock_time(unix: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(unix))


def describe_round(r: RoundInfo, index: int, info: TaskInfo, now: float) -> dict:
    """The round's phase by the wall clock, the deadline that matters now, and what the round is waiting for."""
    phase = r.phase
    if phase == RoundPhase.OPEN and now >= r.submission_deadline:
        phase = RoundPhase.AGGREGATING  # closed by its deadline; the chain notices at its next block
    if phase == RoundPhase.AGGREGATING and now >= r.aggregation_deadline:
        phase = RoundPhase.EXPIRED
    recorded = index < info.current_round or info.ended
    deadline, waiting = None, ""
    if phase == RoundPhase.OPEN:
        deadline = r.submission_deadline
        after = f" and it has been open {info.min_open} s" if info.min_open else ""
        waiting = (f"submissions: {r.submissions} of {info.max_contributors} joined; it closes when "
                   f"{info.max_contributors} have submitted{after}, else at its deadline")
    elif phase == RoundPhase.AGGREGATING:
        deadline = r.aggregation_deadline
        waiting = f"the validator {info.validator} to post the result (it expires at its deadline otherwise)"
    elif phase == RoundPhase.EXPIRED and not recorded:
        waiting = ("anyone to record the expiry (a running contributor or validator does it): then the next round "
                   "opens, with this round's budget added")
    elif phase == RoundPhase.PENDING:
        waiting = "the round before it to end"
    return {
        "phase": phase.name.lower(), "deadline": deadline,
        "time_left": None if deadline is None else round(deadline - now), "waiting_for": waiting,
    }


def task_status(protocol: Protocol, ipfs: IpfsClient, task_id: int, now: float | None = None,
                events: EventIndex | None = None) -> dict:
    """The task's rounds and contributors. Results and reports come from the event index `events` (synced by the
    caller; reports are kept in it after their first read); without one, from a full scan of the logs."""
    view = TaskView(protocol, ipfs, task_id)
    info = view.info()
    now = time.time() if now is None else now
    events = events or EventIndex.memory(protocol)
    last = min(info.current_round, info.num_rounds - 1)
    rounds = []
    contributors: dict[str, dict] = {}
    finalized = {f.round: f for f in finalizations(events, task_id)}
    declared = _declarations(events, task_id)
    for index in range(last + 1):
        r = protocol.round(task_id, index)
        row: dict = {
            "round": index, "submissions": r.submissions, "total_rewards": str(r.total_rewards),
            "submission_deadline": r.submission_deadline, "aggregation_deadline": r.aggregation_deadline,
            **describe_round(r, index, info, now),
        }
        if index in finalized:
            report = cached_report(events, ipfs, finalized[index].report_digest)
            row.update(
                model_cid=report.model_cid, report_cid=digest_to_cid(finalized[index].report_digest),
                test_accuracy=report.metrics.get("test_accuracy"), test_loss=report.metrics.get("test_loss"),
                accepted=sum(u.status == "accepted" for u in report.updates),
            )
            for u in report.updates:
                if u.pseudo_labels is not None and u.contributor in declared.get(index, {}):
                    declared[index][u.contributor]["flags"] = u.pseudo_labels.get("flags", [])
                c = contributors.setdefault(u.contributor, {"updates": 0, "score_sum": 0.0, "rewards": 0, "slashed": 0})
                c["updates"] += 1
                c["score_sum"] += u.score
                c["rewards"] += int(u.reward)
                c["slashed"] += int(u.slashed)
        if index in declared:  # the chain's pseudo-label declarations; flags once the round's report has them
            row["pseudo_labels"] = declared[index]
        rounds.append(row)
    for c in contributors.values():
        c["mean_score"] = c.pop("score_sum") / max(c["updates"], 1)
        c["rewards"] = str(c["rewards"])
    privacy = _privacy_ledger(events, task_id)
    if privacy is not None:
        for address, spent in privacy["spent"].items():
            if address in contributors:
                contributors[address]["epsilon"] = spent
    phase = "ended" if info.ended else ("cancelled" if info.cancelled else "running")
    symbol, decimals = protocol.token_meta(info.reward_token)
    return {
        "task_id": task_id, "phase": phase, "owner": info.owner, "validator": info.validator,
        "num_rounds": info.num_rounds, "current_round": info.current_round, "funded": str(info.funded),
        "paid_out": str(info.paid_out), "token": {"address": info.reward_token, "symbol": symbol, "decimals": decimals},
        "rounds": rounds, "contributors": contributors, "privacy": privacy,
    }


def _privacy_ledger(events: EventIndex, task_id: int) -> dict | None:
    """A private task's cap and each contributor's latest declared spend (epsilon), None for a plain task."""
    cap = privacy_cap(events, task_id)
    if cap is None:
        return None
    spent = {s.contributor: s.epsilon_micro / EPSILON_SCALE for s in privacy_spends(events, task_id)}  # latest wins
    return {"epsilon_cap": cap / EPSILON_SCALE, "spent": spent}


def task_details(protocol: Protocol, task_id: int, now: float | None = None) -> list[tuple[str, str]]:
    """A task's parameters, budget and deadlines as (label, value) rows for people."""
    info = protocol.task(task_id)
    now = time.time() if now is None else now
    symbol, decimals = protocol.token_meta(info.reward_token)

    def amount(units: int) -> str:
        return format_fed(units, decimals=decimals, symbol=symbol)

    state = "ended" if info.ended else "cancelled: ends after its current round" if info.cancelled else "running"
    rows = [
        ("state", state), ("owner", info.owner), ("validator", info.validator),
        ("reward token", f"{info.reward_token} ({symbol})"),
        ("spec", digest_to_cid(info.spec_digest)), ("initial model", digest_to_cid(info.initial_model_digest)),
        ("rounds", f"{info.num_rounds} (current: {info.current_round})"),
        ("reward per round", amount(info.reward_per_round)),
        ("submission window", f"{info.submission_window} s"), ("aggregation window", f"{info.aggregation_window} s"),
        ("max contributors", str(info.max_contributors)),
        ("min contributor stake", format_fed(info.min_contributor_stake)),
        ("slash amount", format_fed(info.slash_amount)),
        ("funded", amount(info.funded)), ("paid out", amount(info.paid_out)), ("refunded", amount(info.refunded)),
        ("carried over", amount(info.carry)),
    ]
    cap = protocol.privacy_cap(task_id)
    if cap:
        rows.append(("privacy", f"private task: each contributor's epsilon at most {cap / EPSILON_SCALE:g}"))
    if not info.ended:
        r = protocol.round(task_id, info.current_round)
        d = describe_round(r, info.current_round, info, now)
        if d["deadline"] is not None:
            rows.append((f"round {info.current_round} ({d['phase']}) deadline",
                         f"{clock_time(d['deadline'])} ({describe_time(d['deadline'] - now)})"))
    else:
        claim_deadline = protocol.claim_deadline(task_id)
        rows += [("ended at", clock_time(info.ended_at)),
                 ("claims until", f"{clock_time(claim_deadline)} ({describe_time(claim_deadline - now)})"),
                 ("refundable now", amount(protocol.refundable(task_id)))]
    return rows


def pull_model(protocol: Protocol, ipfs: IpfsClient, task_id: int, round_index: int | None, out: Path) -> tuple[str, int]:
    """Write the global model produced by `round_index` (default: the latest finalized round) to `out`."""
    view = TaskView(protocol, ipfs, task_id)
    info = view.info()
    if round_index is None:
        rounds = [f.round for f in protocol.finalizations(task_id)]
        if not rounds:
            raise FedchainError(f"task {task_id} has no finalized round yet; pass --round or wait")
        round_index = max(rounds)
    if not 0 <= round_index < info.num_rounds:
        raise FedchainError(f"task {task_id} has rounds 0..{info.num_rounds - 1}; got --round {round_index}")
    finalized = protocol.finalizations(task_id, round_index)
    if not finalized:
        phase = protocol.round(task_id, round_index).phase.name.lower()
        raise FedchainError(f"round {round_index} of task {task_id} is {phase}, not finalized")
    cid = digest_to_cid(finalized[0].model_digest)
    data = ipfs.cat(cid, max_size=view.model_max_bytes())  # the client verifies the bytes against the CID
    view.load_model(cid)  # and the file must decode as this task's model
    write_bytes_atomic(out, data)
    return cid, round_index


def evaluate_model(protocol: Protocol, ipfs: IpfsClient, task_id: int, model_path: Path,
                   data_path: Path) -> tuple[float, float, int]:
    """(accuracy, loss, samples) of a model file pulled from `task_id` on labelled data, built from the task's spec."""
    from fedchain.core.envelope import EnvelopeError, decode_model
    from fedchain.learning.evaluation import evaluate
    from fedchain.learning.kinds import kind_of
    from fedchain.learning.models import build_model, tensors_from_arrays

    view = TaskView(protocol, ipfs, task_id)
    limit = view.model_max_bytes()
    try:
        if model_path.stat().st_size > limit:
            raise FedchainError(f"{model_path} is larger than task {task_id}'s model can be: is it the right file?")
        state, _ = decode_model(model_path.read_bytes(), expected=view.layout.expected_tensors(), max_bytes=limit)
    except OSError as exc:
        raise FedchainError(f"cannot read the model {model_path}: {exc.strerror}") from None
    except EnvelopeError as exc:
        raise FedchainError(f"{model_path} is not a model of task {task_id}: {exc}") from None
    kind = kind_of(view.spec)
    data = kind.load_data(data_path, view.spec)
    result = evaluate(build_model(view.spec), tensors_from_arrays(state), data.x, data.y, objective=kind.objective)
    return result.accuracy, result.loss, result.samples


def _declarations(events: EventIndex, task_id: int) -> dict[int, dict[str, dict]]:
    """round -> contributor -> the summary its submission declared on chain (PseudoLabelsDeclared)."""
    from fedchain.unlabelled.record import Summary

    out: dict[int, dict[str, dict]] = {}
    for d in pseudo_label_declarations(events, task_id):
        out.setdefault(d.round, {})[d.contributor] = Summary.from_event(d.summary, d.labels_root, d.histogram).to_json()
    return out
