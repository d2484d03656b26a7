"""Helpers for the committee contract tests: fresh staked accounts, a committee task, and a round driven phase by
phase, with commitments and expected outcomes from the Python reference (fedchain.core.consensus, .merkle)."""

from __future__ import annotations

from dataclasses import dataclass, field

from conftest import MIN_VALIDATOR, create_task

from fedchain.core.consensus import SCORE_SCALE, Reveal, bitmap, commitment, consensus
from fedchain.core.merkle import RewardTree

A_WINDOW, C_WINDOW, R_WINDOW = 300, 300, 300  # the committee's phases; the tasks' aggregation window is 1,800
SHARE_BPS = 1_000  # members' share of each round's budget
S = SCORE_SCALE
PENDING, AVAILABILITY, COMMIT, REVEAL, FINALIZE, FINALIZED, EXPIRED = range(7)


def new_stakers(accounts, chain, fed, registry, admin, n: int, stake: int) -> list:
    """n fresh accounts with ether and `stake` FED staked (plus as much again unstaked)."""
    out = []
    for _ in range(n):
        acct = accounts.generate_test_account()
        chain.set_balance(acct.address, 10**21)
        fed.mint(acct, 2 * stake, sender=admin)
        fed.approve(registry, 2**255, sender=acct)
        registry.stake(stake, sender=acct)
        out.append(acct)
    return out


def propose(cm, owner, members, *, seat=MIN_VALIDATOR, windows=(A_WINDOW, C_WINDOW, R_WINDOW), share=SHARE_BPS):
    tx = cm.propose([m.address for m in members], seat, *windows, share, sender=owner)
    return cm.committeeCount(), tx


def committee_task(cm, tm, fed, owner, members, stakes=None, **task_overrides):
    """Propose, let every member join (stakes[i], default the seat minimum) and create a task naming the committee;
    returns (taskId, committeeId, createTask receipt)."""
    committee_id, _ = propose(cm, owner, members)
    for i, m in enumerate(members):
        cm.join(committee_id, stakes[i] if stakes else MIN_VALIDATOR, sender=m)
    task_id, tx = create_task(tm, fed, owner, cm, **task_overrides)
    return task_id, committee_id, tx


def sort_accounts(accts):
    return sorted(accts, key=lambda a: int(a.address, 16))


@dataclass
class Result:
    """One member's round result over the agreed inputs (ascending)."""

    model: bytes
    scores: list[int]
    slash: list[bool] = field(default_factory=list)
    report: bytes = b"\x02" * 32
    salt: bytes = b"\x5a" * 32

    def slash_bits(self) -> int:
        return bitmap(self.slash or [False] * len(self.scores))


@dataclass
class Driver:
    """Drives one committee round: time travel through the phases, and each member's vote, commit and reveal."""

    chain: object
    tm: object
    cm: object
    task_id: int
    round: int = 0

    def clock(self):
        r = self.tm.getRound(self.task_id, self.round)
        return r.submissionDeadline, r.aggregationDeadline

    def at(self, offset: int) -> None:
        """Move the next block to submissionDeadline + offset (never backwards)."""
        sd, _ = self.clock()
        self.chain.pending_timestamp = max(self.chain.pending_timestamp, sd + offset)

    def to_availability(self):
        self.at(0)

    def to_commit(self):
        self.at(A_WINDOW)

    def to_reveal(self):
        self.at(A_WINDOW + C_WINDOW)

    def to_finalize(self):
        self.at(A_WINDOW + C_WINDOW + R_WINDOW)

    def to_expired(self):
        _, ad = self.clock()
        self.chain.pending_timestamp = max(self.chain.pending_timestamp, ad)

    def vote(self, member, contributors):
        return self.cm.voteAvailability(self.task_id, self.round, [c.address for c in sort_accounts(contributors)],
                                        sender=member)

    def commitment(self, member, res: Result) -> bytes:
        return commitment(chain_id=self.chain.chain_id, contract=self.cm.address, task_id=self.task_id,
                          round_index=self.round, member=member.address, model_digest=res.model,
                          report_digest=res.report, slash=res.slash or [False] * len(res.scores), scores=res.scores,
                          salt=res.salt)

    def commit(self, member, res: Result):
        return self.cm.commit(self.task_id, self.round, self.commitment(member, res), sender=member)

    def reveal(self, member, res: Result, inputs):
        return self.cm.reveal(self.task_id, self.round, res.model, res.report,
                              [c.address for c in sort_accounts(inputs)], res.scores, res.slash_bits(), res.salt,
                              sender=member)


def expected(members, stakes, results, inputs, task_id, round_index, budget, share_bps=SHARE_BPS):
    """The Python reference outcome and reward tree for `results[v]` (None: no reveal) over `inputs`."""
    n = len(inputs)
    reveals = [None if r is None else Reveal((True,) * n, r.model, tuple(r.scores), tuple(r.slash or [False] * n))
               for r in results]
    mb = budget * share_bps // 10_000
    out = consensus(stakes, reveals, budget - mb, mb)
    amounts: dict[str, int] = {}
    for acct, reward in zip(sort_accounts(inputs), out.rewards):
        amounts[acct.address] = amounts.get(acct.address, 0) + reward
    for m, d in zip(members, out.dividends):
        amounts[m.address] = amounts.get(m.address, 0) + d
    tree = RewardTree(task_id, round_index, {a: v for a, v in amounts.items() if v})
    return out, tree

