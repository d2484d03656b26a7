"""Deploy FedToken, StakeRegistry, TaskManager and CommitteeManager, let both managers lock and slash, make the
CommitteeManager the TaskManager's validator of committee tasks, and write deployments/<network>.json.

    ape run deploy                                   # local Anvil (ape's foundry provider), test account 0
    ape run deploy --network http://127.0.0.1:8545   # a running devnet (Anvil), test account 0
    ape run deploy --network ethereum:sepolia:node --account deployer --treasury 0x...

The deployments file is what the Python side reads:
{"chain_id", "network", "block", "deployer", "contracts": {"FedToken", "StakeRegistry", "TaskManager",
"CommitteeManager"}, "parameters"}.
Amounts are in the token's smallest unit (FED has 18 decimals); periods in seconds, at most four years (the contracts
refuse longer ones: a period near 2^64 would overflow and lock every claim, refund or unstaked token).
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from ape import accounts, chain, project
from ape.cli import ConnectedProviderCommand

FED = 10**18
# StakeRegistry.MAX_UNBONDING_PERIOD and TaskManager.MAX_CLAIM_PERIOD (tests/contracts check that they agree).
MAX_PERIOD = 4 * 365 * 24 * 3_600


def _deployer(network, alias: str | None):
    """The named account; on a local network without --account, the first test account."""
    if alias:
        return accounts.load(alias)
    # A local chain, or a development chain reached by URL (`--network http://127.0.0.1:8545`, Anvil's or geth's
    # dev chain ids): ape's test accounts come from the same development mnemonic that funds them there.
    if network.is_local or chain.chain_id in (31337, 1337):
        return accounts.test_accounts[0]
    raise click.UsageError(f"--account ALIAS is required on {network.name} (see `ape accounts list`)")


@click.command(cls=ConnectedProviderCommand)
@click.option("--account", "alias", default=None, help="Account alias (required off local networks).")
@click.option("--min-contributor-stake", default=100 * FED, show_default=True, type=int)
@click.option("--min-validator-stake", default=1_000 * FED, show_default=True, type=int)
@click.option("--unbonding-period", default=3_600, show_default=True, type=click.IntRange(0, MAX_PERIOD),
              help="Seconds (at most four years).")
@click.option("--claim-period", default=7 * 24 * 3_600, show_default=True, type=click.IntRange(0, MAX_PERIOD),
              help="Seconds after a task ends (at most four years).")
@click.option("--treasury", default=None, help="Receives slashed stake (default: the deployer).")
@click.option("--out", "out_dir", default="deployments", show_default=True, type=click.Path(file_okay=False))
def cli(network, alias, min_contributor_stake, min_validator_stake, unbonding_period, claim_period, treasury, out_dir):
    """Deploy and wire the fedchain contracts; print their addresses and write the deployments file."""
    deployer = _deployer(network, alias)
    treasury = treasury or deployer.address
    start_block = chain.blocks.head.number
    token = project.FedToken.deploy(deployer, sender=deployer)
    registry = project.StakeRegistry.deploy(
        token, treasury, unbonding_period, min_contributor_stake, min_validator_stake, deployer, sender=deployer
    )
    manager = project.TaskManager.deploy(registry, claim_period, deployer, sender=deployer)
    registry.grantRole(registry.SLASHER_ROLE(), manager, sender=deployer)
    committees = project.CommitteeManager.deploy(manager, sender=deployer)
    registry.grantRole(registry.SLASHER_ROLE(), committees, sender=deployer)
    manager.setCommitteeManager(committees, sender=deployer)
    registry.freezeRoles(sender=deployer)  # the slashers are final: the admin can never make itself one

    record = {
        "chain_id": chain.chain_id,
        "network": network.name,
        "block": start_block,
        "deployer": deployer.address,
        "contracts": {
            "FedToken": token.address,
            "StakeRegistry": registry.address,
            "TaskManager": manager.address,
            "CommitteeManager": committees.address,
        },
        "parameters": {
            "min_contributor_stake": min_contributor_stake,
            "min_validator_stake": min_validator_stake,
            "unbonding_period": unbonding_period,
            "claim_period": claim_period,
            "treasury": treasury,
        },
    }
    path = Path(out_dir) / f"{network.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    for name, address in record["contracts"].items():
        click.echo(f"{name:16} {address}")
    click.echo(f"wrote {path}")
