"""The contributor's and validator's loops against a scripted chain: resume without double work, stop at the end."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from types import SimpleNamespace

import numpy as np
import pytest

from fedchain.chain.protocol import RoundPhase
from fedchain.content.errors import ContentNotFoundError, NodeUnreachableError
from fedchain.core.spec import mnist_spec
from fedchain.learning.data import save_npz
from fedchain.learning.trainers import TrainResult
from fedchain.roles.collect import UpdateCollector
from fedchain.roles.contributor import CannotStakeError, Contributor, ContributorConfig, RoundOutcome
from fedchain.roles.validator import RoundResult, Validator, ValidatorConfig
from fedchain.state import StateBinding, StateMismatchError, write_bound_json

ZERO = b"\x00" * 32
BINDING = StateBinding(31337, "0x" + "aa" * 20, 0, "0x" + "01" * 32)


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

    def close_full_round(self, account, task_id: int, round_index: int) -> bool:
        return False  # the scripted rounds never fill up

    def require_task(self, task_id: int) -> None:
        assert task_id == 0

    def binding(self) -> StateBinding:
        return BINDING

    def active_stake(self, account: str) -> int:
        return 100 * 10**18

    def balance_of(self, account: str) -> int:
        return 0

    def eth_balance(self, account: str) -> int:
        return 10**18

    def submissions(self, task_id: int, round_index: int):
        return []

    def task(self, task_id: int):
        return SimpleNamespace(ended=self.ended, current_round=self.current, min_contributor_stake=100 * 10**18,
                               num_rounds=self.num_rounds)

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


class ScriptedEvents:
    """The confirmed events of a scripted chain: every round opened, no result (the loops read state, not logs)."""

    confirmations = 0
    index = None

    def refresh(self) -> int:
        return 0

    def wait_for(self, what, ready, until, poll=0.5) -> bool:
        return ready()

    def round_opened(self, task_id: int, round_index: int) -> bool:
        return True

    def finalizations(self, task_id: int, round_index=None) -> list:
        return []


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
    client.task.__dict__["events"] = ScriptedEvents()  # the confirmed events would come from the chain's logs
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


def test_contributor_refuses_a_cursor_of_a_chain_that_was_reset(tmp_path):
    """A cursor at block 500 of an old chain would make the follower wait for blocks the new chain never logs."""
    chain = ScriptedChain(rounds=1)
    client = make_contributor(tmp_path, chain, lambda r: None)
    write_bound_json(client._cursor_path, {"block": 500, "task_id": 0}, replace(BINDING, block_hash="0x" + "02" * 32))
    with pytest.raises(StateMismatchError, match="contributor-0x1111.*cursor.json was made on chain 31337"):
        client.run()


def test_contributor_that_cannot_stake_says_what_is_missing(tmp_path):
    chain = ScriptedChain(rounds=1)
    chain.active_stake = lambda account: 0
    chain.balance_of = lambda account: 40 * 10**18
    client = make_contributor(tmp_path, chain, lambda r: (_ for _ in ()).throw(AssertionError("trained")))
    with pytest.raises(CannotStakeError, match=r"holds 40 FED.*fedchain account fund"):
        client.run()


def test_contributor_with_max_rounds_does_not_wait_for_the_whole_task(tmp_path, monkeypatch):
    chain = ScriptedChain(rounds=5)
    ticks = []

    def on_round(r):
        chain.submitted[r] = b"\x02" * 32
        return RoundOutcome(r, "Qm", 4, 0.0, 60_000)

    def tick(*_):
        ticks.append(1)
        assert len(ticks) < 50, "waited for the whole task"
        chain.current = 1  # the validator finalizes round 0; rounds 1-4 are still to come

    claimed = []
    monkeypatch.setattr("fedchain.roles.contributor.time.sleep", tick)
    monkeypatch.setattr("fedchain.roles.contributor.claimable_rewards", lambda *a, **k: claimed.append(1) or [])
    client = make_contributor(tmp_path, chain, on_round)
    client.config = replace(client.config, claim_at_end=True)
    assert [o.round for o in client.run(max_rounds=1)] == [0]
    assert claimed == [1] and not chain.ended


class FlakyIpfs:
    """An IPFS node that is down for the first `down` adds."""

    def __init__(self, down: int) -> None:
        self.down = down
        self.added: list[bytes] = []

    def add_bytes(self, data: bytes) -> str:
        if self.down > 0:
            self.down -= 1
            raise NodeUnreachableError("no IPFS RPC API answered at http://127.0.0.1:5001")
        self.added.append(data)
        return "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"


def _training_contributor(tmp_path, chain, ipfs, trained: list[int]) -> Contributor:
    class CountingTrainer:
        def train(self, model, base_state, data, spec, **kwargs):
            trained.append(1)
            return TrainResult({}, 4, 0.1, 0.5)

    client = make_contributor(tmp_path, chain, None)
    client.contribute_round = Contributor.contribute_round.__get__(client)  # the real one, not the recording one
    client.ipfs = ipfs
    client._trainer = CountingTrainer()
    client.task.global_model = lambda r: SimpleNamespace(cid="QmBase", state={})
    client.task.base_model_cid = lambda r: "QmBase"
    client.build_payload = lambda r, base, n, delta: b"sealed update of round %d" % r
    chain.submit_update = lambda account, task_id, r, digest, n, epsilon=None: SimpleNamespace(gas_used=60_000)
    return client


def test_contributor_waits_out_an_ipfs_outage_without_losing_its_update(tmp_path, monkeypatch):
    chain = ScriptedChain(rounds=1)
    trained: list[int] = []
    ipfs = FlakyIpfs(down=6)  # about a minute of outage with the backoff
    sleeps: list[float] = []
    monkeypatch.setattr("fedchain.roles.retry.time.sleep", sleeps.append)
    client = _training_contributor(tmp_path, chain, ipfs, trained)
    outcome = client.contribute_round(0, data=[0] * 4)
    assert outcome is not None and trained == [1] and ipfs.added == [b"sealed update of round 0"]
    assert sleeps == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
    assert not list(client._pending_dir.iterdir())  # submitted: nothing left on disk


def test_contributor_restarted_during_an_outage_submits_the_update_it_trained(tmp_path, monkeypatch):
    chain = ScriptedChain(rounds=1)
    trained: list[int] = []

    def killed(_):
        raise KeyboardInterrupt  # the process is stopped while it waits for the node

    monkeypatch.setattr("fedchain.roles.retry.time.sleep", killed)
    first = _training_contributor(tmp_path, chain, FlakyIpfs(down=1), trained)
    with pytest.raises(KeyboardInterrupt):
        first.contribute_round(0, data=[0] * 4)
    assert sorted(p.name for p in first._pending_dir.iterdir()) == ["round-0.json", "round-0.update"]

    ipfs = FlakyIpfs(down=0)
    second = _training_contributor(tmp_path, chain, ipfs, trained)
    assert second.contribute_round(0, data=[0] * 4) is not None
    assert trained == [1] and ipfs.added == [b"sealed update of round 0"]  # trained once, submitted once


def test_contributor_kept_down_past_its_window_drops_the_update_it_trained(tmp_path, monkeypatch):
    """Killed after training round 0 and restarted once round 0's window closed (the fault harness's absence): the
    update is never submitted late and does not linger in the state directory; the next round is trained anew."""
    chain = ScriptedChain(rounds=3)
    trained: list[int] = []
    first = _training_contributor(tmp_path, chain, FlakyIpfs(down=0), trained)
    first._save_pending(0, "QmBase", b"sealed update of round 0", 4, 0.1)  # trained, then killed before submitting
    chain.phase = RoundPhase.AGGREGATING  # restarted after the submission deadline: round 0 closed without it

    def tick(*_):
        if chain.current == 0:
            chain.current, chain.phase, chain.news = 1, RoundPhase.OPEN, True  # the validator finalized round 0
        elif chain.current == 1 and 1 in chain.submitted:
            chain.ended, chain.news = True, True

    second = _training_contributor(tmp_path, chain, FlakyIpfs(down=0), trained)
    submitted: list[int] = []
    chain.submit_update = lambda account, task_id, r, *a, **k: submitted.append(r) or chain.submitted.update(
        {r: b"\x02" * 32}) or SimpleNamespace(gas_used=60_000)
    monkeypatch.setattr("fedchain.roles.contributor.time.sleep", tick)
    assert [o.round for o in second.run()] == [1]
    assert submitted == [1] and trained == [1] and not list(second._pending_dir.iterdir())


def test_contributor_drops_an_update_of_an_earlier_round_it_finds_at_start(tmp_path, monkeypatch):
    """Restarted after the round it trained for ended altogether: that update goes; the open round's is kept."""
    chain = ScriptedChain(rounds=3)
    chain.current = 2
    client = _training_contributor(tmp_path, chain, FlakyIpfs(down=0), [])
    client._save_pending(0, "QmBase", b"round 0", 4, 0.1)
    client._save_pending(2, "QmBase", b"round 2", 4, 0.1)
    client._drop_stale_pending(2, this_round=False)
    assert sorted(p.name for p in client._pending_dir.iterdir()) == ["round-2.json", "round-2.update"]


def test_contributor_gives_up_a_round_only_at_its_deadline(tmp_path, monkeypatch):
    chain = ScriptedChain(rounds=1)
    clock = [1_000.0]
    chain.round = lambda task_id, r: SimpleNamespace(phase=RoundPhase.OPEN, submission_deadline=1_060,
                                                     aggregation_deadline=1_120)
    monkeypatch.setattr("fedchain.roles.retry.time.time", lambda: clock[0])
    monkeypatch.setattr("fedchain.roles.retry.time.sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    trained: list[int] = []
    client = _training_contributor(tmp_path, chain, FlakyIpfs(down=100), trained)
    assert client.contribute_round(0, data=[0] * 4) is None
    assert 1_030 <= clock[0] < 1_060  # it kept trying while the round was open


def _bare_validator(tmp_path, chain: ScriptedChain) -> Validator:
    validator = Validator.__new__(Validator)  # the loop logic only: no spec, data or model needed
    validator.protocol = chain
    validator.account = SimpleNamespace(address="0x" + "22" * 20)
    validator.config = ValidatorConfig(task_id=0, holdout_path=tmp_path / "none.npz", state_dir=tmp_path)
    validator._checkpoint_dir = tmp_path / "validator-task0"
    validator.collector = SimpleNamespace(  # what the chain confirmed: here, what the scripted chain says
        confirmed_submissions=lambda round_index, deadline=None: chain.submissions(0, round_index),
        deadline=lambda round_index: 2.0**40)
    return validator


SUBMISSION = SimpleNamespace(contributor="0x" + "33" * 20, digest=bytes.fromhex("cd" * 32))


def _result() -> RoundResult:
    return RoundResult(
        round=0, model_cid="QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o",
        report_cid="Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD", rewards_root="0x" + "ab" * 32,
        total_rewards=5, slashes=[("0x" + "33" * 20, "0x" + "cd" * 32)], test_accuracy=0.9, test_loss=0.3,
        submissions=[("0x" + "33" * 20, "0x" + "cd" * 32)],
    )


def _checkpoint(validator: Validator, result: RoundResult, binding: StateBinding = BINDING) -> None:
    write_bound_json(validator._checkpoint_dir / "round-0.json", asdict(result), binding)


def test_validator_posts_a_checkpointed_result_without_recomputing(tmp_path):
    chain = ScriptedChain(rounds=1)
    chain.phase = RoundPhase.AGGREGATING
    chain.submissions = lambda task_id, round_index: [SUBMISSION]
    validator = _bare_validator(tmp_path, chain)
    validator.compute_round = lambda r: (_ for _ in ()).throw(AssertionError("recomputed"))
    _checkpoint(validator, _result())
    validator.finalize_round(0)
    (posted,) = chain.posted
    assert posted[2] == 0 and posted[5] == bytes.fromhex("ab" * 32) and posted[6] == 5
    assert posted[7] == [("0x" + "33" * 20, bytes.fromhex("cd" * 32))]


def test_validator_refuses_a_checkpoint_of_a_chain_that_was_reset(tmp_path):
    """The old chain's checkpoint (same chain id, same addresses, another deployment block) is never posted."""
    chain = ScriptedChain(rounds=1)
    chain.phase = RoundPhase.AGGREGATING
    chain.submissions = lambda task_id, round_index: [SUBMISSION]
    validator = _bare_validator(tmp_path, chain)
    _checkpoint(validator, _result(), replace(BINDING, block_hash="0x" + "02" * 32))
    with pytest.raises(StateMismatchError, match="was made on chain 31337.*but this is chain 31337.*Delete"):
        validator.finalize_round(0)
    assert chain.posted == []


def test_validator_refuses_an_unbound_checkpoint(tmp_path):
    chain = ScriptedChain(rounds=1)
    validator = _bare_validator(tmp_path, chain)
    path = validator._checkpoint_dir / "round-0.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(asdict(_result())))  # written before checkpoints were bound
    with pytest.raises(StateMismatchError, match="names no chain"):
        validator.finalize_round(0)
    assert chain.posted == []


def test_validator_recomputes_a_checkpoint_made_from_other_submissions(tmp_path):
    chain = ScriptedChain(rounds=1)
    chain.phase = RoundPhase.AGGREGATING
    someone_else = SimpleNamespace(contributor="0x" + "44" * 20, digest=bytes.fromhex("ef" * 32))
    chain.submissions = lambda task_id, round_index: [someone_else]
    validator = _bare_validator(tmp_path, chain)
    _checkpoint(validator, _result())
    fresh = replace(_result(), total_rewards=7, slashes=[], submissions=[(someone_else.contributor, "0x" + "ef" * 32)])
    validator.compute_round = lambda r: fresh
    validator.finalize_round(0)
    (posted,) = chain.posted
    assert posted[6] == 7 and posted[7] == []  # the fresh result, not the checkpoint's
    saved = json.loads((validator._checkpoint_dir / "round-0.json").read_text())
    assert saved["submissions"] == [[someone_else.contributor, "0x" + "ef" * 32]] and saved["binding"]["block_hash"]


def test_validator_does_not_post_a_round_already_finalized(tmp_path):
    chain = ScriptedChain(rounds=1)
    chain.phase = RoundPhase.FINALIZED  # killed after posting, before noticing
    validator = _bare_validator(tmp_path, chain)
    validator.compute_round = lambda r: replace(_result(), submissions=[])
    validator.finalize_round(0)
    assert chain.posted == []
    assert (validator._checkpoint_dir / "round-0.json").exists()


def test_validator_waits_while_the_round_is_open(tmp_path):
    chain = ScriptedChain(rounds=1)
    validator = _bare_validator(tmp_path, chain)
    assert not validator._ready_to_aggregate(0)
    chain.phase = RoundPhase.AGGREGATING
    assert validator._ready_to_aggregate(0)


def test_validator_started_after_a_round_expired_expires_it_and_goes_on(tmp_path, monkeypatch):
    chain = ScriptedChain(rounds=2)
    chain.phase = RoundPhase.EXPIRED  # its aggregation deadline passed before the validator started
    validator = _bare_validator(tmp_path, chain)
    validator.task = SimpleNamespace(info=lambda: chain.task(0))
    finalized = []

    def finalize(r):
        finalized.append(r)
        chain.ended = True
        return _result()

    def tick(*_):
        chain.phase = RoundPhase.AGGREGATING  # round 1 closes

    validator.finalize_round = finalize
    monkeypatch.setattr("fedchain.roles.validator.time.sleep", tick)
    validator.run()
    assert chain.expired == [0] and finalized == [1]


class DownThenUpIpfs:
    """The validator's own IPFS node: down for the first `down` calls of any kind, then up."""

    def __init__(self, down: int, content: dict[str, bytes]) -> None:
        self.down = down
        self.content = content
        self.api = "http://127.0.0.1:5001"

    def _maybe_down(self) -> None:
        if self.down > 0:
            self.down -= 1
            raise NodeUnreachableError(f"no IPFS RPC API answered at {self.api}")

    def cat(self, cid: str, max_size: int | None = None) -> bytes:
        self._maybe_down()
        if cid not in self.content:
            raise ContentNotFoundError(f"{cid}: not found")
        return self.content[cid]

    def version(self) -> dict:
        self._maybe_down()
        return {"Version": "test"}


def _fetching_validator(tmp_path, ipfs) -> UpdateCollector:
    """The validator's (and a committee member's) update fetching, without a chain, spec download or data."""
    collector = UpdateCollector.__new__(UpdateCollector)
    collector.protocol = ScriptedChain(rounds=1)
    collector.ipfs = ipfs
    collector.task = SimpleNamespace(spec=mnist_spec("mlp", sealed=False))
    collector._prefetch_round, collector._prefetched, collector._prefetch_tried = None, {}, set()
    return collector


def test_validator_waits_for_its_own_ipfs_node_instead_of_marking_updates_unavailable(tmp_path, monkeypatch):
    from fedchain.core.cid import digest_to_cid

    sleeps: list[float] = []
    monkeypatch.setattr("fedchain.roles.retry.time.sleep", sleeps.append)
    sub = SimpleNamespace(contributor="0x" + "33" * 20, digest=bytes.fromhex("cd" * 32))
    ipfs = DownThenUpIpfs(down=5, content={digest_to_cid(sub.digest): b"the update"})
    fetched = _fetching_validator(tmp_path, ipfs)._fetch_update(sub, deadline=2**40)
    assert fetched == b"the update" and sleeps  # waited, then fetched: not Reason.UNAVAILABLE


def test_validator_marks_an_update_unavailable_only_when_its_node_answers(tmp_path):
    from fedchain.core.reasons import Reason

    sub = SimpleNamespace(contributor="0x" + "33" * 20, digest=bytes.fromhex("cd" * 32))
    fetched = _fetching_validator(tmp_path, DownThenUpIpfs(down=0, content={}))._fetch_update(sub, deadline=2**40)
    assert fetched == Reason.UNAVAILABLE


def test_a_fetch_refused_by_a_restarting_node_is_not_unavailable(tmp_path, monkeypatch):
    """The node is down for the fetch and back up by the liveness check (a restart, as the fault harness found):
    the update was never asked of a node that answers, so it is fetched again, not marked unavailable."""
    from fedchain.core.cid import digest_to_cid

    monkeypatch.setattr("fedchain.roles.retry.time.sleep", lambda s: None)
    sub = SimpleNamespace(contributor="0x" + "33" * 20, digest=bytes.fromhex("cd" * 32))
    ipfs = DownThenUpIpfs(down=1, content={digest_to_cid(sub.digest): b"the update"})  # only the first cat fails
    assert _fetching_validator(tmp_path, ipfs)._fetch_update(sub, deadline=2**40) == b"the update"


def test_validator_whose_round_outlasted_an_outage_goes_on(tmp_path, monkeypatch):
    from fedchain.roles.retry import OutageError

    chain = ScriptedChain(rounds=2)
    chain.phase = RoundPhase.AGGREGATING
    validator = _bare_validator(tmp_path, chain)
    validator.task = SimpleNamespace(info=lambda: chain.task(0))
    attempts = []

    def finalize(r):
        attempts.append(r)
        if r == 0:
            chain.phase = RoundPhase.EXPIRED  # the node stayed down until the aggregation deadline
            raise OutageError("could not publish round 0's model and report before its deadline")
        chain.ended = True
        return _result()

    validator.finalize_round = finalize
    monkeypatch.setattr("fedchain.roles.validator.time.sleep", lambda s: setattr(chain, "phase", RoundPhase.AGGREGATING))
    assert [r.round for r in validator.run()] == [0]  # (the scripted result's round number)
    assert attempts == [0, 1] and chain.expired == [0]


def test_contributor_that_can_no_longer_stake_claims_what_it_earned_then_says_why(tmp_path, monkeypatch):
    chain = ScriptedChain(rounds=3)

    def on_round(r):
        chain.submitted[r] = b"\x02" * 32
        chain.current = r + 1  # finalized at once; then a slash takes its whole stake
        chain.active_stake = lambda account: 0
        return RoundOutcome(r, "Qm", 4, 0.0, 60_000)

    claimed = []
    monkeypatch.setattr("fedchain.roles.contributor.claimable_rewards", lambda *a, **k: claimed.append(1) or [])
    client = make_contributor(tmp_path, chain, on_round)
    client.config = replace(client.config, claim_at_end=True)
    with pytest.raises(CannotStakeError, match="cannot stake the 100 FED"):
        client.run()
    assert claimed == [1]  # round 0's reward was claimed before it stopped


def test_contributor_started_while_its_ipfs_node_is_down_waits_for_the_spec(tmp_path, monkeypatch):
    """Restarted together with its node, a contributor waits for the node to read the task's spec, not exits."""
    chain = ScriptedChain(rounds=1)
    chain.ended = True  # nothing to train: the test is about the start
    sleeps: list[float] = []
    monkeypatch.setattr("fedchain.roles.retry.time.sleep", sleeps.append)
    client = make_contributor(tmp_path, chain, on_round=lambda r: None)
    spec = client.task.__dict__.pop("spec")
    answers = iter([NodeUnreachableError("down"), NodeUnreachableError("down"), spec])

    def cat(cid, max_size):
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer.to_json_bytes()

    client.ipfs = client.task.ipfs = SimpleNamespace(cat=cat)
    chain.task = lambda task_id: SimpleNamespace(ended=True, current_round=0, min_contributor_stake=0,
                                                 spec_digest=b"\x01" * 32)
    assert client.run() == [] and sleeps == [1.0, 2.0] and client.task.spec == spec
