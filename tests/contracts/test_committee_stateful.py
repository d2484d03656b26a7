"""Hypothesis stateful test of committee tasks: random sequences of submissions, availability votes, commits (of
random results, with random models, scores and verdicts), reveals, finalize, non-revealer slashes, claims by
contributors and members, expiry, leaving and time travel, against the real contracts on Anvil.

Checked at every finalize: the posted root, consensus scores, dividends and slashes are the Python reference's
(fedchain.core.consensus, fedchain.core.merkle). Invariants after every step:
- the registry's token balance equals the sum of active plus unbonding stake, and the CommitteeManager holds none;
- a seat stays locked in the registry (the member's locked stake covers it) until its member leaves, which only an
  ended task allows; a slashed non-revealer loses exactly the committee's nonRevealSlash (or what it had);
- per round, claimed never exceeds the posted total; per task, claimed + refunded + held == funded.

Slow on a live chain: no deadline, a chain snapshot restored after every example, few examples by default
(FEDCHAIN_HYPOTHESIS_PROFILE=long runs more).
"""

from __future__ import annotations

import os
from collections import Counter

from ape.exceptions import ContractLogicError
from hypothesis import HealthCheck, settings
from hypothesis import event as hypothesis_event
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from committee_helpers import Result, new_stakers, sort_accounts
from conftest import MIN_CONTRIBUTOR, MIN_VALIDATOR, create_task, digest
from fedchain.core.consensus import SCORE_SCALE, Reveal, bitmap, consensus
from fedchain.core.merkle import RewardTree

settings.register_profile(
    "committee-default", max_examples=6, stateful_step_count=12, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "committee-long", max_examples=100, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
PROFILE = "committee-long" if os.environ.get("FEDCHAIN_HYPOTHESIS_PROFILE") == "long" else "committee-default"
WINDOW = 100  # submission window and each committee phase; the aggregation window is 4 of them
REWARD = 10_000
SLASH = MIN_CONTRIBUTOR // 2
MODELS = (b"\xaa" * 32, b"\xbb" * 32)
SEEN: Counter[str] = Counter()


def event(name: str) -> None:
    hypothesis_event(name)
    SEEN[name] += 1


def test_committee_invariants(chain, accounts, fed, registry, cmanager, committees, owner, admin, alice, bob, carol, treasury):
    people = [alice, bob, carol]
    members = new_stakers(accounts, chain, fed, registry, admin, 3, 2 * MIN_VALIDATOR)
    stakers = people + members
    for who in people:
        fed.approve(registry, 2**255, sender=who)
        registry.stake(2 * MIN_CONTRIBUTOR, sender=who)
    fed.approve(cmanager, 2**255, sender=owner)

    class Machine(RuleBasedStateMachine):
        @initialize(num_rounds=st.integers(1, 3), max_contributors=st.integers(1, 3),
                    seats=st.lists(st.integers(MIN_VALIDATOR, 2 * MIN_VALIDATOR), min_size=3, max_size=3),
                    share=st.sampled_from([0, 1_000, 5_000]))
        def start(self, num_rounds, max_contributors, seats, share):
            self.snapshot = chain.snapshot()
            committees.propose([m.address for m in members], MIN_VALIDATOR, WINDOW, WINDOW, WINDOW, share, sender=owner)
            self.committee_id = committees.committeeCount()
            for m, stake in zip(members, seats):
                committees.join(self.committee_id, stake, sender=m)
            self.task_id, _ = create_task(
                cmanager, fed, owner, committees, numRounds=num_rounds, rewardPerRound=REWARD, submissionWindow=WINDOW,
                aggregationWindow=4 * WINDOW, maxContributors=max_contributors, slashAmount=SLASH,
            )
            self.seats, self.share = seats, share
            self.left: set[int] = set()
            self.results: dict[tuple[int, int], Result] = {}  # (round, member) -> committed result
            self.revealed: set[tuple[int, int]] = set()
            self.trees: dict[int, RewardTree] = {}
            self.paid: dict[int, int] = {}
            self.refunded = 0

        def teardown(self):
            if hasattr(self, "snapshot"):
                chain.restore(self.snapshot)

        def _round(self) -> int:
            return cmanager.getTask(self.task_id).currentRound

        def _submitters(self, r: int) -> list:
            return sort_accounts([p for p in people if cmanager.submissionOf(self.task_id, r, p) != b"\x00" * 32])

        def _agreed(self, r: int) -> list:
            total = sum(self.seats)
            return [p for p in self._submitters(r) if 2 * committees.availabilityOf(self.task_id, r, p) > total]

        # ─── time and contributors ───
        @rule(seconds=st.sampled_from([1, WINDOW // 2, WINDOW, 2 * WINDOW, 4 * WINDOW]))
        def wait(self, seconds):
            chain.pending_timestamp += seconds
            chain.mine()

        @rule(phase=st.sampled_from(["availability", "commit", "reveal", "finalize", "expired"]))
        def advance(self, phase):
            """Jump to the start of a phase of the current round (never backwards)."""
            status = committees.getRoundStatus(self.task_id, self._round())
            at = {"availability": status.submissionDeadline, "commit": status.availabilityEnd,
                  "reveal": status.commitEnd, "finalize": status.revealEnd, "expired": status.aggregationDeadline}[phase]
            chain.pending_timestamp = max(chain.pending_timestamp, at)
            chain.mine()

        @rule(who=st.sampled_from(range(3)), tag=st.integers(1, 1000))
        def submit(self, who, tag):
            try:
                cmanager.submitUpdate(self.task_id, self._round(), digest(tag), 1, sender=people[who])
                event("submit")
            except ContractLogicError:
                pass

        # ─── members ───
        @rule(v=st.sampled_from(range(3)), mask=st.integers(0, 7))
        def vote(self, v, mask):
            r = self._round()
            chosen = [p for i, p in enumerate(people) if mask >> i & 1 and p in self._submitters(r)]
            try:
                committees.voteAvailability(self.task_id, r, [p.address for p in sort_accounts(chosen)], sender=members[v])
                event("vote")
            except ContractLogicError:
                pass

        @rule(v=st.sampled_from(range(3)), model=st.sampled_from(range(2)), raw=st.lists(st.integers(0, 5), min_size=3, max_size=3),
              slash=st.integers(0, 7))
        def commit(self, v, model, raw, slash):
            r = self._round()
            n = len(self._agreed(r))
            weights = raw[:n]
            total = sum(weights)
            scores = [0] * n if total == 0 else [w * SCORE_SCALE // total for w in weights]
            if total:
                scores[weights.index(max(weights))] += SCORE_SCALE - sum(scores)
            res = Result(MODELS[model], scores, slash=[bool(slash >> i & 1) for i in range(n)], salt=bytes([v + 1, r + 1]) * 16)
            try:
                committees.commit(self.task_id, r, self._commitment(r, v, res), sender=members[v])
            except ContractLogicError:
                return
            self.results[(r, v)] = res
            event("commit")

        def _commitment(self, r, v, res):
            from fedchain.core.consensus import commitment

            return commitment(chain_id=chain.chain_id, contract=committees.address, task_id=self.task_id, round_index=r,
                              member=members[v].address, model_digest=res.model, report_digest=res.report,
                              slash=res.slash, scores=res.scores, salt=res.salt)

        @rule(v=st.sampled_from(range(3)))
        def reveal(self, v):
            r = self._round()
            res = self.results.get((r, v))
            if res is None:
                return
            inputs = self._agreed(r)
            try:
                committees.reveal(self.task_id, r, res.model, res.report, [p.address for p in inputs], res.scores,
                                  bitmap(res.slash), res.salt, sender=members[v])
            except ContractLogicError:
                return
            self.revealed.add((r, v))
            event("reveal")

        @rule()
        def finalize(self):
            r = self._round()
            try:
                tx = committees.finalize(self.task_id, r, sender=owner)
            except ContractLogicError:
                return
            inputs = committees.inputsOf(self.task_id, r)
            n = len(inputs)
            reveals = [None if (r, v) not in self.revealed else
                       Reveal((True,) * n, self.results[(r, v)].model, tuple(self.results[(r, v)].scores),
                              tuple(self.results[(r, v)].slash)) for v in range(3)]
            [log] = tx.decode_logs(committees.CommitteeFinalized)
            out = consensus(self.seats, reveals, log.contributorsBudget, log.membersBudget)
            assert log.membersBudget == (log.contributorsBudget + log.membersBudget) * self.share // 10_000
            assert (tuple(log.consensusScores), tuple(log.dividends), log.slashBitmap) == (
                out.consensus_scores, out.dividends, bitmap(out.slashed))
            amounts: Counter[str] = Counter()
            for a, reward in zip(inputs, out.rewards):
                amounts[a] += reward
            for m, d in zip(members, out.dividends):
                amounts[m.address] += d
            tree = RewardTree(self.task_id, r, {a: x for a, x in amounts.items() if x})
            info = cmanager.getRound(self.task_id, r)
            assert (info.rewardsRoot, info.totalRewards) == (tree.root, sum(tree.entries.values()))
            slashed = [e.account for e in tx.decode_logs(cmanager.Slashed)]
            assert slashed == [a for a, hit in zip(inputs, out.slashed) if hit]
            if tree.entries:
                self.trees[r] = tree
            event(f"finalize ({sum(x is not None for x in reveals)} reveals, {len(slashed)} slashed)")

        @rule(v=st.sampled_from(range(3)), pick=st.integers(0, 2))
        def slash_non_revealer(self, v, pick):
            rounds = sorted({r for (r, u) in self.results if u == v})
            if not rounds:
                return
            r = rounds[pick % len(rounds)]
            before = registry.activeStake(members[v]) + registry.unbonding(members[v])[0]
            try:
                tx = committees.slashNonRevealer(self.task_id, r, members[v], sender=owner)
            except ContractLogicError:
                return
            assert (r, v) not in self.revealed  # disagreement is never slashed
            [log] = tx.decode_logs(committees.NonRevealerSlashed)
            assert log.amount == min(MIN_VALIDATOR // 10, before)
            event("slash non-revealer")

        @rule(v=st.sampled_from(range(3)))
        def leave(self, v):
            try:
                committees.leave(self.committee_id, sender=members[v])
            except ContractLogicError:
                return
            assert cmanager.getTask(self.task_id).ended  # seats of a bound committee wait for the task's end
            self.left.add(v)
            event("leave")

        @rule(submits=st.lists(st.integers(0, 1000), min_size=3, max_size=3),
              votes=st.lists(st.integers(0, 15), min_size=3, max_size=3),
              commits=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1), st.lists(st.integers(0, 5), min_size=3,
                                         max_size=3), st.integers(0, 7)), min_size=3, max_size=3),
              reveals=st.lists(st.integers(0, 3), min_size=3, max_size=3), wait=st.booleans())
        def play_round(self, submits, votes, commits, reveals, wait):
            """A whole committee round of the current round with drawn choices (drawn up front: what the chain
            holds must not change what is drawn): who submits (tag 0: not), each member's votes (0: none, else a
            mask), which members commit (0: not) and what, and reveal (0: not), then finalize, early or not."""
            for who, tag in enumerate(submits):
                if tag:
                    self.submit(who, tag)
            self.advance("availability")
            for v, vote in enumerate(votes):
                if vote:
                    self.vote(v, vote & 7)
            self.advance("commit")
            for v, (commits_, model, raw, slash) in enumerate(commits):
                if commits_:
                    self.commit(v, model, raw, slash)
            self.advance("reveal")
            for v, reveals_ in enumerate(reveals):
                if reveals_:
                    self.reveal(v)
            if wait:
                self.advance("finalize")
            self.finalize()

        # ─── owner and claims ───
        @rule(who=st.sampled_from(range(6)), pick=st.integers(0, 2))
        def claim(self, who, pick):
            rounds = sorted(self.trees)
            if not rounds:
                return
            r = rounds[pick % len(rounds)]
            acct = (people + members)[who]
            tree = self.trees[r]
            if acct.address not in tree.entries or cmanager.hasClaimed(self.task_id, r, acct):
                return
            cmanager.claim(self.task_id, r, tree.amount(acct.address), tree.proof(acct.address), sender=acct)
            self.paid[r] = self.paid.get(r, 0) + tree.amount(acct.address)
            event("claim")

        @rule()
        def expire(self):
            try:
                cmanager.expireRound(self.task_id, self._round(), sender=owner)
                event("expire")
            except ContractLogicError:
                pass

        @rule()
        def refund(self):
            try:
                tx = cmanager.withdrawRefund(self.task_id, sender=owner)
            except ContractLogicError:
                return
            self.refunded += tx.decode_logs(cmanager.RefundWithdrawn)[0].amount
            event("refund")

        # ─── invariants ───
        @invariant()
        def stakes_are_held_and_seats_locked(self):
            total = sum(registry.activeStake(p) + registry.unbonding(p)[0] for p in stakers)
            assert fed.balanceOf(registry) == total
            assert fed.balanceOf(committees) == 0
            if not hasattr(self, "task_id"):
                return
            for v, m in enumerate(members):
                locked = registry.lockedStake(m)
                assert locked == (0 if v in self.left else self.seats[v])  # members submit nothing here

        @invariant()
        def rounds_and_task_balance(self):
            if not hasattr(self, "task_id"):
                return
            for r in self.trees:
                info = cmanager.getRound(self.task_id, r)
                assert info.claimed == self.paid.get(r, 0) <= info.totalRewards
            t = cmanager.getTask(self.task_id)
            assert t.paidOut == sum(self.paid.values()) and t.refunded == self.refunded
            assert t.paidOut + t.refunded + fed.balanceOf(cmanager) == t.funded

    run_state_machine_as_test(Machine, settings=settings.get_profile(PROFILE))
    print(f"committee stateful actions that succeeded ({PROFILE}): {dict(sorted(SEEN.items()))}")
