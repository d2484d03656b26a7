"""Fault injection: the protocol on a real devnet while its parties crash and its chain endpoint misbehaves.

    reference = run_scenario(Scenario(), None, workdir / "calm")
    disturbed = run_scenario(Scenario(), FaultPlan(seed=7), workdir / "seed-7")
    assert compare(reference, disturbed) == []

A run starts Anvil, the embedded IPFS node (a process of its own, so that it can be killed) and a JSON-RPC proxy in
front of Anvil (fedchain.faults.rpc_proxy), creates a sealed MNIST task with deterministic accounts and data, and runs
the validator and every contributor as `fedchain` processes that dial the chain through the proxy. A FaultPlan then
SIGKILLs seeded targets (the validator, a contributor, the IPFS node) at seeded moments and restarts each after a
seeded pause, with the same arguments and state directory, while the proxy drops, fails and delays requests. Anvil is
never killed: it would lose its chain.

The outcome of a run is what the chain and the reports say: each round's model, reward root and rewards, whose
updates were counted, what each contributor claimed and holds, and what the task still holds. `compare` checks a
disturbed run against the undisturbed one: same models and rewards, every update counted once, nothing stuck.

An Absence keeps a party out of one round: it is SIGKILLed before it acts there and restarted only once the round's
window closed (a contributor loses that round's reward; without its validator the round expires and its budget rolls
over). Such a run is compared with the undisturbed run without that party in that round, `reference_for(scenario,
plan)`: there the party starts only once the window closed (a late joiner), or, for a later round, is stopped as it
reaches the round and started again once the window closed, with no other fault.

    plan = FaultPlan(seed=7, absences=(Absence("client-1", round=0),))
    reference = run_scenario(reference_for(ABSENT, plan), None, workdir / "late")   # ABSENT: a shorter window
    assert compare(reference, run_scenario(ABSENT, plan, workdir / "seed-7")) == []
"""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fedchain.errors import FedchainError
from fedchain.faults.rpc_proxy import FaultRates, RpcProxy

log = logging.getLogger(__name__)
FED = 10**18
PASSWORD = "fault-harness"  # throwaway keystores of development accounts
VALIDATOR_INDEX, FIRST_CONTRIBUTOR_INDEX = 5, 10  # Anvil development accounts (funded with ETH) the parties use


class FaultRunError(FedchainError):
    """Raised when a run cannot finish (a party failed for good, or the run outlived its timeout), or when a planned
    absence did not happen (the party acted in its round before the kill landed)."""


@dataclass(frozen=True)
class Absence:
    """`party` ("validator" or "client-N") takes no part in round `round`: it is down from before it acts there until
    the round's window closed (a contributor's: the submission deadline; the validator's: the aggregation deadline,
    so that the round expires), then restarted with the same arguments and state, and takes part in later rounds."""

    party: str
    round: int = 0

    def __str__(self) -> str:
        return f"{self.party} missed round {self.round}"

    def check(self, scenario: Scenario) -> None:
        parties = ["validator", *(f"client-{i}" for i in range(scenario.clients))]
        if self.party not in parties:
            raise FaultRunError(f"absence of {self.party!r}: no such party; the scenario's parties are {parties}")
        if not 0 <= self.round < scenario.rounds:
            raise FaultRunError(f"absence of {self.party} in round {self.round}: the scenario has rounds "
                                f"0-{scenario.rounds - 1}")


@dataclass(frozen=True)
class Scenario:
    """The protocol run: small, so that many seeded runs fit in minutes."""

    clients: int = 2
    rounds: int = 2
    seed: int = 0
    samples_per_client: int = 400
    window: int = 240           # seconds, submission and aggregation: room for restarts (rounds close early when all submitted)
    timeout: float = 600.0
    # Parties that sit this run's round out undisturbed (the reference of an absence plan, see reference_for): in
    # round 0 the party starts only once the round's window closed; in a later round it is stopped as it reaches it.
    late: tuple[Absence, ...] = ()
    confirmations: int | None = None  # the roles' --confirmations (None: the devnet's default, 0); the outcome is the same


@dataclass(frozen=True)
class FaultPlan:
    seed: int
    kills: int = 3                                   # SIGKILLs over the run
    targets: tuple[str, ...] = ("validator", "contributor", "ipfs")
    first_after: tuple[float, float] = (1.0, 8.0)    # seconds before a kill at no milestone, drawn uniformly
    after_milestone: float = 1.5                     # at most this long after the milestone line
    downtime: tuple[float, float] = (0.2, 3.0)       # seconds a killed party stays down
    rpc: FaultRates = FaultRates(drop=0.03, fail=0.03, delay=0.2, max_delay=0.3)
    absences: tuple[Absence, ...] = ()               # parties kept down past a round's window (beside the kills)


# A party kept out of a round is killed at this line of that round (before it submits, or before it posts).
ABSENCE_MILESTONES = {"client-": "round {round}: training on", "validator": "round {round}: aggregating"}
WINDOW_MARGIN = 1.5  # seconds past a deadline before an absent party comes back (Anvil's clock is whole seconds)


def reference_for(scenario: Scenario, plan: FaultPlan | None) -> Scenario:
    """The scenario whose undisturbed run (`run_scenario(reference_for(s, plan), None, ...)`) a run of `plan` must
    end as: the same task without the plan's absent parties in their rounds."""
    if plan is None or not plan.absences:
        return scenario
    return replace(scenario, late=tuple(dict.fromkeys((*scenario.late, *plan.absences))))


@dataclass
class Outcome:
    rounds: list[dict[str, Any]]          # per finalized round: model CID, rewards root, total, rewards, counted
    claimed: dict[str, int]               # contributor -> FED units received by claims
    holdings: dict[str, int]              # contributor -> balance + stake (what it owns in the system)
    task_manager_balance: int             # what the contract still holds after every claim
    budget: int
    expired: list[int]                    # rounds that expired (nobody finalized them)
    seconds: float
    refundable: int = 0                   # what the task's owner may take back (the budget no round allocated)
    locked: dict[str, int] = field(default_factory=dict)  # contributor -> stake locked after every settled lock's release
    absent: list[str] = field(default_factory=list)  # who missed which round, checked on chain (Absence's words)
    events: list[str] = field(default_factory=list)  # what the plan did, in order
    rpc: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"rounds": self.rounds, "claimed": self.claimed, "holdings": self.holdings,
                "task_manager_balance": self.task_manager_balance, "budget": self.budget, "expired": self.expired,
                "refundable": self.refundable, "locked": self.locked, "absent": self.absent,
                "seconds": round(self.seconds, 1), "events": self.events, "rpc": self.rpc}


# ---------------------------------------------------------------- the parties as processes


class Party:
    """One `fedchain` process (or the IPFS node): start, SIGKILL, restart with the same arguments."""

    def __init__(self, name: str, start: Callable[[], Any], log_path: Path | None = None) -> None:
        self.name = name
        self._start = start
        self.handle: Any = None
        self.restarts = 0
        self.log_path = log_path

    def start(self) -> None:
        self.handle = self._start()

    @property
    def process(self) -> subprocess.Popen[bytes]:
        return self.handle if isinstance(self.handle, subprocess.Popen) else self.handle.proc

    def running(self) -> bool:
        return self.handle is not None and self.process.poll() is None

    def kill(self) -> None:
        if self.running():
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.running():
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def _cli(args: list[str], env: dict[str, str], log_path: Path) -> Callable[[], subprocess.Popen[bytes]]:
    from fedchain.content.node import die_with_parent

    def start() -> subprocess.Popen[bytes]:
        with open(log_path, "ab") as out:  # appended: a restart's lines follow the killed run's
            return subprocess.Popen([sys.executable, "-m", "fedchain.cli.main", *args], env=env, stdout=out,
                                    stderr=subprocess.STDOUT, preexec_fn=die_with_parent())  # none left behind
    return start


# ---------------------------------------------------------------- one run


def run_scenario(scenario: Scenario, plan: FaultPlan | None, workdir: Path) -> Outcome:
    """Run the task to its end (every party exited, every reward claimed) and read its outcome from the chain."""
    from fedchain.chain.client import Chain
    from fedchain.chain.deploy import deploy_all
    from fedchain.chain.protocol import Protocol
    from fedchain.content.client import IpfsClient
    from fedchain.content.node import start_node_process
    from fedchain.sim.devnet import dev_account, free_port, start_anvil

    absences = [*scenario.late, *(plan.absences if plan else ())]
    for absence in absences:
        absence.check(scenario)
    if len({a.party for a in absences}) != len(absences):
        raise FaultRunError(f"one absence per party and run: {[str(a) for a in absences]}")
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    anvil = start_anvil(log_path=workdir / "anvil.log")
    parties: list[Party] = []
    try:
        ipfs_port = free_port()
        node = Party("ipfs", lambda: start_node_process(workdir / "ipfs", port=ipfs_port, detach=True,
                                                        log_path=workdir / "ipfs.log"))
        node.start()
        parties.append(node)
        chain = Chain(anvil.rpc_url)
        deployments = deploy_all(chain, dev_account(0), network="local")
        deployments.save(workdir / "deployments.json")
        protocol = Protocol(chain, deployments)
        rates = plan.rpc if plan is not None else FaultRates()
        with RpcProxy(anvil.rpc_url, rates, seed=plan.seed if plan else 0) as proxy, \
                IpfsClient(node.handle.api_url) as ipfs:
            task_id, roles = _set_up(scenario, protocol, ipfs, workdir, proxy.url, node.handle.api_url)
            parties += roles
            by_name = {p.name: p for p in roles}
            window = _Window(protocol, task_id)
            holds = [_Hold(by_name[a.party], a, late=True, window=window) for a in scenario.late] + \
                [_Hold(by_name[a.party], a, late=False, window=window) for a in (plan.absences if plan else ())]
            for party in roles:
                if not any(h.party is party and h.late and h.absence.round == 0 for h in holds):
                    party.start()
            events = _drive(scenario, plan, parties, holds, started)
            proxy.calm()
            outcome = _outcome(protocol, ipfs, task_id, scenario, time.monotonic() - started)
            outcome.absent = _check_absences(protocol, task_id, absences, events)
            outcome.events, outcome.rpc = events, proxy.counts
            return outcome
    finally:
        for party in reversed(parties):
            party.stop()
        anvil.stop()


def _set_up(scenario: Scenario, protocol: Any, ipfs: Any, workdir: Path, rpc_url: str, ipfs_api: str
            ) -> tuple[int, list[Party]]:
    """Data, keystores, the sealed task (created straight on Anvil, not through the proxy) and the parties."""
    from fedchain.chain.accounts import create_keystore
    from fedchain.core.keys import generate_sealing_key
    from fedchain.core.spec import ScoringConfig, mnist_spec
    from fedchain.learning.data import dirichlet_shards, mnist_subset, save_npz, train_test_split
    from fedchain.roles.owner import create_task_from_spec
    from fedchain.sim.devnet import dev_account

    x, y = mnist_subset()
    split = train_test_split(x, y, test_fraction=0.2, seed=scenario.seed)
    holdout = save_npz(workdir / "holdout.npz", split.x_test, split.y_test)
    shards = dirichlet_shards(split.y_train, scenario.clients, alpha=1.0, seed=scenario.seed)
    validator = dev_account(VALIDATOR_INDEX)
    contributors = [dev_account(FIRST_CONTRIBUTOR_INDEX + i) for i in range(scenario.clients)]
    owner = dev_account(0)
    min_contributor, min_validator = protocol.min_stakes()
    chain = protocol.chain
    chain.send(protocol.token.functions.mint(validator.address, min_validator), owner, action="mint")
    protocol.ensure_stake(validator, min_validator)
    for account in contributors:
        chain.send(protocol.token.functions.mint(account.address, 2 * min_contributor), owner, action="mint")
    key = generate_sealing_key(workdir / "validator.key", password=PASSWORD)
    spec = mnist_spec("mlp", [key.hex()], scoring=ScoringConfig(permutations=10, eval_samples=128))
    budget = 1_000 * FED * scenario.rounds
    chain.send(protocol.token.functions.mint(owner.address, budget), owner, action="mint")
    task_id = create_task_from_spec(
        protocol, ipfs, owner, spec, rounds=scenario.rounds, reward_per_round=1_000 * FED,
        submission_window=scenario.window, aggregation_window=scenario.window, max_contributors=scenario.clients,
        validator=validator.address, seed=scenario.seed)
    env = {**os.environ, "FEDCHAIN_PASSWORD": PASSWORD, "FEDCHAIN_SEALING_PASSWORD": PASSWORD,
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    common = ["--task", str(task_id), "--state-dir", str(workdir / "state"), "--rpc-url", rpc_url,
              "--ipfs-api", ipfs_api, "--deployments", str(workdir / "deployments.json")]
    if scenario.confirmations is not None:
        common += ["--confirmations", str(scenario.confirmations)]
    (workdir / "logs").mkdir(exist_ok=True)
    keystore = workdir / "validator.json"
    create_keystore(keystore, PASSWORD, light=True, private_key=validator.key)
    parties = [Party("validator", _cli(
        ["validate", "--holdout", str(holdout), "--keystore", str(keystore), "--sealing-key",
         str(workdir / "validator.key"), "--sealing-password-env", "FEDCHAIN_SEALING_PASSWORD", *common],
        env, workdir / "logs" / "validator.log"), workdir / "logs" / "validator.log")]
    for i, (account, shard) in enumerate(zip(contributors, shards, strict=True)):
        shard = shard[: scenario.samples_per_client]
        data = save_npz(workdir / f"client-{i}.npz", split.x_train[shard], split.y_train[shard])
        keystore = workdir / f"client-{i}.json"
        create_keystore(keystore, PASSWORD, light=True, private_key=account.key)
        log_path = workdir / "logs" / f"client-{i}.log"
        parties.append(Party(f"client-{i}", _cli(
            ["contribute", "--data", str(data), "--keystore", str(keystore), "--seed", str(scenario.seed * 100 + i),
             "--no-progress", *common], env, log_path), log_path))
    return task_id, parties


# Lines a role logs at the points worth crashing at: a kill follows one of them after a seeded pause (None: anywhere).
MILESTONES: dict[str, tuple[str | None, ...]] = {
    "client-": ("training on", "training on", "claimed", None),       # mid-training, after uploading, after claiming
    "validator": ("aggregating", "selected", None),                  # mid-scoring, at posting
    "ipfs": (None,),
}


@dataclass
class _Trigger:
    """An armed kill: `victim` dies once its log has shown `pattern` once more (or at once), then `delay` later."""

    victim: Party
    pattern: str | None
    seen: int
    delay: float
    downtime: float
    armed_at: float = field(default_factory=time.monotonic)
    fire_at: float | None = None
    restart_at: float | None = None  # killed: restart it then

    def due(self) -> bool:
        if self.fire_at is None and (self.pattern is None or _count(self.victim, self.pattern) > self.seen):
            self.fire_at = time.monotonic() + self.delay
        return self.fire_at is not None and time.monotonic() >= self.fire_at


def _count(party: Party, pattern: str) -> int:
    if party.log_path is None or not party.log_path.exists():
        return 0
    return party.log_path.read_text(errors="replace").count(pattern)


def _arm(rng: random.Random, plan: FaultPlan, parties: list[Party]) -> _Trigger | None:
    kind = rng.choice(plan.targets)
    prefix = {"validator": "validator", "contributor": "client-", "ipfs": "ipfs"}[kind]
    pattern = rng.choice(MILESTONES[prefix])
    delay = rng.uniform(*plan.first_after) if pattern is None else rng.uniform(0.0, plan.after_milestone)
    index = rng.randrange(1 << 16)
    candidates = [p for p in parties if p.name.startswith(prefix) and p.running()]
    if not candidates:
        return None
    victim = candidates[index % len(candidates)]
    return _Trigger(victim, pattern, _count(victim, pattern) if pattern else 0, delay, rng.uniform(*plan.downtime))


class _Window:
    """When a round's window closed for a party, read straight from Anvil (not through the faulty proxy)."""

    def __init__(self, protocol: Any, task_id: int) -> None:
        self.protocol, self.task_id = protocol, task_id

    def closed(self, absence: Absence) -> bool:
        info = self.protocol.round(self.task_id, absence.round)
        if info.opened_at == 0:
            return False  # not open yet: its deadlines are not set
        # The roles judge deadlines by the wall clock (Anvil's moves only with transactions): so does the harness.
        deadline = info.aggregation_deadline if absence.party == "validator" else info.submission_deadline
        return time.time() >= deadline + WINDOW_MARGIN

    def acted(self, absence: Absence, account: str | None) -> bool:
        """Whether the party already did its part in the round: the contributor's update is on chain, or the round
        has a result."""
        if account is not None:
            return self.protocol.submission_of(self.task_id, absence.round, account) != b"\x00" * 32
        return any(f.round == absence.round for f in self.protocol.finalizations(self.task_id))


@dataclass
class _Hold:
    """An absence in progress: the party is killed at its milestone of the round (or, `late` in round 0, never
    started), kept down until the round's window closed, then started with the same arguments and state."""

    party: Party
    absence: Absence
    late: bool          # the reference's: in round 0 not started yet; stopped at the milestone in a later round
    window: _Window
    state: str = "waiting"  # waiting (for the milestone) -> down -> back
    down_at: float = 0.0
    checked_at: float = 0.0

    def __post_init__(self) -> None:
        prefix = "validator" if self.party.name == "validator" else "client-"
        self.milestone = ABSENCE_MILESTONES[prefix].format(round=self.absence.round)
        self.seen = 0
        if self.late and self.absence.round == 0:
            self.state, self.down_at = "down", time.monotonic()

    def step(self, started: float, account: str | None) -> str | None:
        """Advance the hold; the event to record, if any."""
        now = time.monotonic()
        if self.state == "waiting" and self.party.running() and _count(self.party, self.milestone) > self.seen:
            self.party.kill()
            if self.window.acted(self.absence, account):
                raise FaultRunError(f"{self.absence} was planned, but {self.party.name} had done its part in round "
                                    f"{self.absence.round} before the kill at '{self.milestone}' landed")
            self.state, self.down_at = "down", now
            how = "stop" if self.late else "kill"
            return f"{now - started:.1f}s {how} {self.party.name} at '{self.milestone}' (absent from round " \
                   f"{self.absence.round})"
        if self.state == "down" and now - self.checked_at >= 0.5:
            self.checked_at = now
            if self.window.closed(self.absence):
                self.party.restarts += self.party.handle is not None
                self.party.start()
                self.state = "back"
                return f"{now - started:.1f}s start {self.party.name} after round {self.absence.round}'s window " \
                       f"closed, down {now - self.down_at:.1f}s"
        return None


class _Kills:
    """The plan's seeded kills, one armed at a time: the victim dies at its trigger and is restarted after its
    downtime (waited out in later steps, not slept through: holds keep watching their milestones meanwhile)."""

    def __init__(self, plan: FaultPlan | None, parties: list[Party], started: float) -> None:
        self.plan, self.parties, self.started = plan, parties, started
        self.rng = random.Random(plan.seed if plan else 0)
        self.left = plan.kills if plan else 0
        self.trigger: _Trigger | None = None

    def down(self) -> str | None:
        """The party killed and not yet restarted, if any."""
        t = self.trigger
        return t.victim.name if t is not None and t.restart_at is not None else None

    def step(self) -> str | None:
        """Arm, fire or end the current kill; the event to record, if any."""
        trigger = self.trigger
        if trigger is not None and trigger.restart_at is not None:
            if time.monotonic() >= trigger.restart_at:
                trigger.victim.restarts += 1
                trigger.victim.start()
                self.trigger, self.left = None, self.left - 1
        elif self.plan is not None and self.left and trigger is None:
            self.trigger = _arm(self.rng, self.plan, self.parties)
            self.left -= self.trigger is None
        elif trigger is not None and not trigger.victim.running():
            self.trigger = None  # it finished before its milestone came (or is kept out of a round): the kill is spent
            self.left -= 1
        elif trigger is not None and trigger.due():
            trigger.victim.kill()
            trigger.restart_at = time.monotonic() + trigger.downtime
            at = f"after '{trigger.pattern}'" if trigger.pattern else "at a random time"
            return (f"{time.monotonic() - self.started:.1f}s kill {trigger.victim.name} {at}, "
                    f"down {trigger.downtime:.1f}s")
        return None


def _drive(scenario: Scenario, plan: FaultPlan | None, parties: list[Party], holds: list[_Hold], started: float
           ) -> list[str]:
    """Wait for every role to finish, killing and restarting parties as the plan says, keeping absent ones down."""

    events: list[str] = []
    kills = _Kills(plan, parties, started)
    roles = [p for p in parties if p.name != "ipfs"]
    accounts = {f"client-{i}": _contributor_address(i) for i in range(scenario.clients)}
    for hold in holds:  # the milestone counts from now
        hold.seen = _count(hold.party, hold.milestone)
    while True:
        down = {h.party.name for h in holds if h.state == "down"} | ({kills.down()} - {None})
        failed = [p for p in roles if p.name not in down and p.handle is not None and p.process.poll() not in (None, 0)]
        if failed:
            raise FaultRunError(f"{failed[0].name} exited with code {failed[0].process.returncode}; "
                                f"what the plan did: {events}; the end of its log:\n" + _tail(failed[0].log_path))
        if not down and all(p.handle is not None and p.process.poll() == 0 for p in roles):
            if waiting := [str(h.absence) for h in holds if h.state == "waiting"]:
                raise FaultRunError(f"the run ended before the planned absences {waiting} could happen: the party "
                                    f"never reached its milestone; what the plan did: {events}")
            return events
        if time.monotonic() - started > scenario.timeout:
            raise FaultRunError(f"the run did not end within {scenario.timeout:.0f} s (plan: {events}): "
                                + "; ".join(f"{p.name}: {_tail(p.log_path, 3)}" for p in roles if p.running()))
        happened = [hold.step(started, accounts.get(hold.party.name)) for hold in holds] + [kills.step()]
        events += [event for event in happened if event]
        time.sleep(0.05)


def _tail(path: Path | None, lines: int = 15) -> str:
    if path is None or not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# ---------------------------------------------------------------- what the chain says at the end


def _outcome(protocol: Any, ipfs: Any, task_id: int, scenario: Scenario, seconds: float) -> Outcome:
    from fedchain.core.cid import digest_to_cid
    from fedchain.views.rewards import fetch_report

    rounds = []
    rewards: dict[str, int] = {}
    for fin in sorted(protocol.finalizations(task_id), key=lambda f: f.round):
        report = fetch_report(ipfs, fin.report_digest)
        submitted = [s.contributor for s in protocol.submissions(task_id, fin.round)]
        round_rewards = {u.contributor: int(u.reward) for u in report.updates}
        for who, amount in round_rewards.items():
            rewards[who] = rewards.get(who, 0) + amount
        rounds.append({
            "round": fin.round, "model_cid": digest_to_cid(fin.model_digest), "rewards_root": fin.rewards_root.hex(),
            "total_rewards": fin.total_rewards, "rewards": round_rewards, "submitted": sorted(submitted),
            "counted": sorted(u.contributor for u in report.updates if u.status == "accepted"),
            "claimed_by_all": all(protocol.has_claimed(task_id, fin.round, who) for who, r in round_rewards.items()
                                  if r),
        })
    finalized = {r["round"] for r in rounds}
    expired = [i for i in range(scenario.rounds) if i not in finalized]
    min_contributor, _ = protocol.min_stakes()
    holdings = {who: protocol.balance_of(who) + protocol.active_stake(who) + protocol.unbonding(who)[0]
                for who in rewards}
    claimed = {who: holdings[who] - 2 * min_contributor for who in rewards}
    manager = protocol.deployments.address("TaskManager")
    return Outcome(rounds, claimed, holdings, protocol.balance_of(manager), protocol.task(task_id).funded,
                   expired, seconds, refundable=protocol.refundable(task_id),
                   locked=_release_settled_locks(protocol, scenario))


def _contributor_address(index: int) -> str:
    """The address of party `client-{index}` (the development account _set_up gives it)."""
    from fedchain.sim.devnet import dev_account

    return dev_account(FIRST_CONTRIBUTOR_INDEX + index).address


def _release_settled_locks(protocol: Any, scenario: Scenario) -> dict[str, int]:
    """Release, as a bystander may, every contributor's stake lock whose round settled; what stays locked is stuck."""
    from fedchain.sim.devnet import dev_account

    bystander = dev_account(0)
    protocol.chain.sync_clock()
    locked: dict[str, int] = {}
    for i in range(scenario.clients):
        who = _contributor_address(i)
        for task_id, round_index in protocol.releasable(who):
            protocol.release(bystander, task_id, round_index, who)
        locked[who] = protocol.locked_stake(who)
    return locked


def _check_absences(protocol: Any, task_id: int, absences: list[Absence], events: list[str]) -> list[str]:
    """The planned absences, each checked on chain (FaultRunError if one did not happen: never compare a run with
    the wrong reference): the contributor has no submission in its round; the validator's round expired."""

    finalized = {f.round for f in protocol.finalizations(task_id)}
    for absence in absences:
        if absence.party == "validator":
            happened = absence.round not in finalized
            missing = f"round {absence.round} was finalized"
        else:
            account = _contributor_address(int(absence.party.removeprefix("client-")))
            happened = protocol.submission_of(task_id, absence.round, account) == b"\x00" * 32
            missing = f"{absence.party} has a submission in round {absence.round}"
        if not happened:
            raise FaultRunError(f"the planned absence '{absence}' did not happen: {missing}; what the plan did: "
                                f"{events}")
    return sorted(str(a) for a in absences)


def compare(reference: Outcome, run: Outcome) -> list[str]:
    """What differs between a disturbed run and the undisturbed one, in words (empty: the same protocol outcome).
    For a run with absences the reference is the undisturbed run without those parties in those rounds
    (`reference_for`): expired rounds are then part of the outcome, compared like the models and rewards."""
    problems = []
    if run.absent != reference.absent:
        everyone = ["everyone took part"]
        problems.append(f"the reference is not the run without the same parties: the reference "
                        f"{reference.absent or everyone}, the run {run.absent or everyone}")
    keys = ("round", "model_cid", "rewards_root", "total_rewards", "rewards", "counted")
    want = [{k: r[k] for k in keys} for r in reference.rounds]
    got = [{k: r[k] for k in keys} for r in run.rounds]
    if got != want:
        problems.append(f"rounds differ: expected {want}, got {got}")
    if run.expired != reference.expired:
        problems.append(f"expired rounds differ: expected {reference.expired or 'none'}, got {run.expired or 'none'}")
    for r in run.rounds:
        if len(r["submitted"]) != len(set(r["submitted"])):
            problems.append(f"round {r['round']}: an update was submitted twice: {r['submitted']}")
        if sorted(r["counted"]) != sorted(set(r["submitted"])):
            problems.append(f"round {r['round']}: submitted {r['submitted']} but counted {r['counted']}")
        if not r["claimed_by_all"]:
            problems.append(f"round {r['round']}: a reward was never claimed")
    return problems + _stuck(run)


def _stuck(run: Outcome) -> list[str]:
    """Rewards not claimed in full, budget the owner cannot take back, stake left locked: in words."""
    problems = []
    earned: dict[str, int] = {}
    for r in run.rounds:
        for who, amount in r["rewards"].items():
            earned[who] = earned.get(who, 0) + amount
    if run.claimed != earned:
        problems.append(f"claims differ from the rewards: claimed {run.claimed}, earned {earned}")
    unallocated = run.budget - sum(r["total_rewards"] for r in run.rounds)  # an expired round's budget rolled over
    if run.task_manager_balance != unallocated:
        problems.append(f"the TaskManager holds {run.task_manager_balance} units, expected {unallocated} (stuck funds)")
    if run.refundable != unallocated:
        problems.append(f"the owner may take back {run.refundable} units, expected the {unallocated} no round "
                        "allocated (stuck funds)")
    if stuck := {who: amount for who, amount in run.locked.items() if amount}:
        problems.append(f"stake still locked once every settled round's lock was released: {stuck} (stuck stake)")
    return problems
