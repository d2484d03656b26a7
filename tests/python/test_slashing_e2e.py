"""Slashing end to end on Anvil: provably bad updates are slashed with their digest as evidence; updates that are
merely useless or unusual (a free-rider, an honest contributor holding a single class) are never slashed."""

from __future__ import annotations

import pytest
import torch

from fedchain.core.cid import cid_to_digest
from fedchain.learning.trainers import LocalData

pytestmark = pytest.mark.e2e
FED = 10**18


@pytest.fixture(scope="module")
def slashing_round(devnet, protocol, ipfs, tmp_path_factory):
    from fedchain.core.envelope import UpdateEnvelope, encode_update
    from fedchain.core.keys import generate_sealing_key, load_sealing_key
    from fedchain.core.sealing import SealBinding, seal
    from fedchain.core.spec import mnist_spec
    from fedchain.learning.data import dirichlet_shards, mnist_subset, save_npz, train_test_split
    from fedchain.roles.contributor import Contributor, ContributorConfig
    from fedchain.roles.owner import create_task_from_spec
    from fedchain.roles.validator import Validator, ValidatorConfig
    from fedchain.sim.devnet import dev_account

    tmp = tmp_path_factory.mktemp("slash")
    owner, validator = dev_account(0), dev_account(12)
    roles = ["honest-a", "honest-b", "single-class", "free-rider", "replay", "wrong-base", "non-finite", "malformed",
             "too-many-samples", "no-samples"]
    accounts = {role: dev_account(13 + i) for i, role in enumerate(roles)}
    for account in (owner, validator, *accounts.values()):
        protocol.chain.send(protocol.token.functions.mint(account.address, 10_000 * FED), owner, action="mint")
    protocol.ensure_stake(validator, protocol.registry.functions.minValidatorStake().call())
    public_key = generate_sealing_key(tmp / "validator.key")
    spec = mnist_spec("cnn", [public_key.hex()])
    task_id = create_task_from_spec(
        protocol, ipfs, owner, spec, rounds=1, reward_per_round=1_000 * FED, submission_window=600,
        aggregation_window=600, max_contributors=len(roles), validator=validator.address, slash_fraction=0.5,
    )
    task = protocol.task(task_id)
    x, y = mnist_subset()
    split = train_test_split(x, y, test_fraction=0.2, seed=0)
    save_npz(tmp / "holdout.npz", split.x_test, split.y_test)
    shards = dirichlet_shards(split.y_train, 2, alpha=0.5, seed=0)
    only_sevens = split.y_train == 7
    training_data = {
        "honest-a": (split.x_train[shards[0]][:400], split.y_train[shards[0]][:400]),
        "honest-b": (split.x_train[shards[1]][:400], split.y_train[shards[1]][:400]),
        # unusual (non-IID in the extreme), not malicious: one class only
        "single-class": (split.x_train[only_sevens][:200], split.y_train[only_sevens][:200]),
    }
    config = ContributorConfig(task_id, tmp / "unused.npz", tmp / "state", progress=False)
    clients = {role: Contributor(protocol, ipfs, account, config) for role, account in accounts.items()}
    for account in accounts.values():
        protocol.ensure_stake(account, task.min_contributor_stake)
    outcomes = {role: clients[role].contribute_round(0, LocalData(*data)) for role, data in training_data.items()}
    roles_by_address = {account.address: role for role, account in accounts.items()}

    base_cid = clients["honest-a"].task.base_model_cid(0)
    zeros = {name: torch.zeros(shape) for name, (shape, _) in clients["honest-a"].task.layout.expected_tensors().items()}

    def submit_envelope(role: str, tensors, base=base_cid, num_samples=100) -> None:
        account = accounts[role]
        envelope = UpdateEnvelope(task_id, 0, base, num_samples, account.address, tensors)
        sealed = seal(encode_update(envelope), [public_key], SealBinding(task_id, 0, account.address))
        protocol.submit_update(account, task_id, 0, cid_to_digest(ipfs.add_bytes(sealed)), num_samples)

    submit_envelope("free-rider", zeros)
    submit_envelope("wrong-base", zeros, base="QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o")
    submit_envelope("non-finite", {k: torch.full_like(v, float("nan")) for k, v in zeros.items()})
    # A well-formed update claiming an absurd sample count: before the policy's max_samples_per_update, the merge
    # raised on it in every round (and after every restart), so one staked contributor stopped the task.
    honest_delta = {k: torch.randn(v.shape, generator=torch.Generator().manual_seed(1)) * 1e-3 for k, v in zeros.items()}
    submit_envelope("too-many-samples", honest_delta, num_samples=2**30)
    submit_envelope("no-samples", honest_delta, num_samples=0)
    garbage = seal(b"not a safetensors file", [public_key], SealBinding(task_id, 0, accounts["malformed"].address))
    protocol.submit_update(accounts["malformed"], task_id, 0, cid_to_digest(ipfs.add_bytes(garbage)), 100)
    # The copycat resubmits an honest update's sealed bytes (its digest) as its own.
    protocol.submit_update(accounts["replay"], task_id, 0, cid_to_digest(outcomes["honest-a"].cid), 400)

    stakes_before = {a: protocol.active_stake(a) for a in roles_by_address}
    the_validator = Validator(protocol, ipfs, validator, load_sealing_key(tmp / "validator.key"),
                              ValidatorConfig(task_id, tmp / "holdout.npz", tmp / "vstate"))
    result = the_validator.finalize_round(0)
    return {"task": task, "task_id": task_id, "roles": roles_by_address, "stakes_before": stakes_before,
            "result": result}


def _report(ipfs, round_result):
    from fedchain.core.report import RoundReport

    return RoundReport.from_json_bytes(ipfs.cat(round_result.report_cid))


def test_provably_bad_updates_are_slashed_with_their_digest(slashing_round, protocol):
    task_id, roles = slashing_round["task_id"], slashing_round["roles"]
    slashed = {e["args"]["account"]: e["args"] for e in protocol.events("Slashed", taskId=task_id)}
    assert {roles[a] for a in slashed} == {"replay", "wrong-base", "non-finite", "malformed"}
    for account, args in slashed.items():
        assert args["evidence"] == protocol.submission_of(task_id, 0, account)
        assert args["amount"] == slashing_round["task"].slash_amount
        assert protocol.active_stake(account) == slashing_round["stakes_before"][account] - args["amount"]


def test_useless_or_unusual_updates_are_never_slashed(slashing_round, protocol):
    for account, role in slashing_round["roles"].items():
        if role in ("honest-a", "honest-b", "single-class", "free-rider", "too-many-samples", "no-samples"):
            assert protocol.active_stake(account) == slashing_round["stakes_before"][account], role


def test_report_gives_reasons_and_pays_only_accepted_updates(slashing_round, ipfs):
    report = _report(ipfs, slashing_round["result"])
    by_role = {slashing_round["roles"][u.contributor]: u for u in report.updates}
    assert by_role["replay"].reason == "replay" and by_role["replay"].slashed
    assert by_role["wrong-base"].reason == "wrong-base"
    assert by_role["non-finite"].reason == "non-finite"
    assert by_role["malformed"].reason == "malformed"
    assert by_role["free-rider"].reason == "free-rider" and not by_role["free-rider"].slashed
    assert by_role["single-class"].slashed is False
    for role, u in by_role.items():
        if u.status != "accepted":
            assert int(u.reward) == 0 and u.score == 0, role
    assert sum(int(u.reward) for u in report.updates) == report.total_rewards == 1_000 * FED
    assert int(by_role["honest-a"].reward) + int(by_role["honest-b"].reward) > 0


def test_an_absurd_or_zero_sample_count_is_rejected_without_stopping_the_round(slashing_round, protocol, ipfs):
    report = _report(ipfs, slashing_round["result"])
    by_role = {slashing_round["roles"][u.contributor]: u for u in report.updates}
    assert protocol.round(slashing_round["task_id"], 0).phase.name == "FINALIZED"
    for role, reason in (("too-many-samples", "too-many-samples"), ("no-samples", "no-samples")):
        update = by_role[role]
        assert (update.status, update.reason, update.slashed, int(update.reward)) == ("rejected", reason, False, 0)
    assert int(by_role["honest-a"].reward) > 0
