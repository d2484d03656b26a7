"""Task owners' and readers' commands: `fedchain task …` (spec, create, show, cancel, refund), `status`, `model …`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.table import Table

from fedchain.cli.common import (
    Confirmations,
    DeploymentsOpt,
    IndexDir,
    IpfsApi,
    Keystore,
    PasswordEnv,
    RpcUrl,
    connect,
    connect_chain,
    console,
    friendly_errors,
    load_account,
    parse_address,
    parse_amount,
    synced_index,
)

task_app = typer.Typer(help="Create, inspect, cancel and refund training tasks.", no_args_is_help=True)
model_app = typer.Typer(help="Global models of a task.", no_args_is_help=True)
DEVNET_SUBMISSION_WINDOW = 60   # seconds: a round with fewer contributors than the maximum waits this long
SUBMISSION_WINDOW = 300


def register(app: typer.Typer) -> None:
    app.add_typer(task_app, name="task")
    app.command("status")(status)
    app.add_typer(model_app, name="model")


@task_app.command("init-spec")
@friendly_errors
def task_init_spec(
    out: Path = typer.Option(..., "--out", help="Where to write the spec JSON."),
    sealing_key: list[str] = typer.Option([], "--sealing-key", help="A validator's public sealing key (hex; `fedchain keys public`). Repeatable."),
    preset: str = typer.Option("mnist", help="mnist (28x28 digit classification) or shakespeare (next-character "
                               "prediction on 80-character windows of printable ASCII, char-lstm)."),
    architecture: str = typer.Option("cnn", help="The MNIST preset's model from the registry (cnn, mlp)."),
    rule: str = typer.Option("fedavg", help="Aggregation rule: fedavg, median, trimmed-mean, multi-krum."),
    scoring: str = typer.Option("tmc-shapley", help="Contribution scoring: tmc-shapley, gradient-shapley (cost linear in contributors), marginal, equal."),
) -> None:
    """Write a starting task spec from a preset: edit it, then `fedchain task create --spec`."""
    from fedchain.core.spec import ScoringConfig, TaskSpec, mnist_spec, shakespeare_spec
    from fedchain.learning.kinds import check_spec

    if preset not in ("mnist", "shakespeare"):
        raise typer.BadParameter(f"unknown preset {preset!r}: use mnist or shakespeare")
    if preset == "shakespeare":
        spec = shakespeare_spec(list(sealing_key), scoring=ScoringConfig(method=scoring))
    else:
        spec = mnist_spec(architecture, list(sealing_key), scoring=ScoringConfig(method=scoring))
    spec = TaskSpec.model_validate({**spec.to_json_obj(), "aggregation": {"rule": rule}})
    check_spec(spec)
    if out.exists():
        raise typer.BadParameter(f"{out} exists; choose another path or delete it")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(spec.to_json_obj(), indent=2) + "\n")
    console.print(f"wrote {out} ({'sealed' if spec.sealed else 'unsealed'} updates, rule {rule})")


@task_app.command("create")
@friendly_errors
def task_create(
    spec: Path = typer.Option(..., "--spec", exists=True, dir_okay=False, help="Task spec JSON (see docs/PROTOCOL.md)."),
    keystore: Path = Keystore,
    rounds: int = typer.Option(5, min=1),
    reward_per_round: str = typer.Option("1000", help="Reward per round in FED (decimal); the owner pays rounds × this."),
    submission_window: int | None = typer.Option(
        None, min=1, help=f"Seconds a round accepts submissions (default: {DEVNET_SUBMISSION_WINDOW} on a devnet, "
        f"{SUBMISSION_WINDOW} elsewhere); a round closes earlier once --max-contributors have submitted and it has "
        "been open --min-open seconds."),
    aggregation_window: int = typer.Option(300, min=1, help="Seconds the validator has after submissions close."),
    min_stake: str | None = typer.Option(None, help="Minimum contributor stake in FED (default: the registry's minimum)."),
    max_contributors: int = typer.Option(10, min=1),
    min_open: int | None = typer.Option(
        None, min=0, help="Seconds a round stays open even when full, so that contributors who train slowly are not "
        "locked out by accounts that submit first (while it is full, more stake takes the slot of the least; "
        "default: a quarter of the submission window; 0: a full round closes at once)."),
    validator: str = typer.Option(..., help="The validator's address (`fedchain account address --keystore FILE`)."),
    slash_fraction: float = typer.Option(0.5, min=0.0, max=1.0, help="Slash amount as a fraction of the minimum stake."),
    reward_token: str | None = typer.Option(None, help="ERC20 paying rewards (default: FedToken)."),
    seed: int = typer.Option(0, help="Seed of the initial model's weights."),
    rpc_url: str = RpcUrl, ipfs_api: str = IpfsApi, deployments: Path = DeploymentsOpt, password_env: str = PasswordEnv,
) -> None:
    """Publish a spec and initial model to IPFS and create and fund the task on chain; prints the task id."""
    from fedchain.chain.units import format_fed
    from fedchain.core.spec import load_spec_file
    from fedchain.learning.kinds import check_spec
    from fedchain.roles.owner import create_task_from_spec

    reward = parse_amount(reward_per_round, "--reward-per-round")
    minimum = None if min_stake is None else parse_amount(min_stake, "--min-stake")
    validator = parse_address(validator, "--validator")
    task_spec = load_spec_file(spec)
    check_spec(task_spec, max_contributors=max_contributors)  # before any connection, upload or payment
    protocol, ipfs = connect(rpc_url, ipfs_api, deployments)
    owner = load_account(keystore, password_env)
    window = submission_window or (DEVNET_SUBMISSION_WINDOW if protocol.chain.is_dev_chain() else SUBMISSION_WINDOW)
    task_id = create_task_from_spec(
        protocol, ipfs, owner, task_spec, rounds=rounds, reward_per_round=reward,
        submission_window=window, aggregation_window=aggregation_window, min_stake=minimum,
        max_contributors=max_contributors, validator=validator, slash_fraction=slash_fraction,
        reward_token=reward_token, seed=seed, min_open=window // 4 if min_open is None else min(min_open, window),
    )
    info = protocol.task(task_id)
    console.print(
        f"task {task_id}: {rounds} round(s) of {format_fed(reward)} paid by {owner.address}; a round accepts "
        f"submissions for {window} s or, once {info.min_open} s passed, until {max_contributors} contributor(s) have "
        f"submitted; minimum stake "
        f"{format_fed(info.min_contributor_stake)}. `fedchain task show --task {task_id}` shows it all"
    )
    typer.echo(task_id)


@task_app.command("show")
@friendly_errors
def task_show(
    task: int = typer.Option(..., "--task", help="Task id."),
    rpc_url: str = RpcUrl, deployments: Path = DeploymentsOpt,
) -> None:
    """A task's parameters, budget, deadlines and, once it ended, its claim deadline and refund."""
    protocol = connect_chain(rpc_url, deployments)
    table = Table(title=f"task {task}", show_header=False)
    for label, value in _details(protocol, task):
        table.add_row(label, value)
    console.print(table)


def _details(protocol, task: int) -> list[tuple[str, str]]:
    from fedchain.views.status import task_details

    return task_details(protocol, task)


@task_app.command("cancel")
@friendly_errors
def task_cancel(
    task: int = typer.Option(..., "--task", help="Task id."),
    keystore: Path = Keystore,
    rpc_url: str = RpcUrl, deployments: Path = DeploymentsOpt, password_env: str = PasswordEnv,
) -> None:
    """Owner: cancel a task. Its current round runs to its end; then the task ends and the rest is refundable."""
    from fedchain.errors import ConfigError

    protocol = connect_chain(rpc_url, deployments)
    info = protocol.task(task)
    owner = load_account(keystore, password_env)
    if owner.address != info.owner:
        raise ConfigError(f"only task {task}'s owner {info.owner} can cancel it, not {owner.address}")
    if info.ended or info.cancelled:
        raise ConfigError(f"task {task} has already {'ended' if info.ended else 'been cancelled'}")
    protocol.cancel_task(owner, task)
    console.print(f"task {task} cancelled: round {info.current_round} runs to its end (finalized or expired), then "
                  f"the task ends and `fedchain task refund --task {task}` returns the unallocated budget")


@task_app.command("refund")
@friendly_errors
def task_refund(
    task: int = typer.Option(..., "--task", help="Task id."),
    keystore: Path = Keystore,
    rpc_url: str = RpcUrl, deployments: Path = DeploymentsOpt, password_env: str = PasswordEnv,
) -> None:
    """Owner: withdraw what an ended task did not allocate (after the claim period: everything still unclaimed)."""
    from fedchain.chain.units import format_fed
    from fedchain.errors import ConfigError
    from fedchain.views.status import clock_time

    protocol = connect_chain(rpc_url, deployments)
    info = protocol.task(task)
    owner = load_account(keystore, password_env)
    if owner.address != info.owner:
        raise ConfigError(f"only task {task}'s owner {info.owner} can withdraw its refund, not {owner.address}")
    if not info.ended:
        raise ConfigError(f"task {task} is still running (round {info.current_round} of {info.num_rounds}): a refund "
                          f"is possible once it ends (`fedchain task cancel --task {task}` ends it after this round)")
    protocol.chain.sync_clock()
    if protocol.refundable(task) == 0:
        raise ConfigError(f"task {task} has nothing to refund now; unclaimed rewards become refundable after "
                          f"{clock_time(protocol.claim_deadline(task))}")
    amount, _ = protocol.withdraw_refund(owner, task)
    console.print(f"refunded {format_fed(amount)} of task {task} to {owner.address}")


@friendly_errors
def status(
    task: int = typer.Option(..., "--task", help="Task id."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (amounts in the smallest unit) instead of tables."),
    wei: bool = typer.Option(False, "--wei", help="Also show amounts in the smallest unit."),
    index_dir: Path = IndexDir, confirmations: int | None = Confirmations,
    rpc_url: str = RpcUrl, ipfs_api: str = IpfsApi, deployments: Path = DeploymentsOpt,
) -> None:
    """The task's rounds: phase, deadline, what the current round waits for, updates, scores, rewards, accuracy.

    Results come from the event index in --index-dir (kept up to date on each call, never rescanned)."""
    from fedchain.chain.units import format_wei
    from fedchain.views.status import clock_time, describe_time, task_status

    protocol, ipfs = connect(rpc_url, ipfs_api, deployments)
    protocol.require_task(task)
    summary = task_status(protocol, ipfs, task, events=synced_index(protocol, index_dir, confirmations))
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    token = summary["token"]

    def amount(units: str | int) -> str:
        return format_wei(int(units), wei=wei, decimals=token["decimals"], symbol=token["symbol"])

    now = time.time()
    table = Table(title=f"task {task} ({summary['phase']}): {summary['num_rounds']} round(s)")
    for col in ("round", "phase", "deadline", "updates", "accepted", "accuracy", "loss", "rewards"):
        table.add_column(col, overflow="fold")
    for r in summary["rounds"]:
        acc = f"{r['test_accuracy']:.4f}" if r.get("test_accuracy") is not None else "-"
        loss = f"{r['test_loss']:.4f}" if r.get("test_loss") is not None else "-"
        deadline = f"{clock_time(r['deadline'])} ({describe_time(r['deadline'] - now)})" if r["deadline"] else "-"
        table.add_row(str(r["round"]), r["phase"], deadline, str(r["submissions"]), str(r.get("accepted", "-")), acc,
                      loss, amount(r["total_rewards"]))
    console.print(table)
    for r in summary["rounds"]:
        if r["waiting_for"]:
            console.print(f"round {r['round']} is {r['phase']}: waiting for {r['waiting_for']}")
    if summary["contributors"]:
        contrib = Table(title="contributors")
        for col in ("contributor", "updates", "mean score", "rewards", "slashed"):
            contrib.add_column(col, overflow="fold")
        for address, c in summary["contributors"].items():
            contrib.add_row(address, str(c["updates"]), f"{c['mean_score']:.3f}", amount(c["rewards"]), str(c["slashed"]))
        console.print(contrib)
    _print_pseudo_labels(summary["rounds"])
    if summary.get("privacy") is not None:
        _print_privacy_ledger(summary["privacy"])


def _print_pseudo_labels(rounds: list[dict]) -> None:
    """What each submission declared about its pseudo-labels (on chain), with the validator's flags once reported."""
    rows = [(r["round"], address, p) for r in rounds for address, p in r.get("pseudo_labels", {}).items()]
    if not rows:
        return
    table = Table(title="pseudo-labels declared on chain (declared by each contributor, not proven)")
    for col in ("round", "contributor", "pseudo-labelled / unlabelled", "labelled", "threshold", "mean confidence",
                "per class", "flags"):
        table.add_column(col, overflow="fold")
    for round_index, address, p in rows:
        flags = p.get("flags")
        table.add_row(str(round_index), address, f"{p['pseudo_labelled']} / {p['unlabelled_seen']}", str(p["labelled"]),
                      f"{p['threshold']:.2f}", f"{p['mean_confidence']:.3f}", " ".join(map(str, p["histogram"])),
                      "not reported yet" if flags is None else (", ".join(flags) or "none"))
    console.print(table)


def _print_privacy_ledger(privacy: dict) -> None:
    ledger = Table(title=f"privacy ledger (on chain): each contributor's epsilon, cap {privacy['epsilon_cap']:g}")
    for col in ("contributor", "epsilon spent", "left"):
        ledger.add_column(col, overflow="fold")
    for address, spent in privacy["spent"].items():
        ledger.add_row(address, f"{spent:.4f}", f"{privacy['epsilon_cap'] - spent:.4f}")
    console.print(ledger)


@model_app.command("pull")
@friendly_errors
def model_pull(
    task: int = typer.Option(..., "--task", help="Task id."),
    round_index: int | None = typer.Option(None, "--round", help="Round whose result to pull (default: the latest finalized)."),
    out: Path = typer.Option(..., "--out", help="Where to write the safetensors file."),
    rpc_url: str = RpcUrl, ipfs_api: str = IpfsApi, deployments: Path = DeploymentsOpt,
) -> None:
    """Download a round's global model as safetensors, its CID checked against the chain."""
    from fedchain.views.status import pull_model

    protocol, ipfs = connect(rpc_url, ipfs_api, deployments)
    cid, chosen = pull_model(protocol, ipfs, task, round_index, out)
    console.print(f"wrote {out}: the global model after round {chosen} ({cid}); "
                  f"`fedchain model evaluate --task {task} --model {out} --data FILE.npz` tests it")


@model_app.command("evaluate")
@friendly_errors
def model_evaluate(
    task: int = typer.Option(..., "--task", help="The task whose spec builds the model."),
    model: Path = typer.Option(..., "--model", help="A model file from `fedchain model pull`."),
    data: Path = typer.Option(..., "--data", help="Labelled data (.npz with x and y) to evaluate on."),
    rpc_url: str = RpcUrl, ipfs_api: str = IpfsApi, deployments: Path = DeploymentsOpt,
) -> None:
    """Accuracy and loss of a pulled model on your data (the model as the task's spec builds it)."""
    from fedchain.views.status import evaluate_model

    protocol, ipfs = connect(rpc_url, ipfs_api, deployments)
    accuracy, loss, samples = evaluate_model(protocol, ipfs, task, model, data)
    console.print(f"{model} on {data} ({samples} samples): accuracy {accuracy:.4f}, loss {loss:.4f}")
