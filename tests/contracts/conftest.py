"""Shared fixtures for the contract tests (ape on Anvil).

Run: ``.venv/bin/ape test --network ethereum:local:foundry tests/contracts`` after the shell set-up.
Ape snapshots the chain around every test, so module-scoped deployments are cheap and tests stay isolated.
"""

from __future__ import annotations

import pytest

UNBONDING = 7 * 24 * 3600
CLAIM_PERIOD = 30 * 24 * 3600
MIN_CONTRIBUTOR = 100 * 10**18
MIN_VALIDATOR = 1_000 * 10**18
MINT = 1_000_000 * 10**18


@pytest.fixture(scope="session")
def admin(accounts):
    return accounts[0]


@pytest.fixture(scope="session")
def treasury(accounts):
    return accounts[1]


@pytest.fixture(scope="session")
def owner(accounts):
    """A task owner."""
    return accounts[2]


@pytest.fixture(scope="session")
def validator(accounts):
    return accounts[3]


@pytest.fixture(scope="session")
def alice(accounts):
    return accounts[4]


@pytest.fixture(scope="session")
def bob(accounts):
    return accounts[5]


@pytest.fixture(scope="session")
def carol(accounts):
    return accounts[6]


@pytest.fixture(scope="session")
def outsider(accounts):
    return accounts[7]


@pytest.fixture(scope="session")
def fed(project, admin, accounts):
    token = project.FedToken.deploy(admin, sender=admin)
    for acct in accounts[:8]:
        token.mint(acct, MINT, sender=admin)
    return token


@pytest.fixture(scope="session")
def registry(project, fed, admin, treasury):
    return project.StakeRegistry.deploy(fed, treasury, UNBONDING, MIN_CONTRIBUTOR, MIN_VALIDATOR, admin, sender=admin)


@pytest.fixture(scope="session")
def manager(project, registry, admin):
    tm = project.TaskManager.deploy(registry, CLAIM_PERIOD, admin, sender=admin)
    registry.grantRole(registry.SLASHER_ROLE(), tm, sender=admin)
    return tm


@pytest.fixture(scope="module")
def staked(fed, registry, validator, alice, bob, carol):
    """Validator and three contributors with stakes above the minimums."""
    for acct, amount in ((validator, MIN_VALIDATOR), (alice, 2 * MIN_CONTRIBUTOR), (bob, MIN_CONTRIBUTOR), (carol, MIN_CONTRIBUTOR)):
        fed.approve(registry, amount, sender=acct)
        registry.stake(amount, sender=acct)
    return registry


def events(tx, contract_event):
    """Decoded logs of one event type in a receipt."""
    return list(tx.decode_logs(contract_event))


# ─── tasks ───
REWARD = 1_000 * 10**18
SUBMISSION_WINDOW = 3_600
AGGREGATION_WINDOW = 1_800
SLASH = 10 * 10**18
SPEC = b"\x5a" * 32
MODEL0 = b"\x0a" * 32


def task_params(token_, validator_, **overrides):
    """TaskParams as the tuple createTask takes, with test defaults (3 rounds, 3 contributors max)."""
    values = {
        "rewardToken": token_.address if hasattr(token_, "address") else token_,
        "specDigest": SPEC,
        "initialModelDigest": MODEL0,
        "numRounds": 3,
        "rewardPerRound": REWARD,
        "submissionWindow": SUBMISSION_WINDOW,
        "aggregationWindow": AGGREGATION_WINDOW,
        "minContributorStake": MIN_CONTRIBUTOR,
        "maxContributors": 3,
        "validator": validator_.address if hasattr(validator_, "address") else validator_,
        "slashAmount": SLASH,
        "minOpen": 0,
    }
    values.update(overrides)
    return tuple(values.values())


def create_task(manager, token, owner, validator, **overrides):
    """Approve and create a task; returns (taskId, receipt)."""
    params = task_params(token, validator, **overrides)
    token.approve(manager, params[3] * params[4], sender=owner)
    tx = manager.createTask(params, sender=owner)
    return tx.return_value if tx.return_value is not None else manager.taskCount() - 1, tx


@pytest.fixture
def task(manager, fed, owner, validator, staked):
    """A 3-round task in FedToken, round 0 open; returns its id."""
    task_id, _ = create_task(manager, fed, owner, validator)
    return task_id


def digest(tag: int) -> bytes:
    return tag.to_bytes(32, "big")


# ─── committees ───
@pytest.fixture(scope="module")
def cmanager(project, registry, admin):
    """A TaskManager of its own for the committee tests, with a CommitteeManager set (see `committees`)."""
    tm = project.TaskManager.deploy(registry, CLAIM_PERIOD, admin, sender=admin)
    registry.grantRole(registry.SLASHER_ROLE(), tm, sender=admin)
    return tm


@pytest.fixture(scope="module")
def committees(project, registry, cmanager, admin):
    """The CommitteeManager of `cmanager`: allowed to lock and slash, and set as its committee manager."""
    cm = project.CommitteeManager.deploy(cmanager, sender=admin)
    registry.grantRole(registry.SLASHER_ROLE(), cm, sender=admin)
    cmanager.setCommitteeManager(cm, sender=admin)
    return cm


@pytest.fixture(scope="module")
def members(accounts, chain, fed, registry, admin):
    """Three fresh accounts, each with twice the validator minimum staked (room for a seat and more)."""
    from committee_helpers import new_stakers

    return new_stakers(accounts, chain, fed, registry, admin, 3, 2 * MIN_VALIDATOR)
