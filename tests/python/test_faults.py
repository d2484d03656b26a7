"""Fault injection on a real devnet (fedchain.faults.harness): parties SIGKILLed and restarted, the chain's endpoint
dropping, failing and delaying requests, and still the undisturbed run's models and rewards, every update counted
once, nothing stuck. Two seeded runs here; `python -m bench --only faults` runs twenty. Then a contributor kept
down past its round's window: the run must end as the undisturbed run in which it joined only after that window."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from fedchain.faults.harness import (
    Absence,
    FaultPlan,
    FaultRunError,
    Outcome,
    Scenario,
    compare,
    reference_for,
    run_scenario,
)
from fedchain.faults.rpc_proxy import FaultRates, RpcProxy

pytestmark = pytest.mark.e2e
SCENARIO = Scenario(clients=2, rounds=2, samples_per_client=300)
# A missed window costs the run the whole window: a short one (still room for start-up, training and scoring here).
ABSENT = Scenario(clients=2, rounds=2, samples_per_client=300, window=40)
MISSED = Absence("client-1", round=0)


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


def test_roles_acting_three_blocks_deep_end_as_the_undisturbed_run(reference: Outcome, tmp_path: Path) -> None:
    """Every role with --confirmations 3 (fedchain.views.confirmed): rounds collected once their close is 3 blocks
    deep, base models and results used once their events are (on Anvil the waiting roles mine empty blocks), and
    the same models and rewards. (Acting on a moved deadline, this once collected 1 of a full round's 2 updates.)"""
    from dataclasses import replace

    run = run_scenario(replace(SCENARIO, confirmations=3), None, tmp_path)
    assert compare(reference, run) == []
    logs = "".join(path.read_text() for path in (tmp_path / "logs").glob("*.log"))
    assert "(3 confirmations)" in logs  # they waited for the depth (at the latest, for the last result to claim)


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


@pytest.fixture(scope="module")
def late_joiner(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    """The undisturbed run without client-1 in round 0: it starts only once round 0's submission window closed."""
    late = run_scenario(reference_for(ABSENT, FaultPlan(seed=0, absences=(MISSED,))), None,
                        tmp_path_factory.mktemp("late"))
    assert late.absent == [str(MISSED)] and not late.expired and set(late.rpc) <= {"pass", "delayed"}
    first, second = late.rounds
    assert len(first["submitted"]) == 1 and len(second["submitted"]) == 2  # it missed round 0, took part in round 1
    assert len(first["rewards"]) == 1 and len(second["rewards"]) == 2 and compare(late, late) == []
    return late


def test_a_contributor_kept_down_past_its_window_ends_as_the_late_joiner(late_joiner: Outcome, reference: Outcome,
                                                                        tmp_path: Path) -> None:
    """client-1 is SIGKILLed as it starts training in round 0 and restarted only after round 0's submission
    deadline, among the usual kills and RPC faults: round 0 goes on without it (its reward goes to the other
    contributor), it takes part in round 1, and nothing is lost, counted twice or stuck."""
    plan = FaultPlan(seed=3, absences=(MISSED,))
    run = run_scenario(ABSENT, plan, tmp_path)
    assert any("absent from round 0" in e for e in run.events) and any("window closed" in e for e in run.events)
    assert run.rpc.get("fail", 0) + run.rpc.get("drop-before", 0) + run.rpc.get("drop-after", 0) > 0, run.rpc
    assert compare(late_joiner, run) == [], run.events
    assert "the reference is not the run without the same parties" in " ".join(compare(reference, run))


def _outcome(expired: list[int]) -> Outcome:
    """A two-contributor outcome built by hand: rounds 0-1 of 1000 units each, those in `expired` without a result."""
    rounds = [{"round": r, "model_cid": f"Qm{r}", "rewards_root": f"{r:064x}", "total_rewards": 1000,
               "rewards": {"0xA": 600, "0xB": 400}, "submitted": ["0xA", "0xB"], "counted": ["0xA", "0xB"],
               "claimed_by_all": True} for r in range(2) if r not in expired]
    earned = {"0xA": 600 * len(rounds), "0xB": 400 * len(rounds)}
    unallocated = 2000 - 1000 * len(rounds)
    return Outcome(rounds, earned, {}, unallocated, 2000, expired, 1.0, refundable=unallocated,
                   locked={"0xA": 0, "0xB": 0}, absent=["validator missed round 0"] if expired else [])


def test_compare_names_an_expired_round_and_stuck_stake() -> None:
    """No chain: an expired round is part of the outcome (the same expired rounds pass, other ones are named), and
    a rolled-over budget the owner cannot take back or a lock left behind is stuck."""
    assert compare(_outcome([]), _outcome([])) == [] and compare(_outcome([0]), _outcome([0])) == []
    problems = " ".join(compare(_outcome([]), _outcome([0])))
    assert "expired rounds differ: expected none, got [0]" in problems and "rounds differ" in problems
    assert "the reference is not the run without the same parties" in problems
    stuck = _outcome([0])
    stuck.refundable, stuck.locked = 0, {"0xA": 5, "0xB": 0}
    problems = " ".join(compare(_outcome([0]), stuck))
    assert "the owner may take back 0 units, expected the 1000" in problems and "{'0xA': 5} (stuck stake)" in problems


def test_an_absence_names_a_party_and_round_of_the_scenario(tmp_path: Path) -> None:
    """Bad absences are refused before anything starts; the reference of a plan is its scenario without the party."""
    for absence, words in ((Absence("client-2"), "no such party"), (Absence("validator", round=2), "rounds 0-1"),
                           (Absence("ipfs"), "no such party")):
        with pytest.raises(FaultRunError, match=words):
            run_scenario(ABSENT, FaultPlan(seed=1, absences=(absence,)), tmp_path)
    with pytest.raises(FaultRunError, match="one absence per party"):
        run_scenario(reference_for(ABSENT, FaultPlan(seed=1, absences=(MISSED,))),
                     FaultPlan(seed=1, absences=(Absence("client-1", round=1),)), tmp_path)
    assert reference_for(ABSENT, None) == ABSENT == reference_for(ABSENT, FaultPlan(seed=1))
    assert reference_for(ABSENT, FaultPlan(seed=1, absences=(MISSED,))).late == (MISSED,)
