"""TaskManager: tasks, the round state machine, submissions, results, claims, slashing, liveness, refunds, pause."""

from __future__ import annotations

import ape
import pytest

from conftest import (
    AGGREGATION_WINDOW,
    CLAIM_PERIOD,
    MIN_CONTRIBUTOR,
    MIN_VALIDATOR,
    MODEL0,
    REWARD,
    SLASH,
    SPEC,
    SUBMISSION_WINDOW,
    create_task,
    digest,
    events,
    task_params,
)
from rewards_tree import RewardsTree

PENDING, OPEN, AGGREGATING, FINALIZED, EXPIRED = range(5)
ZERO32 = b"\x00" * 32
ZERO_ADDRESS = "0x" + "00" * 20
MODEL1 = b"\x01" * 32
REPORT = b"\x02" * 32


# ─── helpers ───
def submit(manager, task_id, round_index, *accts):
    return [manager.submitUpdate(task_id, round_index, digest(i + 1 + 100 * round_index), 10 + i, sender=a) for i, a in enumerate(accts)]


def to_aggregating(chain, manager, task_id, round_index):
    chain.pending_timestamp = max(chain.pending_timestamp, manager.getRound(task_id, round_index).submissionDeadline)


def to_expired(chain, manager, task_id, round_index):
    chain.pending_timestamp = max(chain.pending_timestamp, manager.getRound(task_id, round_index).aggregationDeadline)


def finalize(manager, chain, validator, task_id, round_index, entries, slashes=()):
    """Move the round to Aggregating if needed and post a result paying `entries`; returns (tree, receipt)."""
    if manager.getRound(task_id, round_index).phase == OPEN:
        to_aggregating(chain, manager, task_id, round_index)
    tree = RewardsTree(task_id, round_index, {a.address: v for a, v in entries.items()}) if entries else None
    root, total = (tree.root, tree.total) if tree else (ZERO32, 0)
    tx = manager.postResult(task_id, round_index, MODEL1, REPORT, root, total, list(slashes), sender=validator)
    return tree, tx


def one_round_task(manager, fed, owner, validator, **kw):
    task_id, _ = create_task(manager, fed, owner, validator, numRounds=1, **kw)
    return task_id


# ─── construction and views ───
def test_constructor_rejects_zero_registry(project, admin):
    with ape.reverts(project.TaskManager.TaskManagerZeroAddress, what="registry"):
        project.TaskManager.deploy(ZERO_ADDRESS, CLAIM_PERIOD, admin, sender=admin)


def test_views_after_deploy(manager, registry, admin):
    assert manager.stakeRegistry() == registry.address
    assert manager.claimPeriod() == CLAIM_PERIOD
    assert manager.taskCount() == 0
    assert manager.owner() == admin.address


MAX_PERIOD = 4 * 365 * 24 * 3600


def test_claim_period_above_maximum_reverts(project, registry, admin):
    for period in (MAX_PERIOD + 1, 2**64 - 1):
        with ape.reverts(project.TaskManager.TaskManagerClaimPeriodTooLong, claimPeriod=period, maximum=MAX_PERIOD):
            project.TaskManager.deploy(registry, period, admin, sender=admin)


def test_claim_period_at_maximum_keeps_claims_and_refunds_working(project, registry, fed, admin, owner, validator, alice, staked, chain):
    tm = project.TaskManager.deploy(registry, MAX_PERIOD, admin, sender=admin)
    registry.grantRole(registry.SLASHER_ROLE(), tm, sender=admin)
    assert tm.MAX_CLAIM_PERIOD() == MAX_PERIOD
    task_id = one_round_task(tm, fed, owner, validator)
    submit(tm, task_id, 0, alice)
    tree, _ = finalize(tm, chain, validator, task_id, 0, {alice: 7})
    assert tm.claimDeadline(task_id) == tm.getTask(task_id).endedAt + MAX_PERIOD
    chain.pending_timestamp = tm.claimDeadline(task_id)
    tm.claim(task_id, 0, 7, tree.proof(alice.address), sender=alice)
    chain.pending_timestamp += 1
    chain.mine()
    assert tm.refundable(task_id) == REWARD - 7
    tm.withdrawRefund(task_id, sender=owner)


def test_get_task_unknown_reverts(manager):
    with ape.reverts(manager.TaskManagerUnknownTask, taskId=5):
        manager.getTask(5)


# ─── createTask ───
def test_create_task_funds_and_opens_round_zero(manager, fed, owner, validator, staked, chain):
    before = fed.balanceOf(owner)
    task_id, tx = create_task(manager, fed, owner, validator)
    now = chain.blocks.head.timestamp
    assert task_id == 0 and manager.taskCount() == 1
    assert fed.balanceOf(manager) == 3 * REWARD
    assert fed.balanceOf(owner) == before - 3 * REWARD
    [created] = events(tx, manager.TaskCreated)
    assert (created.taskId, created.owner, created.rewardToken, created.budget) == (0, owner.address, fed.address, 3 * REWARD)
    assert (created.specDigest, created.initialModelDigest) == (SPEC, MODEL0)
    [opened] = events(tx, manager.RoundOpened)
    assert (opened.taskId, opened.round) == (0, 0)
    assert opened.submissionDeadline == now + SUBMISSION_WINDOW
    assert opened.aggregationDeadline == now + SUBMISSION_WINDOW + AGGREGATION_WINDOW
    t = manager.getTask(0)
    assert (t.owner, t.rewardToken, t.validator) == (owner.address, fed.address, validator.address)
    assert (t.numRounds, t.currentRound, t.maxContributors) == (3, 0, 3)
    assert (t.submissionWindow, t.aggregationWindow) == (SUBMISSION_WINDOW, AGGREGATION_WINDOW)
    assert (t.rewardPerRound, t.minContributorStake, t.slashAmount) == (REWARD, MIN_CONTRIBUTOR, SLASH)
    assert (t.funded, t.paidOut, t.refunded, t.carry) == (3 * REWARD, 0, 0, 0)
    assert (t.cancelled, t.ended, t.endedAt) == (False, False, 0)
    r = manager.getRound(0, 0)
    assert (r.phase, r.openedAt, r.submissions) == (OPEN, now, 0)
    assert manager.getRound(0, 1).phase == PENDING


def test_create_task_with_other_erc20(project, manager, owner, validator, staked, admin):
    token = project.MockERC20.deploy("Other", "OTH", sender=admin)
    token.mint(owner, 10 * REWARD, sender=admin)
    task_id, tx = create_task(manager, token, owner, validator)
    assert token.balanceOf(manager) == 3 * REWARD
    assert manager.getTask(task_id).rewardToken == token.address


@pytest.mark.parametrize(
    "overrides, error, args",
    [
        ({"rewardToken": ZERO_ADDRESS}, "TaskManagerZeroAddress", {"what": "rewardToken"}),
        ({"validator": ZERO_ADDRESS}, "TaskManagerZeroAddress", {"what": "validator"}),
        ({"numRounds": 0}, "TaskManagerInvalidRounds", {"numRounds": 0}),
        ({"rewardPerRound": 0}, "TaskManagerInvalidReward", {"rewardPerRound": 0, "numRounds": 3}),
        ({"rewardPerRound": 2**119}, "TaskManagerInvalidReward", {"rewardPerRound": 2**119, "numRounds": 3}),
        ({"numRounds": 2**24}, "TaskManagerInvalidRounds", {"numRounds": 2**24}),
        ({"submissionWindow": 0}, "TaskManagerInvalidWindows", {"submissionWindow": 0, "aggregationWindow": AGGREGATION_WINDOW}),
        ({"aggregationWindow": 2**32}, "TaskManagerInvalidWindows", {"submissionWindow": SUBMISSION_WINDOW, "aggregationWindow": 2**32}),
        ({"maxContributors": 0}, "TaskManagerInvalidMaxContributors", {"maxContributors": 0}),
        ({"minContributorStake": MIN_CONTRIBUTOR - 1}, "TaskManagerContributorStakeTooLow",
         {"minContributorStake": MIN_CONTRIBUTOR - 1, "registryMinimum": MIN_CONTRIBUTOR}),
        ({"slashAmount": MIN_CONTRIBUTOR + 1}, "TaskManagerSlashTooHigh",
         {"slashAmount": MIN_CONTRIBUTOR + 1, "minContributorStake": MIN_CONTRIBUTOR}),
    ],
)
def test_create_task_invalid_params_revert(manager, fed, owner, validator, staked, overrides, error, args):
    params = task_params(fed, validator, **overrides)
    with ape.reverts(getattr(manager, error), **args):
        manager.createTask(params, sender=owner)


def test_create_task_validator_without_stake_reverts(manager, fed, owner, outsider, staked):
    params = task_params(fed, outsider)
    with ape.reverts(manager.TaskManagerValidatorStakeTooLow, validator=outsider.address, staked=0, required=MIN_VALIDATOR):
        manager.createTask(params, sender=owner)


def test_create_task_fee_on_transfer_token_reverts(project, manager, owner, validator, staked, admin):
    token = project.MockFeeToken.deploy(100, sender=admin)  # 1 %
    token.mint(owner, 10 * REWARD, sender=admin)
    token.approve(manager, 3 * REWARD, sender=owner)
    with ape.reverts(manager.TaskManagerFeeOnTransfer, token=token.address, expected=3 * REWARD, received=3 * REWARD * 99 // 100):
        manager.createTask(task_params(token, validator), sender=owner)


# ─── submitUpdate ───
def test_submit_update_records_digest(manager, task, alice):
    tx = manager.submitUpdate(task, 0, digest(7), 123, sender=alice)
    [log] = events(tx, manager.UpdateSubmitted)
    assert (log.taskId, log.round, log.contributor, log.digest, log.numSamples) == (task, 0, alice.address, digest(7), 123)
    assert manager.submissionOf(task, 0, alice) == digest(7)
    assert manager.getRound(task, 0).submissions == 1
    assert manager.getRound(task, 0).phase == OPEN


def test_max_contributors_closes_submissions_early(manager, task, alice, bob, carol, chain):
    submit(manager, task, 0, alice, bob)
    tx = manager.submitUpdate(task, 0, digest(9), 1, sender=carol)
    now = chain.blocks.head.timestamp
    [log] = events(tx, manager.SubmissionsClosed)
    assert (log.taskId, log.round, log.closedAt, log.aggregationDeadline) == (task, 0, now, now + AGGREGATION_WINDOW)
    r = manager.getRound(task, 0)
    assert (r.phase, r.submissions, r.submissionDeadline, r.aggregationDeadline) == (AGGREGATING, 3, now, now + AGGREGATION_WINDOW)


def test_submit_when_full_reverts(manager, task, alice, bob, carol, validator, fed, registry):
    submit(manager, task, 0, alice, bob, carol)
    with ape.reverts(manager.TaskManagerRoundNotOpen, taskId=task, round=0, phase=AGGREGATING):
        manager.submitUpdate(task, 0, digest(1), 1, sender=validator)


def test_submit_late_reverts(manager, task, alice, chain):
    to_aggregating(chain, manager, task, 0)
    with ape.reverts(manager.TaskManagerRoundNotOpen, taskId=task, round=0, phase=AGGREGATING):
        manager.submitUpdate(task, 0, digest(1), 1, sender=alice)


def test_submit_just_before_deadline_succeeds(manager, task, alice, chain):
    chain.pending_timestamp = manager.getRound(task, 0).submissionDeadline - 1
    manager.submitUpdate(task, 0, digest(1), 1, sender=alice)
    assert manager.submissionOf(task, 0, alice) == digest(1)


def test_submit_to_pending_round_reverts(manager, task, alice):
    with ape.reverts(manager.TaskManagerRoundNotOpen, taskId=task, round=1, phase=PENDING):
        manager.submitUpdate(task, 1, digest(1), 1, sender=alice)


def test_submit_to_unknown_task_reverts(manager, alice, staked):
    with ape.reverts(manager.TaskManagerRoundNotOpen, taskId=9, round=0, phase=PENDING):
        manager.submitUpdate(9, 0, digest(1), 1, sender=alice)


def test_submit_twice_reverts(manager, task, alice):
    manager.submitUpdate(task, 0, digest(1), 1, sender=alice)
    with ape.reverts(manager.TaskManagerAlreadySubmitted, taskId=task, round=0, contributor=alice.address):
        manager.submitUpdate(task, 0, digest(2), 1, sender=alice)


def test_submit_zero_digest_reverts(manager, task, alice):
    with ape.reverts(manager.TaskManagerZeroDigest):
        manager.submitUpdate(task, 0, ZERO32, 1, sender=alice)


def test_submit_without_stake_reverts(manager, task, outsider):
    with ape.reverts(manager.TaskManagerStakeTooLow, contributor=outsider.address, staked=0, required=MIN_CONTRIBUTOR):
        manager.submitUpdate(task, 0, digest(1), 1, sender=outsider)


def test_submit_after_unstake_request_reverts(manager, registry, task, bob):
    registry.requestUnstake(1, sender=bob)  # bob staked exactly the minimum
    with ape.reverts(manager.TaskManagerStakeTooLow, contributor=bob.address, staked=MIN_CONTRIBUTOR - 1, required=MIN_CONTRIBUTOR):
        manager.submitUpdate(task, 0, digest(1), 1, sender=bob)


# ─── postResult ───
def test_post_result_finalizes_and_opens_next_round(manager, task, alice, bob, validator, chain):
    submit(manager, task, 0, alice, bob)
    to_aggregating(chain, manager, task, 0)
    tree = RewardsTree(task, 0, {alice.address: 300, bob.address: 200})
    tx = manager.postResult(task, 0, MODEL1, REPORT, tree.root, 500, [], sender=validator)
    now = chain.blocks.head.timestamp
    [fin] = events(tx, manager.RoundFinalized)
    assert (fin.taskId, fin.round, fin.modelDigest, fin.reportDigest, fin.rewardsRoot, fin.totalRewards) == (task, 0, MODEL1, REPORT, tree.root, 500)
    [opened] = events(tx, manager.RoundOpened)
    assert (opened.taskId, opened.round, opened.submissionDeadline) == (task, 1, now + SUBMISSION_WINDOW)
    r0 = manager.getRound(task, 0)
    assert (r0.phase, r0.rewardsRoot, r0.totalRewards, r0.claimed) == (FINALIZED, tree.root, 500, 0)
    t = manager.getTask(task)
    assert (t.currentRound, t.carry) == (1, REWARD - 500)
    assert manager.getRound(task, 1).phase == OPEN


def test_post_result_right_after_early_close(manager, task, alice, bob, carol, validator):
    submit(manager, task, 0, alice, bob, carol)
    tree = RewardsTree(task, 0, {alice.address: 1})
    manager.postResult(task, 0, MODEL1, REPORT, tree.root, 1, [], sender=validator)
    assert manager.getRound(task, 0).phase == FINALIZED


def test_post_result_with_rollover_budget(manager, task, alice, validator, chain):
    submit(manager, task, 0, alice)
    finalize(manager, chain, validator, task, 0, {alice: REWARD // 4})
    submit(manager, task, 1, alice)
    to_aggregating(chain, manager, task, 1)
    available = REWARD + REWARD - REWARD // 4
    tree = RewardsTree(task, 1, {alice.address: available})
    manager.postResult(task, 1, MODEL1, REPORT, tree.root, available, [], sender=validator)
    assert manager.getTask(task).carry == 0


def test_post_result_over_budget_reverts(manager, task, alice, validator, chain):
    submit(manager, task, 0, alice)
    to_aggregating(chain, manager, task, 0)
    with ape.reverts(manager.TaskManagerRewardsExceedBudget, taskId=task, round=0, totalRewards=REWARD + 1, available=REWARD):
        manager.postResult(task, 0, MODEL1, REPORT, digest(1), REWARD + 1, [], sender=validator)


@pytest.mark.parametrize("root, total", [(ZERO32, 5), (b"\x07" * 32, 0)])
def test_post_result_root_and_total_must_agree(manager, task, validator, chain, root, total):
    to_aggregating(chain, manager, task, 0)
    with ape.reverts(manager.TaskManagerInvalidRewardsRoot, taskId=task, round=0, rewardsRoot=root, totalRewards=total):
        manager.postResult(task, 0, MODEL1, REPORT, root, total, [], sender=validator)


def test_post_result_by_non_validator_reverts(manager, task, alice, chain):
    to_aggregating(chain, manager, task, 0)
    with ape.reverts(manager.TaskManagerNotValidator, taskId=task, caller=alice.address):
        manager.postResult(task, 0, MODEL1, REPORT, ZERO32, 0, [], sender=alice)


def test_post_result_while_open_reverts(manager, task, validator):
    with ape.reverts(manager.TaskManagerRoundNotAggregating, taskId=task, round=0, phase=OPEN):
        manager.postResult(task, 0, MODEL1, REPORT, ZERO32, 0, [], sender=validator)


def test_post_result_twice_reverts(manager, task, alice, validator, chain):
    submit(manager, task, 0, alice)
    finalize(manager, chain, validator, task, 0, {alice: 5})
    with ape.reverts(manager.TaskManagerRoundNotAggregating, taskId=task, round=0, phase=FINALIZED):
        manager.postResult(task, 0, MODEL1, REPORT, ZERO32, 0, [], sender=validator)


def test_post_result_after_aggregation_deadline_reverts(manager, task, validator, chain):
    to_expired(chain, manager, task, 0)
    with ape.reverts(manager.TaskManagerRoundNotAggregating, taskId=task, round=0, phase=EXPIRED):
        manager.postResult(task, 0, MODEL1, REPORT, ZERO32, 0, [], sender=validator)


def test_post_result_last_round_ends_task(manager, fed, owner, validator, alice, staked, chain):
    task_id = one_round_task(manager, fed, owner, validator)
    submit(manager, task_id, 0, alice)
    _, tx = finalize(manager, chain, validator, task_id, 0, {alice: 400})
    [ended] = events(tx, manager.TaskEnded)
    assert (ended.taskId, ended.unallocated) == (task_id, REWARD - 400)
    assert not events(tx, manager.RoundOpened)
    t = manager.getTask(task_id)
    assert (t.ended, t.endedAt, t.carry) == (True, chain.blocks.head.timestamp, REWARD - 400)
    assert manager.claimDeadline(task_id) == t.endedAt + CLAIM_PERIOD


def test_post_result_by_validator_below_minimum_reverts(manager, registry, task, validator, chain):
    registry.requestUnstake(1, sender=validator)  # the validator staked exactly the minimum
    to_aggregating(chain, manager, task, 0)
    with ape.reverts(manager.TaskManagerValidatorStakeTooLow, validator=validator.address, staked=MIN_VALIDATOR - 1, required=MIN_VALIDATOR):
        manager.postResult(task, 0, MODEL1, REPORT, ZERO32, 0, [], sender=validator)


def test_validator_needs_the_minimum_of_task_creation(manager, registry, task, admin, validator, chain):
    registry.setMinStakes(MIN_CONTRIBUTOR, 2 * MIN_VALIDATOR, sender=admin)  # raised after the task was created
    finalize(manager, chain, validator, task, 0, {})  # the task keeps the minimum it was created with
    to_expired(chain, manager, task, 1)
    manager.expireRound(task, 1, sender=validator)
    registry.requestUnstake(1, sender=validator)
    to_aggregating(chain, manager, task, 2)  # ... in every round, also after an expiry
    with ape.reverts(manager.TaskManagerValidatorStakeTooLow, validator=validator.address, staked=MIN_VALIDATOR - 1, required=MIN_VALIDATOR):
        manager.postResult(task, 2, MODEL1, REPORT, ZERO32, 0, [], sender=validator)


def test_create_task_refuses_a_validator_minimum_its_rounds_cannot_keep(manager, registry, fed, owner, validator, admin, staked):
    # Each round's clock keeps the validator minimum in 104 bits (2e13 FED); the registry allows more.
    registry.setMinStakes(MIN_CONTRIBUTOR, 2**104, sender=admin)
    with ape.reverts(manager.SafeCastOverflowedUintDowncast, bits=104, value=2**104):
        manager.createTask(task_params(fed, validator), sender=owner)


# ─── slashing through postResult ───
def test_post_result_slashes_submitters(manager, registry, fed, task, alice, bob, carol, validator, treasury, chain):
    submit(manager, task, 0, alice, bob, carol)
    evidence = {a.address: manager.submissionOf(task, 0, a) for a in (alice, bob)}
    slashes = sorted((a, e) for a, e in evidence.items())
    before = fed.balanceOf(treasury)
    _, tx = finalize(manager, chain, validator, task, 0, {carol: 10}, slashes)
    logs = events(tx, manager.Slashed)
    assert [(l.taskId, l.round, l.account, l.amount, l.evidence) for l in logs] == [(task, 0, a, SLASH, e) for a, e in slashes]
    assert [(l.account, l.slasher, l.amount) for l in events(tx, registry.StakeSlashed)] == [(a, manager.address, SLASH) for a, _ in slashes]
    assert registry.activeStake(alice) == 2 * MIN_CONTRIBUTOR - SLASH
    assert registry.activeStake(bob) == MIN_CONTRIBUTOR - SLASH
    assert fed.balanceOf(treasury) == before + 2 * SLASH


def test_slash_capped_when_stake_unbonding(manager, registry, task, bob, validator, chain):
    submit(manager, task, 0, bob)
    registry.requestUnstake(MIN_CONTRIBUTOR - 3, sender=bob)  # 3 active, the rest unbonding (still slashable)
    _, tx = finalize(manager, chain, validator, task, 0, {}, [(bob.address, manager.submissionOf(task, 0, bob))])
    [log] = events(tx, manager.Slashed)
    assert log.amount == SLASH
    assert registry.activeStake(bob) == 0
    assert registry.unbonding(bob)[0] == MIN_CONTRIBUTOR - SLASH


def test_slash_unsorted_reverts(manager, task, alice, bob, validator, chain):
    submit(manager, task, 0, alice, bob)
    slashes = sorted(((a.address, manager.submissionOf(task, 0, a)) for a in (alice, bob)), reverse=True)
    to_aggregating(chain, manager, task, 0)
    with ape.reverts(manager.TaskManagerSlashesNotSorted, index=1, account=slashes[1][0]):
        manager.postResult(task, 0, MODEL1, REPORT, ZERO32, 0, slashes, sender=validator)


def test_slash_duplicate_reverts(manager, task, alice, validator, chain):
    submit(manager, task, 0, alice)
    entry = (alice.address, manager.submissionOf(task, 0, alice))
    to_aggregating(chain, manager, task, 0)
    with ape.reverts(manager.TaskManagerSlashesNotSorted, index=1, account=alice.address):
        manager.postResult(task, 0, MODEL1, REPORT, ZERO32, 0, [entry, entry], sender=validator)


def test_slash_wrong_evidence_reverts(manager, task, alice, validator, chain):
    submit(manager, task, 0, alice)
    actual = manager.submissionOf(task, 0, alice)
    to_aggregating(chain, manager, task, 0)
    with ape.reverts(manager.TaskManagerSlashEvidenceMismatch, taskId=task, round=0, account=alice.address, evidence=digest(999), submitted=actual):
        manager.postResult(task, 0, MODEL1, REPORT, ZERO32, 0, [(alice.address, digest(999))], sender=validator)


def test_slash_non_submitter_reverts(manager, task, alice, bob, validator, chain):
    submit(manager, task, 0, alice)
    to_aggregating(chain, manager, task, 0)
    with ape.reverts(manager.TaskManagerSlashEvidenceMismatch, account=bob.address, evidence=digest(1), submitted=ZERO32):
        manager.postResult(task, 0, MODEL1, REPORT, ZERO32, 0, [(bob.address, digest(1))], sender=validator)


def test_manager_without_slasher_role_cannot_slash(project, registry, fed, admin, owner, validator, alice, staked, chain):
    tm = project.TaskManager.deploy(registry, CLAIM_PERIOD, admin, sender=admin)  # role not granted
    task_id, _ = create_task(tm, fed, owner, validator, slashAmount=0)  # nothing to lock, so alice can submit
    submit(tm, task_id, 0, alice)
    to_aggregating(chain, tm, task_id, 0)
    with ape.reverts(registry.StakeRegistryUnauthorizedSlasher, caller=tm.address):
        tm.postResult(task_id, 0, MODEL1, REPORT, ZERO32, 0, [(alice.address, tm.submissionOf(task_id, 0, alice))], sender=validator)


def test_manager_without_slasher_role_cannot_lock(project, registry, fed, admin, owner, validator, alice, staked):
    tm = project.TaskManager.deploy(registry, CLAIM_PERIOD, admin, sender=admin)  # role not granted
    task_id, _ = create_task(tm, fed, owner, validator)
    with ape.reverts(registry.StakeRegistryUnauthorizedSlasher, caller=tm.address):
        tm.submitUpdate(task_id, 0, digest(1), 1, sender=alice)


# ─── claim ───
def test_claim_pays_and_records(manager, fed, task, alice, bob, validator, chain):
    submit(manager, task, 0, alice, bob)
    tree, _ = finalize(manager, chain, validator, task, 0, {alice: 300, bob: 200})
    before = fed.balanceOf(alice)
    tx = manager.claim(task, 0, 300, tree.proof(alice.address), sender=alice)
    [log] = events(tx, manager.RewardClaimed)
    assert (log.taskId, log.round, log.contributor, log.amount) == (task, 0, alice.address, 300)
    assert fed.balanceOf(alice) == before + 300
    assert manager.hasClaimed(task, 0, alice) and not manager.hasClaimed(task, 0, bob)
    assert manager.getRound(task, 0).claimed == 300
    assert manager.getTask(task).paidOut == 300


def test_claim_twice_reverts(manager, task, alice, bob, validator, chain):
    submit(manager, task, 0, alice)
    tree, _ = finalize(manager, chain, validator, task, 0, {alice: 300, bob: 200})
    manager.claim(task, 0, 300, tree.proof(alice.address), sender=alice)
    with ape.reverts(manager.TaskManagerAlreadyClaimed, taskId=task, round=0, account=alice.address):
        manager.claim(task, 0, 300, tree.proof(alice.address), sender=alice)


def test_claim_someone_elses_reward_reverts(manager, task, alice, bob, validator, chain):
    submit(manager, task, 0, alice)
    tree, _ = finalize(manager, chain, validator, task, 0, {alice: 300, bob: 200})
    with ape.reverts(manager.TaskManagerInvalidProof, taskId=task, round=0, account=bob.address, amount=300):
        manager.claim(task, 0, 300, tree.proof(alice.address), sender=bob)


@pytest.mark.parametrize("tamper", ["amount", "proof", "round"])
def test_forged_claim_reverts(manager, task, alice, bob, validator, chain, tamper):
    submit(manager, task, 0, alice)
    tree, _ = finalize(manager, chain, validator, task, 0, {alice: 300, bob: 200})
    proof, amount, round_index = tree.proof(alice.address), 300, 0
    if tamper == "amount":
        amount = 301
    elif tamper == "proof":
        proof = [b"\x13" * 32]
    else:  # replay the round-0 proof against round 1 (not finalized -> different error), so finalize round 1 too
        finalize(manager, chain, validator, task, 1, {alice: 300, bob: 200, validator: 1})
        round_index = 1
    with ape.reverts(manager.TaskManagerInvalidProof, taskId=task, round=round_index, account=alice.address, amount=amount):
        manager.claim(task, round_index, amount, proof, sender=alice)


def test_claim_unfinalized_round_reverts(manager, task, alice):
    with ape.reverts(manager.TaskManagerRoundNotFinalized, taskId=task, round=0, phase=OPEN):
        manager.claim(task, 0, 1, [], sender=alice)


def test_claim_zero_reward_round_reverts(manager, task, alice, validator, chain):
    finalize(manager, chain, validator, task, 0, {})
    with ape.reverts(manager.TaskManagerInvalidProof, taskId=task, round=0, account=alice.address, amount=1):
        manager.claim(task, 0, 1, [], sender=alice)


def test_claim_zero_amount_reverts(manager, task, alice, bob, validator, chain):
    tree, _ = finalize(manager, chain, validator, task, 0, {alice: 0, bob: 5})
    with ape.reverts(manager.TaskManagerNothingToClaim, taskId=task):
        manager.claim(task, 0, 0, tree.proof(alice.address), sender=alice)


def test_claims_capped_at_round_total(manager, task, alice, bob, validator, chain):
    # A faulty validator commits to leaves summing to more than the total it declares.
    to_aggregating(chain, manager, task, 0)
    tree = RewardsTree(task, 0, {alice.address: 300, bob.address: 300})
    manager.postResult(task, 0, MODEL1, REPORT, tree.root, 400, [], sender=validator)
    manager.claim(task, 0, 300, tree.proof(alice.address), sender=alice)
    with ape.reverts(manager.TaskManagerClaimExceedsRound, taskId=task, round=0, claimed=600, totalRewards=400):
        manager.claim(task, 0, 300, tree.proof(bob.address), sender=bob)


def test_claim_many_all_rounds_one_transfer(manager, fed, task, alice, validator, chain):
    trees = []
    for r in range(2):
        submit(manager, task, r, alice)
        tree, _ = finalize(manager, chain, validator, task, r, {alice: 10 + r})
        trees.append(tree)
    before = fed.balanceOf(alice)
    tx = manager.claimMany(task, [0, 1], [10, 11], [t.proof(alice.address) for t in trees], sender=alice)
    assert [(l.round, l.amount) for l in events(tx, manager.RewardClaimed)] == [(0, 10), (1, 11)]
    assert len(events(tx, fed.Transfer)) == 1
    assert fed.balanceOf(alice) == before + 21
    assert manager.getTask(task).paidOut == 21


def test_claim_many_is_all_or_nothing(manager, task, alice, validator, chain):
    tree, _ = finalize(manager, chain, validator, task, 0, {alice: 10})
    with ape.reverts(manager.TaskManagerRoundNotFinalized, taskId=task, round=1, phase=OPEN):
        manager.claimMany(task, [0, 1], [10, 10], [tree.proof(alice.address), []], sender=alice)
    assert not manager.hasClaimed(task, 0, alice)


def test_claim_many_same_round_twice_reverts(manager, task, alice, validator, chain):
    tree, _ = finalize(manager, chain, validator, task, 0, {alice: 10})
    proof = tree.proof(alice.address)
    with ape.reverts(manager.TaskManagerAlreadyClaimed, taskId=task, round=0, account=alice.address):
        manager.claimMany(task, [0, 0], [10, 10], [proof, proof], sender=alice)


def test_claim_many_length_mismatch_reverts(manager, task, alice):
    with ape.reverts(manager.TaskManagerLengthMismatch, rounds=2, amounts=1, proofs=2):
        manager.claimMany(task, [0, 1], [1], [[], []], sender=alice)


def test_claim_many_empty_reverts(manager, task, alice):
    with ape.reverts(manager.TaskManagerNothingToClaim, taskId=task):
        manager.claimMany(task, [], [], [], sender=alice)


def test_reentrant_reward_token_cannot_reenter_claim(project, manager, owner, validator, alice, bob, staked, admin, chain):
    token = project.MockReentrantToken.deploy(sender=admin)
    token.mint(owner, 10 * REWARD, sender=admin)
    task_id, _ = create_task(manager, token, owner, validator)
    tree, _ = finalize(manager, chain, validator, task_id, 0, {alice: 300, bob: 200})
    # On the payout transfer the token calls claim() again, for bob's entry (as itself: the guard trips first).
    token.arm(manager, manager.claim.encode_input(task_id, 0, 200, tree.proof(bob.address)), sender=admin)
    with ape.reverts(manager.ReentrancyGuardReentrantCall):
        manager.claim(task_id, 0, 300, tree.proof(alice.address), sender=alice)
    assert not manager.hasClaimed(task_id, 0, alice)
    assert token.balanceOf(manager) == 3 * REWARD


# ─── liveness: expiry ───
def test_expire_round_rolls_budget_over(manager, task, alice, validator, outsider, chain):
    submit(manager, task, 0, alice)
    to_expired(chain, manager, task, 0)
    tx = manager.expireRound(task, 0, sender=outsider)
    [log] = events(tx, manager.RoundExpired)
    assert (log.taskId, log.round, log.rolledOver) == (task, 0, REWARD)
    [opened] = events(tx, manager.RoundOpened)
    assert opened.round == 1
    assert manager.getRound(task, 0).phase == EXPIRED
    assert manager.getTask(task).carry == REWARD
    # Round 1 may now pay two rounds' budget.
    submit(manager, task, 1, alice)
    finalize(manager, chain, validator, task, 1, {alice: 2 * REWARD})
    assert manager.getTask(task).carry == 0


def test_expire_round_before_deadline_reverts(manager, task, outsider, chain):
    to_aggregating(chain, manager, task, 0)
    with ape.reverts(manager.TaskManagerRoundNotExpirable, taskId=task, round=0, phase=AGGREGATING):
        manager.expireRound(task, 0, sender=outsider)


def test_expire_round_twice_reverts(manager, task, outsider, chain):
    to_expired(chain, manager, task, 0)
    manager.expireRound(task, 0, sender=outsider)
    with ape.reverts(manager.TaskManagerRoundNotExpirable, taskId=task, round=0, phase=EXPIRED):
        manager.expireRound(task, 0, sender=outsider)


def test_expire_finalized_round_reverts(manager, task, validator, outsider, chain):
    finalize(manager, chain, validator, task, 0, {})
    with ape.reverts(manager.TaskManagerRoundNotExpirable, taskId=task, round=0, phase=FINALIZED):
        manager.expireRound(task, 0, sender=outsider)


def test_expire_last_round_ends_task(manager, fed, owner, validator, outsider, staked, chain):
    task_id = one_round_task(manager, fed, owner, validator)
    to_expired(chain, manager, task_id, 0)
    tx = manager.expireRound(task_id, 0, sender=outsider)
    [ended] = events(tx, manager.TaskEnded)
    assert (ended.taskId, ended.unallocated) == (task_id, REWARD)


# ─── cancel and refunds ───
def test_cancel_lets_current_round_finish_then_ends(manager, fed, task, owner, alice, validator, chain):
    submit(manager, task, 0, alice)
    tx = manager.cancelTask(task, sender=owner)
    [log] = events(tx, manager.TaskCancelled)
    assert log.taskId == task
    assert manager.getTask(task).cancelled
    tree, tx = finalize(manager, chain, validator, task, 0, {alice: 100})
    [ended] = events(tx, manager.TaskEnded)
    assert ended.unallocated == 3 * REWARD - 100  # this round's rest plus the two rounds never run
    assert not events(tx, manager.RoundOpened)
    manager.claim(task, 0, 100, tree.proof(alice.address), sender=alice)  # the finished round still pays
    before = fed.balanceOf(owner)
    tx = manager.withdrawRefund(task, sender=owner)
    [refund] = events(tx, manager.RefundWithdrawn)
    assert (refund.taskId, refund.owner, refund.amount) == (task, owner.address, 3 * REWARD - 100)
    assert fed.balanceOf(owner) == before + 3 * REWARD - 100
    t = manager.getTask(task)
    assert (t.refunded, t.carry, t.paidOut) == (3 * REWARD - 100, 0, 100)
    assert fed.balanceOf(manager) == 0


def test_cancel_by_non_owner_reverts(manager, task, outsider, owner):
    with ape.reverts(manager.TaskManagerNotTaskOwner, taskId=task, caller=outsider.address, owner=owner.address):
        manager.cancelTask(task, sender=outsider)


def test_cancel_twice_reverts(manager, task, owner):
    manager.cancelTask(task, sender=owner)
    with ape.reverts(manager.TaskManagerAlreadyCancelled, taskId=task):
        manager.cancelTask(task, sender=owner)


def test_cancel_ended_task_reverts(manager, fed, owner, validator, outsider, staked, chain):
    task_id = one_round_task(manager, fed, owner, validator)
    to_expired(chain, manager, task_id, 0)
    manager.expireRound(task_id, 0, sender=outsider)
    with ape.reverts(manager.TaskManagerTaskEnded, taskId=task_id):
        manager.cancelTask(task_id, sender=owner)


def test_refund_before_end_reverts(manager, task, owner):
    with ape.reverts(manager.TaskManagerTaskNotEnded, taskId=task):
        manager.withdrawRefund(task, sender=owner)


def test_refund_by_non_owner_reverts(manager, task, outsider, owner):
    with ape.reverts(manager.TaskManagerNotTaskOwner, taskId=task, caller=outsider.address, owner=owner.address):
        manager.withdrawRefund(task, sender=outsider)


def test_refund_twice_reverts_until_claim_period_ends(manager, fed, owner, validator, alice, bob, staked, chain):
    task_id = one_round_task(manager, fed, owner, validator)
    submit(manager, task_id, 0, alice, bob)
    tree, _ = finalize(manager, chain, validator, task_id, 0, {alice: 300, bob: 200})
    assert manager.refundable(task_id) == REWARD - 500
    manager.withdrawRefund(task_id, sender=owner)
    with ape.reverts(manager.TaskManagerNothingToRefund, taskId=task_id):
        manager.withdrawRefund(task_id, sender=owner)
    manager.claim(task_id, 0, 300, tree.proof(alice.address), sender=alice)
    # After the claim period, bob's unclaimed 200 goes back to the owner and bob can no longer claim.
    deadline = manager.claimDeadline(task_id)
    chain.pending_timestamp = deadline + 1
    chain.mine()
    assert manager.refundable(task_id) == 200
    tx = manager.withdrawRefund(task_id, sender=owner)
    assert events(tx, manager.RefundWithdrawn)[0].amount == 200
    with ape.reverts(manager.TaskManagerClaimPeriodOver, taskId=task_id, deadline=deadline):
        manager.claim(task_id, 0, 200, tree.proof(bob.address), sender=bob)
    t = manager.getTask(task_id)
    assert t.paidOut + t.refunded == t.funded
    assert fed.balanceOf(manager) == 0


def test_claim_at_claim_deadline_still_succeeds(manager, fed, owner, validator, alice, staked, chain):
    task_id = one_round_task(manager, fed, owner, validator)
    tree, _ = finalize(manager, chain, validator, task_id, 0, {alice: 7})
    chain.pending_timestamp = manager.claimDeadline(task_id)
    manager.claim(task_id, 0, 7, tree.proof(alice.address), sender=alice)
    assert manager.hasClaimed(task_id, 0, alice)


def test_reentrant_reward_token_cannot_reenter_withdraw_refund(project, manager, owner, validator, outsider, staked, admin, chain):
    token = project.MockReentrantToken.deploy(sender=admin)
    token.mint(owner, 10 * REWARD, sender=admin)
    task_id = one_round_task(manager, token, owner, validator)
    to_expired(chain, manager, task_id, 0)
    manager.expireRound(task_id, 0, sender=outsider)
    token.arm(manager, manager.withdrawRefund.encode_input(task_id), sender=admin)
    with ape.reverts(manager.ReentrancyGuardReentrantCall):
        manager.withdrawRefund(task_id, sender=owner)
    assert manager.getTask(task_id).refunded == 0


# ─── pause and ownership ───
def test_pause_stops_new_tasks_only(manager, fed, task, admin, owner, validator, alice, bob, chain):
    submit(manager, task, 0, alice)
    tx = manager.pause(sender=admin)
    assert events(tx, manager.Paused)[0].account == admin.address
    # Running rounds go on: a pause must not let the owner run them out empty while their clocks keep going.
    manager.submitUpdate(task, 0, digest(5), 1, sender=bob)
    params = task_params(fed, validator)
    with ape.reverts(manager.EnforcedPause):
        manager.createTask(params, sender=owner)
    # Results, claims, expiry, cancel and refunds go on.
    tree, _ = finalize(manager, chain, validator, task, 0, {alice: 9})
    manager.claim(task, 0, 9, tree.proof(alice.address), sender=alice)
    manager.cancelTask(task, sender=owner)
    to_expired(chain, manager, task, 1)
    manager.expireRound(task, 1, sender=bob)
    manager.withdrawRefund(task, sender=owner)
    tx = manager.unpause(sender=admin)
    assert events(tx, manager.Unpaused)[0].account == admin.address
    submit_tx = create_task(manager, fed, owner, validator)
    assert submit_tx[0] == 1


def test_pause_by_outsider_reverts(manager, outsider):
    with ape.reverts(manager.OwnableUnauthorizedAccount, account=outsider.address):
        manager.pause(sender=outsider)
    with ape.reverts(manager.OwnableUnauthorizedAccount, account=outsider.address):
        manager.unpause(sender=outsider)


def test_ownership_transfer_takes_two_steps(manager, admin, outsider):
    tx = manager.transferOwnership(outsider, sender=admin)
    assert events(tx, manager.OwnershipTransferStarted)[0].newOwner == outsider.address
    assert manager.owner() == admin.address
    manager.acceptOwnership(sender=outsider)
    assert manager.owner() == outsider.address
    manager.pause(sender=outsider)
    assert manager.paused()
