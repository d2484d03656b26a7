"""Economic attacks end to end on a devnet (Anvil, the embedded IPFS node, the deployed contracts), through the
contributor client and the validator, each shown failing:

- a sybil fill: minimally staked accounts take every slot of a round before honest contributors have trained; with
  the task's `min_open` the round stays open, each honest client takes a sybil's slot (it holds more stake), and the
  validator closes the full round once min_open has passed;
- stake leaving before its slash lands: a contributor submits a provably bad update, unstakes everything and tries
  to withdraw once its unbonding period is over; the withdrawal is refused, and the validator's slash takes the stake;
- one stake backing every task: a contributor staking exactly one slash amount contributes to one task; its client's
  submission to a second task is refused, so no task is backed by stake another task already holds.
"""

from __future__ import annotations

import pytest
import torch

from fedchain.learning.trainers import LocalData

pytestmark = pytest.mark.e2e
FED = 10**18


@pytest.fixture(scope="module")
def world(devnet, protocol, tmp_path_factory):
    from fedchain.learning.data import dirichlet_shards, mnist_subset, save_npz, train_test_split
    from fedchain.sim.devnet import dev_account

    tmp = tmp_path_factory.mktemp("economics")
    owner, validator = dev_account(0), dev_account(1)
    accounts = {name: dev_account(2 + i) for i, name in enumerate(
        ["honest-a", "honest-b", "sybil-1", "sybil-2", "mallory", "alice", "other"])}
    for account in (owner, validator, *accounts.values()):
        protocol.chain.send(protocol.token.functions.mint(account.address, 10_000 * FED), owner, action="mint")
    protocol.ensure_stake(validator, protocol.registry.functions.minValidatorStake().call())
    x, y = mnist_subset()
    split = train_test_split(x, y, test_fraction=0.2, seed=0)
    save_npz(tmp / "holdout.npz", split.x_test, split.y_test)
    shards = dirichlet_shards(split.y_train, 2, alpha=5.0, seed=2)
    data = [LocalData(split.x_train[shard][:300], split.y_train[shard][:300]) for shard in shards]
    return {"tmp": tmp, "owner": owner, "validator": validator, "accounts": accounts, "data": data}


def _task(protocol, ipfs, world, **kwargs) -> int:
    from fedchain.core.spec import mnist_spec
    from fedchain.roles.owner import create_task_from_spec

    options = {"rounds": 1, "reward_per_round": 100 * FED, "submission_window": 3600, "aggregation_window": 3600,
               "max_contributors": 2, "slash_fraction": 0.5, **kwargs}
    return create_task_from_spec(protocol, ipfs, world["owner"], mnist_spec("mlp"),
                                 validator=world["validator"].address, **options)


def _client(protocol, ipfs, world, task_id: int, name: str):
    from fedchain.roles.contributor import Contributor, ContributorConfig

    tmp = world["tmp"]
    config = ContributorConfig(task_id, tmp / "unused.npz", tmp / f"state-{name}-{task_id}", progress=False)
    return Contributor(protocol, ipfs, world["accounts"][name], config)


def _validator(protocol, ipfs, world, task_id: int):
    from fedchain.roles.validator import Validator, ValidatorConfig

    tmp = world["tmp"]
    return Validator(protocol, ipfs, world["validator"], None,
                     ValidatorConfig(task_id, tmp / "holdout.npz", tmp / f"vstate-{task_id}", poll_interval=0.5))


def _report(ipfs, result):
    from fedchain.core.report import RoundReport

    return RoundReport.from_json_bytes(ipfs.cat(result.report_cid))


def test_sybils_filling_a_round_first_cannot_lock_honest_contributors_out(protocol, ipfs, world):
    accounts = world["accounts"]
    task_id = _task(protocol, ipfs, world, min_open=15)
    minimum = protocol.task(task_id).min_contributor_stake
    for i, name in enumerate(("sybil-1", "sybil-2")):  # cheap accounts: the minimum stake, no training
        protocol.ensure_stake(accounts[name], minimum)
        protocol.submit_update(accounts[name], task_id, 0, bytes([0x51 + i]) * 32, 1)
    assert protocol.round(task_id, 0).submissions == 2 and protocol.round(task_id, 0).phase.name == "OPEN"

    for i, name in enumerate(("honest-a", "honest-b")):  # honest contributors hold more stake than the minimum
        protocol.ensure_stake(accounts[name], 2 * minimum)
        assert _client(protocol, ipfs, world, task_id, name).contribute_round(0, world["data"][i]) is not None
    displaced = {e["args"]["displaced"] for e in protocol.events("UpdateDisplaced", taskId=task_id)}
    assert displaced == {accounts["sybil-1"].address, accounts["sybil-2"].address}
    assert all(protocol.locked_stake(accounts[n].address) == 0 for n in ("sybil-1", "sybil-2"))

    (result,) = _validator(protocol, ipfs, world, task_id).run(max_rounds=1)  # closes the full round after min_open
    report = _report(ipfs, result)
    assert {u.contributor for u in report.updates} == {accounts["honest-a"].address, accounts["honest-b"].address}
    assert all(u.status == "accepted" and int(u.reward) > 0 for u in report.updates)


def test_stake_cannot_leave_before_its_slash_lands(protocol, ipfs, world):
    from fedchain.chain.errors import TransactionRevertedError
    from fedchain.core.cid import cid_to_digest

    accounts, mallory = world["accounts"], world["accounts"]["mallory"]
    task_id = _task(protocol, ipfs, world, submission_window=protocol.unbonding_period() + 600, slash_fraction=1.0,
                    max_contributors=4)  # not full: the round stays open while the unbonding period passes
    minimum = protocol.task(task_id).slash_amount
    protocol.ensure_stake(mallory, minimum)
    for i, name in enumerate(("other", "honest-b")):  # two honest updates: one non-finite in three is mallory's fault
        protocol.ensure_stake(accounts[name], minimum)
        assert _client(protocol, ipfs, world, task_id, name).contribute_round(0, world["data"][i]) is not None
    client = _client(protocol, ipfs, world, task_id, "mallory")
    base = client.task.base_model_cid(0)
    poisoned = {name: torch.full(shape, float("nan"))
                for name, (shape, _) in client.task.layout.expected_tensors().items()}
    payload = client.build_payload(0, base, 300, poisoned)  # provably bad: non-finite
    protocol.submit_update(mallory, task_id, 0, cid_to_digest(ipfs.add_bytes(payload)), 300)

    protocol.request_unstake(mallory, protocol.active_stake(mallory.address))
    protocol.chain.w3.provider.make_request("evm_increaseTime", [protocol.unbonding_period()])
    protocol.chain.w3.provider.make_request("evm_mine", [])
    assert protocol.release_settled(mallory) == []  # its round is not settled: nothing to release
    with pytest.raises(TransactionRevertedError) as refused:
        protocol.withdraw_stake(mallory)
    assert refused.value.error_name == "StakeRegistryStakeLocked"

    treasury = protocol.registry.functions.treasury().call()
    before = protocol.balance_of(treasury)
    info = protocol.round(task_id, 0)
    protocol.chain.w3.provider.make_request("evm_increaseTime", [max(1, info.submission_deadline - protocol.chain.timestamp())])
    protocol.chain.w3.provider.make_request("evm_mine", [])
    result = _validator(protocol, ipfs, world, task_id).finalize_round(0)
    by_address = {u.contributor: u for u in _report(ipfs, result).updates}
    assert (by_address[mallory.address].reason, by_address[mallory.address].slashed) == ("non-finite", True)
    assert protocol.balance_of(treasury) == before + minimum
    assert protocol.unbonding(mallory.address)[0] == 0  # the slash took what was unbonding


def test_one_stake_cannot_back_two_tasks_at_once(protocol, ipfs, world):
    alice = world["accounts"]["alice"]
    first, second = (_task(protocol, ipfs, world, slash_fraction=1.0) for _ in range(2))
    slash = protocol.task(first).slash_amount
    protocol.ensure_stake(alice, slash)
    assert protocol.active_stake(alice.address) == slash  # exactly one slash amount
    assert _client(protocol, ipfs, world, first, "alice").contribute_round(0, world["data"][0]) is not None
    assert protocol.locked_stake(alice.address) == slash
    # The client's submission to the second task is refused (its stake is locked by the first): skipped, not sent.
    assert _client(protocol, ipfs, world, second, "alice").contribute_round(0, world["data"][1]) is None
    assert protocol.submission_of(second, 0, alice.address) == b"\x00" * 32
