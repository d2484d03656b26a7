"""Stake locks behind submissions: each submission locks the task's slash amount in the registry until its round
settles (result, or past the aggregation deadline); consecutive rounds carry one lock; anyone releases a settled
lock; the attacks on it (unstake and withdraw before the slash, release before the slash, one stake backing two
tasks beyond its size, griefing someone else's release) fail."""

from __future__ import annotations

import ape
import pytest

from conftest import MIN_CONTRIBUTOR, SLASH, UNBONDING, create_task, digest, events
from test_task_manager import AGGREGATING, EXPIRED, OPEN, finalize, submit, to_aggregating, to_expired


def slash_own(manager, task_id, round_index, *accts):
    """Slash requests naming `accts` with their own digests, sorted as postResult wants them."""
    return sorted((a.address, manager.submissionOf(task_id, round_index, a)) for a in accts)


# ─── taking a lock ───
def test_submit_locks_the_slash_amount(manager, registry, task, alice):
    tx = manager.submitUpdate(task, 0, digest(1), 1, sender=alice)
    [log] = events(tx, registry.StakeLocked)
    assert (log.account, log.locker, log.amount, log.locked) == (alice.address, manager.address, SLASH, SLASH)
    assert registry.lockedStake(alice) == SLASH
    assert manager.lockedFor(task, 0, alice) == SLASH


def test_task_without_slash_locks_nothing(manager, registry, fed, owner, validator, alice, staked):
    task_id, _ = create_task(manager, fed, owner, validator, slashAmount=0)
    tx = manager.submitUpdate(task_id, 0, digest(1), 1, sender=alice)
    assert not events(tx, registry.StakeLocked)
    assert registry.lockedStake(alice) == 0 and manager.lockedFor(task_id, 0, alice) == 0


def test_one_stake_cannot_back_two_tasks_beyond_its_size(manager, registry, fed, owner, validator, bob, staked):
    # bob staked exactly the minimum; each task may slash all of it.
    first, _ = create_task(manager, fed, owner, validator, slashAmount=MIN_CONTRIBUTOR)
    second, _ = create_task(manager, fed, owner, validator, slashAmount=MIN_CONTRIBUTOR)
    manager.submitUpdate(first, 0, digest(1), 1, sender=bob)
    with ape.reverts(manager.TaskManagerStakeLocked, contributor=bob.address, active=MIN_CONTRIBUTOR,
                     locked=MIN_CONTRIBUTOR, needed=MIN_CONTRIBUTOR):
        manager.submitUpdate(second, 0, digest(2), 1, sender=bob)


def test_locks_across_tasks_add_up_to_the_stake(manager, registry, fed, owner, validator, bob, staked):
    half = MIN_CONTRIBUTOR // 2
    tasks = [create_task(manager, fed, owner, validator, slashAmount=half)[0] for _ in range(3)]
    manager.submitUpdate(tasks[0], 0, digest(1), 1, sender=bob)
    manager.submitUpdate(tasks[1], 0, digest(2), 1, sender=bob)
    assert registry.lockedStake(bob) == MIN_CONTRIBUTOR
    with ape.reverts(manager.TaskManagerStakeLocked, contributor=bob.address, needed=half):
        manager.submitUpdate(tasks[2], 0, digest(3), 1, sender=bob)


# ─── carrying a lock from round to round ───
def test_consecutive_round_carries_the_lock(manager, registry, task, alice, validator, chain):
    submit(manager, task, 0, alice)
    finalize(manager, chain, validator, task, 0, {alice: 5})
    tx = manager.submitUpdate(task, 1, digest(2), 1, sender=alice)
    assert not events(tx, registry.StakeLocked)  # no new lock: round 0's moves to round 1
    assert registry.lockedStake(alice) == SLASH
    assert (manager.lockedFor(task, 0, alice), manager.lockedFor(task, 1, alice)) == (0, SLASH)
    with ape.reverts(manager.TaskManagerNothingLocked, taskId=task, round=0, account=alice.address):
        manager.release(task, 0, alice, sender=alice)


def test_carried_lock_still_needs_unlocked_stake(manager, registry, fed, owner, validator, alice, staked, chain):
    # alice (200 staked) backs a task that may take her whole minimum, and 10 in a second task.
    big, _ = create_task(manager, fed, owner, validator, slashAmount=MIN_CONTRIBUTOR)
    small, _ = create_task(manager, fed, owner, validator)
    manager.submitUpdate(big, 0, digest(1), 1, sender=alice)
    manager.submitUpdate(small, 0, digest(2), 1, sender=alice)
    finalize(manager, chain, validator, small, 0, {})
    unstaked = 95 * 10**18
    registry.requestUnstake(unstaked, sender=alice)  # active 105 FED >= minimum 100, but 110 locked
    with ape.reverts(manager.TaskManagerStakeLocked, contributor=alice.address, active=2 * MIN_CONTRIBUTOR - unstaked,
                     locked=MIN_CONTRIBUTOR + SLASH, needed=0):
        manager.submitUpdate(small, 1, digest(3), 1, sender=alice)


def test_skipped_round_takes_a_fresh_lock(manager, registry, task, alice, bob, validator, chain):
    submit(manager, task, 0, alice)
    finalize(manager, chain, validator, task, 0, {})
    submit(manager, task, 1, bob)
    finalize(manager, chain, validator, task, 1, {})
    tx = manager.submitUpdate(task, 2, digest(3), 1, sender=alice)
    assert events(tx, registry.StakeLocked)[0].locked == 2 * SLASH
    assert (manager.lockedFor(task, 0, alice), manager.lockedFor(task, 2, alice)) == (SLASH, SLASH)


def test_released_lock_is_not_carried(manager, registry, task, alice, validator, chain):
    submit(manager, task, 0, alice)
    finalize(manager, chain, validator, task, 0, {})
    manager.release(task, 0, alice, sender=alice)
    tx = manager.submitUpdate(task, 1, digest(2), 1, sender=alice)
    assert events(tx, registry.StakeLocked)[0].locked == SLASH
    assert manager.lockedFor(task, 1, alice) == SLASH


# ─── releasing a lock ───
def test_release_after_result(manager, registry, task, alice, outsider, validator, chain):
    submit(manager, task, 0, alice)
    finalize(manager, chain, validator, task, 0, {alice: 5})
    tx = manager.release(task, 0, alice, sender=outsider)  # anyone may: it frees stake nobody can slash now
    [log] = events(tx, manager.LockReleased)
    assert (log.taskId, log.round, log.account, log.amount) == (task, 0, alice.address, SLASH)
    [unlocked] = events(tx, registry.StakeUnlocked)
    assert (unlocked.account, unlocked.locker, unlocked.amount, unlocked.locked) == (alice.address, manager.address, SLASH, 0)
    assert tx.return_value == SLASH
    assert registry.lockedStake(alice) == 0 and manager.lockedFor(task, 0, alice) == 0


def test_release_twice_reverts(manager, task, alice, validator, chain):
    submit(manager, task, 0, alice)
    finalize(manager, chain, validator, task, 0, {})
    manager.release(task, 0, alice, sender=alice)
    with ape.reverts(manager.TaskManagerNothingLocked, taskId=task, round=0, account=alice.address):
        manager.release(task, 0, alice, sender=alice)


@pytest.mark.parametrize("phase", [OPEN, AGGREGATING])
def test_release_before_the_round_settles_reverts(manager, task, alice, chain, phase):
    submit(manager, task, 0, alice)
    if phase == AGGREGATING:
        to_aggregating(chain, manager, task, 0)
    with ape.reverts(manager.TaskManagerRoundNotSettled, taskId=task, round=0, phase=phase):
        manager.release(task, 0, alice, sender=alice)


def test_release_after_the_aggregation_deadline_needs_no_expiry(manager, registry, task, alice, chain):
    submit(manager, task, 0, alice)
    to_expired(chain, manager, task, 0)  # no result can come any more; nobody called expireRound
    tx = manager.release(task, 0, alice, sender=alice)
    assert events(tx, manager.LockReleased)[0].amount == SLASH
    assert manager.getRound(task, 0).phase == EXPIRED


def test_release_without_submission_reverts(manager, task, alice, bob, validator, chain):
    submit(manager, task, 0, alice)
    finalize(manager, chain, validator, task, 0, {})
    with ape.reverts(manager.TaskManagerNothingLocked, taskId=task, round=0, account=bob.address):
        manager.release(task, 0, bob, sender=bob)


def test_release_in_task_without_slash_reverts(manager, fed, owner, validator, alice, staked, chain):
    task_id, _ = create_task(manager, fed, owner, validator, slashAmount=0)
    submit(manager, task_id, 0, alice)
    finalize(manager, chain, validator, task_id, 0, {})
    with ape.reverts(manager.TaskManagerNothingLocked, taskId=task_id, round=0, account=alice.address):
        manager.release(task_id, 0, alice, sender=alice)


def test_release_unknown_round_reverts(manager, task, alice):
    with ape.reverts(manager.TaskManagerRoundNotSettled, taskId=task, round=7, phase=0):
        manager.release(task, 7, alice, sender=alice)
    assert manager.lockedFor(task, 2**256 - 1, alice) == 0


def test_claim_and_release_share_the_settlement_record(manager, fed, task, alice, validator, chain):
    submit(manager, task, 0, alice)
    tree, _ = finalize(manager, chain, validator, task, 0, {alice: 7})
    manager.release(task, 0, alice, sender=alice)
    assert not manager.hasClaimed(task, 0, alice)
    manager.claim(task, 0, 7, tree.proof(alice.address), sender=alice)
    assert manager.hasClaimed(task, 0, alice) and manager.lockedFor(task, 0, alice) == 0


def test_release_after_claim(manager, registry, task, alice, validator, chain):
    submit(manager, task, 0, alice)
    tree, _ = finalize(manager, chain, validator, task, 0, {alice: 7})
    manager.claim(task, 0, 7, tree.proof(alice.address), sender=alice)
    manager.release(task, 0, alice, sender=alice)
    assert registry.lockedStake(alice) == 0


# ─── attacks ───
def test_unstake_and_withdraw_cannot_escape_the_slash(manager, registry, fed, owner, validator, bob, treasury, staked, chain):
    """submit, unstake everything, wait the unbonding period, withdraw (refused), slash (takes the locked amount)."""
    # The task may slash bob's whole stake; its round stays open past his unbonding period.
    task_id, _ = create_task(manager, fed, owner, validator, slashAmount=MIN_CONTRIBUTOR, submissionWindow=2 * UNBONDING)
    manager.submitUpdate(task_id, 0, digest(1), 1, sender=bob)
    registry.requestUnstake(MIN_CONTRIBUTOR, sender=bob)
    chain.pending_timestamp += UNBONDING
    with ape.reverts(registry.StakeRegistryStakeLocked, account=bob.address, locked=MIN_CONTRIBUTOR, stake=MIN_CONTRIBUTOR):
        registry.withdraw(sender=bob)
    before = fed.balanceOf(treasury)
    _, tx = finalize(manager, chain, validator, task_id, 0, {}, slash_own(manager, task_id, 0, bob))
    assert events(tx, manager.Slashed)[0].amount == MIN_CONTRIBUTOR
    assert fed.balanceOf(treasury) == before + MIN_CONTRIBUTOR
    assert registry.unbonding(bob)[0] == 0


def test_slash_after_unstake_request_takes_the_locked_amount(manager, registry, fed, owner, validator, bob, treasury, staked, chain):
    task_id, _ = create_task(manager, fed, owner, validator, slashAmount=MIN_CONTRIBUTOR)
    manager.submitUpdate(task_id, 0, digest(1), 1, sender=bob)
    registry.requestUnstake(MIN_CONTRIBUTOR, sender=bob)
    to_aggregating(chain, manager, task_id, 0)
    before = fed.balanceOf(treasury)
    _, tx = finalize(manager, chain, validator, task_id, 0, {}, slash_own(manager, task_id, 0, bob))
    assert events(tx, manager.Slashed)[0].amount == MIN_CONTRIBUTOR
    assert fed.balanceOf(treasury) == before + MIN_CONTRIBUTOR
    assert registry.unbonding(bob)[0] == 0
    # The slash took the tokens; releasing the settled lock clears the record.
    assert registry.lockedStake(bob) == MIN_CONTRIBUTOR
    manager.release(task_id, 0, bob, sender=bob)
    assert registry.stakeOf(bob) == (0, 0)


def test_withdrawal_keeps_the_locked_part_for_the_slash(manager, registry, fed, owner, validator, alice, treasury, staked, chain):
    # alice staked 200; a one-week submission window keeps the round open past her unbonding period.
    task_id, _ = create_task(manager, fed, owner, validator, submissionWindow=2 * UNBONDING)
    manager.submitUpdate(task_id, 0, digest(1), 1, sender=alice)
    registry.requestUnstake(2 * MIN_CONTRIBUTOR, sender=alice)
    chain.pending_timestamp += UNBONDING
    tx = registry.withdraw(sender=alice)
    assert events(tx, registry.Withdrawn)[0].amount == 2 * MIN_CONTRIBUTOR - SLASH
    assert registry.unbonding(alice)[0] == SLASH
    before = fed.balanceOf(treasury)
    _, tx = finalize(manager, chain, validator, task_id, 0, {}, slash_own(manager, task_id, 0, alice))
    assert events(tx, manager.Slashed)[0].amount == SLASH
    assert fed.balanceOf(treasury) == before + SLASH


def test_carried_lock_stays_slashable(manager, registry, task, alice, validator, chain):
    submit(manager, task, 0, alice)
    finalize(manager, chain, validator, task, 0, {})
    submit(manager, task, 1, alice)
    _, tx = finalize(manager, chain, validator, task, 1, {}, slash_own(manager, task, 1, alice))
    assert events(tx, manager.Slashed)[0].amount == SLASH
    manager.release(task, 1, alice, sender=alice)
    assert registry.lockedStake(alice) == 0


def test_outsider_cannot_release_an_unsettled_or_carried_lock(manager, registry, task, alice, outsider, validator, chain):
    submit(manager, task, 0, alice)
    with ape.reverts(manager.TaskManagerRoundNotSettled):
        manager.release(task, 0, alice, sender=outsider)
    finalize(manager, chain, validator, task, 0, {})
    submit(manager, task, 1, alice)  # round 0's lock now backs round 1
    with ape.reverts(manager.TaskManagerNothingLocked):
        manager.release(task, 0, alice, sender=outsider)
    assert registry.lockedStake(alice) == SLASH


def test_slashed_lock_released_once(manager, registry, task, alice, bob, validator, chain):
    # Two accounts locked; one is slashed. Releasing the slashed one's lock never touches the other's.
    submit(manager, task, 0, alice, bob)
    finalize(manager, chain, validator, task, 0, {}, slash_own(manager, task, 0, bob))
    manager.release(task, 0, bob, sender=bob)
    with ape.reverts(manager.TaskManagerNothingLocked):
        manager.release(task, 0, bob, sender=bob)
    assert (registry.lockedStake(alice), registry.lockedStake(bob)) == (SLASH, 0)


def test_release_while_paused(manager, registry, task, alice, admin, validator, chain):
    submit(manager, task, 0, alice)
    finalize(manager, chain, validator, task, 0, {})
    manager.pause(sender=admin)
    manager.release(task, 0, alice, sender=alice)
    assert registry.lockedStake(alice) == 0
