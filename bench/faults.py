"""Fault injection: seeded runs of a small sealed MNIST task on a real devnet while the validator, the contributors
and the IPFS node are SIGKILLed and restarted and the chain's JSON-RPC endpoint drops, fails and delays requests
(fedchain.faults.harness). Each run must end as the undisturbed run of the same task: the same models, reward roots
and rewards, every update counted once, every reward claimed, nothing left in the TaskManager.

    python -m bench --only faults          # the undisturbed run, then 20 seeded runs
    (--quick skips it: tests/python/test_faults.py runs two seeded runs)
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._util import now
from fedchain.faults.harness import FaultPlan, FaultRunError, Scenario, compare, run_scenario

SEEDS = 20
KILLS = 3
SCENARIO = Scenario(clients=2, rounds=2, samples_per_client=200)


def run(quick: bool) -> dict[str, Any]:
    if quick:  # the quick run is the test suite's: tests/python/test_faults.py runs two seeded runs already
        return {"name": "faults", "quick": True, "skipped": "quick mode: tests/python/test_faults.py runs 2 seeds",
                "markdown": "Skipped in quick mode: `tests/python/test_faults.py` runs two seeded runs."}
    scenario = SCENARIO
    seeds = list(range(1, SEEDS + 1))
    runs = []
    with tempfile.TemporaryDirectory(prefix="fedchain-bench-faults-") as tmp:
        reference = run_scenario(scenario, None, Path(tmp) / "calm")
        for seed in seeds:
            started = time.monotonic()
            plan = FaultPlan(seed=seed, kills=KILLS)
            try:
                outcome = run_scenario(scenario, plan, Path(tmp) / f"seed-{seed}")
                row = {"seed": seed, "events": outcome.events, "rpc": outcome.rpc, "problems": compare(reference, outcome)}
            except FaultRunError as exc:
                row = {"seed": seed, "events": [], "rpc": {}, "problems": [f"did not finish: {str(exc)[:1500]}"]}
            row["seconds"] = round(time.monotonic() - started, 1)
            runs.append(row)
            if progress := os.environ.get("FEDCHAIN_BENCH_PROGRESS"):  # each run as it ends: a long run survives a kill
                with open(progress, "a") as out:
                    out.write(json.dumps(row) + "\n")
    same = sum(not r["problems"] for r in runs)
    kills = sum(len(r["events"]) for r in runs)
    result = {
        "name": "faults", "quick": quick, "date": now(),
        "command": "python -m bench --only faults",
        "setup": {"clients": scenario.clients, "rounds": scenario.rounds, "samples_per_client": scenario.samples_per_client,
                  "kills_per_run": KILLS, "rpc": vars(FaultPlan(seed=0).rpc)},
        "reference": reference.summary(), "runs": runs,
        "targets": [{"target": "seeded fault runs ending as the undisturbed run", "goal": f"{len(runs)}/{len(runs)}",
                     "measured": f"{same}/{len(runs)}", "met": same == len(runs)}],
        "kills": kills,
    }
    result["markdown"] = markdown(result)
    return result


def markdown(r: dict[str, Any]) -> str:
    s = r["setup"]
    rpc = s["rpc"]
    lines = [
        f"A sealed MNIST task ({s['clients']} contributors, {s['rounds']} rounds, {s['samples_per_client']} samples each, "
        f"MLP) on Anvil and the embedded IPFS node, its validator and contributors as `fedchain` processes dialling the "
        f"chain through a proxy that fails {rpc['fail']:.0%} of JSON-RPC requests (HTTP 503), drops {rpc['drop']:.0%} "
        f"(half of them after forwarding: the chain acts, the client never hears) and delays {rpc['delay']:.0%} by up "
        f"to {rpc['max_delay']} s; {s['kills_per_run']} SIGKILLs per run, each after a seeded milestone (a contributor "
        "mid-training, after uploading or after claiming; the validator mid-scoring or at posting) or at a seeded "
        "time, the victim restarted after 0.2-3 s with the same state directory. A run passes when its models, reward "
        "roots and rewards equal the undisturbed run's, each update is submitted and counted once, every reward is "
        "claimed and the TaskManager holds nothing. `fedchain.faults.harness`; docs/FAULTS.md.",
        "",
        f"**{r['targets'][0]['measured']} runs ended as the undisturbed run** ({r['kills']} kills in all; the "
        f"undisturbed run took {r['reference']['seconds']} s).",
        "",
        "| seed | kills (time since start, victim, where) | RPC requests: failed / dropped / delayed of all | s | result |",
        "|---|---|---|---|---|",
    ]
    for run in r["runs"]:
        c = run["rpc"]
        total = sum(v for k, v in c.items() if k != "delayed")
        dropped = c.get("drop-before", 0) + c.get("drop-after", 0)
        events = "; ".join(e.replace(" kill ", " ") for e in run["events"]) or "-"
        verdict = "same as undisturbed" if not run["problems"] else "DIFFERS: " + " / ".join(run["problems"])[:300]
        lines.append(f"| {run['seed']} | {events} | {c.get('fail', 0)} / {dropped} / {c.get('delayed', 0)} of {total} "
                     f"| {run['seconds']} | {verdict} |")
    return "\n".join(lines)
