"""Deploy and wire the contracts with web3 (the devnet and demo). `ape run deploy` does the same for any network."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from eth_account.signers.local import LocalAccount
from web3 import Web3

from fedchain.chain.client import Chain
from fedchain.chain.deployments import Deployments

FED = 10**18  # FedToken has 18 decimals


@dataclass(frozen=True)
class DeployParams:
    min_contributor_stake: int = 100 * FED
    min_validator_stake: int = 1_000 * FED
    unbonding_period: int = 3_600          # seconds stake stays slashable after an unstake request
    claim_period: int = 7 * 24 * 3_600     # seconds after a task ends before the owner may sweep unclaimed rewards
    treasury: str | None = None            # receives slashed stake; default: the deployer


def deploy_all(chain: Chain, deployer: LocalAccount, *, network: str = "local", params: DeployParams = DeployParams()) -> Deployments:
    """FedToken, StakeRegistry, TaskManager and CommitteeManager, both managers allowed to lock and slash (and no one
    else, ever: the registry's roles are frozen), and the CommitteeManager set as the TaskManager's validator of
    committee tasks."""
    treasury = params.treasury or deployer.address
    start_block = chain.block_number()
    token, _ = chain.deploy("FedToken", deployer, deployer.address)
    registry, _ = chain.deploy(
        "StakeRegistry", deployer, token.address, treasury, params.unbonding_period,
        params.min_contributor_stake, params.min_validator_stake, deployer.address,
    )
    manager, _ = chain.deploy("TaskManager", deployer, registry.address, params.claim_period, deployer.address)
    slasher_role = Web3.keccak(text="SLASHER_ROLE")
    chain.send(registry.functions.grantRole(slasher_role, manager.address), deployer, action="grantRole")
    committees, _ = chain.deploy("CommitteeManager", deployer, manager.address)
    chain.send(registry.functions.grantRole(slasher_role, committees.address), deployer, action="grantRole")
    chain.send(manager.functions.setCommitteeManager(committees.address), deployer, action="setCommitteeManager")
    # The slashers are final: from now on the admin cannot make itself (or anyone) a slasher and take stakes.
    chain.send(registry.functions.freezeRoles(), deployer, action="freezeRoles")
    return Deployments(
        chain_id=chain.chain_id, network=network, block=start_block, deployer=deployer.address,
        contracts={"FedToken": token.address, "StakeRegistry": registry.address, "TaskManager": manager.address,
                   "CommitteeManager": committees.address},
        parameters={**asdict(params), "treasury": treasury},
    )
