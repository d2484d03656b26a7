"""Create and fund a task from a JSON file of task parameters.

    ape run create_task --spec task.json [--deployments deployments/local.json] [--account ALIAS] [--mint]
                        [--ipfs-api http://127.0.0.1:5001]

The file (amounts as integers or decimal strings in the token's smallest unit; digests as 0x-hex of 32 bytes or as
CIDv0 strings, from which the 32-byte sha2-256 digest is taken):

    {
      "spec": "Qm...",                  # model spec document (carries the validator's sealing key)
      "initial_model": "Qm...",         # global model of round 0
      "num_rounds": 3,
      "reward_per_round": "1000000000000000000000",
      "submission_window": 600,         # seconds
      "aggregation_window": 300,        # seconds
      "max_contributors": 10,
      "validator": "0x...",
      "slash_amount": "10000000000000000000",
      "min_open": 300,                  # optional (default 0): seconds a full round stays open (displacement)
      "min_contributor_stake": "...",   # optional: default the registry's minimum
      "reward_token": "0x..."           # optional: default FedToken from the deployments file
    }

Before anything is funded, the task spec document is fetched from the IPFS API by its CID (its bytes checked against
it) and validated as `fedchain task create` does: its fields and rule parameters, that its model builds, and that its
rule can run with max_contributors. A spec that would make every round fail is refused with the reason.

A spec with a privacy section creates a private task (createPrivateTask) with the spec's epsilon cap on chain.
The caller approves the TaskManager for the budget (num_rounds * reward_per_round) and creates the task; the new
task id is printed. On a local network, --mint first mints the budget in FedToken to the caller (devnets only).
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from ape import accounts, project
from ape.cli import ConnectedProviderCommand


def _digest(value: str) -> bytes:
    """32-byte digest from 0x-hex or a CIDv0 string."""
    if value.startswith("0x"):
        raw = bytes.fromhex(value[2:])
        if len(raw) != 32:
            raise click.BadParameter(f"digest {value} is not 32 bytes")
        return raw
    from fedchain.core.cid import cid_to_digest  # the project's CID code (CIDv0: sha2-256 multihash)

    return cid_to_digest(value)


def _check_spec(digest: bytes, ipfs_api: str, max_contributors: int) -> int:
    """Fetch the task spec by its digest and refuse one that cannot run, before the task is funded; returns its
    epsilon cap in micro-epsilon (0 for a task without a privacy section)."""
    from fedchain.content.client import IpfsClient
    from fedchain.core.cid import digest_to_cid
    from fedchain.core.spec import TaskSpec
    from fedchain.errors import FedchainError
    from fedchain.learning.kinds import check_spec

    try:
        with IpfsClient(ipfs_api) as ipfs:
            spec = TaskSpec.from_json_bytes(ipfs.cat(digest_to_cid(digest), max_size=1 << 20))
        check_spec(spec, max_contributors=max_contributors)
    except FedchainError as exc:
        raise click.ClickException(f"task spec {digest_to_cid(digest)} refused, nothing was funded: {exc}") from exc
    from fedchain.privacy.accounting import to_micro

    return to_micro(spec.privacy.epsilon_cap) if spec.privacy is not None else 0


def _account(network, alias: str | None):
    if alias:
        return accounts.load(alias)
    if network.is_local:
        return accounts.test_accounts[0]
    raise click.UsageError(f"--account ALIAS is required on {network.name}")


@click.command(cls=ConnectedProviderCommand)
@click.option("--spec", "spec_path", required=True, type=click.Path(exists=True, dir_okay=False), help="Task parameters (JSON).")
@click.option("--deployments", "deployments_path", default=None, type=click.Path(dir_okay=False),
              help="Deployments file (default: deployments/<network>.json).")
@click.option("--account", "alias", default=None, help="Account alias (required off local networks).")
@click.option("--mint", is_flag=True, help="Local networks: mint the budget in FedToken to the caller first.")
@click.option("--ipfs-api", default="http://127.0.0.1:5001", show_default=True,
              help="Kubo RPC API holding the task spec (it is checked before the task is funded).")
def cli(network, spec_path, deployments_path, alias, mint, ipfs_api):
    """Create and fund a task; print its id."""
    spec = json.loads(Path(spec_path).read_text())
    epsilon_cap = _check_spec(_digest(spec["spec"]), ipfs_api, int(spec["max_contributors"]))
    deployments = json.loads(Path(deployments_path or f"deployments/{network.name}.json").read_text())
    contracts = deployments["contracts"]
    owner = _account(network, alias)
    manager = project.TaskManager.at(contracts["TaskManager"])
    registry = project.StakeRegistry.at(contracts["StakeRegistry"])
    token_address = spec.get("reward_token", contracts["FedToken"])
    num_rounds, reward = int(spec["num_rounds"]), int(spec["reward_per_round"])
    budget = num_rounds * reward
    if mint:
        if not network.is_local or token_address != contracts["FedToken"]:
            raise click.UsageError("--mint works only on a local network with the FedToken reward token")
        project.FedToken.at(token_address).mint(owner, budget, sender=owner)
    params = (
        token_address,
        _digest(spec["spec"]),
        _digest(spec["initial_model"]),
        num_rounds,
        reward,
        int(spec["submission_window"]),
        int(spec["aggregation_window"]),
        int(spec.get("min_contributor_stake", registry.minContributorStake())),
        int(spec["max_contributors"]),
        spec["validator"],
        int(spec["slash_amount"]),
        int(spec.get("min_open", 0)),
    )
    project.FedToken.at(token_address).approve(manager, budget, sender=owner)  # any ERC20: same approve ABI
    # A spec with a privacy section makes a private task: its cap goes on chain, and submissions carry each spend.
    tx = manager.createPrivateTask(params, epsilon_cap, sender=owner) if epsilon_cap else manager.createTask(params, sender=owner)
    [created] = tx.decode_logs(manager.TaskCreated)
    click.echo(f"task {created.taskId} created: budget {created.budget} of {token_address}, tx {tx.txn_hash}")
