"""Benchmark: a validator committee's incentives, with real `fedchain demo --validators 3` runs side by side.

    python -m bench --only committee [--quick]

Every run: 3 equal-stake committee members (each scoring on its own third of the held-out set), 7 honest contributors
and 3 attacking ones (label-flip, sign-flip, free-rider), Multi-Krum, sealed updates, the CNN, seed 0, on one devnet.
The runs differ only in the committee: all honest; one colluding member (scores the attacking contributors high, the
honest ones 0); one lazy member (uniform scores); one offline member (commits, never reveals).
Quick: 2 honest contributors and 1 label-flipper, one round, the colluding run only (a smoke test of the code).

Targets (issue 12): with one colluding member, attackers earn at most 2% of the contributors' rewards, the colluding
member at most half of an honest member's dividends, no honest contributor or member is slashed, and accuracy is
within 2 points of the honest committee's; a lazy member earns less than every honest one; every round finalizes
with one member offline.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from bench._util import now
from bench.scale import measured_demo, shared_devnet

ATTACK = {"label-flip": 1, "sign-flip": 1, "free-rider": 1}
COMMITTEES = {"honest": {}, "colluding": {"colluding": 1}, "lazy": {"lazy": 1}, "offline": {"offline": 1}}
TARGET_SHARE, TARGET_POINTS = 0.02, 2.0


def _summary(run: dict[str, Any]) -> dict[str, Any]:
    report = run["report"]
    members = report["committee"]["members"]
    honest = [m for m in members if m["behaviour"] == "honest"]
    others = [m for m in members if m["behaviour"] != "honest"]
    roles = report["roles"]
    return {
        "final_accuracy": report["rounds"][-1]["test_accuracy"] if report["rounds"] else None,
        "rounds_finalized": len(report["rounds"]),
        "attackers_reward_share": report["outcome"]["attacker_share"],
        "honest_contributors_slashed": report["outcome"]["honest_slashed"],
        "honest_members_slashed": sum(m["slashed"] for m in honest),
        "honest_member_dividends": [int(m["dividends"]) for m in honest],
        "other_member": others[0] if others else None,
        "members": members,
        "contributor_roles": sorted(set(roles.values())),
        "wall_seconds": run["wall_seconds"],
    }


def run(quick: bool) -> dict[str, Any]:
    honest, attack, rounds = (2, {"label-flip": 1}, 1) if quick else (7, ATTACK, 3)
    windows = (6, 20, 6) if quick else (15, 45, 15)  # availability, commit, reveal: room for a loaded machine
    names = ["colluding"] if quick else list(COMMITTEES)
    runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="fedchain-bench-committee-") as tmp, shared_devnet(Path(tmp)) as net:
        for name in names:
            m = measured_demo(net, Path(tmp) / name, clients=honest, attack=attack, rounds=rounds, rule="multi-krum",
                              validators=3, validator_attack=COMMITTEES[name], committee_windows=windows,
                              aggregation_window=240, seed=0)
            runs[name] = _summary(m)
    targets = _targets(runs)
    result = {"name": "committee", "quick": quick, "date": now(),
              "command": "python -m bench --only committee" + (" --quick" if quick else ""),
              "setup": {"honest_contributors": honest, "attack": attack, "rounds": rounds, "members": 3,
                        "rule": "multi-krum"},
              "runs": runs, "targets": targets}
    result["markdown"] = markdown(result)
    return result


def _targets(runs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    c = runs.get("colluding")
    if c:
        out.append({"target": "attackers' share with a colluding member", "goal": f"<= {TARGET_SHARE:.0%}",
                    "measured": c["attackers_reward_share"], "met": c["attackers_reward_share"] <= TARGET_SHARE})
        colluder = int(c["other_member"]["dividends"])
        half = min(c["honest_member_dividends"]) / 2
        out.append({"target": "colluding member's dividends vs half an honest member's", "goal": "<= 1",
                    "measured": colluder / half if half else None, "met": colluder <= half})
        out.append({"target": "honest contributors and members slashed (colluding run)", "goal": "0",
                    "measured": c["honest_contributors_slashed"] + c["honest_members_slashed"],
                    "met": c["honest_contributors_slashed"] + c["honest_members_slashed"] == 0})
    if c and "honest" in runs:
        gap = 100 * (runs["honest"]["final_accuracy"] - c["final_accuracy"])
        out.append({"target": "accuracy, colluding vs honest committee", "goal": f"within {TARGET_POINTS} points",
                    "measured": round(gap, 2), "met": abs(gap) <= TARGET_POINTS})
    lazy = runs.get("lazy")
    if lazy:
        lazy_div = int(lazy["other_member"]["dividends"])
        out.append({"target": "lazy member earns less than every honest one", "goal": "yes",
                    "measured": f"{lazy_div / 10**18:,.1f} FED vs honest "
                                + ", ".join(f"{d / 10**18:,.1f}" for d in lazy["honest_member_dividends"]),
                    "met": all(lazy_div < d for d in lazy["honest_member_dividends"])})
    offline = runs.get("offline")
    if offline:
        out.append({"target": "every round finalizes with one member offline", "goal": "yes",
                    "measured": offline["rounds_finalized"], "met": offline["rounds_finalized"] > 0
                    and offline["other_member"]["slashed"]})
    return out


def markdown(r: dict[str, Any]) -> str:
    s = r["setup"]
    lines = [
        f"3 equal-stake members, {s['honest_contributors']} honest contributors and attackers "
        f"{', '.join(s['attack'])}, {s['rule']}, {s['rounds']} round(s), seed 0, one devnet; one run per committee.",
        "",
        "| committee | accuracy | rounds finalized | attackers' share | member behaviours: dividends (FED), agreement | slashed members |",
        "|---|---|---|---|---|---|",
    ]
    for name, run_ in r["runs"].items():
        members = "; ".join(f"{m['behaviour']}: {int(m['dividends']) / 10**18:,.1f}, {m['mean_agreement']:.3f}"
                            for m in run_["members"])
        slashed = ", ".join(m["behaviour"] for m in run_["members"] if m["slashed"]) or "none"
        acc = run_["final_accuracy"]
        lines.append(f"| {name} | {acc:.4f} | {run_['rounds_finalized']} | {100 * run_['attackers_reward_share']:.2f}% "
                     f"| {members} | {slashed} |")
    lines += ["", "| target | goal | measured | met |", "|---|---|---|---|"]
    for t in r["targets"]:
        lines.append(f"| {t['target']} | {t['goal']} | {t['measured']} | {'yes' if t['met'] else '**NO**'} |")
    return "\n".join(lines)
