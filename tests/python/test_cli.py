"""The `fedchain` command's errors, as a user meets them: one clear line and exit status 1, never a traceback."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from fedchain.cli.main import app
from fedchain.sim.devnet import free_port

FED = 10**18
runner = CliRunner()


def invoke(*args: str, env: dict | None = None):
    result = runner.invoke(app, list(args), env=env or {})
    return result.exit_code, " ".join(result.output.split())  # the terminal may wrap long lines


def test_no_devnet_running_names_the_url_tried():
    url = f"http://127.0.0.1:{free_port()}"
    code, out = invoke("status", "--task", "0", "--rpc-url", url)
    assert code == 1
    assert "cannot reach" in out and url in out and "Traceback" not in out


def test_missing_deployments_file_says_how_to_make_one(devnet, tmp_path):
    code, out = invoke("status", "--task", "0", "--rpc-url", devnet.rpc_url, "--deployments", str(tmp_path / "none.json"))
    assert code == 1 and "no deployments file" in out and "fedchain devnet" in out


@pytest.fixture(scope="module")
def task(devnet, protocol, ipfs, tmp_path_factory):
    """A task on the devnet and a keystore of a funded account."""
    from fedchain.chain.accounts import create_keystore
    from fedchain.core.keys import generate_sealing_key
    from fedchain.core.spec import mnist_spec
    from fedchain.roles.owner import create_task_from_spec
    from fedchain.sim.devnet import dev_account

    tmp = tmp_path_factory.mktemp("cli")
    owner, validator = dev_account(0), dev_account(1)
    for account in (owner, validator):
        protocol.chain.send(protocol.token.functions.mint(account.address, 10_000 * FED), owner, action="mint")
    protocol.ensure_stake(validator, protocol.registry.functions.minValidatorStake().call())
    spec = mnist_spec("mlp", [generate_sealing_key(tmp / "v.key").hex()])
    task_id = create_task_from_spec(
        protocol, ipfs, owner, spec, rounds=1, reward_per_round=FED, submission_window=600, aggregation_window=600,
        max_contributors=2, validator=validator.address,
    )
    keystore = tmp / "user.json"
    create_keystore(keystore, "right", light=True, private_key=dev_account(2).key)
    return {"id": task_id, "keystore": keystore, "tmp": tmp}


def common(devnet) -> list[str]:
    return ["--rpc-url", devnet.rpc_url, "--ipfs-api", devnet.ipfs_api, "--deployments", str(devnet.deployments_path)]


def test_status_of_an_existing_task_shows_its_rounds(devnet, task):
    code, out = invoke("status", "--task", str(task["id"]), "--json", *common(devnet))
    assert code == 0, out
    summary = json.loads(out)
    assert summary["task_id"] == task["id"] and summary["rounds"][0]["phase"] == "open"


def test_wrong_task_id_says_which_ids_exist(devnet, task):
    code, out = invoke("status", "--task", "999", *common(devnet))
    assert code == 1 and "task 999 does not exist" in out and "ids 0.." in out


def test_wrong_password_is_refused_without_revealing_anything(devnet, task):
    code, out = invoke("claim", "--task", str(task["id"]), "--keystore", str(task["keystore"]), *common(devnet),
                       env={"FEDCHAIN_PASSWORD": "wrong"})
    assert code == 1 and "password does not decrypt" in out
    assert "right" not in out


def test_bad_data_file_is_refused_with_the_reason(devnet, task):
    bad = task["tmp"] / "bad.npz"
    np.savez(bad, x=np.zeros((4, 3), dtype=np.float32), y=np.zeros(4, dtype=np.int64))  # not 1x28x28 images
    code, out = invoke("contribute", "--task", str(task["id"]), "--data", str(bad), "--keystore", str(task["keystore"]),
                       "--state-dir", str(task["tmp"] / "state"), *common(devnet), env={"FEDCHAIN_PASSWORD": "right"})
    assert code == 1 and "shape" in out and "Traceback" not in out


def test_missing_data_file_is_named(devnet, task):
    code, out = invoke("contribute", "--task", str(task["id"]), "--data", str(task["tmp"] / "none.npz"),
                       "--keystore", str(task["keystore"]), *common(devnet), env={"FEDCHAIN_PASSWORD": "right"})
    assert code == 1 and "none.npz" in out and "not found" in out


def test_model_pull_before_any_round_finished_explains(devnet, task):
    code, out = invoke("model", "pull", "--task", str(task["id"]), "--out", str(task["tmp"] / "m.safetensors"), *common(devnet))
    assert code == 1 and "no finalized round" in out


def test_claim_with_nothing_owed_says_so(devnet, task):
    code, out = invoke("claim", "--task", str(task["id"]), "--keystore", str(task["keystore"]), *common(devnet),
                       env={"FEDCHAIN_PASSWORD": "right"})
    assert code == 0 and "nothing to claim" in out


def test_demo_refuses_half_a_network():
    code, out = invoke("demo", "--rpc-url", "http://127.0.0.1:8545")
    assert code == 1 and "both --rpc-url and --ipfs-api" in out


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [("--rule", "krum", "krum"), ("--scoring", "shapley", "method"), ("--coalition", "mean", "coalition")],
)
def test_demo_refuses_a_bad_choice_before_starting_anything(tmp_path, option, value, expected):
    code, out = invoke("demo", option, value, "--workdir", str(tmp_path / "work"))
    assert code == 1 and expected in out and "Traceback" not in out
    assert not (tmp_path / "work").exists()  # nothing started, nothing written


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--dataset", "cifar"], "unknown dataset 'cifar': use one of mnist, shakespeare"),
        (["--dataset", "shakespeare", "--shakespeare", "missing.tar.gz"], "the Shakespeare plays are not at missing.tar.gz"),
        (["--dataset", "shakespeare", "--sized"], "on Shakespeare each contributor holds a role"),
        (["--dataset", "shakespeare", "--shakespeare", "tests/python/fixtures/shakespeare", "--architecture", "cnn"],
         "the Shakespeare demo trains char-lstm, not cnn"),
    ],
)
def test_demo_refuses_a_bad_dataset_choice_before_starting_anything(tmp_path, args, expected):
    code, out = invoke("demo", *args, "--workdir", str(tmp_path / "work"))
    assert code == 1 and expected in out and "Traceback" not in out
    assert not (tmp_path / "work").exists()


@pytest.mark.parametrize(
    ("aggregation", "expected"),
    [
        ({"rule": "krum", "beta": 7}, "unknown rule 'krum'"),
        ({"rule": "trimmed-mean", "beta": 7}, "beta: Input should be less than 0.5"),
        ({"rule": "multi-krum", "f": 50}, "multi-krum with f=50 needs at least 103 contributors"),
    ],
)
def test_task_create_refuses_a_spec_whose_rounds_would_all_fail_before_funding(devnet, protocol, task, aggregation,
                                                                               expected):
    from fedchain.core.spec import mnist_spec

    spec_file = task["tmp"] / "bad-spec.json"
    spec_file.write_text(json.dumps({**mnist_spec("mlp").to_json_obj(), "aggregation": aggregation}))
    tasks_before = protocol.task_count()
    code, out = invoke("task", "create", "--spec", str(spec_file), "--keystore", str(task["keystore"]),
                       "--validator", "0x" + "11" * 20, "--max-contributors", "5", *common(devnet),
                       env={"FEDCHAIN_PASSWORD": "right"})
    assert code == 1 and expected in out and "Traceback" not in out
    assert protocol.task_count() == tasks_before  # nothing was created or funded


def test_ape_create_task_refuses_a_bad_spec_before_funding(devnet, protocol, ipfs, task, tmp_path):
    """`ape run create_task` checks the spec it points to (fetched from IPFS by its CID) as `fedchain task create`."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from fedchain.core.spec import mnist_spec

    bad = json.dumps({**mnist_spec("mlp").to_json_obj(), "aggregation": {"rule": "multi-krum", "f": 50}}).encode()
    params = {
        "spec": ipfs.add_bytes(bad), "initial_model": ipfs.add_bytes(b"unused"), "num_rounds": 1,
        "reward_per_round": str(FED), "submission_window": 600, "aggregation_window": 600, "max_contributors": 5,
        "validator": "0x" + "11" * 20, "slash_amount": "0",
    }
    (tmp_path / "task.json").write_text(json.dumps(params))
    root = Path(__file__).resolve().parents[2]
    tasks_before = protocol.task_count()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ape"), "run", "create_task", "--spec", str(tmp_path / "task.json"),
         "--deployments", str(devnet.deployments_path), "--ipfs-api", devnet.ipfs_api, "--network", devnet.rpc_url],
        cwd=root, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(root / "python")},
    )
    assert done.returncode != 0, done.stdout + done.stderr
    assert "multi-krum with f=50 needs at least 103 contributors" in done.stdout + done.stderr
    assert protocol.task_count() == tasks_before
