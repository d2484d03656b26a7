"""Hypothesis stateful test: random sequences of stake, unstake, withdraw, submit, post (with slashes), claim, release,
expire, cancel, refund and time travel against the real contracts on Anvil, checking the accounting invariants after
every step.

Invariants:
- the registry's token balance equals the sum of active plus unbonding stake;
- per round, claimed never exceeds the posted totalRewards, and equals what the claim transactions paid;
- per task, claimed + refunded + still held == funded, with "held" measured as the manager's token balance;
- stake locks: the registry's locked total of each account is the sum of its held submission locks; what rounds not
  yet settled lock never exceeds its stake (active + unbonding), and the locked total exceeds the stake at most by
  locks whose round already slashed them; a withdrawal pays exactly the unbonding stake no lock needs, so a locked
  amount is never withdrawable; every slash of a submitter takes the task's full slash amount.

Slow on a live chain, so: no deadline, a chain snapshot restored after every example, few examples by default.
FEDCHAIN_HYPOTHESIS_PROFILE=long runs a longer search.
"""

from __future__ import annotations

import os

from ape.exceptions import ContractLogicError
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import event as hypothesis_event
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from web3 import Web3

from conftest import MIN_CONTRIBUTOR, create_task, digest
from rewards_tree import RewardsTree

settings.register_profile(
    "default", max_examples=8, stateful_step_count=14, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "long", max_examples=300, stateful_step_count=40, deadline=None,  # >= 10,000 steps (printed at the end)
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
PROFILE = os.environ.get("FEDCHAIN_HYPOTHESIS_PROFILE", "default")
PROGRESS = os.environ.get("FEDCHAIN_STATEFUL_PROGRESS")  # a file to append the step count to every 100 steps

REWARD = 1_000
WINDOW = 100
SLASH = MIN_CONTRIBUTOR // 2
OPEN, AGGREGATING = 1, 2
SEEN: Counter[str] = Counter()  # successful actions, printed at the end (pytest -s) to show what was exercised
STEPS = Counter[str]()  # rules run (every step, successful or not), printed at the end


def event(name: str) -> None:
    hypothesis_event(name)
    SEEN[name] += 1


class Reader:
    """Plain web3 contracts on the test's chain (structs decoded with their field names), for batched reads."""

    def __init__(self, chain, fed, registry, manager):
        self.w3 = Web3(Web3.HTTPProvider(chain.provider.uri))
        self.fed, self.registry, self.manager = (
            self.w3.eth.contract(address=c.address, abi=[item.model_dump(mode="json", by_alias=True)
                                                         for item in c.contract_type.abi], decode_tuples=True)
            for c in (fed, registry, manager)
        )


@dataclass
class State:
    registry_balance: int
    manager_balance: int
    active: dict
    unbonding: dict
    locked: dict
    task: Any = None
    rounds: list = field(default_factory=list)
    locked_for: dict = field(default_factory=dict)


def read_state(reader: Reader, task_id: int | None, num_rounds: int, people: list, stakers: list) -> State:
    """Everything the invariants check, read at one block in one JSON-RPC batch."""
    fed, registry, manager = reader.fed.functions, reader.registry.functions, reader.manager.functions
    calls = [fed.balanceOf(reader.registry.address), fed.balanceOf(reader.manager.address)]
    calls += [registry.activeStake(p.address) for p in stakers]
    calls += [registry.unbonding(p.address) for p in stakers]
    calls += [registry.stakeOf(p.address) for p in people]
    pairs = [(r, p) for r in range(num_rounds) for p in people] if task_id is not None else []
    if task_id is not None:
        calls += [manager.getTask(task_id)] + [manager.getRound(task_id, r) for r in range(num_rounds)]
        calls += [manager.lockedFor(task_id, r, p.address) for r, p in pairs]
    with reader.w3.batch_requests() as batch:
        for call in calls:
            batch.add(call)
        results = iter(batch.execute())
    state = State(next(results), next(results),
                  active={p.address: next(results) for p in stakers},
                  unbonding={p.address: next(results)[0] for p in stakers},
                  locked={p.address: next(results)[1] for p in people})
    if task_id is not None:
        state.task = next(results)
        state.rounds = [next(results) for _ in range(num_rounds)]
        state.locked_for = {(r, p.address): next(results) for r, p in pairs}
    return state


def test_accounting_invariants(chain, fed, registry, manager, owner, validator, alice, bob, carol, outsider, admin):
    people = [alice, bob, carol, outsider]
    # Everyone who may ever hold stake, for the registry invariant.
    stakers = people + [validator]
    for who in stakers:
        fed.approve(registry, 2**255, sender=who)
    fed.approve(manager, 2**255, sender=owner)
    registry.stake(10**21, sender=validator)
    reader = Reader(chain, fed, registry, manager)

    class Machine(RuleBasedStateMachine):
        # Up to 6 rounds, a rare cancel and a post that only sometimes ends an open round: a task that ended in a
        # few steps left most of an example's steps with nothing to submit to (7 submissions in 3,600 steps).
        @initialize(num_rounds=st.integers(1, 6), max_contributors=st.integers(1, 3),
                    min_open=st.sampled_from([0, WINDOW // 2]))
        def start(self, num_rounds, max_contributors, min_open):
            self.snapshot = chain.snapshot()
            self.task_id, _ = create_task(
                manager, fed, owner, validator, numRounds=num_rounds, rewardPerRound=REWARD,
                submissionWindow=WINDOW, aggregationWindow=WINDOW, maxContributors=max_contributors,
                minContributorStake=MIN_CONTRIBUTOR, slashAmount=SLASH, minOpen=min_open,
            )
            self.num_rounds = num_rounds
            for i, who in enumerate(people[:3]):  # three start staked (alice more: she can displace); the outsider later
                registry.stake((3 if i == 0 else 2) * MIN_CONTRIBUTOR, sender=who)
            self.trees: dict[int, RewardsTree] = {}
            self.paid: dict[int, int] = {}  # round -> sum of claims seen
            self.refunded = 0
            self.decided = 0  # rounds posted or expired (known from the transactions: no call needed)
            self.cancelled = False
            self.refund_tries = 0
            self.slashed: set[tuple[int, str]] = set()  # (round, account) slashed in that round

        def teardown(self):
            if hasattr(self, "snapshot"):
                chain.restore(self.snapshot)

        @property
        def ended(self):
            # Rules that only act on a running task (or only on an ended one) are not drawn otherwise: Hypothesis's
            # draws go to steps that can do something.
            return self.cancelled or self.decided >= self.num_rounds

        def _current(self):
            t = manager.getTask(self.task_id)
            return t, t.currentRound

        # ─── registry ───
        @rule(who=st.sampled_from(range(4)), amount=st.sampled_from([MIN_CONTRIBUTOR // 2, MIN_CONTRIBUTOR, 3 * MIN_CONTRIBUTOR]))
        def stake(self, who, amount):
            registry.stake(amount, sender=people[who])

        @rule(who=st.sampled_from(range(4)), fraction=st.sampled_from([1, 2, 4]))
        def request_unstake(self, who, fraction):
            active = registry.activeStake(people[who])
            if active:
                registry.requestUnstake(max(1, active // fraction), sender=people[who])

        @rule(who=st.sampled_from(range(4)))
        def withdraw(self, who):
            active, locked = registry.stakeOf(people[who])
            unbonding, _ = registry.unbonding(people[who])
            free = max(0, active + unbonding - locked)
            try:
                tx = registry.withdraw(sender=people[who])
            except ContractLogicError:
                return  # nothing unbonding, still unbonding, or all of it locked
            [log] = tx.decode_logs(registry.Withdrawn)
            assert log.amount == min(unbonding, free)  # never a locked token
            event("withdraw" if log.amount == unbonding else "withdraw (part: the rest is locked)")

        # ─── rounds ───
        @rule(seconds=st.sampled_from([1, WINDOW // 2, WINDOW, 2 * WINDOW, 7 * 24 * 3600, 40 * 24 * 3600]))
        def wait(self, seconds):
            chain.pending_timestamp += seconds
            chain.mine()

        @precondition(lambda self: not self.ended)
        @rule(who=st.sampled_from(range(4)), tag=st.integers(1, 1000))
        def submit(self, who, tag):
            _, r = self._current()
            try:
                manager.submitUpdate(self.task_id, r, digest(tag), 1, sender=people[who])
                event("submit")
            except ContractLogicError:
                pass  # late, full, unstaked, twice: rejected, and the invariants still hold

        @precondition(lambda self: not self.ended)
        @rule(who=st.sampled_from(range(4)), victim=st.sampled_from(range(4)), tag=st.integers(1, 1000))
        def displace(self, who, victim, tag):
            _, r = self._current()
            try:
                manager.submitUpdateDisplacing(self.task_id, r, digest(tag), 1, people[victim], sender=people[who])
                event("displace")
            except ContractLogicError:
                pass  # not full, not open, no such submission, not more stake: rejected, invariants hold

        @precondition(lambda self: not self.ended)
        @rule(caller=st.sampled_from(range(4)))
        def close_full_round(self, caller):
            _, r = self._current()
            try:
                manager.closeFullRound(self.task_id, r, sender=people[caller])
                event("close full round")
            except ContractLogicError:
                pass  # not full, or minOpen not over yet

        @precondition(lambda self: not self.ended)
        @rule(shares=st.lists(st.integers(0, 600), min_size=4, max_size=4), slash_first=st.booleans(),
              close_open=st.booleans())
        def post(self, shares, slash_first, close_open):
            t, r = self._current()
            info = manager.getRound(self.task_id, r)
            if info.phase == 1 and not close_open:
                return
            if info.phase == 1:  # Open: let the submission window run out first
                chain.pending_timestamp = max(chain.pending_timestamp, info.submissionDeadline)
            elif info.phase != 2:  # only an aggregating round takes a result
                return
            available = REWARD + t.carry
            entries = {p.address: s for p, s in zip(people, shares) if s}
            if sum(entries.values()) > available:
                entries = {}
            tree = RewardsTree(self.task_id, r, entries) if entries else None
            submitters = sorted(
                (p.address for p in people if manager.submissionOf(self.task_id, r, p) != b"\x00" * 32), key=lambda a: int(a, 16)
            )
            slashes = [(submitters[0], manager.submissionOf(self.task_id, r, submitters[0]))] if slash_first and submitters else []
            tx = manager.postResult(self.task_id, r, digest(1), digest(2), tree.root if tree else b"\x00" * 32,
                                    tree.total if tree else 0, slashes, sender=validator)
            if tree:
                self.trees[r] = tree
            for log in tx.decode_logs(manager.Slashed):
                assert log.amount == SLASH  # the lock kept it there, whatever was unstaked or withdrawn
                self.slashed.add((r, log.account))
            self.decided += 1
            event(f"post (slashes: {len(slashes)})")

        @rule(pick=st.integers(0, 11), caller=st.sampled_from(range(4)))
        def release(self, pick, caller):
            held = [(r, p) for r in range(self.num_rounds) for p in people if manager.lockedFor(self.task_id, r, p)]
            if not held:
                return
            r, p = held[pick % len(held)]
            settled = manager.getRound(self.task_id, r).phase not in (OPEN, AGGREGATING)  # at the last block
            try:
                tx = manager.release(self.task_id, r, p, sender=people[caller])
            except ContractLogicError:
                assert not settled  # a held lock of a settled round can always be released, by anyone
                return
            assert tx.decode_logs(manager.LockReleased)[0].amount == SLASH
            assert manager.lockedFor(self.task_id, r, p) == 0
            event("release")

        @precondition(lambda self: bool(self.trees))
        @rule(who=st.sampled_from(range(4)), pick=st.integers(0, 2))
        def claim(self, who, pick):
            rounds = sorted(self.trees)
            if not rounds:
                return
            r = rounds[pick % len(rounds)]
            tree, acct = self.trees[r], people[who]
            if acct.address not in tree.entries:
                return
            amount = tree.entries[acct.address]
            try:
                manager.claim(self.task_id, r, amount, tree.proof(acct.address), sender=acct)
            except ContractLogicError:
                return  # twice, or after the claim period
            self.paid[r] = self.paid.get(r, 0) + amount
            event("claim")

        @precondition(lambda self: not self.ended)
        @rule(who=st.sampled_from(range(4)))
        def expire(self, who):
            _, r = self._current()
            try:
                manager.expireRound(self.task_id, r, sender=people[who])
                self.decided += 1
                event("expire")
            except ContractLogicError:
                pass

        @precondition(lambda self: not self.ended)
        @rule(draw=st.integers(0, 15))
        def cancel(self, draw):
            if draw:  # one draw in sixteen: the task goes on in the rest
                return
            try:
                manager.cancelTask(self.task_id, sender=owner)
                self.cancelled = True
            except ContractLogicError:
                pass

        @precondition(lambda self: self.ended and self.refund_tries < 2)  # else it would crowd out the rest
        @rule()
        def refund(self):
            self.refund_tries += 1
            expected = manager.refundable(self.task_id)
            try:
                tx = manager.withdrawRefund(self.task_id, sender=owner)
            except ContractLogicError:
                assert expected == 0 or not manager.getTask(self.task_id).ended
                return
            [log] = tx.decode_logs(manager.RefundWithdrawn)
            assert log.amount == expected
            self.refunded += log.amount
            event("refund")

        # ─── invariants ───
        @invariant()
        def accounting_holds(self):
            # One JSON-RPC batch for every read the checks need: a step's ~40 separate calls through ape made the long
            # profile take hours.
            state = read_state(reader, self.task_id if hasattr(self, "task_id") else None,
                               getattr(self, "num_rounds", 0), people, stakers)
            STEPS["checks"] += 1  # after the initialization and after every rule
            if PROGRESS and STEPS["checks"] % 100 == 0:  # a long run's progress, readable while it runs
                with open(PROGRESS, "a") as f:
                    f.write(f"{STEPS['checks']} steps, successes {dict(sorted(SEEN.items()))}\n")

            # The registry holds exactly the active plus unbonding stake.
            assert state.registry_balance == sum(state.active[p.address] + state.unbonding[p.address] for p in stakers)
            if state.task is None:
                return

            # Locks are backed and accounted.
            for a in (p.address for p in people):
                held = {r: state.locked_for[r, a] for r in range(self.num_rounds)}
                stake = state.active[a] + state.unbonding[a]
                assert state.locked[a] == sum(held.values())  # one task: the registry's total is its submissions' locks
                assert sum(v for r, v in held.items() if state.rounds[r].phase in (OPEN, AGGREGATING)) <= stake
                spent = sum(v for r, v in held.items() if (r, a) in self.slashed)
                assert state.locked[a] <= stake + spent  # above the stake only by slashed locks not yet released

            # Rounds never overpay.
            for r, tree in self.trees.items():
                info = state.rounds[r]
                assert info.claimed <= info.totalRewards == tree.total
                assert info.claimed == self.paid.get(r, 0)

            # The task's funds balance: the only task in this snapshot holds all of the manager's FED.
            t = state.task
            assert t.paidOut == sum(self.paid.values())
            assert t.refunded == self.refunded
            assert t.paidOut + t.refunded + state.manager_balance == t.funded

    run_state_machine_as_test(Machine, settings=settings.get_profile(PROFILE))
    print(f"stateful actions that succeeded ({PROFILE} profile): {dict(sorted(SEEN.items()))}")
    print(f"stateful steps ({PROFILE} profile): {STEPS['checks']} (rules and initializations, each followed by every "
          f"invariant)")
