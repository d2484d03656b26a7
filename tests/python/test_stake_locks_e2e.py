"""Stake locks end to end on a devnet (Anvil and the deployed contracts, through the Python chain adapter).

A contributor submits, requests an unstake of everything, waits out the unbonding period and tries to withdraw: the
stake its submission locked stays in the registry, and the validator's slash still takes it. Locks of settled
rounds are released (by anyone) and then withdrawn; consecutive rounds carry one lock.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e
FED = 10**18
SPEC, MODEL0, MODEL1, REPORT = (bytes([b]) * 32 for b in (0x5A, 0x0A, 0x01, 0x02))


@pytest.fixture(scope="module")
def people(devnet, protocol):
    from fedchain.sim.devnet import dev_account

    owner, validator, mallory, alice = dev_account(0), dev_account(1), dev_account(2), dev_account(3)
    for account in (owner, validator, mallory, alice):
        protocol.chain.send(protocol.token.functions.mint(account.address, 10_000 * FED), owner, action="mint")
    protocol.ensure_stake(validator, protocol.registry.functions.minValidatorStake().call())
    return {"owner": owner, "validator": validator, "mallory": mallory, "alice": alice}


def travel(protocol, seconds: int) -> None:
    protocol.chain.w3.provider.make_request("evm_increaseTime", [seconds])
    protocol.chain.w3.provider.make_request("evm_mine", [])


def new_task(protocol, people, *, slash: int, submission_window: int, rounds: int = 1) -> int:
    from fedchain.chain.protocol import TaskParams

    params = TaskParams(
        reward_token=protocol.token.address, spec_digest=SPEC, initial_model_digest=MODEL0, num_rounds=rounds,
        reward_per_round=10 * FED, submission_window=submission_window, aggregation_window=600,
        min_contributor_stake=protocol.registry.functions.minContributorStake().call(), max_contributors=5,
        validator=people["validator"].address, slash_amount=slash,
    )
    task_id, _ = protocol.create_task(people["owner"], params)
    return task_id


def to_aggregating(protocol, task_id: int, round_index: int) -> None:
    info = protocol.round(task_id, round_index)
    travel(protocol, max(0, info.submission_deadline - protocol.chain.timestamp()))


def test_unstake_then_withdraw_is_refused_and_the_slash_takes_the_locked_stake(protocol, people):
    from web3.logs import DISCARD

    from fedchain.chain.errors import TransactionRevertedError
    from fedchain.chain.protocol import RoundPhase

    mallory, validator = people["mallory"], people["validator"]
    minimum = protocol.registry.functions.minContributorStake().call()
    unbonding_period = protocol.registry.functions.unbondingPeriod().call()
    protocol.ensure_stake(mallory, minimum)
    # The task may slash all of mallory's stake; its round is still open once her unbonding period is over.
    task_id = new_task(protocol, people, slash=minimum, submission_window=unbonding_period + 600)
    evidence = b"\xbb" * 32

    protocol.submit_update(mallory, task_id, 0, evidence, 100)  # submit
    assert protocol.locked_stake(mallory.address) == minimum
    assert protocol.locked_for(task_id, 0, mallory.address) == minimum

    protocol.chain.send(protocol.registry.functions.requestUnstake(minimum), mallory, action="requestUnstake")  # unstake
    assert protocol.active_stake(mallory.address) == 0
    travel(protocol, unbonding_period)
    assert protocol.round(task_id, 0).phase == RoundPhase.OPEN
    with pytest.raises(TransactionRevertedError) as refused:  # withdraw attempt
        protocol.chain.send(protocol.registry.functions.withdraw(), mallory, action="withdraw")
    assert refused.value.error_name == "StakeRegistryStakeLocked"
    assert refused.value.error_args["locked"] == minimum
    assert protocol.unbonding(mallory.address)[0] == minimum

    treasury = protocol.registry.functions.treasury().call()
    before = protocol.balance_of(treasury)
    to_aggregating(protocol, task_id, 0)
    result = protocol.post_result(validator, task_id, 0, MODEL1, REPORT, b"\x00" * 32, 0, [(mallory.address, evidence)])  # slash
    (slashed,) = protocol.manager.events.Slashed().process_receipt(result.receipt, errors=DISCARD)
    assert (slashed["args"]["account"], slashed["args"]["amount"]) == (mallory.address, minimum)
    assert protocol.balance_of(treasury) == before + minimum
    assert protocol.unbonding(mallory.address)[0] == 0

    # The slash took the tokens; releasing the settled lock clears the record.
    assert len(protocol.release_settled(mallory)) == 1
    assert protocol.locked_stake(mallory.address) == 0


def test_settled_locks_are_released_then_withdrawn(protocol, people):
    alice, validator = people["alice"], people["validator"]
    minimum = protocol.registry.functions.minContributorStake().call()
    unbonding_period = protocol.registry.functions.unbondingPeriod().call()
    protocol.ensure_stake(alice, 2 * minimum)
    task_id = new_task(protocol, people, slash=minimum // 2, submission_window=unbonding_period + 600, rounds=2)

    protocol.submit_update(alice, task_id, 0, b"\x01" * 32, 10)
    to_aggregating(protocol, task_id, 0)
    protocol.post_result(validator, task_id, 0, MODEL1, REPORT, b"\x00" * 32, 0)
    protocol.submit_update(alice, task_id, 1, b"\x02" * 32, 10)  # round 0's lock carries into round 1
    assert protocol.locked_stake(alice.address) == minimum // 2
    assert (protocol.locked_for(task_id, 0, alice.address), protocol.locked_for(task_id, 1, alice.address)) == (0, minimum // 2)

    protocol.chain.send(protocol.registry.functions.requestUnstake(2 * minimum), alice, action="requestUnstake")
    travel(protocol, unbonding_period)
    assert protocol.releasable(alice.address) == []  # round 1 is still open: its lock stays
    to_aggregating(protocol, task_id, 1)
    protocol.post_result(validator, task_id, 1, MODEL1, REPORT, b"\x00" * 32, 0)
    assert protocol.releasable(alice.address) == [(task_id, 1)]

    before = protocol.balance_of(alice.address)
    released = protocol.release_settled(alice)
    assert len(released) == 1 and protocol.locked_stake(alice.address) == 0
    protocol.chain.send(protocol.registry.functions.withdraw(), alice, action="withdraw")
    assert protocol.balance_of(alice.address) == before + 2 * minimum


def test_submission_releases_settled_locks_when_the_stake_is_short(protocol, people):
    """A contributor whose whole stake is locked by an earlier, settled round it did not follow up: the adapter
    releases that lock before the next submission instead of letting it revert."""
    from fedchain.sim.devnet import dev_account

    bob = dev_account(4)
    protocol.chain.send(protocol.token.functions.mint(bob.address, 10_000 * FED), people["owner"], action="mint")
    minimum = protocol.registry.functions.minContributorStake().call()
    protocol.ensure_stake(bob, minimum)
    task_id = new_task(protocol, people, slash=minimum, submission_window=600, rounds=3)
    protocol.submit_update(bob, task_id, 0, b"\x03" * 32, 10)
    for round_index in (0, 1):  # bob skips round 1
        to_aggregating(protocol, task_id, round_index)
        protocol.post_result(people["validator"], task_id, round_index, MODEL1, REPORT, b"\x00" * 32, 0)
    assert protocol.locked_for(task_id, 0, bob.address) == minimum
    protocol.submit_update(bob, task_id, 2, b"\x04" * 32, 10)
    assert protocol.locked_for(task_id, 0, bob.address) == 0
    assert protocol.locked_for(task_id, 2, bob.address) == minimum == protocol.locked_stake(bob.address)


def test_stake_withdraw_command_releases_settled_locks_first(devnet, protocol, people, tmp_path):
    from typer.testing import CliRunner

    from fedchain.chain.accounts import create_keystore
    from fedchain.cli.main import app
    from fedchain.sim.devnet import dev_account

    carol = dev_account(5)
    protocol.chain.send(protocol.token.functions.mint(carol.address, 10_000 * FED), people["owner"], action="mint")
    minimum = protocol.registry.functions.minContributorStake().call()
    protocol.ensure_stake(carol, minimum)
    task_id = new_task(protocol, people, slash=minimum // 2, submission_window=600)
    protocol.submit_update(carol, task_id, 0, b"\x05" * 32, 10)
    to_aggregating(protocol, task_id, 0)
    protocol.post_result(people["validator"], task_id, 0, MODEL1, REPORT, b"\x00" * 32, 0)
    protocol.chain.send(protocol.registry.functions.requestUnstake(minimum), carol, action="requestUnstake")
    travel(protocol, protocol.registry.functions.unbondingPeriod().call())
    keystore = tmp_path / "carol.json"
    create_keystore(keystore, "pw", light=True, private_key=carol.key)
    before = protocol.balance_of(carol.address)

    result = CliRunner().invoke(app, [
        "stake", "withdraw", "--keystore", str(keystore), "--rpc-url", devnet.rpc_url,
        "--deployments", str(devnet.deployments_path),
    ], env={"FEDCHAIN_PASSWORD": "pw"})
    out = " ".join(result.output.split())
    assert result.exit_code == 0, out
    assert "released 1 settled stake lock(s)" in out
    assert protocol.balance_of(carol.address) == before + minimum
    assert protocol.locked_stake(carol.address) == 0
