"""Fault injection: seeded runs of a small sealed MNIST task on a real devnet while the validator, the contributors
and the IPFS node are SIGKILLed and restarted and the chain's JSON-RPC endpoint drops, fails and delays requests
(fedchain.faults.harness). Each run must end as the undisturbed run of the same task: the same models, reward roots
and rewards, every update counted once, every reward claimed, nothing left in the TaskManager.

Then absences: a party (a contributor, the validator) SIGKILLed before it acts in a round and kept down until that
round's window closed, among the same kills and RPC faults, each compared with the undisturbed run without that party
in that round (fedchain.faults.harness.reference_for: it joins late, or sits the round out), computed once per absence.

    python -m bench --only faults          # the undisturbed run, then 20 seeded runs, then the absence runs
    (--quick skips it: tests/python/test_faults.py runs two seeded runs)
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench._util import now
from fedchain.faults.harness import (
    Absence,
    FaultPlan,
    FaultRunError,
    Outcome,
    Scenario,
    compare,
    reference_for,
    run_scenario,
)

SEEDS = 20
DEPTH = 3  # confirmations for the run whose roles act only on confirmed events
KILLS = 3
SCENARIO = Scenario(clients=2, rounds=2, samples_per_client=200)
# A missed window costs a run the whole window: a short one, still room for start-up, training and scoring here.
ABSENCE_SCENARIO = Scenario(clients=2, rounds=2, samples_per_client=200, window=40)
ABSENCES = (  # (who misses which round, the seeds of its disturbed runs)
    (Absence("client-1", round=0), (1, 2, 3)),
    (Absence("validator", round=0), (1, 2, 3)),
    (Absence("client-1", round=1), (4, 5)),
    (Absence("validator", round=1), (4, 5)),
)


def _judged(reference: Outcome | None, scenario: Scenario, plan: FaultPlan | None, workdir: Path,
            **row: Any) -> dict[str, Any]:
    """One run compared with `reference`: `row` with the plan's events, RPC counts, expired rounds, the problems
    (a run that could not finish is one) and the seconds; written to the progress file as it ends."""
    started = time.monotonic()
    try:
        outcome = run_scenario(scenario, plan, workdir)
        problems = compare(reference, outcome) if reference else ["no reference: its run did not finish"]
        row.update(events=outcome.events, rpc=outcome.rpc, expired=outcome.expired, problems=problems)
    except FaultRunError as exc:
        row.update(events=[], rpc={}, expired=[], problems=[f"did not finish: {str(exc)[:1500]}"])
    row["seconds"] = round(time.monotonic() - started, 1)
    _progress(row)
    return row


def _run_at_depth(scenario: Scenario, reference: Outcome, workdir: Path) -> dict[str, Any]:
    """The undisturbed run with every role acting only on events DEPTH blocks deep (fedchain.views.confirmed): on
    Anvil they mine empty blocks while they wait, and the outcome must not change."""
    return _judged(reference, replace(scenario, confirmations=DEPTH), None, workdir, confirmations=DEPTH)


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
            runs.append(_judged(reference, scenario, FaultPlan(seed=seed, kills=KILLS), Path(tmp) / f"seed-{seed}",
                                seed=seed))
        absences = run_absences(Path(tmp))
        deep = _run_at_depth(scenario, reference, Path(tmp) / "confirmations")
    same = sum(not r["problems"] for r in runs)
    kills = sum(len(r["events"]) for r in runs)
    absent_same = sum(not r["problems"] for r in absences["runs"])
    result = {
        "name": "faults", "quick": quick, "date": now(),
        "command": "python -m bench --only faults",
        "setup": {"clients": scenario.clients, "rounds": scenario.rounds, "samples_per_client": scenario.samples_per_client,
                  "kills_per_run": KILLS, "rpc": vars(FaultPlan(seed=0).rpc)},
        "reference": reference.summary(), "runs": runs,
        "targets": [{"target": "seeded fault runs ending as the undisturbed run", "goal": f"{len(runs)}/{len(runs)}",
                     "measured": f"{same}/{len(runs)}", "met": same == len(runs)},
                    {"target": "absence runs ending as the undisturbed run without the absent party",
                     "goal": f"{len(absences['runs'])}/{len(absences['runs'])}",
                     "measured": f"{absent_same}/{len(absences['runs'])}", "met": absent_same == len(absences["runs"])},
                    {"target": f"roles acting {DEPTH} blocks deep end as the undisturbed run", "goal": "same",
                     "measured": "same" if not deep["problems"] else "differs", "met": not deep["problems"]}],
        "kills": kills,
        "absences": absences,
        "confirmations": deep,
    }
    result["markdown"] = markdown(result)
    return result


def _progress(row: dict[str, Any]) -> None:
    if progress := os.environ.get("FEDCHAIN_BENCH_PROGRESS"):  # each run as it ends: a long run survives a kill
        with open(progress, "a") as out:
            out.write(json.dumps(row) + "\n")


def run_absences(workdir: Path) -> dict[str, Any]:
    """Each absence's reference (the undisturbed run without the party in that round), then its seeded runs."""
    scenario = ABSENCE_SCENARIO
    references, runs = [], []
    for absence, seeds in ABSENCES:
        name = f"{absence.party}-r{absence.round}"
        started = time.monotonic()
        try:
            reference: Outcome | None = run_scenario(reference_for(scenario, FaultPlan(seed=0, absences=(absence,))),
                                                     None, workdir / f"late-{name}")
            references.append({"absence": str(absence), "seconds": round(time.monotonic() - started, 1),
                               "expired": reference.expired, "events": reference.events,
                               "rewards": [r["total_rewards"] for r in reference.rounds]})
        except FaultRunError as exc:
            reference = None
            references.append({"absence": str(absence), "seconds": round(time.monotonic() - started, 1),
                               "problem": f"did not finish: {str(exc)[:1500]}"})
        for seed in seeds:
            runs.append(_judged(reference, scenario, FaultPlan(seed=seed, kills=KILLS, absences=(absence,)),
                                workdir / f"{name}-seed-{seed}", absence=str(absence), seed=seed))
    return {"window": scenario.window, "references": references, "runs": runs}


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
    if "absences" in r:
        lines += ["", absence_markdown(r["absences"], r["targets"][1]["measured"])]
    if "confirmations" in r:
        d = r["confirmations"]
        verdict = "the same models, reward roots and rewards" if not d["problems"] else "DIFFERS: " + " / ".join(
            d["problems"])[:300]
        lines += ["", f"**Confirmations.** The undisturbed task again with every role acting only on events "
                      f"{d['confirmations']} blocks deep (`--confirmations {d['confirmations']}`: a round collected once "
                      "its close is that deep, a base model trained on and results claimed once their round's "
                      "opening and results are; on Anvil the waiting roles mine empty blocks): "
                      f"{verdict} as the run at depth 0 ({d['seconds']} s)."]
    return "\n".join(lines)


def absence_markdown(a: dict[str, Any], measured: str) -> str:
    """The absence runs' table: who missed which round, what else the plan did, and the verdict."""
    lines = [
        f"**Missed windows.** The same task with {a['window']} s windows; a party is SIGKILLed before it acts in a "
        "round (a contributor as it starts training, the validator as it starts aggregating) and restarted only once "
        "the round's window closed (a contributor's: the submission deadline; the validator's: the aggregation "
        "deadline, so the round expires), among the same seeded kills and RPC faults. Each run is compared with the "
        "undisturbed run without that party in that round (in round 0 it starts once the window closed; in round 1 "
        "it is stopped as it reaches the round and started again once the window closed); the absence itself is "
        f"checked on chain. **{measured} absence runs ended as the undisturbed run without the absent party.**",
        "",
        "| reference (undisturbed, without the party) | s | expired rounds | rewards per finalized round (FED) |",
        "|---|---|---|---|",
    ]
    for ref in a["references"]:
        if "problem" in ref:
            lines.append(f"| {ref['absence']} | {ref['seconds']} | - | {ref['problem'][:300]} |")
            continue
        rewards = " / ".join(f"{v / 10**18:g}" for v in ref["rewards"]) or "-"
        lines.append(f"| {ref['absence']} | {ref['seconds']} | {ref['expired'] or 'none'} | {rewards} |")
    lines += ["", "| absence | seed | what the plan did (time since start, party, where) | RPC failed / dropped / delayed "
              "of all | expired rounds | s | result |", "|---|---|---|---|---|---|---|"]
    for run in a["runs"]:
        c = run["rpc"]
        total = sum(v for k, v in c.items() if k != "delayed")
        dropped = c.get("drop-before", 0) + c.get("drop-after", 0)
        events = "; ".join(run["events"]) or "-"
        verdict = ("same as undisturbed without it" if not run["problems"]
                   else "DIFFERS: " + " / ".join(run["problems"])[:300])
        lines.append(f"| {run['absence']} | {run['seed']} | {events} | {c.get('fail', 0)} / {dropped} / "
                     f"{c.get('delayed', 0)} of {total} | {run['expired'] or 'none'} | {run['seconds']} | {verdict} |")
    return "\n".join(lines)
