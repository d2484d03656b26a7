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
        (["--epsilon", "0"], "--epsilon 0: each contributor's privacy budget must be in (0, 1000), e.g. 3"),
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


# ─── amounts ───
def _user(task) -> list[str]:
    return ["--keystore", str(task["keystore"])]


PW = {"FEDCHAIN_PASSWORD": "right"}


def test_stake_amounts_are_exact_and_the_shown_stake_unstakes(devnet, protocol, task):
    from fedchain.sim.devnet import dev_account

    user = dev_account(2).address
    protocol.chain.send(protocol.token.functions.mint(user, 200_000 * FED), dev_account(0), action="mint")
    before = protocol.active_stake(user)
    code, out = invoke("stake", "add", "--amount", "123456.789", *_user(task), *common(devnet)[:2], *common(devnet)[4:],
                       env=PW)
    assert code == 0, out
    assert protocol.active_stake(user) - before == 123456789 * 10**15  # not 123456789000000003637248
    shown = out.split("active stake of ")[1].split(": ")[1].split(" FED")[0]
    code, out = invoke("stake", "unstake", "--amount", shown, *_user(task), *common(devnet)[:2], *common(devnet)[4:],
                       env=PW)
    assert code == 0, out  # exactly the active stake shown: accepted, not a revert
    assert protocol.active_stake(user) == 0 and "unbonding period is 3600 s" in out


def test_unstake_all_and_too_many_decimals(devnet, protocol, task):
    chain = [*common(devnet)[:2], *common(devnet)[4:]]
    code, out = invoke("stake", "add", "--amount", "0.0000000000000000001", *_user(task), *chain, env=PW)
    assert code == 1 and "more than 18 decimals" in out
    assert invoke("stake", "add", "--amount", "150", *_user(task), *chain, env=PW)[0] == 0
    code, out = invoke("stake", "unstake", "--amount", "all", *_user(task), *chain, env=PW)
    assert code == 0, out
    assert "unbonding" in out and protocol.active_stake(protocol.chain.w3.eth.accounts[2]) == 0
    code, out = invoke("stake", "withdraw", *_user(task), *chain, env=PW)
    assert code == 1 and "withdraw then" in out  # still unbonding: said, not reverted


def test_stake_show_of_a_malformed_address_is_one_line(devnet):
    code, out = invoke("stake", "show", "--account", "0x1234", *common(devnet)[:2], *common(devnet)[4:])
    assert code == 1 and "0x1234" in out and "is not an address" in out and "Traceback" not in out


def test_stake_has_no_ipfs_option(devnet):
    code, out = invoke("stake", "show", "--account", "0x" + "11" * 20, "--ipfs-api", devnet.ipfs_api)
    assert code == 2 and "No such option" in out


def test_stake_show_reads_the_address_of_a_keystore_without_its_password(devnet, task):
    code, out = invoke("stake", "show", *_user(task), "--wei", *common(devnet)[:2], *common(devnet)[4:])
    assert code == 0 and "minimum stakes: contributor 100 FED (100000000000000000000 wei)" in out


# ─── keystores and data files that are not what they should be ───
@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"hello": "world"}', "is JSON but not an Ethereum keystore"),
        (bytes(range(256)) * 4, "is a binary file, not a keystore"),
        (None, "is a directory, not a keystore file"),
    ],
)
def test_a_keystore_that_is_not_one_is_a_one_line_error(devnet, task, tmp_path, content, expected):
    path = tmp_path / "keystore"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    code, out = invoke("claim", "--task", str(task["id"]), "--keystore", str(path), *common(devnet), env=PW)
    assert code == 1 and expected in out and "Traceback" not in out


def test_a_data_file_whose_header_claims_146_gib_is_refused_before_reading(devnet, task, tmp_path):
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                   "shape": (50_000_000, 1, 28, 28)})
    labels = io.BytesIO()
    np.save(labels, np.zeros(4, np.int64))
    bad = tmp_path / "huge.npz"
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("x.npy", b"\x93NUMPY\x01\x00" + header.getvalue()[8:] + bytes(64))
        archive.writestr("y.npy", labels.getvalue())
    code, out = invoke("contribute", "--task", str(task["id"]), "--data", str(bad), *_user(task),
                       "--state-dir", str(tmp_path / "state"), *common(devnet), env=PW)
    assert code == 1 and "146.0 GiB" in out and "Traceback" not in out


# ─── missing tasks, ended tasks, owners ───
def test_claim_on_a_missing_task_says_it_does_not_exist(devnet, task):
    code, out = invoke("claim", "--task", "999", *_user(task), *common(devnet), env=PW)
    assert code == 1 and "task 999 does not exist" in out


@pytest.fixture(scope="module")
def short_task(devnet, protocol, ipfs, task):
    """A one-round task with one-second windows, owned by the user's account."""
    from fedchain.core.spec import mnist_spec
    from fedchain.roles.owner import create_task_from_spec
    from fedchain.sim.devnet import dev_account

    owner = dev_account(2)
    protocol.chain.send(protocol.token.functions.mint(owner.address, 10 * FED), dev_account(0), action="mint")
    return create_task_from_spec(
        protocol, ipfs, owner, mnist_spec("mlp", sealed=False), rounds=1, reward_per_round=3 * FED, submission_window=1,
        aggregation_window=2, max_contributors=2, validator=dev_account(1).address,
    )


def test_status_never_calls_a_round_open_after_its_deadline(devnet, protocol, short_task):
    import time

    from fedchain.chain.protocol import RoundPhase

    time.sleep(1.2)
    assert protocol.round(short_task, 0).phase == RoundPhase.OPEN  # Anvil's clock lags: no block since
    code, out = invoke("status", "--task", str(short_task), "--json", *common(devnet))
    assert code == 0, out
    (row,) = json.loads(out)["rounds"]
    assert row["phase"] != "open"
    assert row["phase"] == "aggregating" and "the validator" in row["waiting_for"]


def test_status_shows_deadlines_and_what_an_open_round_waits_for(devnet, task):
    code, out = invoke("status", "--task", str(task["id"]), *common(devnet))
    assert code == 0, out
    assert "(in 9 min)" in out or "(in 10 min)" in out
    assert "round 0 is open: waiting for submissions: 0 of 2 joined; it closes when 2 have submitted" in out


def test_owner_cancels_and_withdraws_the_refund_and_validate_on_the_ended_task_says_so(devnet, protocol, task,
                                                                                       short_task):
    import time

    from fedchain.sim.devnet import dev_account

    user = [*_user(task), "--rpc-url", devnet.rpc_url, "--deployments", str(devnet.deployments_path)]
    code, out = invoke("task", "refund", "--task", str(short_task), *user, env=PW)
    assert code == 1 and "still running" in out
    code, out = invoke("task", "cancel", "--task", str(short_task), *user, env=PW)
    assert code == 0 and "cancelled" in out
    time.sleep(max(0.0, protocol.round(short_task, 0).aggregation_deadline - time.time() + 0.2))
    protocol.chain.sync_clock()
    protocol.expire_round(dev_account(3), short_task, 0)
    code, out = invoke("task", "show", "--task", str(short_task), *user[2:])
    assert code == 0 and "ended" in out and "refundable now │ 3 FED" in out, out
    owner = dev_account(2).address
    before = protocol.balance_of(owner)
    code, out = invoke("task", "refund", "--task", str(short_task), *user, env=PW)
    assert code == 0 and "refunded 3 FED" in out
    assert protocol.balance_of(owner) - before == 3 * FED

    holdout = task["tmp"] / "holdout.npz"
    np.savez(holdout, x=np.zeros((4, 1, 28, 28), np.float32), y=np.zeros(4, np.int64))
    code, out = invoke("validate", "--task", str(short_task), "--holdout", str(holdout), *_user(task), *common(devnet),
                       env=PW)
    assert code == 1 and f"task {short_task} has ended" in out and "nothing left to validate" in out
    # The same validator restarted after the task ended (it served it: its checkpoints are there) is not in error.
    from fedchain.state import write_bound_json

    state = task["tmp"] / "validator-state"
    write_bound_json(state / f"validator-task{short_task}" / "round-0.json", {"round": 0}, protocol.binding())
    code, out = invoke("validate", "--task", str(short_task), "--holdout", str(holdout), "--state-dir", str(state),
                       *_user(task), *common(devnet), env=PW)
    assert code == 0 and "ended while this validator was stopped" in out, out


def test_task_create_on_a_devnet_defaults_to_a_short_window(devnet, protocol, task, tmp_path):
    from fedchain.core.spec import mnist_spec
    from fedchain.sim.devnet import dev_account

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(mnist_spec("mlp", sealed=False).to_json_obj()))
    code, out = invoke("task", "create", "--spec", str(spec), *_user(task), "--rounds", "1", "--reward-per-round",
                       "0.5", "--validator", dev_account(1).address, "--max-contributors", "3", *common(devnet),
                       env=PW)
    assert code == 0, out
    task_id = int(out.split()[-1])
    info = protocol.task(task_id)
    assert info.submission_window == 60 and info.reward_per_round == FED // 2
    assert info.min_open == 15  # a quarter of the window: a full round is not closed by count alone
    assert "for 60 s or, once 15 s passed, until 3 contributor(s) have submitted" in " ".join(out.split())


def test_a_contributor_that_cannot_stake_says_so_at_once(devnet, protocol, task, tmp_path):
    from fedchain.chain.accounts import create_keystore
    from fedchain.learning.data import save_npz

    keystore = tmp_path / "poor.json"
    address = create_keystore(keystore, "right", light=True)
    code, out = invoke("account", "fund", "--keystore", str(keystore), "--eth", "1", "--fed", "40",
                       "--rpc-url", devnet.rpc_url, "--deployments", str(devnet.deployments_path))
    assert code == 0 and "1 ETH, 40 FED" in out, out
    data = save_npz(tmp_path / "d.npz", np.zeros((4, 1, 28, 28), np.float32), np.arange(4, dtype=np.int64))
    code, out = invoke("contribute", "--task", str(task["id"]), "--data", str(data), "--keystore", str(keystore),
                       "--state-dir", str(tmp_path / "state"), *common(devnet), env=PW)
    assert code == 1 and f"{address} cannot stake the 100 FED" in out and "holds 40 FED" in out


def test_validate_names_the_sealing_password_option(devnet, task, tmp_path):
    from fedchain.core.keys import generate_sealing_key

    key = tmp_path / "v.key"
    generate_sealing_key(key, password="pw")
    code, out = invoke("validate", "--task", str(task["id"]), "--holdout", str(tmp_path / "h.npz"), *_user(task),
                       "--sealing-key", str(key), "--sealing-password-env", "NOT_SET_HERE", *common(devnet), env=PW)
    assert code == 1 and "--sealing-password-env" in out and "--password-env VAR" not in out


def test_keys_create_encrypts_with_fedchain_password_or_says_it_did_not(tmp_path):
    from fedchain.core.keys import is_encrypted

    code, out = invoke("keys", "create", "--out", str(tmp_path / "a.key"), env={"FEDCHAIN_PASSWORD": "pw"})
    assert code == 0 and "encrypted with the password in $FEDCHAIN_PASSWORD" in out and is_encrypted(tmp_path / "a.key")
    code, out = invoke("keys", "public", "--key", str(tmp_path / "a.key"), env={"FEDCHAIN_PASSWORD": "pw"})
    assert code == 0 and len(out) == 64
    import os

    env = {k: v for k, v in os.environ.items() if k != "FEDCHAIN_PASSWORD"}
    result = CliRunner().invoke(app, ["keys", "create", "--out", str(tmp_path / "b.key")], env={**env, "FEDCHAIN_PASSWORD": ""})
    assert result.exit_code == 0 and "NOT encrypted" in result.output and not is_encrypted(tmp_path / "b.key")


def test_validate_refuses_the_checkpoint_of_a_chain_that_was_reset(devnet, protocol, task, tmp_path):
    """The issue's scenario: a devnet restarted empty, same chain id and addresses, old checkpoints kept."""
    from dataclasses import replace

    from fedchain.state import write_bound_json

    old_chain = replace(protocol.binding(), block_hash="0x" + "77" * 32)
    state = tmp_path / "state"
    write_bound_json(state / f"validator-task{task['id']}" / "round-0.json", {"round": 0}, old_chain)
    holdout = tmp_path / "holdout.npz"
    np.savez(holdout, x=np.zeros((4, 1, 28, 28), np.float32), y=np.zeros(4, np.int64))
    code, out = invoke("validate", "--task", str(task["id"]), "--holdout", str(holdout), *_user(task),
                       "--state-dir", str(state), *common(devnet), env=PW)
    assert code == 1 and "round-0.json was made on chain 31337" in out and "devnet --fresh" in out, out
