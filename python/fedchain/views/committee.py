"""A committee round as anyone can recompute it from the chain: the reveals, the consensus, the reward leaves.

    view = committee_round(protocol, task_id, round_index)     # None for a one-validator task or an open round
    view.entries        # {account: amount}: contributors' rewards and members' dividends (the reward tree's leaves)
    view.matches_chain  # the recomputed reward root equals the one the CommitteeManager posted

Nothing here trusts whoever finalized the round: the consensus is recomputed from the revealed score vectors and the
members' stakes with fedchain.core.consensus, the same arithmetic the contract runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedchain.chain.committee import CommitteeFinalization, CommitteeInfo, RevealRecord
from fedchain.chain.protocol import Protocol
from fedchain.core.consensus import Outcome, Reveal, consensus
from fedchain.core.merkle import RewardTree


@dataclass(frozen=True)
class CommitteeRound:
    task_id: int
    round: int
    committee: CommitteeInfo
    inputs: tuple[str, ...]  # the agreed inputs, ascending
    reveals: tuple[RevealRecord | None, ...]  # per member, in committee order
    finalization: CommitteeFinalization
    outcome: Outcome

    @property
    def entries(self) -> dict[str, int]:
        """Non-zero amounts by account: contributors' rewards plus members' dividends (summed for an account that
        is both), exactly the leaves the contract built its reward root from."""
        out: dict[str, int] = {}
        for account, amount in [*zip(self.inputs, self.outcome.rewards), *zip(self.committee.members,
                                                                              self.outcome.dividends)]:
            if amount:
                out[account] = out.get(account, 0) + amount
        return out

    def tree(self) -> RewardTree:
        return RewardTree(self.task_id, self.round, self.entries)

    @property
    def matches_chain(self) -> bool:
        return self.tree().root == self.finalization.rewards_root


def committee_round(protocol: Protocol, task_id: int, round_index: int) -> CommitteeRound | None:
    """The recomputed consensus of a finalized committee round (None: no committee, or not finalized)."""
    committees = protocol.committees
    committee_id = committees.committee_of_task(task_id)
    if committee_id == 0:
        return None
    finalized = committees.finalizations(task_id, round_index, from_block=protocol.deployments.block)
    if not finalized:
        return None
    committee = committees.committee(committee_id)
    inputs = tuple(committees.inputs_of(task_id, round_index))
    by_member = {r.member.lower(): r for r in committees.reveals(task_id, round_index,
                                                                 from_block=protocol.deployments.block)}
    records = tuple(by_member.get(m.lower()) for m in committee.members)
    reveals = [None if r is None else _as_reveal(r, len(inputs)) for r in records]
    outcome = consensus(list(committee.stakes), reveals, finalized[0].contributors_budget, finalized[0].members_budget)
    return CommitteeRound(task_id, round_index, committee, inputs, records, finalized[0], outcome)


def _as_reveal(record: RevealRecord, n: int) -> Reveal:
    # Every revealed vector is over the agreed inputs, so each is "available" to the member that revealed it.
    return Reveal(available=(True,) * n, model_digest=record.model_digest, scores=record.scores,
                  slash=tuple(bool(record.slash_bitmap >> i & 1) for i in range(n)))
