"""Benchmark: the stateful contract suite's long profile (tests/contracts/test_stateful.py, Hypothesis), run once.

    python -m bench --only stateful                # runs it under nice: hours on a loaded 2-core machine
    python -m bench.stateful --record DIR SECONDS  # records a run made by hand (DIR: progress.txt, out.txt)

The long profile (FEDCHAIN_HYPOTHESIS_PROFILE=long: 300 examples of up to 40 steps, >= 10,000 steps) checks the
accounting invariants after every step (stakes, locks, claims, refunds, slashes, displacement). The suite appends its
step count to FEDCHAIN_STATEFUL_PROGRESS every 100 steps, so a run stopped early still says how far it got; a failing
invariant is reported by Hypothesis at the end, and is saved at once in the example database (.hypothesis/examples),
which is how a stopped run shows that it found none.
Quick: skipped (the default profile runs in `make test`).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._util import ROOT, now

COMMAND = "FEDCHAIN_HYPOTHESIS_PROFILE=long nice -n 10 ape test --network ethereum:local:foundry tests/contracts/test_stateful.py -s"
TARGET_STEPS = 10_000


def run(quick: bool) -> dict:
    if quick:
        return {"name": "stateful", "quick": True, "skipped": "the long profile takes hours; `make test` runs the default"}
    with tempfile.TemporaryDirectory() as tmp:
        progress = Path(tmp) / "progress.txt"
        env = {**os.environ, "FEDCHAIN_HYPOTHESIS_PROFILE": "long", "FEDCHAIN_STATEFUL_PROGRESS": str(progress)}
        started = time.monotonic()
        proc = subprocess.run(
            ["nice", "-n", "10", str(Path(sys.executable).parent / "ape"), "test", "--network",
             "ethereum:local:foundry", "tests/contracts/test_stateful.py", "-q", "-s"],
            cwd=ROOT, env=env, capture_output=True, text=True,
        )
        return record(progress, proc.stdout + proc.stderr, time.monotonic() - started, finished=True)


def record(progress: Path, output: str, seconds: float, *, finished: bool) -> dict[str, Any]:
    """The section's result from a run's progress file and output (`finished`: it ran to its end)."""
    lines = progress.read_text().splitlines() if progress.exists() else []
    last = lines[-1] if lines else ""
    steps_match = re.search(r"stateful steps \(long profile\): (\d+)", output)
    steps = int(steps_match.group(1)) if steps_match else int(last.split()[0]) if last else 0
    passed = bool(re.search(r"\b1 passed\b", output)) and "failed" not in output
    falsified = "Falsifying example" in output or bool(list((ROOT / ".hypothesis" / "examples").glob("*")))
    final = re.search(r"stateful actions that succeeded \(long profile\): (\{.*\})", output)  # at the end, if it ended
    successes = final.group(1) if final else last.split("successes ", 1)[1] if "successes " in last else ""
    status = ("passed" if passed else "FAILED") if finished else (
        "stopped before its end: no failing example found so far" if not falsified else "a failing example was found")
    rows = [
        "| profile | steps run | of at least | wall time | result |",
        "|---|---:|---:|---:|---|",
        f"| long (300 x 40) | {steps:,} | {TARGET_STEPS:,} | {seconds / 60:.0f} min | {status} |",
    ]
    if successes:
        rows += ["", f"Actions that succeeded (the rest were refused by the contracts, as they should be): {successes}"]
    return {
        "name": "stateful", "quick": False, "when": now(), "seconds": round(seconds, 1), "finished": finished,
        "steps": steps, "falsified": falsified, "passed": passed if finished else None,
        "targets": [
            {"target": "steps run", "goal": f"at least {TARGET_STEPS:,}", "measured": f"{steps:,}",
             "met": steps >= TARGET_STEPS},
            {"target": "invariants broken", "goal": "none", "measured": "a failing example" if falsified else "none",
             "met": not falsified},
        ],
        "markdown": "\n".join(rows),
    }


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--record":
        import json

        from bench._util import machine, versions

        folder, seconds = Path(sys.argv[2]), float(sys.argv[3])
        out = (folder / "out.txt").read_text() if (folder / "out.txt").exists() else ""
        result = record(folder / "progress.txt", out, seconds, finished="exit " in out)
        result.update(date=now(), command=COMMAND, machine=machine(), versions=versions(), bench_seconds=result["seconds"])
        (ROOT / "bench" / "results" / "stateful.json").write_text(json.dumps(result, indent=2) + "\n")
        print(result["markdown"])
    else:
        print(run(quick=False)["markdown"])
