"""Benchmark: robustness and incentives, attack mix x aggregation rule, with real `fedchain demo` runs.

    python -m bench --only robustness [--quick]

Each cell is one `fedchain.sim.demo.run_demo` (contributors and validator as processes, sealed updates, the CNN,
Dirichlet(0.5) shards, TMC-Shapley scoring, seed 0) on a devnet shared by this section's runs: 10 contributors of
which 3 attack, 10 rounds, for two attack mixes and the rules fedavg, trimmed-mean and multi-krum. Beside each, the
same rule without the attackers: the 7 honest contributors alone, holding exactly the shards they hold in the
attacked runs (DemoConfig data_shards=10) and with the rule's parameters sized as in the attacked runs
(rule_params). The attackers' shards are simply unused. Reported per cell: final test accuracy, the baseline's and the difference in points, the
attackers' share of all rewards, honest contributors slashed, and the attackers' verdicts. A separate run with
honest contributors holding different amounts of data (`DemoConfig(sized=True)`, 10 honest contributors, fedavg)
gives the Spearman correlation between their data sizes and their rewards.
Quick: 3 honest contributors + 1 label-flipper, 2 rounds, fedavg, no baseline and no sized run (the Spearman
figure is then taken over the quick run's honest contributors, as a smoke test of the code only).

Targets (issue 5): with a robust rule the final accuracy within 2 points of the run without attackers; attackers
together at most 2% of the rewards; no honest contributor slashed in any run; Spearman >= 0.6.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from bench._util import now
from bench.scale import measured_demo, shared_devnet

MIXES = {
    "label-flip:1,sign-flip:1,noise:1": {"label-flip": 1, "sign-flip": 1, "noise": 1},
    "free-rider:1,copycat:1,noise:1": {"free-rider": 1, "copycat": 1, "noise": 1},
}
RULES = ["fedavg", "trimmed-mean", "multi-krum"]
ROBUST = {"trimmed-mean", "multi-krum", "median"}
TARGET_POINTS, TARGET_SHARE, TARGET_SPEARMAN = 2.0, 0.02, 0.6


def outcome(report: dict) -> dict[str, Any]:
    """Final accuracy, attackers' reward share, honest contributors slashed, attackers' verdicts."""
    roles = report["roles"]
    attackers = {a for a, r in roles.items() if r != "honest"}
    slashed = set(report.get("slashed", {})) | {u["contributor"] for r in report["rounds"] for u in r["updates"] if u.get("slashed")}
    verdicts: dict[str, dict[str, int]] = {}
    for r in report["rounds"]:
        for u in r["updates"]:
            if u["role"] != "honest":
                key = u["status"] if not u.get("reason") else f"{u['status']}:{u['reason']}"
                verdicts.setdefault(u["role"], {}).setdefault(key, 0)
                verdicts[u["role"]][key] += 1
    return {
        "final_accuracy": report["rounds"][-1]["test_accuracy"],
        "accuracy_per_round": [r["test_accuracy"] for r in report["rounds"]],
        "attackers_reward_share": report["outcome"]["attacker_share"],  # the demo's own summary
        "honest_slashed": sorted(a for a in slashed if roles.get(a) == "honest"),
        "attackers_slashed": sorted(a for a in slashed if a in attackers),
        "attacker_verdicts": verdicts,
        "honest_rejected_or_discarded": sum(1 for r in report["rounds"] for u in r["updates"]
                                            if u["role"] == "honest" and u["status"] != "accepted"),
    }


def _baseline_options(rule: str, honest: int, attackers: int) -> dict[str, Any]:
    """DemoConfig options for the no-attack run; empty on an older demo without them (then the baseline's honest
    contributors hold all the data, redrawn for their number)."""
    import dataclasses

    from fedchain.sim import demo

    names = {f.name for f in dataclasses.fields(demo.DemoConfig)}
    if not {"data_shards", "rule_params"} <= names or not hasattr(demo, "demo_rule"):
        return {}
    return {"data_shards": honest + attackers, "rule_params": demo.demo_rule(rule, attackers, honest + attackers)}


def spearman_sizes_rewards(report: dict) -> dict[str, Any]:
    """The demo's Spearman(data size, reward) over honest contributors, with the sizes and rewards it ranks."""
    sizes: dict[str, int] = {}
    for r in report["rounds"]:
        for u in r["updates"]:
            if u["role"] == "honest":
                sizes[u["contributor"]] = u["num_samples"]
    honest = sorted(sizes)
    rho = report["outcome"]["spearman_size_reward"]
    return {"spearman": None if rho is None or rho != rho else round(rho, 3), "sizes": [sizes[a] for a in honest],
            "rewards_FED": [round(int(report["rewards"][a]) / 1e18, 2) for a in honest]}


def run(quick: bool) -> dict:
    if quick:
        mixes, rules, honest, rounds = {"label-flip:1": {"label-flip": 1}}, ["fedavg"], 3, 2
    else:
        mixes, honest, rounds = MIXES, 7, 10
        # BENCH_ROBUSTNESS_RULES=fedavg,trimmed-mean limits the rules (each rule is 3 demo runs of 10 rounds)
        rules = [x for x in os.environ.get("BENCH_ROBUSTNESS_RULES", ",".join(RULES)).split(",") if x]
    cells, baselines, runs = [], {}, []
    sized = None
    with tempfile.TemporaryDirectory(prefix="fedchain-bench-robust-") as tmp, shared_devnet(Path(tmp)) as net:
        work = Path(tmp)
        for rule in rules:
            if not quick:
                # the fair baseline: the honest contributors alone, with exactly the shards they hold in the attacked
                # runs (the data is dealt over as many shards) and the rule sized as in the attacked runs
                attackers = sum(next(iter(mixes.values())).values())
                base = measured_demo(net, work, clients=honest, rounds=rounds, seed=0, rule=rule,
                                     **_baseline_options(rule, honest, attackers))
                baselines[rule] = outcome(base["report"]) | {"wall_seconds": base["wall_seconds"]}
            for mix_name, mix in mixes.items():
                try:
                    m = measured_demo(net, work, clients=honest, rounds=rounds, seed=0, rule=rule, attack=mix)
                except Exception as exc:  # noqa: BLE001 - one failed cell is reported, the others still run
                    cells.append({"mix": mix_name, "rule": rule, "error": f"{type(exc).__name__}: {exc}"[:800]})
                    continue
                cell = {"mix": mix_name, "rule": rule, **outcome(m["report"]), "wall_seconds": m["wall_seconds"]}
                if rule in baselines:
                    cell["baseline_accuracy"] = baselines[rule]["final_accuracy"]
                    cell["points_below_baseline"] = round(100 * (cell["baseline_accuracy"] - cell["final_accuracy"]), 2)
                cells.append(cell)
                runs.append(m["report"])
        if quick:
            sized = {"note": "quick: honest contributors of the attack run, not a sized run", **spearman_sizes_rewards(runs[0])}
        else:
            s = measured_demo(net, work, clients=10, rounds=rounds, seed=0, rule="fedavg", sized=True)
            sized = {**spearman_sizes_rewards(s["report"]), **{k: v for k, v in outcome(s["report"]).items() if k != "attacker_verdicts"},
                     "rule": "fedavg", "clients": 10}
    result = {"name": "robustness", "quick": quick, "date": now(),
              "command": ("" if quick or rules == RULES else f"BENCH_ROBUSTNESS_RULES={','.join(rules)} ")
              + "python -m bench --only robustness" + (" --quick" if quick else ""),
              "setup": {"honest": honest, "rounds": rounds, "mixes": list(mixes), "rules": rules, "architecture": "cnn",
                        "scoring": "tmc-shapley", "sealed": True, "alpha": 0.5, "seed": 0,
                        "fair_baseline": bool(_baseline_options("fedavg", honest, 3))},
              "cells": cells, "baselines": baselines, "sized": sized}
    result["targets"] = targets(result)
    result["markdown"] = markdown(result)
    return result


def targets(r: dict) -> list[dict[str, Any]]:
    ok = [c for c in r["cells"] if "error" not in c]
    robust = [c for c in ok if c["rule"] in ROBUST and "points_below_baseline" in c]
    out = []
    # The issue asks for "a robust rule" that holds: each robust rule is judged on its own (worst of its cells).
    for rule in sorted({c["rule"] for c in robust}):
        worst = max(c["points_below_baseline"] for c in robust if c["rule"] == rule)
        out.append({"target": f"{rule}: accuracy within 2 points of no attack (worst cell)", "goal": TARGET_POINTS,
                    "measured": worst, "met": worst <= TARGET_POINTS})
    if ok:
        for rule in sorted({c["rule"] for c in ok if c["rule"] in ROBUST}):
            share = max(c["attackers_reward_share"] for c in ok if c["rule"] == rule)
            out.append({"target": f"{rule}: attackers' reward share (worst cell)", "goal": TARGET_SHARE,
                        "measured": round(share, 4), "met": share <= TARGET_SHARE})
        plain = [c["attackers_reward_share"] for c in ok if c["rule"] not in ROBUST]
        if plain:  # FedAvg is shown beside the robust rules (issue 5): it has no defence, so it pays attackers
            out.append({"target": "fedavg, shown beside: attackers' reward share (worst cell)", "goal": TARGET_SHARE,
                        "measured": round(max(plain), 4), "met": max(plain) <= TARGET_SHARE})
        slashed = sum(len(c["honest_slashed"]) for c in ok) + len((r.get("sized") or {}).get("honest_slashed", []))
        slashed += sum(len(b["honest_slashed"]) for b in r["baselines"].values())
        out.append({"target": "honest contributors slashed, all runs", "goal": 0, "measured": slashed, "met": slashed == 0})
    rho = (r.get("sized") or {}).get("spearman")
    out.append({"target": "Spearman(data size, reward), honest", "goal": TARGET_SPEARMAN, "measured": rho,
                "met": None if rho is None or r["quick"] else rho >= TARGET_SPEARMAN})
    return out


def markdown(r: dict) -> str:
    s = r["setup"]
    n_att = 1 if r["quick"] else 3
    lines = [
        f"`fedchain demo`: {s['honest']} honest + {n_att} attacking contributors, {s['rounds']} rounds, {s['architecture']}, "
        f"Dirichlet {s['alpha']}, {s['scoring']} scoring, sealed updates, seed {s['seed']}. "
        f"'No attack' is the same rule with the {s['honest']} honest contributors alone. `{r['command']}`",
        "",
        "| attack mix | rule | final accuracy | no attack | points below | attackers' reward share | honest slashed | attackers' verdicts (updates) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in r["cells"]:
        if "error" in c:
            lines.append(f"| {c['mix']} | {c['rule']} | failed: {c['error'][:150]} | | | | | |")
            continue
        verdicts = "; ".join(f"{role}: " + ", ".join(f"{k} {v}" for k, v in sorted(d.items())) for role, d in sorted(c["attacker_verdicts"].items()))
        base = f"{100 * c['baseline_accuracy']:.1f}%" if "baseline_accuracy" in c else "-"
        below = f"{c['points_below_baseline']:+.1f}" if "points_below_baseline" in c else "-"
        lines.append(f"| {c['mix']} | {c['rule']} | {100 * c['final_accuracy']:.1f}% | {base} | {below} | "
                     f"{100 * c['attackers_reward_share']:.2f}% | {len(c['honest_slashed'])} | {verdicts} |")
    sz = r.get("sized") or {}
    if sz:
        what = sz.get("note") or f"sized run: {sz.get('clients')} honest contributors, {sz.get('rule')}"
        lines += ["", f"Data size vs reward ({what}): Spearman {sz['spearman']}; sizes {sz['sizes']}; "
                      f"rewards (FED) {sz['rewards_FED']}."]
    if not r["quick"]:
        if r["setup"].get("fair_baseline"):
            lines += ["", "'No attack': the 7 honest contributors alone with the same shards as in the attacked runs (the "
                          "attackers' 30% of the data unused) and the rule sized as in the attacked runs."]
        else:
            lines += ["", "Reading the table: the 'no attack' baseline's 7 honest contributors hold all the training data "
                          "(the demo dealt shards over every participant), while in the attack runs they hold about 70% of it, "
                          "so 'points below' also counts the attackers' missing data, not only the attack's effect."]
        collapsed = [c for c in r["cells"] if "error" not in c and c["final_accuracy"] < 0.2]
        if collapsed:
            lines += ["", "Collapsed runs (final accuracy under 20%): " + "; ".join(
                f"{c['mix']} with {c['rule']}: {len(c['honest_slashed'])} honest contributor(s) slashed" for c in collapsed)
                + ". The validator never publishes a non-finite model and slashes nobody for non-finite updates"
                " trained from a diverged one."]
    lines += ["", "| target | goal | measured | met |", "|---|---|---|---|"]
    for t in r["targets"]:
        met = "n/a" if t["met"] is None else ("yes" if t["met"] else "NO")
        lines.append(f"| {t['target']} | {t['goal']} | {t['measured']} | {met} |")
    return "\n".join(lines)
