"""The event index on a real devnet: equal to a full log scan, paged, resumed from its cursor, held back by
confirmations, rolled back by an Anvil reorg, bound to its deployment; and `fedchain status` reading from it."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, replace

import pytest
from taskkit import FED, finalize, fund_people, new_task, send_reverting

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def people(protocol):
    return fund_people(protocol)


@pytest.fixture(scope="module")
def activity(protocol, ipfs, people):
    """A task with a finalized round (rewards, a slash, a claim), an open second round and a reverted claim."""
    a, b, c = (people[n] for n in ("alice", "bob", "carol"))
    task_id = new_task(protocol, ipfs, people)
    for i, account in enumerate((a, b, c)):
        protocol.submit_update(account, task_id, 0, bytes([0x10 + i]) * 32, 100 + i)
    report = finalize(protocol, ipfs, people, task_id, 0, {a.address: 6 * FED, b.address: 4 * FED}, slashed=(c.address,))
    tree = report.reward_tree()
    protocol.claim(a, task_id, 0, 6 * FED, tree.proof(a.address))
    protocol.submit_update(a, task_id, 1, b"\x21" * 32, 50)
    bad_claim = send_reverting(protocol, b, protocol.manager.functions.claim(task_id, 0, 5 * FED, tree.proof(b.address)))
    return {"task": task_id, "report": report, "bad_claim": bad_claim}


def full_scan(protocol) -> list[tuple]:
    """(block, log index, transaction) of every TaskManager and StakeRegistry log: what the index must hold."""
    logs = protocol.chain.w3.eth.get_logs({
        "address": [protocol.manager.address, protocol.registry.address],
        "fromBlock": protocol.deployments.block, "toBlock": "latest",
    })
    return sorted((int(e["blockNumber"]), int(e["logIndex"]), "0x" + bytes(e["transactionHash"]).hex()) for e in logs)


def indexed(index) -> list[tuple]:
    return [(e.block_number, e.log_index, e.tx_hash) for e in index.logs()]


class GetLogsSpy:
    """Wraps eth_getLogs: records each range asked for; refuses ranges wider than `limit` as providers do."""

    def __init__(self, real, limit: int | None = None) -> None:
        self.real, self.limit, self.ranges = real, limit, []

    def __call__(self, params):
        self.ranges.append((params["fromBlock"], params["toBlock"]))
        if self.limit is not None and params["toBlock"] - params["fromBlock"] + 1 > self.limit:
            raise ValueError({"code": -32005, "message": f"query exceeds max block range {self.limit}"})
        return self.real(params)


def test_index_equals_a_full_log_scan(protocol, ipfs, people, activity, tmp_path):
    from fedchain.views import records
    from fedchain.views.index import EventIndex

    index = EventIndex.open(protocol, tmp_path)
    result = index.sync()
    task_id = activity["task"]
    assert result.cursor == protocol.chain.block_number() and result.rolled_back_to is None
    assert indexed(index) == full_scan(protocol)
    assert records.submissions(index, task_id) == protocol.submissions(task_id)
    assert records.submissions(index, task_id, 1) == protocol.submissions(task_id, 1)
    assert records.finalizations(index, task_id) == protocol.finalizations(task_id)
    claimed = [(e["args"]["round"], e["args"]["contributor"], e["args"]["amount"])
               for e in protocol.events("RewardClaimed", taskId=task_id)]
    assert [(c.round, c.contributor, c.amount) for c in records.claims(index, task_id)] == claimed
    slashed = [(e["args"]["account"], e["args"]["amount"]) for e in protocol.events("Slashed", taskId=task_id)]
    assert [(s.account, s.amount) for s in records.slashes(index, task_id)] == slashed == [
        (people["carol"].address, protocol.task(task_id).slash_amount)]


def test_task_record_folds_the_events_into_rounds(protocol, people, activity, tmp_path):
    from fedchain.views import records
    from fedchain.views.index import EventIndex

    index = EventIndex.memory(protocol)
    task = records.task_record(index, activity["task"])
    info = protocol.task(activity["task"])
    assert task is not None and len(task.rounds) == info.current_round + 1 == 2
    assert (task.created.budget, task.allocated, task.paid_out) == (info.funded, 10 * FED, info.paid_out) == (
        20 * FED, 10 * FED, 6 * FED)
    first, second = task.rounds
    assert first.phase(0) == "finalized" and second.phase(0) == "open"
    assert second.phase(second.submission_deadline) == "aggregating"
    assert second.phase(second.aggregation_deadline) == "expired"  # by the clock, before anyone records it
    on_chain = protocol.round(activity["task"], 1)
    assert (second.submission_deadline, second.aggregation_deadline) == (on_chain.submission_deadline,
                                                                           on_chain.aggregation_deadline)
    assert len(second.submissions) == on_chain.submissions == 1
    assert records.task_record(index, 10**6) is None


def test_claims_from_the_index_equal_those_from_the_logs(protocol, ipfs, people, activity, tmp_path):
    from fedchain.views.index import EventIndex
    from fedchain.views.rewards import claimable_rewards

    index = EventIndex.open(protocol, tmp_path)
    index.sync()
    bob = people["bob"].address
    from_index = claimable_rewards(protocol, ipfs, activity["task"], bob, index=index)
    assert from_index == claimable_rewards(protocol, ipfs, activity["task"], bob)
    assert [(c.round, c.amount) for c in from_index] == [(0, 4 * FED)]
    assert claimable_rewards(protocol, ipfs, activity["task"], people["alice"].address, index=index) == []  # claimed


def test_paged_reads_cover_every_block_once(protocol, activity, tmp_path, monkeypatch):
    from fedchain.views.index import EventIndex

    expected = full_scan(protocol)
    spy = GetLogsSpy(protocol.chain.w3.eth.get_logs)
    monkeypatch.setattr(protocol.chain.w3.eth, "get_logs", spy)
    index = EventIndex(protocol, tmp_path / "paged.sqlite", page_blocks=4)
    result = index.sync()
    covered = [n for start, end in spy.ranges for n in range(start, end + 1)]
    assert covered == list(range(protocol.deployments.block, result.cursor + 1))  # each block once, in order
    assert all(end - start + 1 <= 4 for start, end in spy.ranges) and result.pages == len(spy.ranges)
    assert indexed(index) == expected


def test_a_provider_that_refuses_wide_ranges_is_read_in_smaller_pages(protocol, activity, tmp_path, monkeypatch):
    from fedchain.views.index import EventIndex

    expected = full_scan(protocol)
    spy = GetLogsSpy(protocol.chain.w3.eth.get_logs, limit=5)
    monkeypatch.setattr(protocol.chain.w3.eth, "get_logs", spy)
    index = EventIndex(protocol, tmp_path / "capped.sqlite", page_blocks=1000)
    index.sync()
    assert index.page_blocks <= 5 and any(end - start + 1 > 5 for start, end in spy.ranges)  # it was refused first
    assert indexed(index) == expected


def test_a_restart_resumes_from_the_saved_cursor(protocol, people, activity, tmp_path, monkeypatch):
    from fedchain.views.index import EventIndex

    first = EventIndex(protocol, tmp_path / "resume.sqlite", page_blocks=5)
    first.sync(max_pages=2)
    stopped_at = first.cursor
    assert stopped_at == protocol.deployments.block + 9
    first.close()
    protocol.submit_update(people["bob"], activity["task"], 1, b"\x22" * 32, 60)  # more happens while it is down

    expected = full_scan(protocol)
    spy = GetLogsSpy(protocol.chain.w3.eth.get_logs)
    monkeypatch.setattr(protocol.chain.w3.eth, "get_logs", spy)
    again = EventIndex(protocol, tmp_path / "resume.sqlite", page_blocks=5)
    assert again.cursor == stopped_at
    again.sync()
    assert spy.ranges[0][0] == stopped_at + 1  # nothing before the cursor is read again
    assert indexed(again) == expected


def test_confirmations_hold_back_the_newest_blocks(protocol, ipfs, people, tmp_path):
    from fedchain.views import records
    from fedchain.views.index import EventIndex

    task_id = new_task(protocol, ipfs, people, rounds=1)
    index = EventIndex(protocol, tmp_path / "confirmed.sqlite", confirmations=2)
    protocol.submit_update(people["dave"], task_id, 0, b"\x23" * 32, 70)
    head = protocol.chain.block_number()
    assert index.sync().cursor == head - 2
    assert records.submissions(index, task_id) == []
    for _ in range(2):
        protocol.chain.w3.provider.make_request("evm_mine", [])
    assert index.sync().cursor == head
    assert records.submissions(index, task_id) == protocol.submissions(task_id) != []


def test_reverted_transactions_are_kept_with_their_decoded_error(protocol, people, activity, tmp_path):
    from fedchain.views.index import EventIndex

    index = EventIndex.open(protocol, tmp_path)
    index.sync()
    by_hash = {t.hash: t for t in index.transactions(limit=500)}
    bad = by_hash[activity["bad_claim"]]
    assert (bad.status, bad.contract, bad.function, bad.sender) == (0, "TaskManager", "claim", people["bob"].address)
    assert bad.error == "TaskManagerInvalidProof"
    assert bad.error_args == {"taskId": activity["task"], "round": 0, "account": people["bob"].address,
                              "amount": 5 * FED}
    submits = [t for t in by_hash.values() if t.function == "submitUpdate"]
    assert submits and all(t.status == 1 and t.error is None and t.gas_used > 0 for t in submits)


def test_an_anvil_reorg_is_rolled_back_and_read_again(protocol, ipfs, people, activity, tmp_path):
    from fedchain.views import records
    from fedchain.views.index import EventIndex

    task_id = new_task(protocol, ipfs, people, rounds=1)
    index = EventIndex(protocol, tmp_path / "reorg.sqlite")
    protocol.submit_update(people["alice"], task_id, 0, b"\x31" * 32, 10)  # lost in the reorg
    protocol.submit_update(people["bob"], task_id, 0, b"\x32" * 32, 20)    # lost in the reorg
    index.sync()
    assert [s.contributor for s in records.submissions(index, task_id)] == [people["alice"].address,
                                                                          people["bob"].address]
    forked_at = protocol.chain.block_number() - 2
    # Replace the last two blocks: dave's submission goes in the first new block instead.
    dave = people["dave"]
    call = protocol.manager.functions.submitUpdate(task_id, 0, b"\x33" * 32, 30)
    tx = call.build_transaction({"from": dave.address, "gas": 400_000, "chainId": protocol.chain.chain_id,
                                 "nonce": protocol.chain.w3.eth.get_transaction_count(dave.address)})
    raw = "0x" + bytes(dave.sign_transaction(tx).raw_transaction).hex()
    reply = protocol.chain.w3.provider.make_request("anvil_reorg", [2, [[raw, 0]]])
    assert "error" not in reply, reply
    for name in ("alice", "bob", "dave"):
        protocol.chain._resync_nonce(people[name].address)

    result = index.sync()
    assert result.rolled_back_to == forked_at
    assert [(s.contributor, s.digest) for s in records.submissions(index, task_id)] == [(dave.address, b"\x33" * 32)]
    assert records.submissions(index, task_id) == protocol.submissions(task_id)
    assert indexed(index) == full_scan(protocol)


def test_a_reorg_while_a_page_is_read_makes_it_read_again(protocol, ipfs, people, activity, tmp_path, monkeypatch):
    from fedchain.views import records
    from fedchain.views.index import EventIndex

    task_id = new_task(protocol, ipfs, people, rounds=1)
    index = EventIndex(protocol, tmp_path / "mid-read.sqlite")
    index.sync()
    protocol.submit_update(people["alice"], task_id, 0, b"\x35" * 32, 10)  # replaced while the page is read
    provider = protocol.chain.w3.provider
    real, calls = protocol.chain.w3.eth.get_logs, []

    def read_then_reorg(params):
        logs = real(params)
        calls.append(params)
        if len(calls) == 1:  # the logs just read (alice's submission) are replaced before the page is stored
            assert "error" not in provider.make_request("anvil_reorg", [1, []])
        return logs

    monkeypatch.setattr(protocol.chain.w3.eth, "get_logs", read_then_reorg)
    index.sync()
    protocol.chain._resync_nonce(people["alice"].address)
    assert len(calls) >= 2  # the page whose block changed under it was refused and read again
    assert records.submissions(index, task_id) == protocol.submissions(task_id) == []
    monkeypatch.undo()
    assert indexed(index) == full_scan(protocol)


def test_a_revert_to_a_shorter_chain_is_rolled_back(protocol, ipfs, people, activity, tmp_path):
    from fedchain.views import records
    from fedchain.views.index import EventIndex

    task_id = new_task(protocol, ipfs, people, rounds=1)
    index = EventIndex(protocol, tmp_path / "revert.sqlite")
    index.sync()
    before = index.cursor
    snapshot = protocol.chain.w3.provider.make_request("evm_snapshot", [])["result"]
    protocol.submit_update(people["bob"], task_id, 0, b"\x44" * 32, 5)
    for _ in range(3):
        protocol.chain.w3.provider.make_request("evm_mine", [])
    assert index.sync().cursor == before + 4 and len(records.submissions(index, task_id)) == 1
    assert protocol.chain.w3.provider.make_request("evm_revert", [snapshot])["result"] is True
    protocol.chain._resync_nonce(people["bob"].address)

    result = index.sync()  # the chain's head is now below the cursor
    assert result.rolled_back_to is not None and result.rolled_back_to <= before
    assert index.cursor == protocol.chain.block_number() == before
    assert records.submissions(index, task_id) == protocol.submissions(task_id) == []
    assert indexed(index) == full_scan(protocol)


def test_another_deployments_index_is_refused(protocol, activity, tmp_path):
    from fedchain.state import StateMismatchError, superseded_state
    from fedchain.views.index import EventIndex, index_path

    binding = protocol.binding()
    path = index_path(tmp_path, binding)
    EventIndex(protocol, path).close()
    other = replace(binding, block_hash="0x" + "ab" * 32)
    with sqlite3.connect(path) as db:  # as if the file had been made on a chain since reset
        db.execute("UPDATE meta SET value = ? WHERE key = 'binding'", (json.dumps(asdict(other)),))
    with pytest.raises(StateMismatchError, match="was made on chain"):
        EventIndex(protocol, path)
    # `fedchain devnet --fresh` finds the old chain's index through its descriptor, and deletes both
    assert superseded_state(tmp_path, other) == [path.with_suffix(".json")]


def test_status_and_claim_read_only_the_blocks_the_index_has_not_seen(devnet, protocol, people, activity, tmp_path,
                                                                      monkeypatch):
    from typer.testing import CliRunner
    from web3.eth import Eth

    from fedchain.chain.accounts import create_keystore
    from fedchain.cli.main import app

    ranges: list[tuple[int, int]] = []
    real = Eth.get_logs

    def spy(self, params):
        ranges.append((params["fromBlock"], params["toBlock"]))
        return real(self, params)

    monkeypatch.setattr(Eth, "get_logs", spy)
    common = ["--rpc-url", devnet.rpc_url, "--ipfs-api", devnet.ipfs_api, "--deployments", str(devnet.deployments_path),
              "--index-dir", str(tmp_path / "index")]
    status = CliRunner().invoke(app, ["status", "--task", str(activity["task"]), "--json", *common], env={})
    assert status.exit_code == 0, status.output
    rounds = json.loads(status.output)["rounds"]
    assert rounds[0]["test_accuracy"] == activity["report"].metrics["test_accuracy"]
    assert ranges[0][0] == protocol.deployments.block  # the first call reads the chain once, from the deployment
    seen = ranges[-1][1]

    ranges.clear()
    protocol.chain.w3.provider.make_request("evm_mine", [])  # one block the index has not seen
    keystore = tmp_path / "bob.json"
    create_keystore(keystore, "pw", private_key=people["bob"].key, light=True)
    before = protocol.balance_of(people["bob"].address)
    claim = CliRunner().invoke(app, ["claim", "--task", str(activity["task"]), "--keystore", str(keystore), *common],
                               env={"FEDCHAIN_PASSWORD": "pw"})
    assert claim.exit_code == 0, claim.output
    assert "claimed 4 FED over rounds [0]" in " ".join(claim.output.split())
    assert protocol.balance_of(people["bob"].address) == before + 4 * FED
    assert ranges == [(seen + 1, seen + 1)]  # a later call reads only the new block
