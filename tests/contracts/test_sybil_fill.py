"""A sybil fill: minimally staked accounts submit first and take every slot of a round. With `minOpen` a full round
is not closed by count alone: it stays open for minOpen seconds, and meanwhile a contributor with more active stake
takes the slot of one with less (submitUpdateDisplacing). Without minOpen (0) a full round closes at once."""

from __future__ import annotations

import ape
import pytest

from conftest import MIN_CONTRIBUTOR, SLASH, SUBMISSION_WINDOW, create_task, digest, events
from test_task_manager import AGGREGATING, OPEN, finalize

MIN_OPEN = 600


@pytest.fixture
def sybils(fed, registry, outsider, bob, carol, staked):
    """Three accounts holding exactly the contributor minimum (bob and carol are staked so already)."""
    fed.approve(registry, MIN_CONTRIBUTOR, sender=outsider)
    registry.stake(MIN_CONTRIBUTOR, sender=outsider)
    return [bob, carol, outsider]


@pytest.fixture
def guarded(manager, fed, owner, validator, staked):
    task_id, _ = create_task(manager, fed, owner, validator, minOpen=MIN_OPEN, numRounds=2)
    return task_id


def fill(manager, task_id, round_index, accounts):
    for i, account in enumerate(accounts):
        manager.submitUpdate(task_id, round_index, digest(100 + i), 1, sender=account)


def test_min_open_above_the_submission_window_is_refused(manager, fed, owner, validator, staked):
    with ape.reverts(manager.TaskManagerInvalidMinOpen):
        create_task(manager, fed, owner, validator, minOpen=SUBMISSION_WINDOW + 1)


def test_without_min_open_a_sybil_fill_closes_the_round_on_everyone(manager, task, sybils, alice):
    fill(manager, task, 0, sybils)
    assert manager.getRound(task, 0).phase == AGGREGATING
    with ape.reverts(manager.TaskManagerRoundNotOpen):
        manager.submitUpdate(task, 0, digest(1), 1, sender=alice)


def test_a_full_round_stays_open_and_more_stake_displaces_the_least(manager, registry, guarded, sybils, alice):
    fill(manager, guarded, 0, sybils)
    assert manager.getRound(guarded, 0).phase == OPEN and manager.getRound(guarded, 0).submissions == 3
    with ape.reverts(manager.TaskManagerRoundFull):
        manager.submitUpdate(guarded, 0, digest(1), 1, sender=alice)

    victim = sybils[0]
    tx = manager.submitUpdateDisplacing(guarded, 0, digest(1), 1, victim, sender=alice)  # alice: 2x the minimum
    [displaced] = events(tx, manager.UpdateDisplaced)
    assert (displaced.displaced, displaced.by, displaced.digest) == (victim.address, alice.address, digest(100))
    [unlocked] = events(tx, registry.StakeUnlocked)
    assert (unlocked.account, unlocked.amount) == (victim.address, SLASH)
    assert registry.lockedStake(victim) == 0 and manager.submissionOf(guarded, 0, victim) == b"\x00" * 32
    assert manager.submissionOf(guarded, 0, alice) == digest(1) and registry.lockedStake(alice) == SLASH
    assert manager.getRound(guarded, 0).submissions == 3 and manager.getRound(guarded, 0).phase == OPEN


def test_displacing_needs_strictly_more_stake_a_submitter_and_a_full_round(manager, guarded, sybils, alice):
    manager.submitUpdate(guarded, 0, digest(1), 1, sender=sybils[0])
    with ape.reverts(manager.TaskManagerRoundNotFull):
        manager.submitUpdateDisplacing(guarded, 0, digest(2), 1, sybils[0], sender=alice)
    fill(manager, guarded, 0, sybils[1:])
    manager.submitUpdateDisplacing(guarded, 0, digest(2), 1, sybils[0], sender=alice)
    # equal stake never displaces (the sybils hold the same minimum)
    with ape.reverts(manager.TaskManagerStakeNotHigher):
        manager.submitUpdateDisplacing(guarded, 0, digest(3), 1, sybils[1], sender=sybils[0])
    with ape.reverts(manager.TaskManagerNoSubmission):
        manager.submitUpdateDisplacing(guarded, 0, digest(3), 1, sybils[0], sender=alice)


def test_a_full_round_closes_after_min_open_by_anyone(manager, chain, guarded, sybils, outsider):
    fill(manager, guarded, 0, sybils)
    with ape.reverts(manager.TaskManagerTooEarlyToClose):
        manager.closeFullRound(guarded, 0, sender=outsider)
    chain.pending_timestamp = manager.getRound(guarded, 0).openedAt + MIN_OPEN
    tx = manager.closeFullRound(guarded, 0, sender=outsider)
    [closed] = events(tx, manager.SubmissionsClosed)
    assert closed.round == 0 and manager.getRound(guarded, 0).phase == AGGREGATING


def test_a_submission_filling_the_round_after_min_open_closes_it(manager, chain, guarded, sybils):
    fill(manager, guarded, 0, sybils[:2])
    chain.pending_timestamp = manager.getRound(guarded, 0).openedAt + MIN_OPEN
    tx = manager.submitUpdate(guarded, 0, digest(9), 1, sender=sybils[2])
    assert events(tx, manager.SubmissionsClosed) and manager.getRound(guarded, 0).phase == AGGREGATING


def test_closing_a_round_that_is_not_full_is_refused(manager, guarded, sybils, outsider):
    fill(manager, guarded, 0, sybils[:1])
    with ape.reverts(manager.TaskManagerRoundNotFull):
        manager.closeFullRound(guarded, 0, sender=outsider)


def test_a_displaced_lock_carried_from_the_previous_round_goes_back_to_that_round(
    manager, registry, chain, validator, guarded, sybils, alice
):
    victim = sybils[0]
    manager.submitUpdate(guarded, 0, digest(7), 1, sender=victim)
    finalize(manager, chain, validator, guarded, 0, {})
    fill(manager, guarded, 1, sybils)  # the victim carries its round-0 lock into round 1
    assert manager.lockedFor(guarded, 0, victim) == 0 and manager.lockedFor(guarded, 1, victim) == SLASH
    tx = manager.submitUpdateDisplacing(guarded, 1, digest(8), 1, victim, sender=alice)
    assert not [e for e in events(tx, registry.StakeUnlocked) if e.account == victim.address]
    assert manager.lockedFor(guarded, 0, victim) == SLASH and registry.lockedStake(victim) == SLASH
    manager.release(guarded, 0, victim, sender=alice)  # round 0 settled: its lock is released as any other
    assert registry.lockedStake(victim) == 0
