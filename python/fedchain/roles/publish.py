"""Publishing a round's outcome: pin the new global model and the round report to IPFS, in one place.

    published = publish(outcome, ipfs)   # model CID, report CID, the reward tree's root, the report itself
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from fedchain.content.client import IpfsClient
from fedchain.core.envelope import encode_model
from fedchain.core.report import RoundReport, canonical_json
from fedchain.learning.models import StateDict
from fedchain.roles.round import RoundOutcome


@dataclass(frozen=True)
class Published:
    model_cid: str
    report_cid: str
    rewards_root: str  # 0x hex: the root of the report's reward tree, posted on chain
    report: RoundReport
    seconds: float


def model_bytes(outcome: RoundOutcome) -> bytes:
    """The new global model file: its metadata ties it to the task, round and base model."""
    return model_file(outcome.task_id, outcome.round, outcome.base_cid, outcome.new_state)


def model_file(task_id: int, round_index: int, base_cid: str, state: StateDict) -> bytes:
    return encode_model(state, {"task_id": task_id, "round": round_index, "base_model_cid": base_cid})


def publish(outcome: RoundOutcome, ipfs: IpfsClient) -> Published:
    started = time.perf_counter()
    model_cid = ipfs.add_bytes(model_bytes(outcome))
    report = outcome.report(model_cid)
    report_cid = ipfs.add_bytes(canonical_json(report))
    return Published(model_cid, report_cid, report.rewards_root, report, time.perf_counter() - started)
