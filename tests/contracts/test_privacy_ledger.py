"""PrivacyLedger: private tasks' caps, cumulative spends per (task, contributor), and the submit function per kind."""

from __future__ import annotations

import ape
import pytest

from conftest import create_task, digest, events, task_params

CAP = 3_000_000  # 3.0 epsilon in micro-epsilon


def create_private_task(manager, token, owner, validator, cap=CAP, **overrides):
    params = task_params(token, validator, **overrides)
    token.approve(manager, params[3] * params[4], sender=owner)
    tx = manager.createPrivateTask(params, cap, sender=owner)
    return manager.taskCount() - 1, tx


@pytest.fixture
def private_task(manager, fed, owner, validator, staked):
    task_id, _ = create_private_task(manager, fed, owner, validator)
    return task_id


def finish_round(chain, manager, validator, task_id, round_index):
    chain.pending_timestamp = max(chain.pending_timestamp, manager.getRound(task_id, round_index).submissionDeadline)
    manager.postResult(task_id, round_index, b"\x01" * 32, b"\x02" * 32, b"\x00" * 32, 0, [], sender=validator)


def test_private_task_records_its_cap(manager, fed, owner, validator, staked):
    task_id, tx = create_private_task(manager, fed, owner, validator)
    assert manager.privacyCapOf(task_id) == CAP
    [ev] = events(tx, manager.PrivacyCapSet)
    assert (ev.taskId, ev.epsilonCap) == (task_id, CAP)
    plain, _ = create_task(manager, fed, owner, validator)
    assert manager.privacyCapOf(plain) == 0


def test_zero_cap_refused(manager, fed, owner, validator, staked):
    with ape.reverts(manager.TaskManagerZeroPrivacyCap):
        create_private_task(manager, fed, owner, validator, cap=0)


def test_spends_are_recorded_and_emitted(chain, manager, validator, alice, bob, private_task):
    tx = manager.submitPrivateUpdate(private_task, 0, digest(1), 10, 1_250_000, sender=alice)
    [ev] = events(tx, manager.PrivacySpent)
    assert (ev.taskId, ev.round, ev.contributor, ev.epsilon) == (private_task, 0, alice.address, 1_250_000)
    assert len(events(tx, manager.UpdateSubmitted)) == 1
    assert manager.privacySpentOf(private_task, alice) == 1_250_000
    assert manager.privacySpentOf(private_task, bob) == 0
    finish_round(chain, manager, validator, private_task, 0)
    manager.submitPrivateUpdate(private_task, 1, digest(2), 10, 2_000_000, sender=alice)
    assert manager.privacySpentOf(private_task, alice) == 2_000_000
    finish_round(chain, manager, validator, private_task, 1)
    manager.submitPrivateUpdate(private_task, 2, digest(3), 10, CAP, sender=alice)  # exactly the cap is allowed
    assert manager.privacySpentOf(private_task, alice) == CAP


def test_spend_above_cap_refused(manager, alice, private_task):
    with ape.reverts(manager.TaskManagerPrivacyCapExceeded, taskId=private_task, contributor=alice.address,
                     epsilon=CAP + 1, cap=CAP):
        manager.submitPrivateUpdate(private_task, 0, digest(1), 10, CAP + 1, sender=alice)
    assert manager.submissionOf(private_task, 0, alice) == b"\x00" * 32


def test_decreasing_spend_refused(chain, manager, validator, alice, private_task):
    manager.submitPrivateUpdate(private_task, 0, digest(1), 10, 2_000_000, sender=alice)
    finish_round(chain, manager, validator, private_task, 0)
    with ape.reverts(manager.TaskManagerPrivacySpendDecreased, taskId=private_task, contributor=alice.address,
                     epsilon=1_999_999, recorded=2_000_000):
        manager.submitPrivateUpdate(private_task, 1, digest(2), 10, 1_999_999, sender=alice)
    manager.submitPrivateUpdate(private_task, 1, digest(2), 10, 2_000_000, sender=alice)  # unchanged is not a decrease


def test_failed_submission_leaves_the_ledger(manager, alice, private_task):
    manager.submitPrivateUpdate(private_task, 0, digest(1), 10, 1_000_000, sender=alice)
    with ape.reverts(manager.TaskManagerAlreadySubmitted):  # _submit's own checks undo the ledger's write
        manager.submitPrivateUpdate(private_task, 0, digest(2), 10, 2_000_000, sender=alice)
    assert manager.privacySpentOf(private_task, alice) == 1_000_000


def test_wrong_function_for_the_task_kind(manager, fed, owner, validator, alice, private_task):
    with ape.reverts(manager.TaskManagerPrivateTask, taskId=private_task):
        manager.submitUpdate(private_task, 0, digest(1), 10, sender=alice)
    plain, _ = create_task(manager, fed, owner, validator)
    with ape.reverts(manager.TaskManagerNotPrivateTask, taskId=plain):
        manager.submitPrivateUpdate(plain, 0, digest(1), 10, 1, sender=alice)
    manager.submitUpdate(plain, 0, digest(1), 10, sender=alice)


def test_spends_are_per_task(manager, fed, owner, validator, alice, private_task):
    other, _ = create_private_task(manager, fed, owner, validator, cap=8_000_000)
    manager.submitPrivateUpdate(private_task, 0, digest(1), 10, 2_500_000, sender=alice)
    manager.submitPrivateUpdate(other, 0, digest(2), 10, 100, sender=alice)  # a new task starts from zero
    assert (manager.privacySpentOf(private_task, alice), manager.privacySpentOf(other, alice)) == (2_500_000, 100)


def test_added_gas_per_private_submission(chain, manager, fed, owner, validator, alice, bob, private_task):
    """The ledger's cost beside a plain submission of the same kind (first and later rounds, lock carried)."""
    plain, _ = create_task(manager, fed, owner, validator)
    first_plain = manager.submitUpdate(plain, 0, digest(1), 10, sender=bob).gas_used
    first_private = manager.submitPrivateUpdate(private_task, 0, digest(1), 10, 1_000_000, sender=alice).gas_used
    finish_round(chain, manager, validator, plain, 0)
    finish_round(chain, manager, validator, private_task, 0)
    later_plain = manager.submitUpdate(plain, 1, digest(2), 10, sender=bob).gas_used
    later_private = manager.submitPrivateUpdate(private_task, 1, digest(2), 10, 2_000_000, sender=alice).gas_used
    print(f"\nprivate submission gas: first {first_private} (plain {first_plain}, +{first_private - first_plain}); "
          f"later {later_private} (plain {later_plain}, +{later_private - later_plain})")
    assert later_private - later_plain < 10_000  # a rewritten ledger slot and the event
    assert first_private - first_plain < 30_000  # the contributor's fresh ledger slot for the task (20k of it)


def test_a_pause_does_not_stop_private_submissions(manager, admin, alice, private_task):
    """As submitUpdate: a pause stops new tasks only, so that it cannot run rounds out empty."""
    manager.pause(sender=admin)
    manager.submitPrivateUpdate(private_task, 0, digest(1), 10, 1, sender=alice)
    assert manager.privacySpentOf(private_task, alice) == 1


def test_a_cap_above_what_a_task_stores_is_refused(manager, owner, fed, validator):
    with ape.reverts(manager.TaskManagerPrivacyCapTooLarge):
        manager.createPrivateTask(task_params(fed, validator), 2**32, sender=owner)


def test_other_submit_functions_refuse_a_private_task(manager, alice, private_task):
    """Only the ledger's submit function may submit to a private task: the others would skip the spend."""
    with ape.reverts(manager.TaskManagerPrivateTask):
        manager.submitUpdateWithPseudoLabels(private_task, 0, digest(3), 15, b"\x01" * 32, 15 << 96,
                                             b"\x00" * 40, sender=alice)
    with ape.reverts(manager.TaskManagerPrivateTask):
        manager.submitUpdateDisplacing(private_task, 0, digest(4), 10, alice, sender=alice)
