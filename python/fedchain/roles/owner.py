"""Creating a task: check the spec, publish it and the initial model to IPFS, then create and fund it on chain."""

from __future__ import annotations

from eth_account.signers.local import LocalAccount

from fedchain.chain.protocol import Protocol, TaskParams
from fedchain.content.client import IpfsClient
from fedchain.core.cid import cid_to_digest
from fedchain.core.envelope import encode_model
from fedchain.core.spec import TaskSpec
from fedchain.learning.kinds import check_spec
from fedchain.learning.models import initial_state
from fedchain.privacy.accounting import to_micro


def publish_initial_model(ipfs: IpfsClient, spec: TaskSpec, seed: int) -> str:
    state = initial_state(spec, seed)
    return ipfs.add_bytes(encode_model(state, {"round": -1, "seed": seed, "spec": spec.name}))


def create_task_from_spec(
    protocol: Protocol,
    ipfs: IpfsClient,
    owner: LocalAccount,
    spec: TaskSpec,
    *,
    rounds: int,
    reward_per_round: int,
    submission_window: int,
    aggregation_window: int,
    max_contributors: int,
    validator: str,
    min_stake: int | None = None,
    slash_fraction: float = 0.5,
    reward_token: str | None = None,
    seed: int = 0,
    min_open: int = 0,
) -> int:
    """Returns the new task's id.

    Raises:
        SpecError: before anything is published or funded, if the spec cannot run (its model does not build, the
            rule cannot run with `max_contributors`, or it asks for training this version cannot do).
    """
    check_spec(spec, max_contributors=max_contributors)
    registry_min = protocol.registry.functions.minContributorStake().call()
    min_stake = registry_min if min_stake is None else min_stake
    spec_cid = ipfs.add_bytes(spec.to_json_bytes())
    model_cid = publish_initial_model(ipfs, spec, seed)
    params = TaskParams(
        reward_token=reward_token or protocol.token.address,
        spec_digest=cid_to_digest(spec_cid),
        initial_model_digest=cid_to_digest(model_cid),
        num_rounds=rounds,
        reward_per_round=reward_per_round,
        submission_window=submission_window,
        aggregation_window=aggregation_window,
        min_contributor_stake=min_stake,
        max_contributors=max_contributors,
        validator=validator,
        slash_amount=int(min_stake * slash_fraction),
        min_open=min_open,
    )
    # A private spec's cap goes on chain (micro-epsilon, rounded up like every declared spend).
    epsilon_cap = to_micro(spec.privacy.epsilon_cap) if spec.privacy is not None else 0
    task_id, _ = protocol.create_task(owner, params, epsilon_cap=epsilon_cap)
    return task_id
