"""Read-only views of a task for people: per-round summaries and model downloads."""

from __future__ import annotations

from pathlib import Path

from fedchain.chain.protocol import Protocol
from fedchain.content.client import IpfsClient
from fedchain.core.cid import digest_to_cid
from fedchain.errors import FedchainError
from fedchain.state import write_bytes_atomic
from fedchain.views.rewards import fetch_report
from fedchain.views.taskview import TaskView


def task_status(protocol: Protocol, ipfs: IpfsClient, task_id: int) -> dict:
    view = TaskView(protocol, ipfs, task_id)
    info = view.info()
    last = min(info.current_round, info.num_rounds - 1)
    rounds = []
    contributors: dict[str, dict] = {}
    finalized = {f.round: f for f in protocol.finalizations(task_id)}
    for index in range(last + 1):
        r = protocol.round(task_id, index)
        row: dict = {
            "round": index, "phase": r.phase.name.lower(), "submissions": r.submissions,
            "total_rewards": str(r.total_rewards), "submission_deadline": r.submission_deadline,
            "aggregation_deadline": r.aggregation_deadline,
        }
        if index in finalized:
            report = fetch_report(ipfs, finalized[index].report_digest)
            row.update(
                model_cid=report.model_cid, report_cid=digest_to_cid(finalized[index].report_digest),
                test_accuracy=report.metrics.get("test_accuracy"), test_loss=report.metrics.get("test_loss"),
                accepted=sum(u.status == "accepted" for u in report.updates),
            )
            for u in report.updates:
                c = contributors.setdefault(u.contributor, {"updates": 0, "score_sum": 0.0, "rewards": 0, "slashed": 0})
                c["updates"] += 1
                c["score_sum"] += u.score
                c["rewards"] += int(u.reward)
                c["slashed"] += int(u.slashed)
        rounds.append(row)
    for c in contributors.values():
        c["mean_score"] = c.pop("score_sum") / max(c["updates"], 1)
        c["rewards"] = str(c["rewards"])
    phase = "ended" if info.ended else ("cancelled" if info.cancelled else "running")
    return {
        "task_id": task_id, "phase": phase, "owner": info.owner, "validator": info.validator,
        "num_rounds": info.num_rounds, "current_round": info.current_round, "funded": str(info.funded),
        "paid_out": str(info.paid_out), "rounds": rounds, "contributors": contributors,
    }


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
