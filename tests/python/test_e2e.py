"""End to end on a real devnet (Anvil + the embedded IPFS node): the demo, and a validator killed mid-round."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from fedchain.core.cid import digest_to_cid
from fedchain.learning.trainers import LocalData

pytestmark = pytest.mark.e2e
FED = 10**18


@pytest.fixture(scope="module")
def demo_report(devnet, tmp_path_factory):
    from fedchain.sim.demo import DemoConfig, run_demo

    out = tmp_path_factory.mktemp("demo")
    config = DemoConfig(
        clients=3, rounds=2, seed=1, rpc_url=devnet.rpc_url, ipfs_api=devnet.ipfs_api,
        deployments=devnet.deployments_path, workdir=out / "work", report=out / "report.json", plot=out / "report.png",
        timeout=300,
    )
    from rich.console import Console

    console = Console(record=True, width=400)
    report = run_demo(config, console=console)
    said = console.export_text()
    run_dir = next((out / "work").glob("task-*"))
    assert f"logs of each process: {run_dir / 'logs'}/" in said  # the demo says where its logs and keys went
    assert f"throwaway keystores: {run_dir / 'keys'}/" in said and str(run_dir / "validator.key") in said
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(report))
    assert (out / "report.png").stat().st_size > 10_000
    return report


def test_demo_report_has_the_documented_shape(demo_report):
    assert set(demo_report) >= {"chain_id", "rpc_url", "ipfs_api", "contracts", "token", "task_id", "budget", "rounds",
                                "rewards", "claimed"}
    assert [r["round"] for r in demo_report["rounds"]] == [0, 1]
    assert demo_report["outcome"]["attacker_share"] == 0.0 and demo_report["outcome"]["honest_slashed"] == 0
    startup = demo_report["startup"]  # the role processes came from the warm launcher, and the demo timed them
    assert startup["launcher"] is True and startup["launcher_import_seconds"] > 0
    assert 0 < startup["spawn_to_first_result_seconds"] < startup["task_start_to_first_result_seconds"]
    for r in demo_report["rounds"]:
        assert set(r) >= {"round", "model_cid", "report_cid", "test_accuracy", "test_loss", "seconds", "gas", "updates"}
        for u in r["updates"]:
            assert set(u) >= {"contributor", "role", "cid", "num_samples", "status", "reason", "score", "reward"}
            assert u["role"] == "honest" and u["status"] == "accepted"


def test_demo_accuracy_improves(demo_report):
    first, last = demo_report["rounds"][0], demo_report["rounds"][-1]
    assert last["test_accuracy"] > first["test_accuracy"]
    assert last["test_loss"] < first["test_loss"]


def test_submitted_digests_equal_report_cids(demo_report, protocol):
    task_id = demo_report["task_id"]
    for r in demo_report["rounds"]:
        on_chain = {s.contributor: digest_to_cid(s.digest) for s in protocol.submissions(task_id, r["round"])}
        in_report = {u["contributor"]: u["cid"] for u in r["updates"]}
        assert on_chain == in_report


def test_each_contributor_received_exactly_its_entitlement(demo_report, protocol):
    min_stake = protocol.registry.functions.minContributorStake().call()
    total = 0
    for address, earned in demo_report["rewards"].items():
        assert demo_report["claimed"][address] == earned
        # The demo granted (2 + rounds) x the minimum stake and staked the minimum: the rest is exactly the rewards.
        assert protocol.balance_of(address) == (1 + 2) * min_stake + int(earned)
        total += int(earned)
    assert total == 2 * 1_000 * FED  # two rounds, every unit of each round's budget allocated


def test_validator_killed_mid_round_and_restarted_changes_nothing(devnet, protocol, ipfs, tmp_path):
    """Kill -9 the validator while it aggregates; the restarted one posts exactly what a fresh validator computes."""
    from fedchain.chain.accounts import create_keystore
    from fedchain.chain.protocol import RoundPhase
    from fedchain.core.keys import generate_sealing_key, load_sealing_key
    from fedchain.core.spec import ScoringConfig, mnist_spec
    from fedchain.learning.data import dirichlet_shards, load_npz, mnist_subset, save_npz, train_test_split
    from fedchain.roles.contributor import Contributor, ContributorConfig
    from fedchain.roles.owner import create_task_from_spec
    from fedchain.roles.validator import Validator, ValidatorConfig
    from fedchain.sim.devnet import dev_account

    owner, validator = dev_account(0), dev_account(5)
    contributors = [dev_account(6 + i) for i in range(3)]
    for account in (owner, validator, *contributors):
        protocol.chain.send(protocol.token.functions.mint(account.address, 10_000 * FED), owner, action="mint")
    protocol.ensure_stake(validator, protocol.registry.functions.minValidatorStake().call())
    public_key = generate_sealing_key(tmp_path / "validator.key")
    spec = mnist_spec("cnn", [public_key.hex()], scoring=ScoringConfig(method="tmc-shapley", permutations=20, eval_samples=200))
    task_id = create_task_from_spec(
        protocol, ipfs, owner, spec, rounds=1, reward_per_round=1_000 * FED, submission_window=600,
        aggregation_window=600, max_contributors=3, validator=validator.address,
    )
    x, y = mnist_subset()
    split = train_test_split(x, y, test_fraction=0.2, seed=0)
    save_npz(tmp_path / "holdout.npz", split.x_test, split.y_test)
    for i, (account, shard) in enumerate(zip(contributors, dirichlet_shards(split.y_train, 3, alpha=0.5, seed=0))):
        data = tmp_path / f"shard{i}.npz"
        save_npz(data, split.x_train[shard][:300], split.y_train[shard][:300])
        client = Contributor(protocol, ipfs, account, ContributorConfig(task_id, data, tmp_path / "state", progress=False))
        protocol.ensure_stake(account, protocol.task(task_id).min_contributor_stake)
        assert client.contribute_round(0, LocalData(*load_npz(data, spec))) is not None
    assert protocol.round(task_id, 0).phase == RoundPhase.AGGREGATING  # the third submission closed the round

    password = "pw"
    keystore = tmp_path / "validator.json"
    create_keystore(keystore, password, light=True, private_key=validator.key)
    args = [sys.executable, "-m", "fedchain.cli.main", "validate", "--task", str(task_id), "--holdout",
            str(tmp_path / "holdout.npz"), "--keystore", str(keystore), "--sealing-key", str(tmp_path / "validator.key"),
            "--state-dir", str(tmp_path / "vstate"), "--max-rounds", "1", "--rpc-url", devnet.rpc_url,
            "--ipfs-api", devnet.ipfs_api, "--deployments", str(devnet.deployments_path)]
    env = {**os.environ, "FEDCHAIN_PASSWORD": password}
    log_path = tmp_path / "validator-1.log"
    first = subprocess.Popen(args, env=env, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while "aggregating" not in log_path.read_text(errors="replace"):
        assert first.poll() is None, log_path.read_text()
        assert time.monotonic() < deadline, "the validator never started the round"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert protocol.round(task_id, 0).phase == RoundPhase.AGGREGATING  # killed before it posted

    second = subprocess.run(args, env=env, capture_output=True, text=True, timeout=180)
    assert second.returncode == 0, second.stdout + second.stderr
    (posted,) = protocol.finalizations(task_id, 0)

    # A validator that was never interrupted, from scratch, computes the very same model and report.
    fresh = Validator(protocol, ipfs, validator, load_sealing_key(tmp_path / "validator.key"),
                      ValidatorConfig(task_id, tmp_path / "holdout.npz", tmp_path / "fresh-state"))
    recomputed = fresh.compute_round(0)
    assert digest_to_cid(posted.model_digest) == recomputed.model_cid
    assert digest_to_cid(posted.report_digest) == recomputed.report_cid
    assert "0x" + posted.rewards_root.hex() == recomputed.rewards_root
    assert posted.total_rewards == recomputed.total_rewards == 1_000 * FED


def test_an_update_nobody_can_fetch_does_not_stop_the_validator(devnet, protocol, ipfs, tmp_path):
    """One contributor posts a digest whose content was never added anywhere: that update is `unavailable`, the
    round is still finalized, and the honest contributor is paid the whole budget."""
    from fedchain.core.spec import ScoringConfig, mnist_spec
    from fedchain.learning.data import load_npz, mnist_subset, save_npz
    from fedchain.roles.contributor import Contributor, ContributorConfig
    from fedchain.roles.owner import create_task_from_spec
    from fedchain.roles.validator import Validator, ValidatorConfig
    from fedchain.sim.devnet import dev_account
    from fedchain.views.rewards import fetch_report

    owner, validator, honest, ghost = dev_account(0), dev_account(12), dev_account(13), dev_account(14)
    for account in (owner, validator, honest, ghost):
        protocol.chain.send(protocol.token.functions.mint(account.address, 10_000 * FED), owner, action="mint")
    protocol.ensure_stake(validator, protocol.registry.functions.minValidatorStake().call())
    spec = mnist_spec("mlp", sealed=False, scoring=ScoringConfig(method="equal"))
    task_id = create_task_from_spec(protocol, ipfs, owner, spec, rounds=1, reward_per_round=10 * FED,
                                    submission_window=600, aggregation_window=600, max_contributors=2,
                                    validator=validator.address)
    x, y = mnist_subset()
    save_npz(tmp_path / "holdout.npz", x[:200], y[:200])
    save_npz(tmp_path / "data.npz", x[200:500], y[200:500])
    client = Contributor(protocol, ipfs, honest, ContributorConfig(task_id, tmp_path / "data.npz", tmp_path / "state",
                                                                   progress=False))
    protocol.ensure_stake(honest, protocol.task(task_id).min_contributor_stake)
    assert client.contribute_round(0, LocalData(*load_npz(tmp_path / "data.npz", spec))) is not None
    protocol.ensure_stake(ghost, protocol.task(task_id).min_contributor_stake)
    protocol.submit_update(ghost, task_id, 0, bytes.fromhex("5a" * 32), 300)  # pinned nowhere

    result = Validator(protocol, ipfs, validator, None,
                       ValidatorConfig(task_id, tmp_path / "holdout.npz", tmp_path / "vstate")).run(max_rounds=1)
    assert [r.round for r in result] == [0]
    (posted,) = protocol.finalizations(task_id, 0)
    report = {u.contributor: u for u in fetch_report(ipfs, posted.report_digest).updates}
    assert (report[ghost.address].status, report[ghost.address].reason) == ("rejected", "unavailable")
    assert report[honest.address].status == "accepted" and int(report[honest.address].reward) == 10 * FED
