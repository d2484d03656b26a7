"""Front-running end to end on Anvil: a copier sees an honest contributor's pending submitUpdate in the mempool and
lands its own submission first (a higher priority fee, one block). The validator must not judge the original by chain
order: on a sealed task the copied digest binds the honest sender, so only the copier is slashed (`replay`); on an
unsealed task the copier re-wraps the honest update under its own name, and neither near-copy is slashed (both are
`duplicate`: content cannot prove who copied whom)."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from fedchain.learning.trainers import LocalData

pytestmark = pytest.mark.e2e
FED = 10**18
GWEI = 10**9


@pytest.fixture(scope="module")
def world(devnet, protocol, ipfs, tmp_path_factory):
    from fedchain.core.keys import generate_sealing_key, load_sealing_key
    from fedchain.learning.data import dirichlet_shards, mnist_subset, save_npz, train_test_split
    from fedchain.sim.devnet import dev_account

    tmp = tmp_path_factory.mktemp("frontrun")
    owner, validator = dev_account(0), dev_account(1)
    people = {"owner": owner, "validator": validator, "honest": dev_account(2), "copier": dev_account(3),
              "other": dev_account(4)}
    for account in people.values():
        protocol.chain.send(protocol.token.functions.mint(account.address, 10_000 * FED), owner, action="mint")
    protocol.ensure_stake(validator, protocol.registry.functions.minValidatorStake().call())
    x, y = mnist_subset()
    split = train_test_split(x, y, test_fraction=0.2, seed=0)
    save_npz(tmp / "holdout.npz", split.x_test, split.y_test)
    shards = dirichlet_shards(split.y_train, 2, alpha=5.0, seed=1)
    data = {"honest": LocalData(split.x_train[shards[0]][:300], split.y_train[shards[0]][:300]),
            "other": LocalData(split.x_train[shards[1]][:300], split.y_train[shards[1]][:300])}
    public_key = generate_sealing_key(tmp / "validator.key")
    return {"tmp": tmp, "people": people, "data": data, "public_key": public_key,
            "sealing_key": load_sealing_key(tmp / "validator.key")}


def _task(protocol, ipfs, world, *, sealed: bool) -> int:
    from fedchain.core.spec import mnist_spec
    from fedchain.roles.owner import create_task_from_spec

    people = world["people"]
    spec = mnist_spec("mlp", [world["public_key"].hex()] if sealed else [], sealed=sealed)
    task_id = create_task_from_spec(
        protocol, ipfs, people["owner"], spec, rounds=1, reward_per_round=100 * FED, submission_window=3600,
        aggregation_window=3600, max_contributors=3, validator=people["validator"].address, slash_fraction=0.5,
    )
    for role in ("honest", "copier", "other"):
        protocol.ensure_stake(people[role], protocol.task(task_id).min_contributor_stake)
    return task_id


def _pending_submission(protocol, sender: str, timeout: float = 60.0) -> dict:
    """The sender's submitUpdate waiting in Anvil's mempool, decoded: what a front-runner reads."""
    w3 = protocol.chain.w3
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        content = w3.provider.make_request("txpool_content", [])["result"]["pending"]
        for by_sender, txs in content.items():
            if by_sender.lower() != sender.lower():
                continue
            for tx in txs.values():
                if (tx.get("to") or "").lower() == protocol.manager.address.lower():
                    _, args = protocol.manager.decode_function_input(tx["input"])
                    return dict(args)
        time.sleep(0.05)
    raise AssertionError(f"no pending submission from {sender}")


def _send_with_tip(protocol, account, call) -> str:
    """Sign and send `call` outbidding the default priority fee (the front-run itself); returns the hash."""
    w3 = protocol.chain.w3
    tx = call.build_transaction({
        "from": account.address, "nonce": w3.eth.get_transaction_count(account.address, "pending"),
        "gas": 400_000, "maxPriorityFeePerGas": 100 * GWEI, "maxFeePerGas": 200 * GWEI + 2 * w3.eth.gas_price,
        "chainId": protocol.chain.chain_id,
    })
    protocol.chain._resync_nonce(account.address)  # the adapter re-reads this account's nonce next time
    return w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction).hex()


def _front_run(protocol, honest_client, data, copy_digest_of) -> dict:
    """Honest submits with automine off; the copier reads the pending transaction, submits `copy_digest_of(args)`
    with a higher tip; one block mines both. Returns the honest outcome and both receipts' positions."""
    w3 = protocol.chain.w3
    outcome: dict = {}
    w3.provider.make_request("evm_setAutomine", [False])
    try:
        thread = threading.Thread(target=lambda: outcome.update(honest=honest_client.contribute_round(0, data)))
        thread.start()
        args = _pending_submission(protocol, honest_client.account.address)
        outcome["copy_hash"] = copy_digest_of(args)
        w3.provider.make_request("evm_mine", [])
        thread.join(timeout=120)
    finally:
        w3.provider.make_request("evm_setAutomine", [True])
    assert outcome["honest"] is not None, "the honest submission must land"
    copy_receipt = w3.eth.get_transaction_receipt(outcome["copy_hash"])
    block = w3.eth.get_block(copy_receipt["blockNumber"], full_transactions=True)
    honest_index = next(tx["transactionIndex"] for tx in block["transactions"]
                        if tx["from"] == honest_client.account.address)
    # The copy landed first, in the same block as the honest submission: chain order favours the copier.
    assert copy_receipt["status"] == 1 and copy_receipt["transactionIndex"] < honest_index
    return outcome


def _run_round(protocol, ipfs, world, task_id: int, copier_submits) -> tuple[dict, dict]:
    from fedchain.core.report import RoundReport
    from fedchain.roles.contributor import Contributor, ContributorConfig
    from fedchain.roles.validator import Validator, ValidatorConfig

    people, tmp = world["people"], world["tmp"]
    config = ContributorConfig(task_id, tmp / "unused.npz", tmp / f"state-{task_id}", progress=False)
    honest = Contributor(protocol, ipfs, people["honest"], config)
    other = Contributor(protocol, ipfs, people["other"], config)
    assert other.contribute_round(0, world["data"]["other"]) is not None
    _front_run(protocol, honest, world["data"]["honest"], copier_submits)
    stakes = {role: protocol.active_stake(people[role].address) for role in ("honest", "copier", "other")}
    the_validator = Validator(protocol, ipfs, people["validator"], world["sealing_key"],
                              ValidatorConfig(task_id, tmp / "holdout.npz", tmp / f"vstate-{task_id}"))
    result = the_validator.finalize_round(0)
    report = RoundReport.from_json_bytes(ipfs.cat(result.report_cid))
    by_role = {role: next(u for u in report.updates if u.contributor == people[role].address)
               for role in ("honest", "copier", "other")}
    after = {role: protocol.active_stake(people[role].address) for role in ("honest", "copier", "other")}
    return by_role, {role: stakes[role] - after[role] for role in stakes}


def test_sealed_front_run_slashes_only_the_copier(protocol, ipfs, world):
    task_id = _task(protocol, ipfs, world, sealed=True)
    copier = world["people"]["copier"]

    def copy(args):  # the sealed bytes are opaque: the copier resubmits the honest digest as its own
        call = protocol.manager.functions.submitUpdate(task_id, 0, args["digest"], args["numSamples"])
        return _send_with_tip(protocol, copier, call)

    by_role, lost = _run_round(protocol, ipfs, world, task_id, copy)
    slash = protocol.task(task_id).slash_amount
    assert (by_role["copier"].reason, by_role["copier"].slashed, lost["copier"]) == ("replay", True, slash)
    assert (by_role["honest"].status, by_role["honest"].slashed, lost["honest"]) == ("accepted", False, 0)
    assert int(by_role["honest"].reward) > 0 and int(by_role["copier"].reward) == 0
    assert lost["other"] == 0


def test_unsealed_front_run_rewrap_slashes_no_one_and_pays_the_copier_nothing(protocol, ipfs, world):
    from fedchain.core.cid import cid_to_digest, digest_to_cid
    from fedchain.core.envelope import UpdateEnvelope, decode_update, encode_update
    from fedchain.views.taskview import TaskView

    task_id = _task(protocol, ipfs, world, sealed=False)
    copier = world["people"]["copier"]
    layout = TaskView(protocol, ipfs, task_id).layout

    def rewrap(args):  # fetch the honest update (pinned before it was submitted) and claim it under its own name
        stolen = decode_update(ipfs.cat(digest_to_cid(args["digest"])), layout.expected_tensors())
        tensors = {k: torch.from_numpy(v.copy()) * 1.001 for k, v in stolen.tensors.items()}
        copy = UpdateEnvelope(task_id, 0, stolen.base_model_cid, stolen.num_samples, copier.address, tensors)
        digest = cid_to_digest(ipfs.add_bytes(encode_update(copy)))
        call = protocol.manager.functions.submitUpdate(task_id, 0, digest, args["numSamples"])
        return _send_with_tip(protocol, copier, call)

    by_role, lost = _run_round(protocol, ipfs, world, task_id, rewrap)
    for role in ("honest", "copier"):
        assert (by_role[role].reason, by_role[role].slashed, lost[role], int(by_role[role].reward)) == (
            "duplicate", False, 0, 0), role
    assert by_role["other"].status == "accepted" and int(by_role["other"].reward) > 0 and lost["other"] == 0
