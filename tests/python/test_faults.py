"""Fault injection on a real devnet (fedchain.faults.harness): parties SIGKILLed and restarted, the chain's endpoint
dropping, failing and delaying requests, and still the undisturbed run's models and rewards, every update counted
once, nothing stuck. Two seeded runs here; `python -m bench --only faults` runs twenty."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from fedchain.faults.harness import FaultPlan, Outcome, Scenario, compare, run_scenario
from fedchain.faults.rpc_proxy import FaultRates, RpcProxy

pytestmark = pytest.mark.e2e
SCENARIO = Scenario(clients=2, rounds=2, samples_per_client=300)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    calm = run_scenario(SCENARIO, None, tmp_path_factory.mktemp("calm"))
    assert not calm.events and calm.rpc.get("pass", 0) > 0 and set(calm.rpc) <= {"pass", "delayed"}
    assert [r["round"] for r in calm.rounds] == [0, 1] and not calm.expired
    assert compare(calm, calm) == []
    return calm


@pytest.mark.parametrize("seed", [1, 2])
def test_a_disturbed_run_ends_as_the_undisturbed_one(reference: Outcome, seed: int, tmp_path: Path) -> None:
    run = run_scenario(SCENARIO, FaultPlan(seed=seed), tmp_path)
    assert len(run.events) >= 2, run.events  # parties were killed (a kill whose victim finished first is spent)
    assert run.rpc.get("fail", 0) + run.rpc.get("drop-before", 0) + run.rpc.get("drop-after", 0) > 0, run.rpc
    assert compare(reference, run) == [], run.events


def test_compare_names_what_differs(reference: Outcome) -> None:
    """The comparison is not vacuous: a lost update, a different model, unclaimed rewards and stuck funds are named."""
    import copy

    broken = copy.deepcopy(reference)
    first = broken.rounds[0]
    first["model_cid"] = "Qm" + "x" * 44
    first["counted"] = first["counted"][:1]
    first["claimed_by_all"] = False
    broken.task_manager_balance += 1
    problems = " ".join(compare(reference, broken))
    for words in ("rounds differ", "but counted", "never claimed", "stuck funds"):
        assert words in problems


def test_a_transaction_whose_answer_is_lost_is_followed_not_sent_again(tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """Through a proxy that drops half the answers after forwarding, transfers land exactly once each."""
    from fedchain.chain.client import Chain
    from fedchain.sim.devnet import dev_account, start_anvil

    anvil = start_anvil(accounts=3)
    try:
        with RpcProxy(anvil.rpc_url, FaultRates(drop=0.5), seed=4) as proxy:
            chain = Chain(proxy.url)
            sender, receiver = dev_account(1), dev_account(2)
            before = chain.w3.eth.get_balance(receiver.address)
            caplog.set_level(logging.INFO, logger="fedchain.chain.client")
            for _ in range(12):
                chain.transfer_eth(sender, receiver.address, 1)
            assert proxy.counts.get("drop-after", 0) > 0
        assert Chain(anvil.rpc_url).w3.eth.get_balance(receiver.address) == before + 12
        assert "before its answer was lost" in caplog.text
    finally:
        anvil.stop()
