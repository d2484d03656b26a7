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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedchain.errors import FedchainError
from fedchain.faults.rpc_proxy import FaultRates, RpcProxy

log = logging.getLogger(__name__)
FED = 10**18
PASSWORD = "fault-harness"  # throwaway keystores of development accounts
VALIDATOR_INDEX, FIRST_CONTRIBUTOR_INDEX = 5, 10  # Anvil development accounts (funded with ETH) the parties use


class FaultRunError(FedchainError):
    """Raised when a run cannot finish (a party failed for good, or the run outlived its timeout)."""


@dataclass(frozen=True)
class Scenario:
    """The protocol run: small, so that many seeded runs fit in minutes."""

    clients: int = 2
    rounds: int = 2
    seed: int = 0
    samples_per_client: int = 400
    window: int = 240           # seconds, submission and aggregation: room for restarts (rounds close early when all submitted)
    timeout: float = 600.0


@dataclass(frozen=True)
class FaultPlan:
    seed: int
    kills: int = 3                                   # SIGKILLs over the run
    targets: tuple[str, ...] = ("validator", "contributor", "ipfs")
    first_after: tuple[float, float] = (1.0, 8.0)    # seconds before a kill at no milestone, drawn uniformly
    after_milestone: float = 1.5                     # at most this long after the milestone line
    downtime: tuple[float, float] = (0.2, 3.0)       # seconds a killed party stays down
    rpc: FaultRates = FaultRates(drop=0.03, fail=0.03, delay=0.2, max_delay=0.3)


@dataclass
class Outcome:
    rounds: list[dict[str, Any]]          # per finalized round: model CID, rewards root, total, rewards, counted
    claimed: dict[str, int]               # contributor -> FED units received by claims
    holdings: dict[str, int]              # contributor -> balance + stake (what it owns in the system)
    task_manager_balance: int             # what the contract still holds after every claim
    budget: int
    expired: list[int]                    # rounds that expired (nobody finalized them)
    seconds: float
    events: list[str] = field(default_factory=list)  # what the plan did, in order
    rpc: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"rounds": self.rounds, "claimed": self.claimed, "holdings": self.holdings,
                "task_manager_balance": self.task_manager_balance, "budget": self.budget, "expired": self.expired,
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
            for party in roles:
                party.start()
            events = _drive(scenario, plan, parties, started)
            proxy.calm()
            outcome = _outcome(protocol, ipfs, task_id, scenario, time.monotonic() - started)
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


def _drive(scenario: Scenario, plan: FaultPlan | None, parties: list[Party], started: float) -> list[str]:
    """Wait for every role to finish, killing and restarting parties as the plan says."""
    rng = random.Random(plan.seed if plan else 0)
    events: list[str] = []
    kills_left = plan.kills if plan else 0
    trigger: _Trigger | None = None
    roles = [p for p in parties if p.name != "ipfs"]
    while True:
        failed = [p for p in roles if p.handle is not None and p.process.poll() not in (None, 0)]
        if failed:
            raise FaultRunError(f"{failed[0].name} exited with code {failed[0].process.returncode}; "
                                f"what the plan did: {events}; the end of its log:\n" + _tail(failed[0].log_path))
        if all(p.process.poll() == 0 for p in roles):
            return events
        if time.monotonic() - started > scenario.timeout:
            raise FaultRunError(f"the run did not end within {scenario.timeout:.0f} s (plan: {events}): "
                                + "; ".join(f"{p.name}: {_tail(p.log_path, 3)}" for p in roles if p.running()))
        if plan is not None and kills_left and trigger is None:
            trigger = _arm(rng, plan, parties)
            kills_left -= trigger is None
        if trigger is not None and not trigger.victim.running():
            trigger = None  # it finished before its milestone came: the kill is spent
            kills_left -= 1
        elif trigger is not None and trigger.due():
            victim = trigger.victim
            victim.kill()
            at = f"after '{trigger.pattern}'" if trigger.pattern else "at a random time"
            events.append(f"{time.monotonic() - started:.1f}s kill {victim.name} {at}, down {trigger.downtime:.1f}s")
            time.sleep(trigger.downtime)
            victim.restarts += 1
            victim.start()
            trigger, kills_left = None, kills_left - 1
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
                   expired, seconds)


def compare(reference: Outcome, run: Outcome) -> list[str]:
    """What differs between a disturbed run and the undisturbed one, in words (empty: the same protocol outcome)."""
    problems = []
    keys = ("round", "model_cid", "rewards_root", "total_rewards", "rewards", "counted")
    want = [{k: r[k] for k in keys} for r in reference.rounds]
    got = [{k: r[k] for k in keys} for r in run.rounds]
    if got != want:
        problems.append(f"rounds differ: expected {want}, got {got}")
    for r in run.rounds:
        if len(r["submitted"]) != len(set(r["submitted"])):
            problems.append(f"round {r['round']}: an update was submitted twice: {r['submitted']}")
        if sorted(r["counted"]) != sorted(set(r["submitted"])):
            problems.append(f"round {r['round']}: submitted {r['submitted']} but counted {r['counted']}")
        if not r["claimed_by_all"]:
            problems.append(f"round {r['round']}: a reward was never claimed")
    earned: dict[str, int] = {}
    for r in run.rounds:
        for who, amount in r["rewards"].items():
            earned[who] = earned.get(who, 0) + amount
    if run.claimed != earned:
        problems.append(f"claims differ from the rewards: claimed {run.claimed}, earned {earned}")
    if run.expired:
        problems.append(f"rounds {run.expired} expired")
    unallocated = run.budget - sum(r["total_rewards"] for r in run.rounds)
    if run.task_manager_balance != unallocated:
        problems.append(f"the TaskManager holds {run.task_manager_balance} units, expected {unallocated} (stuck funds)")
    return problems
