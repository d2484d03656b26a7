"""Verifying a finalized round from public data: what anyone can recompute from the chain and IPFS.

    fedchain verify --task 0 --round 2

- A committee round: the consensus (scores, rewards, dividends, slashes and the reward root) recomputed from the
  revealed score vectors and the members' stakes; the posted model is the one revealed by a stake majority.
- A one-validator round: the posted report rebuilds the posted reward root and names the posted model.
- An unsealed task (either kind): the model itself, re-merged from the updates (screening and the robust rule need no
  held-out data). Scores cannot be recomputed without the validators' held-out data; a committee bounds them instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fedchain.chain.protocol import Protocol
from fedchain.content.client import IpfsClient
from fedchain.core.cid import cid_to_digest, digest_to_cid
from fedchain.errors import FedchainError
from fedchain.learning.models import apply_delta
from fedchain.roles.collect import UpdateCollector
from fedchain.roles.member import restrict_to
from fedchain.roles.publish import model_file
from fedchain.roles.round import merge
from fedchain.views.committee import committee_round
from fedchain.views.rewards import fetch_report
from fedchain.views.taskview import TaskView


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Verification:
    task_id: int
    round: int
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append(Check(name, ok, detail))


def verify_round(protocol: Protocol, ipfs: IpfsClient, task_id: int, round_index: int) -> Verification:
    """Every check that public data allows for a finalized round; FedchainError if the round is not finalized."""
    finalized = protocol.finalizations(task_id, round_index)
    if not finalized:
        phase = protocol.round(task_id, round_index).phase.name.lower()
        raise FedchainError(f"round {round_index} of task {task_id} is {phase}, not finalized: nothing to verify yet")
    fin = finalized[0]
    out = Verification(task_id, round_index)
    view = committee_round(protocol, task_id, round_index)
    agreed: list[str] | None = None
    if view is not None:
        agreed = list(view.inputs)
        out.add("reward root", view.matches_chain,
                f"recomputed 0x{view.tree().root.hex()}, posted 0x{fin.rewards_root.hex()}")
        out.add("consensus scores", view.outcome.consensus_scores == view.finalization.consensus_scores,
                f"recomputed {list(view.outcome.consensus_scores)}")
        out.add("dividends", view.outcome.dividends == view.finalization.dividends,
                f"recomputed {list(view.outcome.dividends)}")
        out.add("majority model", view.outcome.model_digest == fin.model_digest,
                f"revealed by a stake majority: {digest_to_cid(view.outcome.model_digest)}"
                if view.outcome.model_digest else "no model has a stake majority")
    else:
        report = fetch_report(ipfs, fin.report_digest)
        root = report.reward_tree().root
        out.add("reward root", root == fin.rewards_root, f"report 0x{root.hex()}, posted 0x{fin.rewards_root.hex()}")
        out.add("report names the model", cid_to_digest(report.model_cid) == fin.model_digest, report.model_cid)
    if not TaskView(protocol, ipfs, task_id).spec.sealed:
        out.add("model re-merged from the updates", *_remerge(protocol, ipfs, task_id, round_index, agreed,
                                                               fin.model_digest))
    return out


def _remerge(protocol: Protocol, ipfs: IpfsClient, task_id: int, round_index: int, agreed: list[str] | None,
             posted: bytes) -> tuple[bool, str]:
    collector = UpdateCollector(protocol, ipfs, task_id, None, None, device="cpu")
    inputs = collector.collect(round_index)
    if agreed is not None:
        inputs = restrict_to(inputs, agreed)
    merged = merge(inputs)
    state = apply_delta(inputs.base_state, merged.delta, collector.task.layout)
    cid = ipfs.add_bytes(model_file(task_id, round_index, inputs.base_cid, state), only_hash=True)
    return cid_to_digest(cid) == posted, f"re-merged {cid}, posted {digest_to_cid(posted)}"
