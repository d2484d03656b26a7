"""CommitteeManager seats and binding, and the TaskManager's committee hooks: setCommitteeManager, propose, join
(stake locks), leave, and a task naming the CommitteeManager binding its owner's complete committee."""

from __future__ import annotations

import ape
import pytest

from committee_helpers import A_WINDOW, C_WINDOW, R_WINDOW, SHARE_BPS, Driver, Result, S, committee_task, propose
from conftest import CLAIM_PERIOD, MIN_VALIDATOR, create_task, digest, events, task_params

ZERO_ADDRESS = "0x" + "00" * 20
WINDOWS = (A_WINDOW, C_WINDOW, R_WINDOW)


@pytest.fixture(scope="module", autouse=True)
def _deployed(committees, members, staked):
    """Deploy and fund before the first test (ape snapshots module fixtures once)."""


# ─── TaskManager: the committee manager ───
def test_set_committee_manager_once(project, registry, admin, outsider):
    tm = project.TaskManager.deploy(registry, CLAIM_PERIOD, admin, sender=admin)
    assert tm.committeeManager() == ZERO_ADDRESS
    with ape.reverts(tm.OwnableUnauthorizedAccount, account=outsider.address):
        tm.setCommitteeManager(outsider, sender=outsider)
    with ape.reverts(tm.TaskManagerZeroAddress, what="committeeManager"):
        tm.setCommitteeManager(ZERO_ADDRESS, sender=admin)
    tx = tm.setCommitteeManager(outsider, sender=admin)
    assert events(tx, tm.CommitteeManagerSet)[0].committeeManager == outsider.address
    assert tm.committeeManager() == outsider.address
    with ape.reverts(tm.TaskManagerCommitteeManagerAlreadySet, committeeManager=outsider.address):
        tm.setCommitteeManager(admin, sender=admin)


def test_constructor_rejects_zero_task_manager(project, admin):
    with ape.reverts(project.CommitteeManager.CommitteeManagerZeroAddress, what="taskManager"):
        project.CommitteeManager.deploy(ZERO_ADDRESS, sender=admin)


def test_views_after_deploy(committees, cmanager, registry):
    assert committees.taskManager() == cmanager.address
    assert committees.stakeRegistry() == registry.address
    assert committees.committeeCount() == 0
    assert (committees.MAX_MEMBERS(), committees.MAX_CONTRIBUTORS(), committees.MAX_MEMBER_SHARE_BPS()) == (16, 256, 5000)
    assert (committees.SCORE_SCALE(), committees.NON_REVEAL_SLASH_DIVISOR()) == (S, 10)


# ─── propose ───
def test_propose_records_the_pending_committee(committees, owner, members):
    committee_id, tx = propose(committees, owner, members)
    [log] = events(tx, committees.CommitteeProposed)
    assert (log.committeeId, log.owner, log.members) == (1, owner.address, [m.address for m in members])
    assert (log.minSeatStake, log.availabilityWindow, log.commitWindow, log.revealWindow, log.memberShareBps) == (
        MIN_VALIDATOR, *WINDOWS, SHARE_BPS)
    assert committees.pendingCommitteeOf(owner) == committee_id == committees.committeeCount()
    c = committees.getCommittee(committee_id)
    assert (c.owner, c.bound, c.minSeatStake, c.memberShareBps, c.totalStake) == (owner.address, False, MIN_VALIDATOR, SHARE_BPS, 0)
    assert c.members == [m.address for m in members] and c.stakes == [0, 0, 0] and c.joined == [False] * 3
    assert c.nonRevealSlash == MIN_VALIDATOR // 10


def test_a_new_proposal_replaces_the_pending_one(committees, owner, members):
    first, _ = propose(committees, owner, members)
    second, _ = propose(committees, owner, members[:2])
    assert committees.pendingCommitteeOf(owner) == second
    with ape.reverts(committees.CommitteeManagerNotPending, committeeId=first):
        committees.join(first, MIN_VALIDATOR, sender=members[0])


@pytest.mark.parametrize(
    ("change", "error", "args"),
    [
        ({"members": []}, "CommitteeManagerInvalidSize", {"size": 0, "maximum": 16}),
        ({"members": ["m"] * 17}, "CommitteeManagerInvalidSize", {"size": 17, "maximum": 16}),
        ({"members": ["m0", ZERO_ADDRESS]}, "CommitteeManagerInvalidMember", {"index": 1, "member": ZERO_ADDRESS}),
        ({"members": ["m0", "m1", "m0"]}, "CommitteeManagerInvalidMember", {"index": 2}),
        ({"seat": MIN_VALIDATOR - 1}, "CommitteeManagerInvalidSeatStake",
         {"minSeatStake": MIN_VALIDATOR - 1, "registryMinimum": MIN_VALIDATOR}),
        ({"seat": 2**96}, "CommitteeManagerInvalidSeatStake", {"minSeatStake": 2**96}),
        ({"share": 5001}, "CommitteeManagerInvalidShare", {"memberShareBps": 5001, "maximum": 5000}),
        ({"windows": (0, 1, 1)}, "CommitteeManagerInvalidWindows", {"availabilityWindow": 0}),
        ({"windows": (1, 0, 1)}, "CommitteeManagerInvalidWindows", {"commitWindow": 0}),
        ({"windows": (1, 1, 0)}, "CommitteeManagerInvalidWindows", {"revealWindow": 0}),
    ],
)
def test_propose_invalid_reverts(committees, owner, members, change, error, args):
    named = {"m0": members[0].address, "m1": members[1].address, "m": members[0].address}
    addresses = [named.get(a, a) for a in change.get("members", [m.address for m in members])]
    if "member" not in args and error == "CommitteeManagerInvalidMember":
        args = {**args, "member": members[0].address}
    with ape.reverts(getattr(committees, error), **args):
        committees.propose(addresses, change.get("seat", MIN_VALIDATOR), *change.get("windows", WINDOWS),
                           change.get("share", SHARE_BPS), sender=owner)


# ─── join and leave ───
def test_join_locks_the_seat_stake(committees, registry, owner, members):
    committee_id, _ = propose(committees, owner, members)
    tx = committees.join(committee_id, MIN_VALIDATOR + 5, sender=members[1])
    [log] = events(tx, committees.SeatJoined)
    assert (log.committeeId, log.member, log.stake, log.joined) == (committee_id, members[1].address, MIN_VALIDATOR + 5, 1)
    [locked] = events(tx, registry.StakeLocked)
    assert (locked.account, locked.locker, locked.amount) == (members[1].address, committees.address, MIN_VALIDATOR + 5)
    assert registry.lockedStake(members[1]) == MIN_VALIDATOR + 5
    c = committees.getCommittee(committee_id)
    assert c.stakes == [0, MIN_VALIDATOR + 5, 0] and c.joined == [False, True, False] and c.totalStake == MIN_VALIDATOR + 5


def test_join_reverts(committees, registry, owner, members, outsider):
    committee_id, _ = propose(committees, owner, members)
    with ape.reverts(committees.CommitteeManagerUnknownCommittee, committeeId=committee_id + 1):
        committees.join(committee_id + 1, MIN_VALIDATOR, sender=members[0])
    with ape.reverts(committees.CommitteeManagerUnknownCommittee, committeeId=0):
        committees.join(0, MIN_VALIDATOR, sender=members[0])
    with ape.reverts(committees.CommitteeManagerNotProposed, committeeId=committee_id, account=outsider.address):
        committees.join(committee_id, MIN_VALIDATOR, sender=outsider)
    with ape.reverts(committees.CommitteeManagerInvalidStake, committeeId=committee_id, stake=MIN_VALIDATOR - 1,
                     minSeatStake=MIN_VALIDATOR):
        committees.join(committee_id, MIN_VALIDATOR - 1, sender=members[0])
    with ape.reverts(committees.CommitteeManagerInvalidStake, stake=2**96):
        committees.join(committee_id, 2**96, sender=members[0])
    # a seat the member's unlocked stake cannot cover: the registry refuses the lock
    with ape.reverts(registry.StakeRegistryLockExceedsStake, account=members[0].address):
        committees.join(committee_id, 2 * MIN_VALIDATOR + 1, sender=members[0])
    committees.join(committee_id, MIN_VALIDATOR, sender=members[0])
    with ape.reverts(committees.CommitteeManagerAlreadyJoined, committeeId=committee_id, member=members[0].address):
        committees.join(committee_id, MIN_VALIDATOR, sender=members[0])


def test_leave_before_binding_unlocks_and_allows_joining_again(committees, registry, owner, members):
    committee_id, _ = propose(committees, owner, members)
    committees.join(committee_id, MIN_VALIDATOR, sender=members[0])
    tx = committees.leave(committee_id, sender=members[0])
    [log] = events(tx, committees.SeatLeft)
    assert (log.committeeId, log.member, log.stake) == (committee_id, members[0].address, MIN_VALIDATOR)
    assert events(tx, registry.StakeUnlocked)[0].amount == MIN_VALIDATOR
    assert registry.lockedStake(members[0]) == 0
    c = committees.getCommittee(committee_id)
    assert c.totalStake == 0 and c.stakes[0] == 0 and not c.joined[0]
    with ape.reverts(committees.CommitteeManagerNotJoined, committeeId=committee_id, member=members[0].address):
        committees.leave(committee_id, sender=members[0])
    committees.join(committee_id, MIN_VALIDATOR + 1, sender=members[0])
    assert committees.getCommittee(committee_id).totalStake == MIN_VALIDATOR + 1


def test_seats_stay_locked_until_the_task_ends(chain, committees, cmanager, registry, fed, owner, members):
    task_id, committee_id, _ = committee_task(committees, cmanager, fed, owner, members, numRounds=1)
    with ape.reverts(committees.CommitteeManagerTaskRunning, committeeId=committee_id, taskId=task_id):
        committees.leave(committee_id, sender=members[0])
    with ape.reverts(committees.CommitteeManagerNotPending, committeeId=committee_id):
        committees.join(committee_id, MIN_VALIDATOR, sender=members[0])
    Driver(chain, cmanager, committees, task_id).to_expired()
    cmanager.expireRound(task_id, 0, sender=owner)  # the only round: the task ends
    tx = committees.leave(committee_id, sender=members[0])
    assert events(tx, committees.SeatLeft)[0].stake == MIN_VALIDATOR
    assert registry.lockedStake(members[0]) == 0
    c = committees.getCommittee(committee_id)
    assert c.stakes[0] == MIN_VALIDATOR and not c.joined[0] and c.totalStake == 3 * MIN_VALIDATOR  # history kept


# ─── binding through createTask ───
def test_create_task_binds_the_complete_committee(committees, cmanager, fed, owner, members, registry):
    task_id, committee_id, tx = committee_task(committees, cmanager, fed, owner, members)
    [bound] = events(tx, committees.CommitteeBound)
    assert (bound.committeeId, bound.taskId) == (committee_id, task_id)
    assert committees.committeeOfTask(task_id) == committee_id
    assert committees.pendingCommitteeOf(owner) == 0
    c = committees.getCommittee(committee_id)
    assert c.bound and c.taskId == task_id and c.totalStake == 3 * MIN_VALIDATOR
    assert cmanager.getTask(task_id).validator == committees.address
    assert registry.activeStake(committees) == 0  # the committee manager itself holds no validator stake


def test_create_task_without_a_pending_committee_reverts(committees, cmanager, fed, owner):
    params = task_params(fed, committees)
    fed.approve(cmanager, 3 * params[4], sender=owner)
    with ape.reverts(committees.CommitteeManagerNoPendingCommittee, owner=owner.address):
        cmanager.createTask(params, sender=owner)


def test_create_task_with_an_incomplete_committee_reverts(committees, cmanager, fed, owner, members):
    committee_id, _ = propose(committees, owner, members)
    committees.join(committee_id, MIN_VALIDATOR, sender=members[0])
    params = task_params(fed, committees)
    fed.approve(cmanager, 3 * params[4], sender=owner)
    with ape.reverts(committees.CommitteeManagerCommitteeIncomplete, committeeId=committee_id, joined=1, size=3):
        cmanager.createTask(params, sender=owner)


@pytest.mark.parametrize(
    ("overrides", "error", "args"),
    [
        ({"maxContributors": 257}, "CommitteeManagerTooManyContributors", {"maxContributors": 257, "maximum": 256}),
        ({"aggregationWindow": sum(WINDOWS)}, "CommitteeManagerWindowsTooLong",
         {"phases": sum(WINDOWS), "aggregationWindow": sum(WINDOWS)}),
    ],
)
def test_create_task_with_unfit_parameters_reverts(committees, cmanager, fed, owner, members, overrides, error, args):
    committee_id, _ = propose(committees, owner, members)
    for m in members:
        committees.join(committee_id, MIN_VALIDATOR, sender=m)
    params = task_params(fed, committees, **overrides)
    fed.approve(cmanager, 3 * params[4], sender=owner)
    with ape.reverts(getattr(committees, error), **args):
        cmanager.createTask(params, sender=owner)


def test_only_the_task_manager_binds(committees, fed, owner, members):
    with ape.reverts(committees.CommitteeManagerNotTaskManager, caller=owner.address):
        committees.onTaskCreated(0, owner, task_params(fed, committees), sender=owner)


def test_the_committee_manager_is_the_only_poster_of_a_committee_task(chain, committees, cmanager, fed, owner, members, alice, staked):
    task_id, _, _ = committee_task(committees, cmanager, fed, owner, members)
    cmanager.submitUpdate(task_id, 0, digest(1), 1, sender=alice)
    Driver(chain, cmanager, committees, task_id).to_finalize()
    with ape.reverts(cmanager.TaskManagerNotValidator, caller=members[0].address, validator=committees.address):
        cmanager.postResult(task_id, 0, b"\x01" * 32, b"\x02" * 32, b"\x00" * 32, 0, [], sender=members[0])


def test_ordinary_tasks_keep_their_validator_stake_check(committees, cmanager, fed, owner, outsider, staked):
    with ape.reverts(cmanager.TaskManagerValidatorStakeTooLow, validator=outsider.address, staked=0, required=MIN_VALIDATOR):
        create_task(cmanager, fed, owner, outsider)

