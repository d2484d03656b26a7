"""Simulation mode (fedchain.sim.swarm): many contributors in a few processes against a real devnet."""

from __future__ import annotations

import pytest

from fedchain.errors import ConfigError
from fedchain.sim.swarm import SwarmManifest, SwarmMember


def test_a_manifest_round_trips_and_a_bad_one_says_what_it_needs(tmp_path):
    manifest = SwarmManifest("http://127.0.0.1:8545", "http://127.0.0.1:5001", tmp_path / "d.json", 3, tmp_path,
                             (SwarmMember("client-0", tmp_path / "k.json", tmp_path / "x.npz", 7),), 12.0, threads=3)
    assert SwarmManifest.from_json(manifest.to_json()) == manifest
    with pytest.raises(ConfigError, match="members"):
        SwarmManifest.from_json({"rpc_url": "x"})


def test_workers_without_simulate_is_refused(tmp_path):
    from fedchain.sim.demo import DemoConfig, run_demo

    with pytest.raises(ConfigError, match="--simulate"):
        run_demo(DemoConfig(workers=2, workdir=tmp_path))


@pytest.mark.e2e
def test_simulation_mode_runs_a_task_with_contributors_sharing_processes(devnet, tmp_path):
    from rich.console import Console

    from fedchain.sim.demo import DemoConfig, run_demo

    config = DemoConfig(
        clients=5, rounds=2, seed=2, architecture="mlp", scoring="gradient-shapley", attack={"noise": 1},
        simulate=True, workers=2, rpc_url=devnet.rpc_url, ipfs_api=devnet.ipfs_api,
        deployments=devnet.deployments_path, workdir=tmp_path / "work", report=tmp_path / "report.json", plot=None,
        timeout=300,
    )
    report = run_demo(config, console=Console(record=True, width=300))
    logs = sorted(p.name for p in next((tmp_path / "work").glob("task-*")).joinpath("logs").iterdir())
    # the five honest contributors live in two processes; the attacker and the validator have their own
    assert logs == ["client-5.log", "swarm-0.log", "swarm-1.log", "validator.log"]
    honest = {a for a, role in report["roles"].items() if role == "honest"}
    assert len(honest) == 5
    for r in report["rounds"]:
        submitted = {u["contributor"] for u in r["updates"] if u["role"] == "honest"}
        assert submitted == honest  # every contributor of every swarm submitted, from its own account
        assert len({u["cid"] for u in r["updates"]}) == 6  # each its own update
    assert report["outcome"]["honest_slashed"] == 0 and report["outcome"]["attacker_share"] < 0.05
    for address in honest:  # each claimed what it earned, from its own account
        assert int(report["rewards"][address]) > 0
        assert report["claimed"][address] == report["rewards"][address]
    assert report["rounds"][-1]["test_accuracy"] > report["rounds"][0]["test_accuracy"] - 0.05
