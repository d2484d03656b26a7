"""The contributor's and validator's loops against a scripted chain: resume without double work, stop at the end."""

from __future__ import annotations

import json
from dataclasses import asdict
from types import SimpleNamespace

import numpy as np

from fedchain.chain.protocol import RoundPhase
from fedchain.core.spec import mnist_spec
from fedchain.learning.data import save_npz
from fedchain.roles.contributor import Contributor, ContributorConfig, RoundOutcome
from fedchain.roles.validator import RoundResult, Validator, ValidatorConfig

ZERO = b"\x00" * 32


class ScriptedChain:
    """Just enough of `Protocol` for the loops: a task whose rounds the test moves along."""

    def __init__(self, rounds: int) -> None:
        self.blocks = 0
        self.chain = SimpleNamespace(rpc_url="scripted://", sync_clock=lambda: None, block_number=self._next_block)
        self.deployments = SimpleNamespace(block=0)
        self.news = False  # the test sets this when it changes the task, as a contract event would
        self.num_rounds = rounds
        self.current = 0
        self.ended = False
        self.phase = RoundPhase.OPEN
        self.submitted: dict[int, bytes] = {}
        self.stake_checks = 0
        self.posted: list[tuple] = []
        self.expired: list[int] = []

    def _next_block(self) -> int:
        self.blocks += 1
        return self.blocks

    def task_event_count(self, task_id: int, from_block: int, to_block: int) -> int:
        news, self.news = self.news, False
        return int(news)

    def task_count(self) -> int:
        return 1

    def task(self, task_id: int):
        return SimpleNamespace(ended=self.ended, current_round=self.current, min_contributor_stake=100)

    def round(self, task_id: int, round_index: int):
        phase = self.phase if round_index == self.current else RoundPhase.FINALIZED
        return SimpleNamespace(phase=phase, submission_deadline=2**40, aggregation_deadline=2**40)

    def expire_round(self, account, task_id: int, round_index: int):
        self.expired.append(round_index)
        self.news = True
        self.current += 1
        self.phase = RoundPhase.OPEN
        self.ended = self.current >= self.num_rounds

    def submission_of(self, task_id: int, round_index: int, account: str) -> bytes:
        return self.submitted.get(round_index, ZERO)

    def ensure_stake(self, account, minimum):
        self.stake_checks += 1
        return []

    def post_result(self, *args):
        self.posted.append(args)
        return SimpleNamespace(gas_used=100_000)


def make_contributor(tmp_path, chain: ScriptedChain, on_round) -> Contributor:
    spec = mnist_spec("mlp")
    data = tmp_path / "data.npz"
    save_npz(data, np.zeros((4, 1, 28, 28), np.float32), np.arange(4, dtype=np.int64))

    class Recording(Contributor):
        def contribute_round(self, round_index, data):
            return on_round(round_index)

    account = SimpleNamespace(address="0x" + "11" * 20)
    config = ContributorConfig(task_id=0, data_path=data, state_dir=tmp_path / "state", poll_interval=0.001,
                               claim_at_end=False, progress=False)
    client = Recording(chain, ipfs=None, account=account, config=config)
    client.task.__dict__["spec"] = spec  # the spec would come from IPFS
    return client


def test_contributor_resumes_without_submitting_a_round_twice(tmp_path, monkeypatch):
    chain = ScriptedChain(rounds=2)
    chain.submitted[0] = b"\x01" * 32  # a previous run submitted round 0, then crashed
    trained = []

    def on_round(r):
        trained.append(r)
        chain.submitted[r] = b"\x02" * 32
        chain.ended = True
        return RoundOutcome(r, "Qm", 4, 0.0, 60_000)

    def advance(*_):
        chain.current = 1  # the validator finalizes round 0 while the client waits
        chain.news = True

    client = make_contributor(tmp_path, chain, on_round)
    monkeypatch.setattr("fedchain.roles.contributor.time.sleep", advance)
    outcomes = client.run()
    assert trained == [1]
    assert [o.round for o in outcomes] == [1]


def test_contributor_does_not_retry_a_refused_round(tmp_path, monkeypatch):
    chain = ScriptedChain(rounds=1)
    attempts = []

    def on_round(r):
        attempts.append(r)
        return None  # the chain refused the submission (window closed, round full)

    polls = []

    def tick(*_):
        polls.append(1)
        if len(polls) > 5:
            chain.ended = True
            chain.news = True

    client = make_contributor(tmp_path, chain, on_round)
    monkeypatch.setattr("fedchain.roles.contributor.time.sleep", tick)
    assert client.run() == []
    assert attempts == [0]
    assert chain.stake_checks == 1  # stake is topped up once, before training


def test_contributor_waits_for_events_instead_of_rereading_the_task(tmp_path, monkeypatch):
    chain = ScriptedChain(rounds=1)
    chain.submitted[0] = b"\x01" * 32
    reads = []
    original_task = chain.task
    chain.task = lambda task_id: reads.append(1) or original_task(task_id)
    sleeps = []

    def tick(*_):
        sleeps.append(1)
        if len(sleeps) == 20:
            chain.ended = True
            chain.news = True  # TaskEnded

    client = make_contributor(tmp_path, chain, lambda r: None)
    monkeypatch.setattr("fedchain.roles.contributor.time.sleep", tick)
    client.run()
    assert len(sleeps) == 20 and len(reads) <= 3  # twenty polls of the log cursor, the task read once per event
    assert (tmp_path / "state").exists()


def test_contributor_stops_when_the_task_ended(tmp_path):
    chain = ScriptedChain(rounds=1)
    chain.ended = True
    client = make_contributor(tmp_path, chain, lambda r: (_ for _ in ()).throw(AssertionError("trained")))
    assert client.run() == []


def test_contributor_expires_a_round_whose_validator_went_silent(tmp_path, monkeypatch):
    chain = ScriptedChain(rounds=2)
    chain.submitted[0] = b"\x01" * 32
    chain.phase = RoundPhase.EXPIRED  # the aggregation deadline passed without a result
    trained = []

    def on_round(r):
        trained.append(r)
        chain.submitted[r] = b"\x02" * 32
        return RoundOutcome(r, "Qm", 4, 0.0, 60_000)

    def tick(*_):
        if chain.current == 1 and 1 in chain.submitted:
            chain.phase = RoundPhase.EXPIRED

    client = make_contributor(tmp_path, chain, on_round)
    monkeypatch.setattr("fedchain.roles.contributor.time.sleep", tick)
    monkeypatch.setattr("fedchain.roles.contributor.STALL_CHECK_SECONDS", 0.0)
    client.run()
    assert chain.expired == [0, 1]  # round 0 expired, so round 1 opened and it contributed there
    assert trained == [1]


def _bare_validator(tmp_path, chain: ScriptedChain) -> Validator:
    validator = Validator.__new__(Validator)  # the loop logic only: no spec, data or model needed
    validator.protocol = chain
    validator.account = SimpleNamespace(address="0x" + "22" * 20)
    validator.config = ValidatorConfig(task_id=0, holdout_path=tmp_path / "none.npz", state_dir=tmp_path)
    validator._checkpoint_dir = tmp_path / "validator-task0"
    return validator


def _result() -> RoundResult:
    return RoundResult(
        round=0, model_cid="QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o",
        report_cid="Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD", rewards_root="0x" + "ab" * 32,
        total_rewards=5, slashes=[("0x" + "33" * 20, "0x" + "cd" * 32)], test_accuracy=0.9, test_loss=0.3,
    )


def test_validator_posts_a_checkpointed_result_without_recomputing(tmp_path):
    chain = ScriptedChain(rounds=1)
    chain.phase = RoundPhase.AGGREGATING
    validator = _bare_validator(tmp_path, chain)
    validator.compute_round = lambda r: (_ for _ in ()).throw(AssertionError("recomputed"))
    checkpoint = validator._checkpoint_dir / "round-0.json"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_text(json.dumps(asdict(_result())))
    validator.finalize_round(0)
    (posted,) = chain.posted
    assert posted[2] == 0 and posted[5] == bytes.fromhex("ab" * 32) and posted[6] == 5
    assert posted[7] == [("0x" + "33" * 20, bytes.fromhex("cd" * 32))]


def test_validator_does_not_post_a_round_already_finalized(tmp_path):
    chain = ScriptedChain(rounds=1)
    chain.phase = RoundPhase.FINALIZED  # killed after posting, before noticing
    validator = _bare_validator(tmp_path, chain)
    validator.compute_round = lambda r: _result()
    validator.finalize_round(0)
    assert chain.posted == []
    assert (validator._checkpoint_dir / "round-0.json").exists()


def test_validator_waits_while_the_round_is_open(tmp_path):
    chain = ScriptedChain(rounds=1)
    validator = _bare_validator(tmp_path, chain)
    assert not validator._ready_to_aggregate(0)
    chain.phase = RoundPhase.AGGREGATING
    assert validator._ready_to_aggregate(0)
