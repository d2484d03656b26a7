"""A private task end to end on a real devnet (Anvil + the embedded IPFS node): DP-SGD contributors declare their
spends, the validator checks each declaration, and the chain's privacy ledger equals each contributor's accounting."""

from __future__ import annotations

import pytest

from fedchain.core.cid import digest_to_cid

pytestmark = pytest.mark.e2e
FED = 10**18


def test_private_task_ledger_matches_each_contributors_accounting(devnet, protocol, ipfs, tmp_path):
    from fedchain.chain.protocol import RoundPhase
    from fedchain.core.keys import generate_sealing_key, load_sealing_key
    from fedchain.core.report import RoundReport
    from fedchain.core.spec import PrivacyConfig, ScoringConfig, mnist_spec
    from fedchain.learning.data import dirichlet_shards, load_npz, mnist_subset, save_npz, train_test_split
    from fedchain.learning.trainers import LocalData
    from fedchain.privacy.accounting import from_micro, to_micro
    from fedchain.roles.contributor import Contributor, ContributorConfig
    from fedchain.roles.owner import create_task_from_spec
    from fedchain.roles.validator import Validator, ValidatorConfig
    from fedchain.sim.devnet import dev_account
    from fedchain.views.index import EventIndex
    from fedchain.views.records import privacy_cap, privacy_spends
    from fedchain.views.status import task_status

    owner, validator = dev_account(0), dev_account(5)
    contributors = [dev_account(6 + i) for i in range(3)]
    for account in (owner, validator, *contributors):
        protocol.chain.send(protocol.token.functions.mint(account.address, 10_000 * FED), owner, action="mint")
    protocol.ensure_stake(validator, protocol.registry.functions.minValidatorStake().call())
    public_key = generate_sealing_key(tmp_path / "validator.key")
    privacy = PrivacyConfig(epsilon_cap=4.0, delta=1e-4, clipping_norm=1.0, min_noise_multiplier=0.8)
    spec = mnist_spec("cnn", [public_key.hex()], scoring=ScoringConfig(method="marginal", eval_samples=100))
    spec = spec.model_copy(update={"privacy": privacy})
    task_id = create_task_from_spec(
        protocol, ipfs, owner, spec, rounds=2, reward_per_round=1_000 * FED, submission_window=600,
        aggregation_window=600, max_contributors=3, validator=validator.address,
    )
    assert protocol.privacy_cap(task_id) == to_micro(4.0)
    x, y = mnist_subset()
    split = train_test_split(x, y, test_fraction=0.2, seed=0)
    save_npz(tmp_path / "holdout.npz", split.x_test[:200], split.y_test[:200])
    clients, datasets = [], []
    for i, (account, shard) in enumerate(zip(contributors, dirichlet_shards(split.y_train, 3, alpha=0.5, seed=0))):
        data = tmp_path / f"shard{i}.npz"
        save_npz(data, split.x_train[shard][:200], split.y_train[shard][:200])
        protocol.ensure_stake(account, protocol.task(task_id).min_contributor_stake)
        clients.append(Contributor(protocol, ipfs, account,
                                   ContributorConfig(task_id, data, tmp_path / "state", progress=False)))
        datasets.append(LocalData(*load_npz(data, spec)))
    judge = Validator(protocol, ipfs, validator, load_sealing_key(tmp_path / "validator.key"),
                      ValidatorConfig(task_id, tmp_path / "holdout.npz", tmp_path / "vstate"))

    for round_index in range(2):
        for client, data in zip(clients, datasets):
            assert client.contribute_round(round_index, data) is not None
        assert protocol.round(task_id, round_index).phase == RoundPhase.AGGREGATING
        result = judge.finalize_round(round_index)
        report = RoundReport.from_json_bytes(ipfs.cat(result.report_cid))
        assert [u.status for u in report.updates] == ["accepted"] * 3, report.updates  # every declaration holds
        assert report.metrics["privacy_epsilon_micro"] == {
            c.account.address: protocol.privacy_spent(task_id, c.account.address) for c in clients}

    index = EventIndex.memory(protocol)
    index.sync()
    assert privacy_cap(index, task_id) == to_micro(4.0)
    for client in clients:
        budget = client.privacy_budget()  # reopened from the state directory, as after a restart
        assert len(budget.spends) == 2
        own = budget.spent()
        on_chain = protocol.privacy_spent(task_id, client.account.address)
        assert on_chain == to_micro(own) == budget.spent_micro()
        assert 0 < from_micro(on_chain) <= 4.0
        declared = [s.epsilon_micro for s in privacy_spends(index, task_id) if s.contributor == client.account.address]
        assert declared == [s.epsilon_micro for s in budget.spends] and declared[0] < declared[1]
    status = task_status(protocol, ipfs, task_id, events=index)
    assert status["privacy"]["epsilon_cap"] == 4.0
    assert {a: c["epsilon"] for a, c in status["contributors"].items()} == {
        c.account.address: from_micro(protocol.privacy_spent(task_id, c.account.address)) for c in clients}
    assert digest_to_cid(protocol.finalizations(task_id, 1)[0].model_digest) == result.model_cid
