"""The benchmark suite runs (`python -m bench --quick`) and produces well-formed results. Never timing assertions.

The quick run starts Anvil and the embedded IPFS node and runs small demos, so it is marked e2e. Sections that need
Flower's virtual environment (.venv-flower) report it as skipped when it is absent: the test suite never installs it.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `bench` is a package at the repository root, not inside python/
    sys.path.insert(0, str(ROOT))
SECTIONS = ["gas", "aggregation", "anatomy", "quality", "robustness", "scale", "gpu", "text", "committee", "startup", "faults", "economics", "unlabelled", "privacy"]


def _finite_numbers(obj, where="$"):
    """Every float in the JSON is finite (None is allowed for 'not measured')."""
    if isinstance(obj, float):
        assert math.isfinite(obj), f"non-finite number at {where}"
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _finite_numbers(v, f"{where}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _finite_numbers(v, f"{where}[{i}]")


def _is_stats(s) -> bool:
    return isinstance(s, dict) and {"median", "min", "max", "n"} <= set(s) and (
        s["median"] is None or (isinstance(s["median"], (int, float)) and s["min"] <= s["median"] <= s["max"]))


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--results-dir", str(out), "--markdown", str(out / "BENCHMARKS.md")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = {name: json.loads((out / f"{name}.json").read_text()) for name in SECTIONS}
    return results, (out / "BENCHMARKS.md").read_text(), proc.stderr


pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("name", SECTIONS)
def test_every_section_ran_and_is_well_formed(quick_results, name):
    results, _, log = quick_results
    r = results[name]
    assert "error" not in r, f"{name} failed: {r.get('error')}\n{r.get('traceback', '')[-1500:]}"
    assert r["name"] == name and r["quick"] is True
    assert isinstance(r["markdown"], str) and r["markdown"].strip()
    assert {"date", "command", "machine", "versions"} <= set(r)
    assert isinstance(r["machine"], dict) and r["machine"]
    _finite_numbers(r)


def test_anatomy_phases_and_overhead(quick_results):
    r = quick_results[0]["anatomy"]
    for phase in ("fetch_model", "train", "seal", "ipfs_add", "submit"):
        assert _is_stats(r["contributor_phases"][phase])
    for phase in ("fetch_verify", "aggregate", "score", "evaluate", "publish", "post"):
        assert _is_stats(r["validator_phases"][phase])
    assert _is_stats(r["claim"])
    share = r["critical_path"]["overhead_share"]["median"]
    assert 0.0 < share < 1.0
    assert r["setup"]["parameters"] == 1_000_120
    assert {t["target"] for t in r["targets"]} == {
        "overhead share of the round", "overhead seconds",
        "overhead share, the claim amortized over the task (claimMany once at its end, as the client does)"}
    assert all(isinstance(t["met"], bool) for t in r["targets"])


def test_quality_sides(quick_results):
    r = quick_results[0]["quality"]
    for side in ("fedchain", "centralized"):
        acc = r["sides"][side]["accuracy"]
        assert 0.0 <= acc["min"] <= acc["mean"] <= acc["max"] <= 1.0
        assert _is_stats(r["sides"][side]["seconds_per_round"])
    if (ROOT / ".venv-flower" / ".flower-installed").exists():
        assert 0.0 <= r["sides"]["flower"]["accuracy"]["mean"] <= 1.0
        assert _is_stats(r["flower_over_fedchain_seconds_ratio"])
    else:
        assert "flower" not in r["sides"] and r["flower_status"].startswith("skipped")


def test_unlabelled_rows(quick_results):
    r = quick_results[0]["unlabelled"]
    [row] = r["rows"]  # quick: 5% labels, one seed
    assert row["fraction"] == 0.05 and set(row) >= {"floor", "pseudo", "ceiling", "gap_closed"}
    for side in ("floor", "pseudo", "ceiling"):
        assert 0.0 <= row[side]["mean"] <= 1.0
    assert r["targets"] and "anchors" not in r and "FixMatch" in r["markdown"]


def test_robustness_cells(quick_results):
    r = quick_results[0]["robustness"]
    assert r["cells"]
    for c in r["cells"]:
        assert "error" not in c, c.get("error")
        assert 0.0 <= c["final_accuracy"] <= 1.0
        assert 0.0 <= c["attackers_reward_share"] <= 1.0
        assert isinstance(c["honest_slashed"], list)
        assert c["attacker_verdicts"]
    rho = r["sized"]["spearman"]
    assert rho is None or -1.0 <= rho <= 1.0


def test_scale_rows(quick_results):
    r = quick_results[0]["scale"]
    assert r["rows"]
    for row in r["rows"]:
        assert _is_stats(row["seconds_per_round"])
        assert row["validator_peak_MB"] is not None and row["validator_peak_MB"] > 0
        assert 0.0 <= row["final_accuracy"] <= 1.0


def test_economics_inflation_rows(quick_results):
    r = quick_results[0]["economics"]
    weightings = {row["weighting"] for row in r["rows"]}
    assert weightings == {"claimed", "median-capped", "equal"}
    for row in r["rows"]:
        assert 0.0 <= row["weight_share"] <= 1.0 and 0.0 <= row["reward_share"] <= 1.0
    assert all(isinstance(met, bool) for met in r["targets"].values())


def test_gpu_is_measured_or_skipped(quick_results):
    r = quick_results[0]["gpu"]
    assert r.get("skipped") == "no CUDA device" or {"training", "aggregation", "copy_bandwidth"} <= set(r)


def test_privacy_sides_and_accounting(quick_results):
    r = quick_results[0]["privacy"]
    assert {"plain", "plain_private_settings", "fedchain_eps8", "opacus_eps8"} <= set(r["sides"])
    assert all(0 <= a <= 1 for a in r["final_accuracy"].values())
    assert r["accounting_checks"] and all(c["fedchain"] <= 8.0 for c in r["accounting_checks"])
    assert [t["met"] in (True, False) for t in r["targets"]] == [True] * 3


def test_benchmarks_markdown_lists_every_section(quick_results):
    _, md, _ = quick_results
    assert md.startswith("# fedchain benchmarks")
    assert "Machine:" in md and "Versions:" in md
    for title in ("Gas", "Aggregation", "anatomy", "Model quality", "Robustness", "Scale", "GPU"):
        assert title in md
    assert "python -m bench" in md


# ─── helpers, without a devnet ───
def test_stats_and_outcome_helpers():
    from bench._util import fmt_stats, mean_spread, stats
    from bench.robustness import outcome, spearman_sizes_rewards

    s = stats([3.0, 1.0, 2.0, float("nan")])
    assert s == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}
    assert fmt_stats(s) == "2.00 (1.00-3.00)"
    assert mean_spread([0.5, 0.7])["mean"] == 0.6
    fed = 10**18
    report = {
        "roles": {"0xa": "honest", "0xb": "honest", "0xc": "honest", "0xd": "noise"},
        "rewards": {"0xa": str(100 * fed), "0xb": str(300 * fed), "0xc": str(600 * fed), "0xd": "0"},
        "slashed": {},
        "rounds": [{"test_accuracy": 0.9, "updates": [
            {"contributor": "0xa", "role": "honest", "num_samples": 10, "status": "accepted", "reason": None, "slashed": False},
            {"contributor": "0xb", "role": "honest", "num_samples": 20, "status": "accepted", "reason": None, "slashed": False},
            {"contributor": "0xc", "role": "honest", "num_samples": 30, "status": "accepted", "reason": None, "slashed": False},
            {"contributor": "0xd", "role": "noise", "num_samples": 5, "status": "rejected", "reason": "norm-outlier", "slashed": False},
        ]}],
    }
    from fedchain.sim.demo import outcome_summary

    report["outcome"] = outcome_summary(report, {"0xa": 10, "0xb": 20, "0xc": 30, "0xd": 5})  # as the demo writes it
    o = outcome(report)
    assert o["attackers_reward_share"] == 0.0 and o["honest_slashed"] == []
    assert o["attacker_verdicts"] == {"noise": {"rejected:norm-outlier": 1}}
    assert spearman_sizes_rewards(report)["spearman"] == 1.0


def test_text_sides_and_targets(quick_results):
    r = quick_results[0]["text"]
    if "skipped" in r:
        pytest.skip(r["skipped"])
    for side in ("fedchain", "centralized"):
        for metric in ("accuracy", "last_position_accuracy"):
            acc = r["sides"][side][metric]
            assert 0.0 <= acc["min"] <= acc["mean"] <= acc["max"] <= 1.0
        assert _is_stats(r["sides"][side]["seconds_per_round"])
    assert r["setup"]["parameters"] == 324_415 and len(r["setup"]["roles"]) == 3
    assert {t["target"] for t in r["targets"]} == {"fedchain within 2 points of Flower's accuracy",
                                                   "fedchain at most 1.5x Flower's seconds per round"}
    if (ROOT / ".venv-flower" / ".flower-installed").exists():
        assert _is_stats(r["fedchain_over_flower_seconds_ratio"])
        assert all(isinstance(t["met"], bool) for t in r["targets"])



def test_committee_runs_report_members_and_targets(quick_results):
    r = quick_results[0]["committee"]
    run = r["runs"]["colluding"]
    assert [m["behaviour"] for m in run["members"]].count("colluding") == 1
    assert run["rounds_finalized"] == 1
    assert {t["target"] for t in r["targets"]} >= {"attackers' share with a colluding member"}


def test_startup_times_both_ways_of_starting_processes_and_profiles_their_imports(quick_results):
    r = quick_results[0]["startup"]
    for kind in ("launcher", "cold"):
        assert _is_stats(r["figures"][kind]["spawn_to_first_result_seconds"])
        assert r["figures"][kind]["spawn_to_first_result_seconds"]["median"] > 0
        assert [run["launcher"] for run in r["runs"][kind]] == [kind == "launcher"]
        for role in ("contributor", "validator"):
            assert r["import_profiles"][kind][role]["modules"] > 0
    # a launched process imports a fraction of what a cold one does (torch and web3 come with the fork)
    cold, launched = r["import_profiles"]["cold"]["contributor"], r["import_profiles"]["launcher"]["contributor"]
    assert launched["modules"] * 5 < cold["modules"]
    assert "torch" in {x["package"] for x in cold["largest"]}
