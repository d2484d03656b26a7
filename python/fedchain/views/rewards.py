"""Claims: an account's entitlements with Merkle proofs rebuilt locally: from the round reports of a one-validator
task, from the recomputed consensus of a committee task (fedchain.views.committee)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from eth_utils import to_checksum_address

from fedchain.chain.protocol import Protocol
from fedchain.content.client import IpfsClient
from fedchain.core.cid import digest_to_cid
from fedchain.core.report import RoundReport
from fedchain.errors import FedchainError
from fedchain.views.records import REPORT_MAX_BYTES, cached_report, finalizations

if TYPE_CHECKING:
    from fedchain.views.index import EventIndex

__all__ = ["REPORT_MAX_BYTES", "Claim", "RewardProofError", "claimable_rewards", "fetch_report"]


class RewardProofError(FedchainError):
    """Raised when a round report does not rebuild the Merkle root posted on chain."""


@dataclass(frozen=True)
class Claim:
    round: int
    amount: int
    proof: list[bytes]


def fetch_report(ipfs: IpfsClient, report_digest: bytes) -> RoundReport:
    return RoundReport.from_json_bytes(ipfs.cat(digest_to_cid(report_digest), max_size=REPORT_MAX_BYTES))


def claimable_rewards(protocol: Protocol, ipfs: IpfsClient, task_id: int, account: str,
                      index: EventIndex | None = None) -> list[Claim]:
    """Unclaimed, non-zero rewards of `account` in every finalized round of `task_id`, with proofs. With an event
    index, the rounds and their reports come from it (confirmed rounds only); without, from a scan of the logs."""
    account = to_checksum_address(account)
    claims = []
    committee = protocol.committees.committee_of_task(task_id) != 0
    finalized = protocol.finalizations(task_id) if index is None else finalizations(index, task_id)
    for fin in finalized:
        if fin.total_rewards == 0 or protocol.has_claimed(task_id, fin.round, account):
            continue
        if committee:
            claim = _committee_claim(protocol, task_id, fin.round, fin.rewards_root, account)
            if claim is not None:
                claims.append(claim)
            continue
        report = fetch_report(ipfs, fin.report_digest) if index is None else cached_report(index, ipfs, fin.report_digest)
        if (report.task_id, report.round) != (task_id, fin.round):
            raise RewardProofError(f"the report posted for task {task_id} round {fin.round} is for task "
                                   f"{report.task_id} round {report.round}")
        rewards = report.reward_entries()
        if account not in rewards:
            continue
        tree = report.reward_tree()  # the leaves are built from a report in one place: RoundReport.reward_tree
        if tree.root != fin.rewards_root:
            raise RewardProofError(
                f"round {fin.round}'s report does not rebuild the posted rewards root "
                f"(0x{tree.root.hex()} != 0x{fin.rewards_root.hex()}); the validator published an inconsistent report"
            )
        claims.append(Claim(fin.round, rewards[account], tree.proof(account)))
    return claims


def _committee_claim(protocol: Protocol, task_id: int, round_index: int, root: bytes, account: str) -> Claim | None:
    from fedchain.views.committee import committee_round

    view = committee_round(protocol, task_id, round_index)
    if view is None:
        return None
    tree = view.tree()
    if tree.root != root:
        raise RewardProofError(f"round {round_index}'s recomputed consensus does not rebuild the posted rewards root "
                               f"(0x{tree.root.hex()} != 0x{root.hex()})")
    amount = view.entries.get(account, 0)
    return Claim(round_index, amount, tree.proof(account)) if amount else None
