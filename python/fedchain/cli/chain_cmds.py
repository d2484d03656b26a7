"""The roles' long-running commands: `fedchain devnet`, `contribute`, `validate`, and `claim`.

`fedchain task …`, `status` and `model …` are in task_cmds; `account …` and `stake …` in account_cmds.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

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
    StateDir,
    connect,
    console,
    friendly_errors,
    load_account,
    sealing_password,
    setup_logging,
    synced_index,
)

if TYPE_CHECKING:
    from fedchain.state import StateBinding


def register(app: typer.Typer) -> None:
    app.command("devnet")(devnet)
    app.command("contribute")(contribute)
    app.command("validate")(validate)
    app.command("claim")(claim)
    app.command("verify")(verify)


@friendly_errors
def devnet(
    anvil_port: int = typer.Option(8545, envvar="FEDCHAIN_ANVIL_PORT", help="Anvil's port on 127.0.0.1."),
    ipfs_port: int = typer.Option(5001, envvar="FEDCHAIN_IPFS_PORT", help="The embedded IPFS node's API port on 127.0.0.1."),
    workdir: Path = typer.Option(Path(".fedchain/devnet"), help="Where the saved chain, its record and the logs go."),
    ipfs_repo: Path = typer.Option(Path(".fedchain/ipfs"), help="The IPFS node's repo (as `fedchain ipfs serve --repo`)."),
    state_dir: Path = typer.Option(Path(".fedchain/state"), help="The local state --fresh clears of the old chain's."),
    deployments: Path = DeploymentsOpt,
    fund_accounts: int = typer.Option(10, help="How many development accounts get FED tokens on a new chain."),
    fresh: bool = typer.Option(False, "--fresh", help="Start a new chain; clear the old chain's local state."),
) -> None:
    """Start Anvil and the embedded IPFS node with the contracts deployed; Ctrl-C stops everything.

    The chain is saved when the devnet stops and resumed when it starts again (tasks, stakes and rewards kept);
    --fresh starts a new one and deletes the validator checkpoints and contributor progress of the old one."""
    import signal

    from fedchain.sim.devnet import dev_account, fund_dev_accounts, running_devnet

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop as on Ctrl-C: children stopped, chain saved
    try:
        with running_devnet(workdir, anvil_port=anvil_port, ipfs_port=ipfs_port, deployments_path=deployments,
                            ipfs_repo=ipfs_repo, persist=True, fresh=fresh, state_dir=state_dir) as net:
            funded = [] if net.resumed else fund_dev_accounts(net, fund_accounts)
            _print_devnet(net, funded, dev_account(0).address, ipfs_repo, state_dir)
            while True:
                time.sleep(0.5)
                net.check_alive()
    except KeyboardInterrupt:
        console.print(f"devnet stopped; the chain is saved in {workdir}: `fedchain devnet` resumes it")


def _print_devnet(net, funded: list[str], deployer: str, ipfs_repo: Path, state_dir: Path) -> None:
    table = Table(title="fedchain devnet", show_header=False)
    table.add_row("JSON-RPC", net.rpc_url)
    table.add_row("IPFS API", f"{net.ipfs_api} (repo {ipfs_repo})")
    table.add_row("deployments", str(net.deployments_path))
    for name, address in net.deployments.contracts.items():
        table.add_row(name, address)
    table.add_row("deployer", f"{deployer} (development account 0: owns FedToken, so it can mint)")
    console.print(table)
    if net.cleared:
        console.print(f"--fresh: deleted the old chain and its local state ({len(net.cleared)} file(s))")
    if net.stale:
        console.print(f"note: {len(net.stale)} file(s) in {state_dir} hold state of an earlier chain at these addresses "
                      "(checkpoints, progress); they are refused if used: delete them, or start with `fedchain devnet "
                      "--fresh` to have them deleted")
    if net.resumed:
        from fedchain.chain.protocol import Protocol

        tasks = Protocol(net.chain, net.deployments).task_count()
        console.print(f"resumed the chain saved in {net.state_file} at block {net.chain.block_number()} with {tasks} "
                      "task(s): tasks, stakes and rewards are as they were (`fedchain devnet --fresh` starts a new one)")
    else:
        console.print(f"started a new chain (saved in {net.state_file} when it stops; `fedchain devnet` resumes it); "
                      f"{len(funded)} development accounts hold ETH and 1000000 FED each "
                      "(mnemonic: Anvil's 'test … junk'; `fedchain account create --dev-index N`)")
    console.print("devnet ready; Ctrl-C stops it.")


@friendly_errors
def contribute(
    task: int = typer.Option(..., "--task", help="Task id."),
    data: Path = typer.Option(..., "--data", help="Your private data: .npz with x (float32) and y (int64); for a "
                              "next-token (text) task, a UTF-8 .txt file (README: the data formats)."),
    keystore: Path = Keystore,
    state_dir: Path = StateDir,
    max_rounds: int | None = typer.Option(None, help="Stop after this many submissions (then claim what they earned)."),
    seed: int = typer.Option(0),
    attack: str | None = typer.Option(None, hidden=True, help="Demo only: behave as this attacker."),
    wait_for_task: float = typer.Option(0.0, help="Seconds to wait for the task to be created (for scripts)."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Hide the training progress bar."),
    confirmations: int | None = typer.Option(
        None, "--confirmations", min=0, envvar="FEDCHAIN_CONFIRMATIONS",
        help="Blocks deep a round's opening (so its base model) and the results must be before they are trained on "
        "or claimed from (default: 0 on a local devnet, 3 elsewhere)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
    rpc_url: str = RpcUrl, ipfs_api: str = IpfsApi, deployments: Path = DeploymentsOpt, password_env: str = PasswordEnv,
) -> None:
    """Stake if needed, train on your data in every round of a task, submit sealed updates, claim rewards at the end."""
    setup_logging(verbose)
    from fedchain.chain.units import format_fed

    # torch comes with the role, imported only once the chain, the account and the task are there (a wrong
    # address or password fails in a second); while waiting for the task it is imported meanwhile.
    protocol, ipfs = connect(rpc_url, ipfs_api, deployments)
    account = load_account(keystore, password_env)
    _wait_for_task(protocol, task, wait_for_task, warm="fedchain.roles.contributor")
    from fedchain.roles.contributor import Contributor, ContributorConfig

    config = ContributorConfig(task_id=task, data_path=data, state_dir=state_dir, seed=seed, progress=not no_progress,
                               confirmations=confirmations)
    contributor = Contributor(protocol, ipfs, account, config)
    if attack:
        from fedchain.sim.adversary import configure_attacker

        contributor = configure_attacker(contributor, attack)
    outcomes = contributor.run(max_rounds=max_rounds)
    console.print(f"submitted {len(outcomes)} update(s) to task {task} (rounds {[o.round for o in outcomes]}); "
                  f"claimed {format_fed(contributor.claimed)}")


@friendly_errors
def validate(
    task: int = typer.Option(..., "--task", help="Task id."),
    holdout: Path = typer.Option(..., "--holdout", help="Held-out data to evaluate and score on, in the task's data "
                                 "format (.npz with x and y, or UTF-8 text for a next-token task)."),
    keystore: Path = Keystore,
    sealing_key: Path | None = typer.Option(None, "--sealing-key", help="The validator's X25519 key (fedchain keys create)."),
    sealing_password_env: str = typer.Option(
        "FEDCHAIN_PASSWORD", help="Environment variable with the sealing key's password (if it is encrypted)."),
    state_dir: Path = StateDir,
    max_rounds: int | None = typer.Option(None, help="Stop after this many rounds."),
    wait_for_task: float = typer.Option(0.0, help="Seconds to wait for the task to be created (for scripts)."),
    scoring_workers: int | None = typer.Option(
        None, min=1, help="Threads that value coalitions in parallel (default: one per CPU, at most 4; 1 on a GPU)."
    ),
    confirmations: int | None = typer.Option(
        None, "--confirmations", min=0, envvar="FEDCHAIN_CONFIRMATIONS",
        help="Blocks deep a round's submissions must be before they are aggregated, scored or slashed (default: 0 on "
        "a local devnet, 3 elsewhere)."),
    behaviour: str = typer.Option("honest", hidden=True, help="Demo only: a committee member's behaviour."),
    accomplices: str = typer.Option("", hidden=True, help="Demo only: a colluding member's accomplices."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
    rpc_url: str = RpcUrl, ipfs_api: str = IpfsApi, deployments: Path = DeploymentsOpt, password_env: str = PasswordEnv,
) -> None:
    """Aggregate, score and finalize every round of a task as its validator, or as a member of its committee."""
    setup_logging(verbose)
    from fedchain.chain.units import format_fed
    from fedchain.core.keys import load_sealing_key
    from fedchain.views.index import default_confirmations

    protocol, ipfs = connect(rpc_url, ipfs_api, deployments)
    depth = default_confirmations(protocol.chain.chain_id) if confirmations is None else confirmations
    account = load_account(keystore, password_env)
    key = None
    if sealing_key is not None:
        password = sealing_password(sealing_key, sealing_password_env, "--sealing-password-env")
        key = load_sealing_key(sealing_key, password, password_hint=f"${sealing_password_env}, --sealing-password-env")
    _wait_for_task(protocol, task, wait_for_task, warm="fedchain.roles.validator")  # torch only from here (see contribute)
    info = protocol.task(task)
    if info.ended:
        from fedchain.errors import ConfigError

        if _served(state_dir / f"validator-task{task}", protocol.binding()):
            # This validator served the task and was restarted after its end (it missed the last round's window):
            # nothing to do, and not an error, or a supervisor that restarts it on failure would do so forever.
            console.print(f"task {task} ended while this validator was stopped: nothing left to validate; "
                          f"`fedchain status --task {task}` shows its results")
            return
        raise ConfigError(f"task {task} has ended (all {info.num_rounds} round(s) decided or cancelled): there is "
                          f"nothing left to validate; `fedchain status --task {task}` shows its results")
    if protocol.committees.committee_of_task(task) != 0:
        _serve_committee(protocol, ipfs, account, key, task, holdout, state_dir, scoring_workers, max_rounds,
                         behaviour, accomplices, depth)
        return
    from fedchain.roles.validator import Validator, ValidatorConfig

    config = ValidatorConfig(task_id=task, holdout_path=holdout, state_dir=state_dir, scoring_workers=scoring_workers,
                             confirmations=depth)
    results = Validator(protocol, ipfs, account, key, config).run(max_rounds=max_rounds)
    for r in results:
        console.print(f"round {r.round}: accuracy {r.test_accuracy:.4f}, rewards {format_fed(r.total_rewards)}, "
                      f"model {r.model_cid}")
    console.print(f"task {task}: {'ended' if protocol.task(task).ended else 'stopped after --max-rounds'}; "
                  f"{len(results)} round(s) finalized by this run")


def _served(checkpoints: Path, binding: StateBinding) -> bool:
    """Whether `checkpoints` holds a validator checkpoint of this deployment (another chain's do not count)."""
    from fedchain.state import StateMismatchError, read_bound_json

    for path in checkpoints.glob("round-*.json"):
        try:
            if read_bound_json(path, binding) is not None:
                return True
        except StateMismatchError:
            continue
    return False


def _serve_committee(protocol, ipfs, account, key, task: int, holdout: Path, state_dir: Path,
                     scoring_workers: int | None, max_rounds: int | None, behaviour: str, accomplices: str,
                     confirmations: int) -> None:
    from fedchain.roles.collect import UpdateCollector
    from fedchain.roles.member import CommitteeMember, MemberConfig
    from fedchain.sim.member_attacks import member_behaviour
    from fedchain.views.rewards import claimable_rewards

    collector = UpdateCollector(protocol, ipfs, task, holdout, key, confirmations=confirmations)
    config = MemberConfig(task_id=task, holdout_path=holdout, state_dir=state_dir, scoring_workers=scoring_workers)
    member = CommitteeMember(protocol, protocol.committees, ipfs, account, collector, config,
                             member_behaviour(behaviour, [a for a in accomplices.split(",") if a]))
    served = member.run(max_rounds=max_rounds)
    console.print(f"task {task}: served {len(served)} round(s) as a committee member")
    if protocol.task(task).ended:
        claims = claimable_rewards(protocol, ipfs, task, account.address)
        if claims:
            protocol.claim_many(account, task, [(c.round, c.amount, c.proof) for c in claims])
            console.print(f"claimed {sum(c.amount for c in claims)} over rounds {[c.round for c in claims]}")


@friendly_errors
def verify(
    task: int = typer.Option(..., "--task", help="Task id."),
    round_index: int = typer.Option(..., "--round", help="A finalized round."),
    rpc_url: str = RpcUrl, ipfs_api: str = IpfsApi, deployments: Path = DeploymentsOpt,
) -> None:
    """Recompute a finalized round from public data (the consensus of a committee, the reward root, the model of an
    unsealed task) and say whether it matches what was posted. Exit status 1 on a mismatch."""
    from fedchain.roles.verify import verify_round

    protocol, ipfs = connect(rpc_url, ipfs_api, deployments)
    result = verify_round(protocol, ipfs, task, round_index)
    for check in result.checks:
        console.print(f"{'ok      ' if check.ok else 'MISMATCH'} {check.name}: {check.detail}")
    console.print(f"task {task} round {round_index}: {'verified' if result.ok else 'DOES NOT MATCH what was posted'}")
    if not result.ok:
        raise typer.Exit(1)


def _wait_for_task(protocol, task_id: int, seconds: float, warm: str | None = None) -> None:
    """Let a process start before its task exists: poll until the task is on chain. If it has to wait, the module
    `warm` (the role, with torch) is imported meanwhile, on a thread, so that waiting and importing overlap."""
    deadline = time.monotonic() + seconds
    warming = False
    while protocol.task_count() <= task_id and time.monotonic() < deadline:
        if warm is not None and not warming and warm not in sys.modules:
            threading.Thread(target=_import_quietly, args=(warm,), daemon=True, name="warm-import").start()
            warming = True
        time.sleep(0.1)
    protocol.require_task(task_id)  # TaskNotFoundError, naming the ids there are


def _import_quietly(module: str) -> None:
    # An error here is raised again, where it can be reported, by the command's own import of the module.
    with contextlib.suppress(Exception):
        importlib.import_module(module)


@friendly_errors
def claim(
    task: int = typer.Option(..., "--task", help="Task id."),
    keystore: Path = Keystore,
    index_dir: Path = IndexDir, confirmations: int | None = Confirmations,
    rpc_url: str = RpcUrl, ipfs_api: str = IpfsApi, deployments: Path = DeploymentsOpt, password_env: str = PasswordEnv,
) -> None:
    """Claim every reward you are owed in a task (proofs rebuilt from the round reports). The finalized rounds come
    from the event index in --index-dir (kept up to date on each call, never rescanned)."""
    from fedchain.chain.units import format_fed
    from fedchain.views.rewards import claimable_rewards

    protocol, ipfs = connect(rpc_url, ipfs_api, deployments)
    protocol.require_task(task)
    account = load_account(keystore, password_env)
    index = synced_index(protocol, index_dir, confirmations)
    claims = claimable_rewards(protocol, ipfs, task, account.address, index=index)
    if not claims:
        console.print(f"nothing to claim for {account.address} in task {task} (no unclaimed reward in a finalized round)")
        return
    result = protocol.claim_many(account, task, [(c.round, c.amount, c.proof) for c in claims])
    total = sum(c.amount for c in claims)
    console.print(f"claimed {format_fed(total)} over rounds {[c.round for c in claims]} (gas {result.gas_used})")
