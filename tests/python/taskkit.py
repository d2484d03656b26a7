"""Shared by the event index and dashboard tests: accounts, tasks and real round results on a devnet, made through
the Python chain adapter (no training), so the tests control every event."""

from __future__ import annotations

FED = 10**18
MODEL0, MODEL1 = b"\x0a" * 32, b"\x01" * 32


def fund_people(protocol) -> dict:
    """Development accounts by name, with FED; the validator and contributors staked."""
    from fedchain.sim.devnet import dev_account

    names = ("owner", "validator", "alice", "bob", "carol", "dave")
    people = {name: dev_account(i) for i, name in enumerate(names)}
    minimum = protocol.registry.functions.minContributorStake().call()
    for account in people.values():
        protocol.chain.send(protocol.token.functions.mint(account.address, 10_000 * FED), people["owner"], action="mint")
    protocol.ensure_stake(people["validator"], protocol.registry.functions.minValidatorStake().call())
    for name in ("alice", "bob", "carol", "dave"):
        protocol.ensure_stake(people[name], minimum)
    return people


def new_task(protocol, ipfs, people, *, rounds: int = 2, window: int = 3600, name: str | None = None,
             max_contributors: int = 5) -> int:
    """A task of `rounds` rounds paying 10 FED each, its spec (named `name`) in IPFS."""
    from fedchain.chain.protocol import TaskParams
    from fedchain.core.cid import cid_to_digest
    from fedchain.core.spec import TaskSpec, mnist_spec

    spec_obj = mnist_spec(sealed=False)
    if name is not None:
        spec_obj = TaskSpec.model_validate({**spec_obj.to_json_obj(), "name": name})
    spec = cid_to_digest(ipfs.add_bytes(spec_obj.to_json_bytes()))
    minimum = protocol.registry.functions.minContributorStake().call()
    params = TaskParams(
        reward_token=protocol.token.address, spec_digest=spec, initial_model_digest=MODEL0, num_rounds=rounds,
        reward_per_round=10 * FED, submission_window=window, aggregation_window=window, min_contributor_stake=minimum,
        max_contributors=max_contributors, validator=people["validator"].address, slash_amount=minimum // 2,
    )
    return protocol.create_task(people["owner"], params)[0]


def travel(protocol, seconds: int) -> None:
    protocol.chain.w3.provider.make_request("evm_increaseTime", [seconds])
    protocol.chain.w3.provider.make_request("evm_mine", [])


def finalize(protocol, ipfs, people, task_id: int, round_index: int, rewards: dict[str, int],
             slashed: tuple[str, ...] = (), reason: str = "replay"):
    """Post a real result: a round report in IPFS whose reward tree the contract checks claims against; the
    `slashed` contributors are rejected for `reason`."""
    from fedchain.core.cid import cid_to_digest, digest_to_cid
    from fedchain.core.report import RoundReport, UpdateRecord

    submitted = protocol.submissions(task_id, round_index)
    updates = [
        UpdateRecord(contributor=s.contributor, cid=digest_to_cid(s.digest), num_samples=s.num_samples,
                     status="rejected" if s.contributor in slashed else "accepted",
                     reason=reason if s.contributor in slashed else None,
                     score=rewards.get(s.contributor, 0) / max(1, sum(rewards.values())),
                     reward=rewards.get(s.contributor, 0), slashed=s.contributor in slashed)
        for s in submitted
    ]
    report = RoundReport(task_id=task_id, round=round_index, base_model_cid=digest_to_cid(MODEL0),
                         model_cid=digest_to_cid(MODEL1), metrics={"test_accuracy": 0.5 + round_index / 10,
                                                                   "test_loss": 1.0 - round_index / 10},
                         budget=10 * FED, total_rewards=sum(rewards.values()), rewards_root="0x" + "00" * 32,
                         updates=updates).with_rewards_root()
    digest = cid_to_digest(ipfs.add_bytes(report.to_json_bytes()))
    travel(protocol, max(0, protocol.round(task_id, round_index).submission_deadline - protocol.chain.timestamp()))
    evidence = [(s.contributor, s.digest) for s in submitted if s.contributor in slashed]
    protocol.post_result(people["validator"], task_id, round_index, MODEL1, digest, report.reward_tree().root,
                         report.total_rewards, evidence)
    return report


def send_reverting(protocol, account, call) -> str:
    """Mine a transaction that reverts (a fixed gas limit skips the estimate that would refuse it); its hash."""
    chain = protocol.chain
    tx = call.build_transaction({"from": account.address, "gas": 300_000, "chainId": chain.chain_id,
                                 "nonce": chain.w3.eth.get_transaction_count(account.address, "pending")})
    tx_hash = chain.w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
    receipt = chain.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)
    assert receipt["status"] == 0
    chain._resync_nonce(account.address)
    return "0x" + bytes(tx_hash).hex()
