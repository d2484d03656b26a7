"""Benchmark: the demo's start-up, from spawning its role processes to the first result mined.

    python -m bench --only startup [--quick]

Runs the default demo (`fedchain demo`: 5 contributors, MNIST, one validator, a devnet of its own; the full run
keeps its 5 rounds, quick runs 1) RUNS times with the role processes forked from the warm launcher
(`fedchain.sim.launcher`, the default) and RUNS times started cold as fresh interpreters (FEDCHAIN_LAUNCHER=0, how
every demo started before), alternately, and reports from each run's report.json (`startup`) the median (min-max)
of: seconds from the first spawn call (waiting for the launcher's imports included) to the first RoundFinalized
seen by the demo (it polls every 0.3 s); from the task's start (data, keys, accounts; after the devnet) to that
result; the spawn calls alone; and the launcher's own import seconds (paid once, while the devnet starts).

Then `python -X importtime` figures for the role processes (PYTHONPROFILEIMPORTTIME=1 in one more demo run of
each kind, 1 round, not timed; quick: 1 run of each kind, 1 round, which is also profiled): the seconds a contributor's and the validator's process spend importing (the sum
of the self times in its log) and the largest top-level packages, cold and launched.

Target (issue 18): the first result mined within 8 s of spawning the processes, median of 3.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._util import ROOT, fmt_stats, now, stats

RUNS = 3
TARGET_SECONDS = 8.0
FIELDS = ["spawn_to_first_result_seconds", "task_start_to_first_result_seconds", "spawn_seconds",
          "launcher_import_seconds"]
IMPORT_LINE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")


def _demo(workdir: Path, launcher: bool, rounds: int, importtime: bool = False) -> dict[str, Any]:
    """One default demo in a subprocess; its report.json's startup figures and where its logs are."""
    env = {**os.environ, "FEDCHAIN_LAUNCHER": "1" if launcher else "0", "PYTHONPATH": str(ROOT / "python")}
    if importtime:
        env["PYTHONPROFILEIMPORTTIME"] = "1"
    report = workdir / "report.json"
    cmd = [sys.executable, "-m", "fedchain.cli.main", "demo", "--rounds", str(rounds), "--workdir", str(workdir),
           "--report", str(report), "--plot", str(workdir / "report.png")]
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"the demo failed ({proc.returncode}): {proc.stdout[-1500:]} {proc.stderr[-1500:]}")
    result = json.loads(report.read_text())["startup"]
    result["demo_seconds"] = round(time.perf_counter() - started, 1)
    result["final_accuracy"] = json.loads(report.read_text())["outcome"]["final_accuracy"]
    result["logs"] = str(next(workdir.glob("task-*/logs")))
    return result


def import_profile(log: Path, top: int = 6) -> dict[str, Any]:
    """Seconds of imports in a process's log (python -X importtime lines: the sum of self times), by package."""
    by_package: dict[str, int] = {}
    total = count = 0
    for line in log.read_text(errors="replace").splitlines():
        m = IMPORT_LINE.match(line)
        if not m:
            continue
        self_us, name = int(m.group(1)), m.group(4)
        total += self_us
        count += 1
        package = name.split(".")[0]
        by_package[package] = by_package.get(package, 0) + self_us
    largest = sorted(by_package.items(), key=lambda kv: -kv[1])[:top]
    return {"seconds": round(total / 1e6, 3), "modules": count,
            "largest": [{"package": p, "seconds": round(us / 1e6, 3)} for p, us in largest]}


def run(quick: bool) -> dict[str, Any]:
    runs = 1 if quick else RUNS
    rounds = 1 if quick else 5
    timed: dict[str, list[dict[str, Any]]] = {"launcher": [], "cold": []}
    profiles: dict[str, dict[str, Any]] = {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="fedchain-bench-startup-") as tmp:
        for i in range(runs):
            for kind in ("launcher", "cold"):  # alternately: the machine's load changes over minutes
                # quick: one run of each kind, which also profiles imports (a smoke test, not a measurement)
                timed[kind].append(_demo(Path(tmp) / f"{kind}-{i}", kind == "launcher", rounds, importtime=quick))
        for kind in ("launcher", "cold"):
            logs = Path(timed[kind][0]["logs"]) if quick else Path(
                _demo(Path(tmp) / f"{kind}-importtime", kind == "launcher", 1, importtime=True)["logs"])
            profiles[kind] = {"contributor": import_profile(logs / "client-0.log"),
                              "validator": import_profile(logs / "validator.log")}
    for rows in timed.values():
        for r in rows:
            r.pop("logs", None)
    figures = {kind: {f: stats([r[f] for r in rows if r.get(f) is not None], 3) for f in [*FIELDS, "demo_seconds"]}
               for kind, rows in timed.items()}
    best = figures["launcher"]["spawn_to_first_result_seconds"]["median"]
    cold = figures["cold"]["spawn_to_first_result_seconds"]["median"]
    result: dict[str, Any] = {
        "name": "startup", "quick": quick, "date": now(), "runs": timed, "figures": figures,
        "import_profiles": profiles, "rounds": rounds, "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "targets": [{"target": "spawn to first result, median (launcher)", "goal": TARGET_SECONDS,
                     "measured": best, "met": None if best is None else best <= TARGET_SECONDS}],
        "speedup": None if not best or cold is None else round(cold / best, 2),
    }
    result["markdown"] = markdown(result)
    return result


def markdown(r: dict[str, Any]) -> str:
    f = r["figures"]
    n = len(r["runs"]["launcher"])
    lines = [
        f"The default demo ({r['rounds']} round(s) each), {n} run(s) per kind, alternately; load average "
        f"{r['load_average_before']} before and {r['load_average_after']} after. Seconds, median (min-max).",
        "",
        "| role processes | spawn to first result | task start to first result | spawn calls | launcher imports "
        "(once, during the devnet's start) | whole demo |",
        "|---|---|---|---|---|---|",
    ]
    for kind, label in (("launcher", "forked from the warm launcher"), ("cold", "fresh interpreters (before)")):
        g = f[kind]
        lines.append(f"| {label} | {fmt_stats(g['spawn_to_first_result_seconds'])} | "
                     f"{fmt_stats(g['task_start_to_first_result_seconds'])} | {fmt_stats(g['spawn_seconds'])} | "
                     f"{fmt_stats(g['launcher_import_seconds']) if kind == 'launcher' else '-'} | "
                     f"{fmt_stats(g['demo_seconds'], '{:.1f}')} |")
    if r.get("speedup"):
        lines += ["", f"Spawn to first result: {r['speedup']}x faster with the launcher (medians, same session)."]
    lines += ["", "Imports of a role process (`python -X importtime`: seconds of the self times in its log, and the "
              "largest packages), in a 1-round demo of each kind:", "",
              "| process | cold: seconds (modules) | cold: largest | launched: seconds (modules) | launched: largest |",
              "|---|---|---|---|---|"]
    for role in ("contributor", "validator"):
        cells = []
        for kind in ("cold", "launcher"):
            p = r["import_profiles"][kind][role]
            largest = ", ".join(f"{x['package']} {x['seconds']:.2f}" for x in p["largest"][:4])
            cells += [f"{p['seconds']:.2f} ({p['modules']})", largest]
        lines.append(f"| {role} | " + " | ".join(cells) + " |")
    t = r["targets"][0]
    met = "n/a" if t["met"] is None else ("yes" if t["met"] else "**NO**")
    lines += ["", "| target | goal | measured (median) | met |", "|---|---|---|---|",
              f"| {t['target']} | <= {t['goal']:.0f} s | {t['measured']} s | {met} |"]
    return "\n".join(lines)


def main() -> None:
    quick = "--quick" in sys.argv[1:]
    result = run(quick)
    print(result["markdown"])


if __name__ == "__main__":
    main()
