"""StakeRegistry: staking, unbonding, withdrawal, slashing, minimums, and their errors and events."""

from __future__ import annotations

import ape
import pytest

from conftest import MIN_CONTRIBUTOR, MIN_VALIDATOR, UNBONDING, events

AMOUNT = 500 * 10**18
EVIDENCE = b"\x11" * 32


@pytest.fixture
def slasher(registry, admin, outsider):
    """`outsider` made an authorised slasher (standing in for a task manager)."""
    registry.grantRole(registry.SLASHER_ROLE(), outsider, sender=admin)
    return outsider


def stake(fed, registry, acct, amount=AMOUNT):
    fed.approve(registry, amount, sender=acct)
    return registry.stake(amount, sender=acct)


def test_constructor_sets_parameters(registry, fed, treasury, admin):
    assert registry.stakeToken() == fed.address
    assert registry.treasury() == treasury.address
    assert registry.unbondingPeriod() == UNBONDING
    assert registry.minContributorStake() == MIN_CONTRIBUTOR
    assert registry.minValidatorStake() == MIN_VALIDATOR
    assert registry.hasRole(registry.DEFAULT_ADMIN_ROLE(), admin)


def test_constructor_rejects_zero_addresses(project, fed, treasury, admin):
    zero = "0x" + "00" * 20
    with ape.reverts(project.StakeRegistry.StakeRegistryZeroAddress, what="treasury"):
        project.StakeRegistry.deploy(fed, zero, UNBONDING, 1, 1, admin, sender=admin)
    with ape.reverts(project.StakeRegistry.StakeRegistryZeroAddress, what="stakeToken"):
        project.StakeRegistry.deploy(zero, treasury, UNBONDING, 1, 1, admin, sender=admin)
    with ape.reverts(project.StakeRegistry.StakeRegistryZeroAddress, what="admin"):
        project.StakeRegistry.deploy(fed, treasury, UNBONDING, 1, 1, zero, sender=admin)


def test_stake_moves_tokens_and_emits(fed, registry, alice):
    before = fed.balanceOf(alice)
    tx = stake(fed, registry, alice)
    assert registry.activeStake(alice) == AMOUNT
    assert fed.balanceOf(registry) == AMOUNT
    assert fed.balanceOf(alice) == before - AMOUNT
    [log] = events(tx, registry.Staked)
    assert (log.account, log.amount, log.activeStake) == (alice.address, AMOUNT, AMOUNT)


def test_add_stake_accumulates(fed, registry, alice):
    stake(fed, registry, alice)
    tx = stake(fed, registry, alice, 7)
    [log] = events(tx, registry.Staked)
    assert log.activeStake == AMOUNT + 7
    assert registry.activeStake(alice) == AMOUNT + 7


def test_stake_zero_reverts(registry, alice):
    with ape.reverts(registry.StakeRegistryZeroAmount):
        registry.stake(0, sender=alice)


def test_stake_fee_on_transfer_token_reverts(project, admin, treasury, alice):
    fee = project.MockFeeToken.deploy(100, sender=admin)
    reg = project.StakeRegistry.deploy(fee, treasury, UNBONDING, 1, 1, admin, sender=admin)
    fee.mint(alice, 10_000, sender=admin)
    fee.approve(reg, 10_000, sender=alice)
    with ape.reverts(reg.StakeRegistryFeeOnTransfer, expected=10_000, received=9_900):
        reg.stake(10_000, sender=alice)


def test_request_unstake_moves_to_unbonding(fed, registry, alice, chain):
    stake(fed, registry, alice)
    tx = registry.requestUnstake(200, sender=alice)
    release = chain.blocks.head.timestamp + UNBONDING
    assert registry.activeStake(alice) == AMOUNT - 200
    assert registry.unbonding(alice) == (200, release)
    [log] = events(tx, registry.UnstakeRequested)
    assert (log.account, log.amount, log.unbondingStake, log.releaseTime) == (alice.address, 200, 200, release)


def test_second_unstake_request_adds_and_restarts_timer(fed, registry, alice, chain):
    stake(fed, registry, alice)
    registry.requestUnstake(200, sender=alice)
    chain.pending_timestamp += 1000
    tx = registry.requestUnstake(300, sender=alice)
    release = chain.blocks.head.timestamp + UNBONDING
    assert registry.unbonding(alice) == (500, release)
    [log] = events(tx, registry.UnstakeRequested)
    assert (log.amount, log.unbondingStake, log.releaseTime) == (300, 500, release)


def test_request_unstake_zero_reverts(registry, alice):
    with ape.reverts(registry.StakeRegistryZeroAmount):
        registry.requestUnstake(0, sender=alice)


def test_request_unstake_more_than_active_reverts(fed, registry, alice):
    stake(fed, registry, alice)
    with ape.reverts(registry.StakeRegistryInsufficientStake, account=alice.address, active=AMOUNT, requested=AMOUNT + 1):
        registry.requestUnstake(AMOUNT + 1, sender=alice)


def test_withdraw_after_unbonding_period(fed, registry, alice, chain):
    stake(fed, registry, alice)
    registry.requestUnstake(200, sender=alice)
    before = fed.balanceOf(alice)
    chain.pending_timestamp += UNBONDING
    tx = registry.withdraw(sender=alice)
    assert fed.balanceOf(alice) == before + 200
    assert registry.unbonding(alice) == (0, 0)
    assert fed.balanceOf(registry) == AMOUNT - 200
    [log] = events(tx, registry.Withdrawn)
    assert (log.account, log.amount) == (alice.address, 200)


def test_withdraw_before_release_reverts(fed, registry, alice, chain):
    stake(fed, registry, alice)
    registry.requestUnstake(200, sender=alice)
    release = chain.blocks.head.timestamp + UNBONDING
    chain.pending_timestamp = release - 1
    with ape.reverts(registry.StakeRegistryStillUnbonding, account=alice.address, releaseTime=release, nowTime=release - 1):
        registry.withdraw(sender=alice)


def test_withdraw_nothing_reverts(registry, alice):
    with ape.reverts(registry.StakeRegistryNothingToWithdraw, account=alice.address):
        registry.withdraw(sender=alice)


def test_withdraw_twice_reverts(fed, registry, alice, chain):
    stake(fed, registry, alice)
    registry.requestUnstake(200, sender=alice)
    chain.pending_timestamp += UNBONDING
    registry.withdraw(sender=alice)
    with ape.reverts(registry.StakeRegistryNothingToWithdraw):
        registry.withdraw(sender=alice)


def test_slash_takes_active_first(fed, registry, slasher, alice, treasury):
    stake(fed, registry, alice)
    registry.requestUnstake(100, sender=alice)
    tx = registry.slash(alice, 150, EVIDENCE, sender=slasher)
    assert registry.activeStake(alice) == AMOUNT - 100 - 150
    assert registry.unbonding(alice)[0] == 100
    assert fed.balanceOf(treasury) - (10**24) == 150  # treasury started with the mint
    [log] = events(tx, registry.StakeSlashed)
    assert (log.account, log.slasher, log.amount, log.evidence) == (alice.address, slasher.address, 150, EVIDENCE)


def test_slash_then_takes_unbonding_and_is_capped(fed, registry, slasher, alice, treasury):
    stake(fed, registry, alice)
    registry.requestUnstake(AMOUNT - 100, sender=alice)  # 100 active, AMOUNT-100 unbonding
    before = fed.balanceOf(treasury)
    tx = registry.slash(alice, 10 * AMOUNT, EVIDENCE, sender=slasher)
    assert registry.activeStake(alice) == 0
    assert registry.unbonding(alice)[0] == 0
    assert fed.balanceOf(treasury) == before + AMOUNT
    assert fed.balanceOf(registry) == 0
    [log] = events(tx, registry.StakeSlashed)
    assert log.amount == AMOUNT


def test_slash_reaches_unbonding_stake_during_period(fed, registry, slasher, alice, chain):
    stake(fed, registry, alice)
    registry.requestUnstake(AMOUNT, sender=alice)
    chain.pending_timestamp += UNBONDING - 10
    registry.slash(alice, 40, EVIDENCE, sender=slasher)
    assert registry.unbonding(alice)[0] == AMOUNT - 40


def test_slash_nothing_staked_emits_zero(registry, slasher, bob):
    tx = registry.slash(bob, 10, EVIDENCE, sender=slasher)
    [log] = events(tx, registry.StakeSlashed)
    assert log.amount == 0


def test_slash_by_outsider_reverts(fed, registry, alice, outsider):
    stake(fed, registry, alice)
    with ape.reverts(registry.StakeRegistryUnauthorizedSlasher, caller=outsider.address):
        registry.slash(alice, 1, EVIDENCE, sender=outsider)


def test_slash_by_admin_without_role_reverts(fed, registry, alice, admin):
    stake(fed, registry, alice)
    with ape.reverts(registry.StakeRegistryUnauthorizedSlasher, caller=admin.address):
        registry.slash(alice, 1, EVIDENCE, sender=admin)


def test_set_min_stakes(registry, admin):
    tx = registry.setMinStakes(5, 6, sender=admin)
    assert registry.minContributorStake() == 5
    assert registry.minValidatorStake() == 6
    [log] = events(tx, registry.MinStakesUpdated)
    assert (log.minContributorStake, log.minValidatorStake) == (5, 6)


def test_set_min_stakes_by_outsider_reverts(registry, outsider):
    with ape.reverts(registry.AccessControlUnauthorizedAccount, account=outsider.address):
        registry.setMinStakes(5, 6, sender=outsider)


def test_reentrant_stake_token_cannot_reenter_withdraw(project, admin, treasury, alice, chain):
    token = project.MockReentrantToken.deploy(sender=admin)
    reg = project.StakeRegistry.deploy(token, treasury, UNBONDING, 1, 1, admin, sender=admin)
    token.mint(alice, 1_000, sender=admin)
    token.approve(reg, 1_000, sender=alice)
    reg.stake(1_000, sender=alice)
    reg.requestUnstake(1_000, sender=alice)
    chain.pending_timestamp += UNBONDING
    # On the transfer out of the registry the token calls withdraw() again (as itself).
    token.arm(reg, reg.withdraw.encode_input(), sender=admin)
    with ape.reverts(reg.ReentrancyGuardReentrantCall):
        reg.withdraw(sender=alice)
    assert reg.unbonding(alice)[0] == 1_000
    assert token.balanceOf(reg) == 1_000


# ─── the unbonding period is bounded ───
MAX_PERIOD = 4 * 365 * 24 * 3600


def test_unbonding_period_above_maximum_reverts(project, fed, treasury, admin):
    with ape.reverts(project.StakeRegistry.StakeRegistryUnbondingPeriodTooLong, unbondingPeriod=MAX_PERIOD + 1, maximum=MAX_PERIOD):
        project.StakeRegistry.deploy(fed, treasury, MAX_PERIOD + 1, 1, 1, admin, sender=admin)
    with ape.reverts(project.StakeRegistry.StakeRegistryUnbondingPeriodTooLong, unbondingPeriod=2**64 - 1, maximum=MAX_PERIOD):
        project.StakeRegistry.deploy(fed, treasury, 2**64 - 1, 1, 1, admin, sender=admin)


def test_unbonding_period_at_maximum_still_withdraws(project, fed, treasury, admin, alice, chain):
    reg = project.StakeRegistry.deploy(fed, treasury, MAX_PERIOD, 1, 1, admin, sender=admin)
    assert reg.MAX_UNBONDING_PERIOD() == MAX_PERIOD
    stake(fed, reg, alice)
    reg.requestUnstake(AMOUNT, sender=alice)
    chain.pending_timestamp += MAX_PERIOD
    reg.withdraw(sender=alice)
    assert fed.balanceOf(reg) == 0


# ─── locks ───
def test_lock_records_and_emits(fed, registry, slasher, alice):
    stake(fed, registry, alice)
    tx = registry.lock(alice, 60, sender=slasher)
    [log] = events(tx, registry.StakeLocked)
    assert (log.account, log.locker, log.amount, log.locked) == (alice.address, slasher.address, 60, 60)
    tx = registry.lock(alice, 40, sender=slasher)
    assert events(tx, registry.StakeLocked)[0].locked == 100
    assert registry.lockedStake(alice) == 100
    assert registry.stakeOf(alice) == (AMOUNT, 100)
    assert registry.activeStake(alice) == AMOUNT  # a lock keeps the stake active (and slashable)


def test_locks_cannot_exceed_active_stake(fed, registry, slasher, alice):
    # One stake cannot back two locks beyond its size.
    stake(fed, registry, alice)
    registry.lock(alice, AMOUNT - 10, sender=slasher)
    with ape.reverts(registry.StakeRegistryLockExceedsStake, account=alice.address, active=AMOUNT, locked=AMOUNT - 10, amount=11):
        registry.lock(alice, 11, sender=slasher)
    registry.lock(alice, 10, sender=slasher)
    assert registry.lockedStake(alice) == AMOUNT


def test_lock_needs_active_stake_not_unbonding(fed, registry, slasher, alice):
    stake(fed, registry, alice)
    registry.requestUnstake(AMOUNT, sender=alice)
    with ape.reverts(registry.StakeRegistryLockExceedsStake, account=alice.address, active=0, locked=0, amount=1):
        registry.lock(alice, 1, sender=slasher)


def test_unlock_releases_and_emits(fed, registry, slasher, alice):
    stake(fed, registry, alice)
    registry.lock(alice, 70, sender=slasher)
    tx = registry.unlock(alice, 30, sender=slasher)
    [log] = events(tx, registry.StakeUnlocked)
    assert (log.account, log.locker, log.amount, log.locked) == (alice.address, slasher.address, 30, 40)
    assert registry.lockedStake(alice) == 40


def test_unlock_more_than_locked_reverts(fed, registry, slasher, alice):
    stake(fed, registry, alice)
    registry.lock(alice, 70, sender=slasher)
    with ape.reverts(registry.StakeRegistryUnlockExceedsLocked, account=alice.address, locked=70, amount=71):
        registry.unlock(alice, 71, sender=slasher)


def test_lock_and_unlock_without_role_revert(fed, registry, slasher, alice, bob):
    stake(fed, registry, alice)
    with ape.reverts(registry.StakeRegistryUnauthorizedSlasher, caller=bob.address):
        registry.lock(alice, 1, sender=bob)
    registry.lock(alice, 1, sender=slasher)
    with ape.reverts(registry.StakeRegistryUnauthorizedSlasher, caller=bob.address):
        registry.unlock(alice, 1, sender=bob)


def test_unstake_request_of_locked_stake_is_allowed_but_not_its_withdrawal(fed, registry, slasher, alice, chain):
    stake(fed, registry, alice)
    registry.lock(alice, AMOUNT, sender=slasher)
    registry.requestUnstake(AMOUNT, sender=alice)  # still slashable while it unbonds
    chain.pending_timestamp += UNBONDING
    with ape.reverts(registry.StakeRegistryStakeLocked, account=alice.address, locked=AMOUNT, stake=AMOUNT):
        registry.withdraw(sender=alice)
    assert registry.unbonding(alice)[0] == AMOUNT
    registry.unlock(alice, AMOUNT, sender=slasher)
    tx = registry.withdraw(sender=alice)
    assert events(tx, registry.Withdrawn)[0].amount == AMOUNT


def test_withdraw_pays_only_what_locks_do_not_need(fed, registry, slasher, alice, chain):
    stake(fed, registry, alice)
    registry.lock(alice, 120, sender=slasher)
    registry.requestUnstake(AMOUNT - 20, sender=alice)  # 20 active, 480 unbonding, 120 locked
    chain.pending_timestamp += UNBONDING
    before = fed.balanceOf(alice)
    tx = registry.withdraw(sender=alice)
    [log] = events(tx, registry.Withdrawn)
    assert log.amount == AMOUNT - 120  # 380: the 100 unbonding tokens the lock still needs stay
    assert fed.balanceOf(alice) == before + AMOUNT - 120
    amount, release = registry.unbonding(alice)
    assert amount == 100 and release != 0
    assert registry.activeStake(alice) + amount == registry.lockedStake(alice)
    with ape.reverts(registry.StakeRegistryStakeLocked, account=alice.address, locked=120, stake=120):
        registry.withdraw(sender=alice)
    registry.unlock(alice, 120, sender=slasher)
    assert events(registry.withdraw(sender=alice), registry.Withdrawn)[0].amount == 100
    assert registry.unbonding(alice) == (0, 0)


def test_slash_after_unstake_request_takes_the_locked_amount(fed, registry, slasher, alice, treasury, chain):
    stake(fed, registry, alice)
    registry.lock(alice, 150, sender=slasher)
    registry.requestUnstake(AMOUNT, sender=alice)
    chain.pending_timestamp += UNBONDING
    registry.withdraw(sender=alice)  # everything but the locked 150
    before = fed.balanceOf(treasury)
    tx = registry.slash(alice, 150, EVIDENCE, sender=slasher)
    assert events(tx, registry.StakeSlashed)[0].amount == 150
    assert fed.balanceOf(treasury) == before + 150
    assert registry.unbonding(alice)[0] == 0
    # The slash took the tokens; the lock record stays until its locker releases it.
    assert registry.lockedStake(alice) == 150
    with ape.reverts(registry.StakeRegistryNothingToWithdraw):
        registry.withdraw(sender=alice)
    registry.unlock(alice, 150, sender=slasher)
    assert registry.stakeOf(alice) == (0, 0)


def test_slash_leaves_locks_to_their_lockers(fed, registry, slasher, alice):
    stake(fed, registry, alice)
    registry.lock(alice, 100, sender=slasher)
    registry.slash(alice, 100, EVIDENCE, sender=slasher)
    assert registry.stakeOf(alice) == (AMOUNT - 100, 100)


def _deploy_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "deploy.py"
    spec = importlib.util.spec_from_file_location("fedchain_deploy_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_deploy_script_bounds_the_periods_as_the_contracts_do(registry, manager):
    script = _deploy_script()
    assert script.MAX_PERIOD == registry.MAX_UNBONDING_PERIOD() == manager.MAX_CLAIM_PERIOD() == MAX_PERIOD
    options = {p.name: p.type for p in script.cli.params}
    for name in ("unbonding_period", "claim_period"):
        assert (options[name].min, options[name].max) == (0, MAX_PERIOD)
