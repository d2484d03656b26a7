"""Commands that act on a chain and IPFS: devnet, account, task, contribute, validate, claim, status, model."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.table import Table

from fedchain.cli.common import (
    DeploymentsOpt,
    IpfsApi,
    Keystore,
    PasswordEnv,
    RpcUrl,
    connect,
    console,
    friendly_errors,
    load_account,
    setup_logging,
)

account_app = typer.Typer(help="Encrypted keystores for chain accounts.", no_args_is_help=True)
task_app = typer.Typer(help="Create and inspect training tasks.", no_args_is_help=True)
model_app = typer.Typer(help="Global models of a task.", no_args_is_help=True)
stake_app = typer.Typer(help="Stake in the registry (one stake serves every task).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("devnet")(devnet)
    app.add_typer(account_app, name="account")
    app.add_typer(task_app, name="task")
    app.command("contribute")(contribute)
    app.command("validate")(validate)
    app.command("claim")(claim)
    app.command("status")(status)
    app.add_typer(model_app, name="model")
    app.add_typer(stake_app, name="stake")


@friendly_errors
def devnet(
    anvil_port: int = typer.Option(8545, help="Anvil's port on 127.0.0.1."),
    ipfs_port: int = typer.Option(5001, help="The embedded IPFS node's API port on 127.0.0.1."),
    workdir: Path = typer.Option(Path(".fedchain/devnet"), help="Where the node's blocks and logs go."),
    deployments: Path = DeploymentsOpt,
    fund_accounts: int = typer.Option(10, help="How many development accounts get FED tokens."),
) -> None:
    """Start Anvil and the embedded IPFS node, deploy the contracts, fund test accounts; Ctrl-C stops everything."""
    from fedchain.sim.devnet import dev_account, fund_dev_accounts, running_devnet

    with running_devnet(workdir, anvil_port=anvil_port, ipfs_port=ipfs_port, deployments_path=deployments) as net:
        funded = fund_dev_accounts(net, fund_accounts)
        table = Table(title="fedchain devnet", show_header=False)
        table.add_row("JSON-RPC", net.rpc_url)
        table.add_row("IPFS API", net.ipfs_api)
        table.add_row("deployments", str(net.deployments_path))
        for name, address in net.deployments.contracts.items():
            table.add_row(name, address)
        table.add_row("funded accounts", f"{len(funded)} development accounts (mnemonic: Anvil's 'test … junk')")
        table.add_row("deployer", dev_account(0).address)
        console.print(table)
        console.print("Ctrl-C stops the devnet.")
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            console.print("stopping…")


@account_app.command("create")
@friendly_errors
def account_create(
    out: Path = typer.Option(..., "--out", help="Keystore file to write (mode 0600)."),
    dev_index: int | None = typer.Option(
        None, "--dev-index", min=0, help="Devnet only: store the development mnemonic's account N (funded by `fedchain devnet`)."
    ),
    password_env: str = PasswordEnv,
) -> None:
    """Create a new account in an encrypted keystore and print its address (never the key)."""
    from fedchain.chain.accounts import create_keystore, resolve_password

    key = None
    if dev_index is not None:
        from fedchain.sim.devnet import dev_account

        key = dev_account(dev_index).key
    address = create_keystore(out, resolve_password(password_env, prompt="New keystore password: "), private_key=key)
    typer.echo(address)


@task_app.command("init-spec")
@friendly_errors
def task_init_spec(
    out: Path = typer.Option(..., "--out", help="Where to write the spec JSON."),
    sealing_key: list[str] = typer.Option([], "--sealing-key", help="A validator's public sealing key (hex; `fedchain keys public`). Repeatable."),
    preset: str = typer.Option("mnist", help="mnist (28x28 digit classification) or shakespeare (next-character "
                               "prediction on 80-character windows of printable ASCII, char-lstm)."),
    architecture: str = typer.Option("cnn", help="The MNIST preset's model from the registry (cnn, mlp)."),
    rule: str = typer.Option("fedavg", help="Aggregation rule: fedavg, median, trimmed-mean, multi-krum."),
    scoring: str = typer.Option("tmc-shapley", help="Contribution scoring: tmc-shapley, marginal, equal."),
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
    out.write_text(json.dumps(spec.to_json_obj(), indent=2) + "\n")
    console.print(f"wrote {out} ({'sealed' if spec.sealed else 'unsealed'} updates, rule {rule})")


@task_app.command("create")
@friendly_errors
def task_create(
    spec: Path = typer.Option(..., "--spec", exists=True, dir_okay=False, help="Task spec JSON (see docs/PROTOCOL.md)."),
    keystore: Path = Keystore,
    rounds: int = typer.Option(5, min=1),
    reward_per_round: int = typer.Option(10**21, help="Reward per round in the token's smallest unit."),
    submission_window: int = typer.Option(300, help="Seconds a round accepts submissions."),
    aggregation_window: int = typer.Option(300, help="Seconds the validator has after submissions close."),
    min_stake: int | None = typer.Option(None, help="Minimum contributor stake (default: the registry's minimum)."),
    max_contributors: int = typer.Option(10, min=1),
    validator: str = typer.Option(..., help="The validator's address."),
    slash_fraction: float = typer.Option(0.5, min=0.0, max=1.0, help="Slash amount as a fraction of the minimum stake."),
    reward_token: str | None = typer.Option(None, help="ERC20 paying rewards (default: FedToken)."),
    seed: int = typer.Option(0, help="Seed of the initial model's weights."),
    rpc_url: str = RpcUrl, ipfs_api: str = IpfsApi, deployments: Path = DeploymentsOpt, password_env: str = PasswordEnv,
) -> None:
    """Publish a spec and initial model to IPFS and create and fund the task on chain; prints the task id."""
    from fedchain.core.spec import load_spec_file
    from fedchain.learning.kinds import check_spec
    from fedchain.roles.owner import create_task_from_spec

    task_spec = load_spec_file(spec)
    check_spec(task_spec, max_contributors=max_contributors)  # before any connection, upload or payment
    protocol, ipfs = connect(rpc_url, ipfs_api, deployments)
    owner = load_account(keystore, password_env)
    task_id = create_task_from_spec(
        protocol, ipfs, owner, task_spec, rounds=rounds, reward_per_round=reward_per_round,
        submission_window=submission_window, aggregation_window=aggregation_window, min_stake=min_stake,
        max_contributors=max_contributors, validator=validator, slash_fraction=slash_fraction,
        reward_token=reward_token, seed=seed,
    )
    typer.echo(task_id)


@friendly_errors
def contribute(
    task: int = typer.Option(..., "--task", help="Task id."),
    data: Path = typer.Option(..., "--data", help="Your private data: .npz with x (float32) and y (int64); for a "
                              "next-token (text) task, a UTF-8 .txt file (README: the data formats)."),
    keystore: Path = Keystore,
    state_dir: Path = typer.Option(Path(".fedchain/state"), help="Progress files, so a restart resumes."),
    max_rounds: int | None = typer.Option(None, help="Stop after this many submissions."),
    seed: int = typer.Option(0),
    attack: str | None = typer.Option(None, hidden=True, help="Demo only: behave as this attacker."),
    wait_for_task: float = typer.Option(0.0, help="Seconds to wait for the task to be created (for scripts)."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Hide the training progress bar."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
    rpc_url: str = RpcUrl, ipfs_api: str = IpfsApi, deployments: Path = DeploymentsOpt, password_env: str = PasswordEnv,
) -> None:
    """Train on your data in every round of a task, submit sealed updates, and claim rewards at the end."""
    setup_logging(verbose)
    from fedchain.roles.contributor import Contributor, ContributorConfig

    protocol, ipfs = connect(rpc_url, ipfs_api, deployments)
    account = load_account(keystore, password_env)
    _wait_for_task(protocol, task, wait_for_task)
    config = ContributorConfig(task_id=task, data_path=data, state_dir=state_dir, seed=seed, progress=not no_progress)
    contributor = Contributor(protocol, ipfs, account, config)
    if attack:
        from fedchain.sim.adversary import configure_attacker

        contributor = configure_attacker(contributor, attack)
    outcomes = contributor.run(max_rounds=max_rounds)
    console.print(f"submitted {len(outcomes)} update(s) to task {task}")


@friendly_errors
def validate(
    task: int = typer.Option(..., "--task", help="Task id."),
    holdout: Path = typer.Option(..., "--holdout", help="Held-out data to evaluate and score on, in the task's data "
                                 "format (.npz with x and y, or UTF-8 text for a next-token task)."),
    keystore: Path = Keystore,
    sealing_key: Path | None = typer.Option(None, "--sealing-key", help="The validator's X25519 key (fedchain keys create)."),
    sealing_password_env: str | None = typer.Option(None, help="Environment variable with the sealing key's password."),
    state_dir: Path = typer.Option(Path(".fedchain/state"), help="Checkpoints, so a restart resumes."),
    max_rounds: int | None = typer.Option(None, help="Stop after this many rounds."),
    wait_for_task: float = typer.Option(0.0, help="Seconds to wait for the task to be created (for scripts)."),
    scoring_workers: int | None = typer.Option(
        None, min=1, help="Threads that value coalitions in parallel (default: one per CPU, at most 4; 1 on a GPU)."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
    rpc_url: str = RpcUrl, ipfs_api: str = IpfsApi, deployments: Path = DeploymentsOpt, password_env: str = PasswordEnv,
) -> None:
    """Aggregate, score and finalize every round of a task as its validator."""
    import os

    setup_logging(verbose)
    from fedchain.core.keys import load_sealing_key
    from fedchain.roles.validator import Validator, ValidatorConfig

    protocol, ipfs = connect(rpc_url, ipfs_api, deployments)
    account = load_account(keystore, password_env)
    key = None
    if sealing_key is not None:
        key = load_sealing_key(sealing_key, os.environ.get(sealing_password_env) if sealing_password_env else None)
    _wait_for_task(protocol, task, wait_for_task)
    config = ValidatorConfig(task_id=task, holdout_path=holdout, state_dir=state_dir, scoring_workers=scoring_workers)
    results = Validator(protocol, ipfs, account, key, config).run(max_rounds=max_rounds)
    for r in results:
        console.print(f"round {r.round}: accuracy {r.test_accuracy:.4f}, rewards {r.total_rewards}, model {r.model_cid}")


def _wait_for_task(protocol, task_id: int, seconds: float) -> None:
    """Let a process start (and import torch) before its task exists: poll until the task is on chain."""
    deadline = time.monotonic() + seconds
    while protocol.task_count() <= task_id and time.monotonic() < deadline:
        time.sleep(0.2)


@friendly_errors
def claim(
    task: int = typer.Option(..., "--task", help="Task id."),
    keystore: Path = Keystore,
    rpc_url: str = RpcUrl, ipfs_api: str = IpfsApi, deployments: Path = DeploymentsOpt, password_env: str = PasswordEnv,
) -> None:
    """Claim every reward you are owed in a task (proofs rebuilt from the round reports)."""
    from fedchain.views.rewards import claimable_rewards

    protocol, ipfs = connect(rpc_url, ipfs_api, deployments)
    account = load_account(keystore, password_env)
    claims = claimable_rewards(protocol, ipfs, task, account.address)
    if not claims:
        console.print("nothing to claim")
        return
    result = protocol.claim_many(account, task, [(c.round, c.amount, c.proof) for c in claims])
    total = sum(c.amount for c in claims)
    console.print(f"claimed {total} over rounds {[c.round for c in claims]} (gas {result.gas_used})")


@friendly_errors
def status(
    task: int = typer.Option(..., "--task", help="Task id."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    rpc_url: str = RpcUrl, ipfs_api: str = IpfsApi, deployments: Path = DeploymentsOpt,
) -> None:
    """A table of the task's rounds: phase, updates, scores, rewards and model quality."""
    from fedchain.views.status import task_status

    protocol, ipfs = connect(rpc_url, ipfs_api, deployments)
    summary = task_status(protocol, ipfs, task)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    table = Table(title=f"task {task} ({summary['phase']}); rewards in FED")
    for col in ("round", "phase", "updates", "accepted", "accuracy", "loss", "rewards", "model"):
        table.add_column(col, overflow="fold")
    for r in summary["rounds"]:
        acc = f"{r['test_accuracy']:.4f}" if r.get("test_accuracy") is not None else "-"
        loss = f"{r['test_loss']:.4f}" if r.get("test_loss") is not None else "-"
        table.add_row(
            str(r["round"]), r["phase"], str(r["submissions"]), str(r.get("accepted", "-")), acc, loss,
            f"{int(r['total_rewards']) / FED:,.2f}", r.get("model_cid") or "-",
        )
    console.print(table)
    if summary["contributors"]:
        contrib = Table(title="contributors")
        for col in ("contributor", "updates", "mean score", "rewards (FED)", "slashed"):
            contrib.add_column(col, overflow="fold")
        for address, c in summary["contributors"].items():
            contrib.add_row(
                address, str(c["updates"]), f"{c['mean_score']:.3f}", f"{int(c['rewards']) / FED:,.2f}", str(c["slashed"])
            )
        console.print(contrib)


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
    console.print(f"wrote {out}: the global model after round {chosen} ({cid})")


FED = 10**18


def _fed(amount: float) -> int:
    return int(round(amount * FED))


@stake_app.command("add")
@friendly_errors
def stake_add(
    amount: float = typer.Option(..., "--amount", min=0.0, help="FED to add to your active stake."),
    keystore: Path = Keystore,
    rpc_url: str = RpcUrl, ipfs_api: str = IpfsApi, deployments: Path = DeploymentsOpt, password_env: str = PasswordEnv,
) -> None:
    """Stake FED (approve + stake)."""
    protocol, _ = connect(rpc_url, ipfs_api, deployments)
    account = load_account(keystore, password_env)
    units = _fed(amount)
    protocol.approve(account, protocol.registry.address, units)
    protocol.chain.send(protocol.registry.functions.stake(units), account, action="stake")
    console.print(f"active stake of {account.address}: {protocol.active_stake(account.address) / FED:,.4f} FED")


@stake_app.command("unstake")
@friendly_errors
def stake_unstake(
    amount: float = typer.Option(..., "--amount", min=0.0, help="FED to move from active to unbonding stake."),
    keystore: Path = Keystore,
    rpc_url: str = RpcUrl, ipfs_api: str = IpfsApi, deployments: Path = DeploymentsOpt, password_env: str = PasswordEnv,
) -> None:
    """Request an unstake: the amount unbonds (still slashable) until the unbonding period is over."""
    protocol, _ = connect(rpc_url, ipfs_api, deployments)
    account = load_account(keystore, password_env)
    protocol.chain.send(protocol.registry.functions.requestUnstake(_fed(amount)), account, action="requestUnstake")
    unbonding, release = protocol.registry.functions.unbonding(account.address).call()
    console.print(f"unbonding {unbonding / FED:,.4f} FED, withdrawable from unix time {release}")


@stake_app.command("withdraw")
@friendly_errors
def stake_withdraw(
    keystore: Path = Keystore,
    rpc_url: str = RpcUrl, ipfs_api: str = IpfsApi, deployments: Path = DeploymentsOpt, password_env: str = PasswordEnv,
) -> None:
    """Withdraw unbonded stake whose period is over."""
    protocol, _ = connect(rpc_url, ipfs_api, deployments)
    account = load_account(keystore, password_env)
    protocol.chain.send(protocol.registry.functions.withdraw(), account, action="withdraw")
    console.print(f"balance of {account.address}: {protocol.balance_of(account.address) / FED:,.4f} FED")


@stake_app.command("show")
@friendly_errors
def stake_show(
    account: str = typer.Option(..., "--account", help="Address to show."),
    rpc_url: str = RpcUrl, ipfs_api: str = IpfsApi, deployments: Path = DeploymentsOpt,
) -> None:
    """Active and unbonding stake and token balance of an address."""
    protocol, _ = connect(rpc_url, ipfs_api, deployments)
    unbonding, release = protocol.registry.functions.unbonding(account).call()
    console.print(
        f"{account}: active {protocol.active_stake(account) / FED:,.4f} FED, unbonding {unbonding / FED:,.4f} FED "
        f"(release at {release}), balance {protocol.balance_of(account) / FED:,.4f} FED"
    )
