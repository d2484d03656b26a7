"""CommitteeManager rounds: availability votes, commits, reveals, finalize by stake-weighted consensus (checked
against fedchain.core.consensus and RewardTree), claims by contributors and members, slashes by a stake majority,
and slashing of members that commit and do not reveal."""

from __future__ import annotations

import ape
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as hypothesis_event
from hypothesis import strategies as st

from committee_helpers import (
    AVAILABILITY,
    COMMIT,
    EXPIRED,
    FINALIZE,
    FINALIZED,
    PENDING,
    REVEAL,
    S,
    SHARE_BPS,
    Driver,
    Result,
    committee_task,
    expected,
    new_stakers,
    sort_accounts,
)
from conftest import MIN_VALIDATOR, REWARD, SLASH, create_task, digest, events
from fedchain.core.consensus import bitmap

MODEL_A, MODEL_B = b"\xaa" * 32, b"\xbb" * 32
ZERO32 = b"\x00" * 32
ZERO_ADDRESS = "0x" + "00" * 20


@pytest.fixture(scope="module", autouse=True)
def _deployed(committees, members, staked):
    """Deploy and fund before the first test (ape snapshots module fixtures once)."""


@pytest.fixture
def round0(chain, cmanager, committees, fed, owner, members, alice, bob, carol):
    """A 3-round committee task (3 members at the seat minimum) with alice, bob and carol submitted in round 0
    (which closes it: maxContributors is 3); returns the round's Driver."""
    task_id, _, _ = committee_task(committees, cmanager, fed, owner, members)
    for i, who in enumerate((alice, bob, carol)):
        cmanager.submitUpdate(task_id, 0, digest(i + 1), 10, sender=who)
    return Driver(chain, cmanager, committees, task_id, 0)


@pytest.fixture
def contributors(alice, bob, carol):
    return sort_accounts([alice, bob, carol])


def committed(d, members, contributors, results):
    """Everyone votes every contributor available, then each member commits its result (None: commits nothing)."""
    d.to_availability()
    for m in members:
        d.vote(m, contributors)
    d.to_commit()
    for m, r in zip(members, results):
        if r is not None:
            d.commit(m, r)


SPLIT = [S // 2, S // 4, S - S // 2 - S // 4]


# ─── a whole round ───
def test_a_committee_round_end_to_end(round0, contributors, cmanager, committees, fed, members, registry):
    d = round0
    results = [Result(MODEL_A, SPLIT, salt=bytes([i + 1]) * 32) for i in range(3)]
    committed(d, members, contributors, results)
    d.to_reveal()
    for m, r in zip(members, results):
        d.reveal(m, r, contributors)
    tx = committees.finalize(d.task_id, 0, sender=contributors[0])  # early: everyone who committed revealed
    out, tree = expected(members, [MIN_VALIDATOR] * 3, results, contributors, d.task_id, 0, REWARD)
    [fin] = events(tx, cmanager.RoundFinalized)
    assert (fin.modelDigest, fin.reportDigest) == (MODEL_A, results[0].report)
    assert fin.rewardsRoot == tree.root and fin.totalRewards == sum(tree.entries.values())
    [log] = events(tx, committees.CommitteeFinalized)
    assert (log.modelDigest, log.rewardsRoot, log.slashBitmap) == (MODEL_A, tree.root, 0)
    assert (log.contributorsBudget, log.membersBudget) == (REWARD - REWARD * SHARE_BPS // 10_000, REWARD * SHARE_BPS // 10_000)
    assert tuple(log.consensusScores) == out.consensus_scores and tuple(log.dividends) == out.dividends
    assert cmanager.getRound(d.task_id, 1).phase == 1  # the next round is open
    for acct in contributors + list(members):
        amount = tree.amount(acct.address)
        before = fed.balanceOf(acct)
        cmanager.claim(d.task_id, 0, amount, tree.proof(acct.address), sender=acct)
        assert fed.balanceOf(acct) - before == amount
    assert registry.lockedStake(members[0]) == MIN_VALIDATOR  # seats stay locked while the task runs


def test_phases_follow_the_round_clock(chain, cmanager, committees, fed, owner, members, alice):
    task_id, _, _ = committee_task(committees, cmanager, fed, owner, members)
    d = Driver(chain, cmanager, committees, task_id)
    assert committees.getRoundStatus(task_id, 0).phase == PENDING  # open for submissions
    assert committees.getRoundStatus(task_id, 1).phase == PENDING  # not opened
    assert committees.getRoundStatus(task_id + 1, 0).phase == PENDING  # no such task
    cmanager.submitUpdate(task_id, 0, digest(1), 1, sender=alice)
    sd, ad = d.clock()
    status = committees.getRoundStatus(task_id, 0)
    assert (status.submissionDeadline, status.availabilityEnd, status.commitEnd, status.revealEnd, status.aggregationDeadline) == (
        sd, sd + 300, sd + 600, sd + 900, ad)
    for move, phase in ((d.to_availability, AVAILABILITY), (d.to_commit, COMMIT), (d.to_reveal, REVEAL),
                        (d.to_finalize, FINALIZE), (d.to_expired, EXPIRED)):
        move()
        chain.mine()
        assert committees.getRoundStatus(task_id, 0).phase == phase


# ─── availability ───
def test_availability_votes_count_stake_majorities(round0, contributors, committees, members):
    d = round0
    d.to_availability()
    tx = d.vote(members[0], contributors)
    [log] = events(tx, committees.AvailabilityVoted)
    assert (log.taskId, log.round, log.member, log.contributors, log.inputCount) == (
        d.task_id, 0, members[0].address, [c.address for c in contributors], 0)  # 1 of 3 seats
    tx = d.vote(members[1], contributors[:2])
    assert events(tx, committees.AvailabilityVoted)[0].inputCount == 2  # 2 of 3 for the first two
    d.vote(members[2], contributors[2:])
    status = committees.getRoundStatus(d.task_id, 0)
    assert status.inputCount == 3 and status.votedMask == 0b111
    assert committees.availabilityOf(d.task_id, 0, contributors[2]) == 2 * MIN_VALIDATOR
    assert committees.getBallot(d.task_id, 0, members[1]).votedAvailability


def test_vote_availability_reverts(round0, contributors, chain, cmanager, committees, fed, owner, validator, members, outsider, staked):
    d, t = round0, round0.task_id
    with ape.reverts(committees.CommitteeManagerWrongPhase, taskId=t, round=1, phase=PENDING):
        committees.voteAvailability(t, 1, [], sender=members[0])
    ordinary, _ = create_task(cmanager, fed, owner, validator)
    with ape.reverts(committees.CommitteeManagerNotCommitteeTask, taskId=ordinary):
        committees.voteAvailability(ordinary, 0, [], sender=members[0])
    d.to_availability()
    addrs = [c.address for c in contributors]
    with ape.reverts(committees.CommitteeManagerNotMember, taskId=t, account=outsider.address):
        committees.voteAvailability(t, 0, addrs, sender=outsider)
    with ape.reverts(committees.CommitteeManagerNotAscending, index=1, account=addrs[0]):
        committees.voteAvailability(t, 0, [addrs[1], addrs[0]], sender=members[0])
    with ape.reverts(committees.CommitteeManagerNotAscending, index=1, account=addrs[0]):
        committees.voteAvailability(t, 0, [addrs[0], addrs[0]], sender=members[0])
    with ape.reverts(committees.CommitteeManagerNoSubmission, taskId=t, round=0, contributor=outsider.address):
        committees.voteAvailability(t, 0, [outsider.address], sender=members[0])
    committees.voteAvailability(t, 0, addrs, sender=members[0])
    with ape.reverts(committees.CommitteeManagerAlreadyVoted, taskId=t, round=0, member=members[0].address):
        committees.voteAvailability(t, 0, addrs, sender=members[0])
    d.to_commit()
    with ape.reverts(committees.CommitteeManagerWrongPhase, taskId=t, round=0, phase=COMMIT):
        committees.voteAvailability(t, 0, addrs, sender=members[1])


# ─── commit ───
def test_commit_records_the_commitment(round0, contributors, committees, members):
    d = round0
    committed(d, members, contributors, [None] * 3)
    res = Result(MODEL_A, SPLIT)
    tx = d.commit(members[0], res)
    [log] = events(tx, committees.Committed)
    assert (log.taskId, log.round, log.member, log.commitment) == (d.task_id, 0, members[0].address, d.commitment(members[0], res))
    assert committees.getBallot(d.task_id, 0, members[0]).commitment == log.commitment
    assert tx.gas_used <= 60_000  # the target


def test_commit_reverts(round0, contributors, committees, members, outsider):
    d, t = round0, round0.task_id
    d.to_availability()
    with ape.reverts(committees.CommitteeManagerWrongPhase, taskId=t, round=0, phase=AVAILABILITY):
        committees.commit(t, 0, b"\x01" * 32, sender=members[0])
    d.to_commit()
    with ape.reverts(committees.CommitteeManagerZeroValue):
        committees.commit(t, 0, ZERO32, sender=members[0])
    with ape.reverts(committees.CommitteeManagerNotMember, taskId=t, account=outsider.address):
        committees.commit(t, 0, b"\x01" * 32, sender=outsider)
    committees.commit(t, 0, b"\x01" * 32, sender=members[0])
    with ape.reverts(committees.CommitteeManagerAlreadyCommitted, taskId=t, round=0, member=members[0].address):
        committees.commit(t, 0, b"\x02" * 32, sender=members[0])
    d.to_reveal()
    with ape.reverts(committees.CommitteeManagerWrongPhase, taskId=t, round=0, phase=REVEAL):
        committees.commit(t, 0, b"\x01" * 32, sender=members[1])


# ─── reveal ───
def test_reveal_records_the_result_and_the_agreed_inputs(round0, contributors, committees, members):
    d = round0
    res = Result(MODEL_A, SPLIT, slash=[False, True, False])
    committed(d, members, contributors, [res, None, None])
    d.to_reveal()
    tx = d.reveal(members[0], res, contributors)
    [log] = events(tx, committees.Revealed)
    assert (log.member, log.modelDigest, log.reportDigest, log.slashBitmap, list(log.scores), log.salt) == (
        members[0].address, MODEL_A, res.report, 0b010, SPLIT, res.salt)
    assert committees.inputsOf(d.task_id, 0) == [c.address for c in contributors]
    ballot = committees.getBallot(d.task_id, 0, members[0])
    assert ballot.revealed and ballot.modelDigest == MODEL_A and list(ballot.scores) == SPLIT and ballot.slashBitmap == 2


def test_reveal_reverts(round0, contributors, committees, members, outsider):
    d, t = round0, round0.task_id
    good = Result(MODEL_A, SPLIT)
    bad_sum, short = Result(MODEL_A, [S, 1, 0]), Result(MODEL_A, [S, 0])
    committed(d, members, contributors, [good, bad_sum, short])
    with ape.reverts(committees.CommitteeManagerWrongPhase, taskId=t, round=0, phase=COMMIT):
        d.reveal(members[0], good, contributors)
    d.to_reveal()
    addrs = [c.address for c in contributors]
    with ape.reverts(committees.CommitteeManagerNotMember, taskId=t, account=outsider.address):
        d.reveal(outsider, good, contributors)
    with ape.reverts(committees.CommitteeManagerZeroValue):
        committees.reveal(t, 0, ZERO32, good.report, addrs, good.scores, 0, good.salt, sender=members[0])
    with ape.reverts(committees.CommitteeManagerCommitmentMismatch, committed=d.commitment(members[0], good)):
        committees.reveal(t, 0, MODEL_B, good.report, addrs, good.scores, 0, good.salt, sender=members[0])
    with ape.reverts(committees.CommitteeManagerNotAgreedInputs, index=2, account=ZERO_ADDRESS, expected=3):
        committees.reveal(t, 0, MODEL_A, good.report, addrs[:2], good.scores, 0, good.salt, sender=members[0])
    with ape.reverts(committees.CommitteeManagerNotAgreedInputs, index=1, account=addrs[0], expected=3):
        committees.reveal(t, 0, MODEL_A, good.report, [addrs[1], addrs[0], addrs[2]], good.scores, 0, good.salt,
                          sender=members[0])
    with ape.reverts(committees.CommitteeManagerScoreSum, sum=S + 1):
        d.reveal(members[1], bad_sum, contributors)
    with ape.reverts(committees.CommitteeManagerScoresLength, inputs=3, scores=2):
        d.reveal(members[2], short, contributors)
    d.reveal(members[0], good, contributors)
    with ape.reverts(committees.CommitteeManagerAlreadyRevealed, taskId=t, round=0, member=members[0].address):
        d.reveal(members[0], good, contributors)
    with ape.reverts(committees.CommitteeManagerNotAgreedInputs, index=2, expected=3):  # later reveals: the stored set
        committees.reveal(t, 0, MODEL_A, short.report, addrs[:2], short.scores, 0, short.salt, sender=members[2])


def test_reveal_needs_a_commitment_and_slash_verdicts_for_inputs_only(round0, contributors, chain, committees, members):
    d, t = round0, round0.task_id
    wide = Result(MODEL_A, SPLIT, slash=[False, False, False, True])  # a verdict for a fourth, absent input
    committed(d, members, contributors, [wide, None, None])
    d.to_reveal()
    with ape.reverts(committees.CommitteeManagerSlashBitmapTooWide, slashBitmap=0b1000, inputs=3):
        committees.reveal(t, 0, MODEL_A, wide.report, [c.address for c in contributors], wide.scores, 0b1000, wide.salt,
                          sender=members[0])
    with ape.reverts(committees.CommitteeManagerNotCommitted, taskId=t, round=0, member=members[1].address):
        d.reveal(members[1], Result(MODEL_A, SPLIT), contributors)
    d.to_finalize()
    with ape.reverts(committees.CommitteeManagerWrongPhase, taskId=t, round=0, phase=FINALIZE):
        d.reveal(members[0], wide, contributors)


def test_reveal_of_an_input_without_an_availability_majority_reverts(round0, contributors, committees, members):
    d, t = round0, round0.task_id
    d.to_availability()
    d.vote(members[0], contributors)
    d.vote(members[1], contributors[:2])  # the third contributor: 1 of 3 seats
    d.to_commit()
    res = Result(MODEL_A, [S // 2, S // 2])
    d.commit(members[0], res)
    d.to_reveal()
    assert committees.getRoundStatus(t, 0).inputCount == 2
    with ape.reverts(committees.CommitteeManagerNotAgreedInputs, index=1, account=contributors[2].address, expected=2):
        d.reveal(members[0], res, [contributors[0], contributors[2]])
    d.reveal(members[0], res, contributors[:2])
    assert committees.inputsOf(t, 0) == [c.address for c in contributors[:2]]


# ─── finalize ───
def test_finalize_reverts(round0, contributors, chain, cmanager, committees, fed, owner, validator, members):
    d, t = round0, round0.task_id
    results = [Result(MODEL_A, SPLIT), Result(MODEL_A, SPLIT), Result(MODEL_B, SPLIT)]
    committed(d, members, contributors, results)
    with ape.reverts(committees.CommitteeManagerWrongPhase, taskId=t, round=0, phase=COMMIT):
        committees.finalize(t, 0, sender=owner)
    d.to_reveal()
    d.reveal(members[0], results[0], contributors)
    with ape.reverts(committees.CommitteeManagerRevealsPending, taskId=t, round=0):
        committees.finalize(t, 0, sender=owner)  # two members committed and have not revealed
    d.reveal(members[2], results[2], contributors)
    d.to_finalize()  # members[1] never reveals: A has 1 seat, B has 1 of 3
    with ape.reverts(committees.CommitteeManagerNoConsensus, taskId=t, round=0):
        committees.finalize(t, 0, sender=owner)
    d.to_expired()
    with ape.reverts(committees.CommitteeManagerWrongPhase, taskId=t, round=0, phase=EXPIRED):
        committees.finalize(t, 0, sender=owner)
    cmanager.expireRound(t, 0, sender=owner)  # the budget rolls over, as for any task
    assert cmanager.getTask(t).carry == REWARD
    ordinary, _ = create_task(cmanager, fed, owner, validator)
    with ape.reverts(committees.CommitteeManagerNotCommitteeTask, taskId=ordinary):
        committees.finalize(ordinary, 0, sender=owner)


def test_finalize_twice_reverts(round0, contributors, committees, members, owner):
    d = round0
    results = [Result(MODEL_A, SPLIT)] * 3
    committed(d, members, contributors, results)
    d.to_reveal()
    for m, r in zip(members, results):
        d.reveal(m, r, contributors)
    committees.finalize(d.task_id, 0, sender=owner)
    assert committees.getRoundStatus(d.task_id, 0).phase == FINALIZED
    with ape.reverts(committees.CommitteeManagerWrongPhase, taskId=d.task_id, round=0, phase=FINALIZED):
        committees.finalize(d.task_id, 0, sender=owner)


def test_one_offline_member_does_not_stall_a_round(round0, contributors, cmanager, committees, members, owner):
    d = round0
    results = [Result(MODEL_A, SPLIT), Result(MODEL_A, [S, 0, 0]), None]  # members[2] is offline
    committed(d, members[:2], contributors, results)
    d.to_reveal()
    for m, r in zip(members[:2], results):
        d.reveal(m, r, contributors)
    tx = committees.finalize(d.task_id, 0, sender=owner)  # early: everyone who committed revealed
    out, tree = expected(members, [MIN_VALIDATOR] * 3, results, contributors, d.task_id, 0, REWARD)
    assert events(tx, cmanager.RoundFinalized)[0].rewardsRoot == tree.root
    assert out.dividends[2] == 0 and out.consensus_scores == (S // 2, 0, 0)


def test_a_silent_committer_delays_finalize_to_the_reveal_deadline_and_is_slashed(
    round0, contributors, cmanager, committees, registry, members, owner, treasury, fed
):
    d, t = round0, round0.task_id
    results = [Result(MODEL_A, SPLIT)] * 3
    committed(d, members, contributors, results)
    d.to_reveal()
    for m, r in zip(members[:2], results):
        d.reveal(m, r, contributors)
    with ape.reverts(committees.CommitteeManagerWrongPhase, taskId=t, round=0, phase=REVEAL):
        committees.slashNonRevealer(t, 0, members[2], sender=owner)
    d.to_finalize()
    tx = committees.finalize(t, 0, sender=owner)
    assert events(tx, cmanager.RoundFinalized)[0].modelDigest == MODEL_A
    before = fed.balanceOf(treasury)
    tx = committees.slashNonRevealer(t, 0, members[2], sender=owner)
    [log] = events(tx, committees.NonRevealerSlashed)
    commitment = d.commitment(members[2], results[2])
    assert (log.taskId, log.round, log.member, log.amount, log.commitment) == (t, 0, members[2].address, MIN_VALIDATOR // 10, commitment)
    [taken] = events(tx, registry.StakeSlashed)
    assert (taken.account, taken.slasher, taken.amount, taken.evidence) == (members[2].address, committees.address, MIN_VALIDATOR // 10, commitment)
    assert fed.balanceOf(treasury) - before == MIN_VALIDATOR // 10
    assert committees.getBallot(t, 0, members[2]).slashed
    with ape.reverts(committees.CommitteeManagerNothingToSlash, taskId=t, round=0, member=members[2].address):
        committees.slashNonRevealer(t, 0, members[2], sender=owner)  # once
    with ape.reverts(committees.CommitteeManagerNothingToSlash, taskId=t, round=0, member=members[0].address):
        committees.slashNonRevealer(t, 0, members[0], sender=owner)  # it revealed: disagreement is never slashed


def test_slash_non_revealer_reverts(round0, contributors, committees, members, owner, outsider):
    d, t = round0, round0.task_id
    with ape.reverts(committees.CommitteeManagerWrongPhase, taskId=t, round=1, phase=PENDING):
        committees.slashNonRevealer(t, 1, members[0], sender=owner)  # round 1 has not opened
    with ape.reverts(committees.CommitteeManagerNotMember, taskId=t, account=outsider.address):
        committees.slashNonRevealer(t, 0, outsider, sender=owner)
    d.to_finalize()
    with ape.reverts(committees.CommitteeManagerNothingToSlash, taskId=t, round=0, member=members[0].address):
        committees.slashNonRevealer(t, 0, members[0], sender=owner)  # it never committed


def test_slashes_need_a_stake_majority_of_verdicts(round0, contributors, cmanager, committees, registry, members, owner):
    d, t = round0, round0.task_id
    verdicts = ([True, False, True], [True, False, False], [False, True, False])  # only contributor 0 has 2 of 3
    results = [Result(MODEL_A, SPLIT, slash=v) for v in verdicts]
    committed(d, members, contributors, results)
    d.to_reveal()
    for m, r in zip(members, results):
        d.reveal(m, r, contributors)
    tx = committees.finalize(t, 0, sender=owner)
    [slashed] = events(tx, cmanager.Slashed)
    assert (slashed.account, slashed.amount, slashed.evidence) == (
        contributors[0].address, SLASH, cmanager.submissionOf(t, 0, contributors[0]))
    assert events(tx, committees.CommitteeFinalized)[0].slashBitmap == 0b001


def test_a_member_that_also_contributes_gets_one_leaf(chain, cmanager, committees, fed, owner, members, alice, bob):
    task_id, _, _ = committee_task(committees, cmanager, fed, owner, members, maxContributors=3)
    inputs = sort_accounts([alice, bob, members[0]])
    for i, who in enumerate(inputs):
        cmanager.submitUpdate(task_id, 0, digest(i + 1), 10, sender=who)
    d = Driver(chain, cmanager, committees, task_id)
    results = [Result(MODEL_A, SPLIT)] * 3
    committed(d, members, inputs, results)
    d.to_reveal()
    for m, r in zip(members, results):
        d.reveal(m, r, inputs)
    committees.finalize(task_id, 0, sender=owner)
    out, tree = expected(members, [MIN_VALIDATOR] * 3, results, inputs, task_id, 0, REWARD)
    assert cmanager.getRound(task_id, 0).rewardsRoot == tree.root
    share = out.rewards[inputs.index(members[0])] + out.dividends[0]
    assert tree.amount(members[0].address) == share and len(tree) == 5  # 3 contributors, 2 other members
    before = fed.balanceOf(members[0])
    cmanager.claim(task_id, 0, share, tree.proof(members[0].address), sender=members[0])
    assert fed.balanceOf(members[0]) - before == share


def test_a_round_without_inputs_pays_nothing_and_rolls_the_budget_over(chain, cmanager, committees, fed, owner, members, alice):
    task_id, _, _ = committee_task(committees, cmanager, fed, owner, members)
    cmanager.submitUpdate(task_id, 0, digest(1), 10, sender=alice)
    d = Driver(chain, cmanager, committees, task_id)
    d.to_commit()  # nobody voted: the agreed input set is empty
    res = Result(MODEL_A, [])
    for m in members[:2]:
        d.commit(m, res)
    d.to_reveal()
    for m in members[:2]:
        d.reveal(m, res, [])
    tx = committees.finalize(task_id, 0, sender=owner)
    [fin] = events(tx, cmanager.RoundFinalized)
    assert (fin.rewardsRoot, fin.totalRewards) == (ZERO32, 0)
    assert cmanager.getTask(task_id).carry == REWARD


# ─── the arithmetic on chain, against the Python reference ───
PROFILE = settings(max_examples=5, deadline=None,
                   suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@PROFILE
@given(data=st.data())
def test_finalize_matches_the_python_consensus(chain, accounts, cmanager, committees, fed, registry, owner, admin,
                                               alice, bob, carol, outsider, data):
    """Random seat stakes, score matrices, verdicts and missing reveals: the posted root, scores and dividends are
    the reference's, and every leaf is claimable."""
    snapshot = chain.snapshot()
    try:
        m = data.draw(st.integers(1, 4), label="members")
        pool = new_stakers(accounts, chain, fed, registry, admin, m, 4 * MIN_VALIDATOR)
        stakes = data.draw(st.lists(st.integers(MIN_VALIDATOR, 4 * MIN_VALIDATOR), min_size=m, max_size=m), label="stakes")
        n = data.draw(st.integers(1, 3), label="inputs")
        task_id, _, _ = committee_task(committees, cmanager, fed, owner, pool, stakes=stakes, maxContributors=n)
        inputs = sort_accounts([alice, bob, carol][:n])
        for i, who in enumerate(inputs):
            cmanager.submitUpdate(task_id, 0, digest(i + 1), 10, sender=who)
        d = Driver(chain, cmanager, committees, task_id)
        results = []
        for v in range(m):
            if v > 0 and data.draw(st.booleans(), label=f"offline {v}"):
                results.append(None)
                continue
            raw = data.draw(st.lists(st.integers(0, 100), min_size=n, max_size=n), label=f"scores {v}")
            total = sum(raw)
            scores = [0] * n if total == 0 else [x * S // total for x in raw]
            if total:
                scores[raw.index(max(raw))] += S - sum(scores)
            slash = data.draw(st.lists(st.booleans(), min_size=n, max_size=n), label=f"slash {v}")
            results.append(Result(MODEL_A, scores, slash=slash, salt=bytes([v + 1]) * 32))
        committed(d, pool, inputs, results)
        d.to_reveal()
        for member, r in zip(pool, results):
            if r is not None:
                d.reveal(member, r, inputs)
        d.to_finalize()
        out, tree = expected(pool, stakes, results, inputs, task_id, 0, REWARD)
        if out.model_digest is None:  # the revealers hold no stake majority
            with ape.reverts(committees.CommitteeManagerNoConsensus, taskId=task_id, round=0):
                committees.finalize(task_id, 0, sender=outsider)
            hypothesis_event("no consensus")
            return
        tx = committees.finalize(task_id, 0, sender=outsider)
        hypothesis_event(f"finalized, {sum(out.slashed)} slashed, {len(tree)} leaves")
        [log] = events(tx, committees.CommitteeFinalized)
        assert tuple(log.consensusScores) == out.consensus_scores and tuple(log.dividends) == out.dividends
        assert log.slashBitmap == bitmap(out.slashed)
        [fin] = events(tx, cmanager.RoundFinalized)
        assert (fin.rewardsRoot, fin.totalRewards) == (tree.root, sum(tree.entries.values()))
        assert [e.account for e in events(tx, cmanager.Slashed)] == [a.address for a, hit in zip(inputs, out.slashed) if hit]
        for acct in inputs + pool:
            if acct.address in tree.entries:
                cmanager.claim(task_id, 0, tree.amount(acct.address), tree.proof(acct.address), sender=acct)
    finally:
        chain.restore(snapshot)
