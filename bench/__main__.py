"""Run the benchmarks and write bench/results/<name>.json and BENCHMARKS.md.

    python -m bench                       # every section (slow: many minutes), then BENCHMARKS.md
    python -m bench --quick               # the reduced run (smoke test), into .cache/bench-quick/ (git-ignored)
    python -m bench --only anatomy,scale  # some sections; BENCHMARKS.md keeps the other sections' last results
    python -m bench --only stateful       # the stateful contract suite's long profile (hours; never run by default)

Each section is a module bench/<name>.py exposing `run(quick: bool) -> dict` (JSON-serialisable, with a "markdown"
table). A section that fails is recorded as not available (with the error) and the run goes on. A section that
reports itself skipped (no CUDA device for `gpu`) does not replace an earlier real result of that section: the
GPU figures, measured on a machine with an NVIDIA GPU, stay in BENCHMARKS.md with their own machine and date.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from importlib import import_module
from pathlib import Path
from typing import Any

from bench._util import ROOT, machine, now, versions

SECTIONS = ["gas", "aggregation", "anatomy", "quality", "robustness", "scale", "gpu", "text", "committee", "startup",
            "faults", "economics", "scoring", "unlabelled", "privacy", "stateful"]
# Run only when named (`--only stateful`): the long stateful contract run takes hours.
ON_REQUEST = {"stateful"}
TITLES = {
    "gas": "1. Gas per contract function",
    "aggregation": "2. Aggregation against the memory-bandwidth floor and Flower",
    "anatomy": "3. A round's anatomy",
    "quality": "4. Model quality: fedchain FedAvg, Flower FedAvg, centralized",
    "robustness": "5. Robustness: attack mix x rule",
    "scale": "6. Scale: seconds per round from 5 to 100 contributors (simulation mode), committee at 100",
    "gpu": "7. GPU",
    "text": "8. Text: next-character prediction on Shakespeare, one client per speaking role",
    "committee": "9. Validator committees: incentives with colluding, lazy and offline members",
    "startup": "10. Start-up: from spawning the demo's processes to its first result",
    "faults": "11. Fault injection: parties killed and restarted, a flaky chain endpoint",
    "economics": "12. Economic attacks: inflated sample counts",
    "scoring": "13. Scoring that scales: gradient-shapley against TMC-Shapley on the same rounds",
    "unlabelled": "14. Learning from unlabelled data: pseudo-labelling between the labelled-only floor and the all-labels ceiling",
    "privacy": "15. Differential privacy: accuracy against epsilon, fedchain beside Opacus centrally",
    "stateful": "16. Stateful contract suite, long profile",
}
RESULTS = ROOT / "bench" / "results"
QUICK_RESULTS = ROOT / ".cache" / "bench-quick"  # ignored by git: quick runs never replace the measured results


def run_section(name: str, quick: bool) -> dict[str, Any]:
    started = time.perf_counter()
    before = machine()  # the load average as the section starts
    try:
        module = import_module(f"bench.{name}")
        result = module.run(quick)
        if not isinstance(result, dict):
            raise TypeError(f"bench.{name}.run returned {type(result).__name__}, expected dict")
    except Exception as exc:  # noqa: BLE001 - one broken section must not stop the others
        result = {"name": name, "error": f"{type(exc).__name__}: {exc}"[:2000],
                  "traceback": traceback.format_exc()[-4000:],
                  "markdown": f"Not available: `{type(exc).__name__}: {str(exc)[:300]}`"}
    result.setdefault("name", name)
    result.setdefault("quick", quick)
    result.setdefault("date", now())
    result.setdefault("command", f"python -m bench --only {name}" + (" --quick" if quick else ""))
    result.setdefault("machine", before)
    if not result["machine"].get("cpu"):  # a section with its own, shorter machine record
        result["machine"] = {**before, **result["machine"]}
    result["load_average_before"] = before.get("load_average")
    result.setdefault("versions", json.loads(os.environ["BENCH_VERSIONS"]) if os.environ.get("BENCH_VERSIONS") else versions())
    result.setdefault("markdown", "")
    result["bench_seconds"] = round(time.perf_counter() - started, 1)
    return result


def groups(names: list[str], quick: bool) -> list[list[str]]:
    """Sections run in child processes, one section each, so that no section's process-wide settings (thread counts,
    malloc tuning) or warm caches leak into the next one's timings. Quick mode keeps robustness and scale together:
    scale's quick row reuses robustness's small demo (it is a smoke test, not a measurement)."""
    if quick and "robustness" in names and "scale" in names:
        rest = [[n] for n in names if n not in ("robustness", "scale")]
        return rest[: SECTIONS.index("robustness")] + [["robustness", "scale"]] + rest[SECTIONS.index("robustness"):]
    return [[n] for n in names]


def run_group(group: list[str], quick: bool, run_versions: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Run sections in a fresh `python -m bench --child` process; their results, or errors if it died."""
    with tempfile.TemporaryDirectory(prefix="fedchain-bench-") as tmp:
        cmd = [sys.executable, "-m", "bench", "--child", ",".join(group), tmp] + (["--quick"] if quick else [])
        env = {**os.environ, "BENCH_VERSIONS": json.dumps(run_versions or {}), "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "python"), os.environ.get("PYTHONPATH")]))}
        proc = subprocess.run(cmd, cwd=ROOT, env=env)
        out = {}
        for name in group:
            path = Path(tmp) / f"{name}.json"
            if path.exists():
                out[name] = json.loads(path.read_text())
            else:
                out[name] = {"name": name, "quick": quick, "error": f"the section's process exited with {proc.returncode}",
                             "markdown": f"Not available: the section's process exited with {proc.returncode}."}
        return out


def _keep_previous(path: Path, result: dict[str, Any]) -> bool:
    """A skipped result does not overwrite an earlier measured one."""
    if "skipped" not in result or not path.exists():
        return False
    try:
        old = json.loads(path.read_text())
    except ValueError:
        return False
    return "skipped" not in old and "error" not in old


def write_markdown(results_dir: Path, out: Path, run_machine: dict, run_versions: dict) -> None:
    sections = {}
    for name in SECTIONS:
        path = results_dir / f"{name}.json"
        if path.exists():
            sections[name] = json.loads(path.read_text())
    m, v = run_machine, run_versions
    lines = [
        "# fedchain benchmarks",
        "",
        "Generated by `make bench` (`python -m bench`); each table names the command that reproduces it. Figures are",
        "medians of repeated runs with their spread (min-max) unless a table says otherwise; comparisons are ratios taken",
        "in the same run. The raw figures are in bench/results/*.json.",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory_GB']} GB RAM ({m['platform']})",
        f"- Versions: Python {v['python']}, torch {v['torch']}, numpy {v['numpy']}, solc {v.get('solc')}, "
        f"anvil {v.get('anvil')}, flwr {v.get('flwr')} (in .venv-flower), fedchain {v.get('fedchain')}",
        f"- Generated: {now()}",
        "",
    ]
    def load(r: dict) -> list | None:
        return r.get("load_average_before") or (r.get("machine") or {}).get("load_average")

    busy = sorted({n for n, r in sections.items() if load(r) and load(r)[0] > ((r.get("machine") or {}).get("cores") or 1)})
    if busy:
        lines += [f"Note: the machine was busy during these sections (1-minute load average above its core count when "
                  f"recorded: other work was running, or, for scale, the section's own processes): {', '.join(busy)}. Their timings are noisier and slower than on an idle machine; "
                  "figures that are not timings (gas, accuracy, rewards) do not depend on it.", ""]
    summary = _targets_summary(sections)
    if summary:
        lines += ["## Targets at a glance", "", "| section | target | measured | met |", "|---|---|---|---|", *summary, ""]
    for name in SECTIONS:
        lines.append(f"## {TITLES[name]}")
        lines.append("")
        r = sections.get(name)
        if r is None:
            lines += ["Not run yet: `python -m bench --only " + name + "`.", ""]
            continue
        rm = r.get("machine") or {}
        if r.get("load_average_before"):
            where = f", load average (1, 5, 15 min) as the section started {r['load_average_before']}"
        elif rm.get("load_average"):
            where = f", load average (1, 5, 15 min) as the section ended {rm['load_average']}"
        else:
            where = ""
        lines.append(f"Measured {r.get('date')} on {rm.get('cpu', m['cpu'])} ({rm.get('cores', m['cores'])} cores)" + where
                     + f"; the section took {r.get('bench_seconds', '?')} s. Reproduce: `{r.get('command')}`.")
        if r.get("quick"):
            lines.append("(quick run: reduced sizes, a smoke test rather than a measurement)")
        if r.get("note"):
            lines += ["", f"Note: {r['note']}"]
        lines += ["", r.get("markdown") or "", ""]
    out.write_text("\n".join(lines).rstrip() + "\n")


def _targets_summary(sections: dict[str, dict]) -> list[str]:
    """One row per target that a section judged (its "targets": a list of dicts, or a {name: met} map)."""
    rows = []
    for name in SECTIONS:
        targets = (sections.get(name) or {}).get("targets")
        if isinstance(targets, dict):
            targets = [{"target": k, "met": v} for k, v in targets.items()]
        for t in targets or []:
            if not isinstance(t, dict) or "met" not in t or ("goal" not in t and "goal_points" not in t and len(t) > 2):
                continue
            measured = t.get("measured", t.get("measured_points"))
            if isinstance(measured, float):
                measured = f"{measured:.4g}"
            met = "n/a" if t["met"] is None else ("yes" if t["met"] else "**NO**")
            rows.append(f"| {name} | {t['target']} | {'' if measured is None else measured} | {met} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Run fedchain's benchmarks.")
    parser.add_argument("--quick", action="store_true", help="reduced sizes (about a minute or two); results go to .cache/bench-quick/")
    parser.add_argument("--only", default="", help=f"comma-separated sections: {','.join(SECTIONS)}")
    parser.add_argument("--results-dir", type=Path, default=None, help="where the JSON files go")
    parser.add_argument("--child", nargs=2, metavar=("SECTIONS", "OUTDIR"), help=argparse.SUPPRESS)
    parser.add_argument("--markdown", type=Path, default=None,
                        help="the Markdown file to regenerate (default: BENCHMARKS.md for a full run, none for --quick)")
    args = parser.parse_args(argv)
    if args.child:  # inside a section's own process
        for name in args.child[0].split(","):
            result = run_section(name, args.quick)
            (Path(args.child[1]) / f"{name}.json").write_text(json.dumps(result, default=str))
        return 0
    names = [n.strip() for n in args.only.split(",") if n.strip()] or [n for n in SECTIONS if n not in ON_REQUEST]
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {unknown}; known: {', '.join(SECTIONS)}")
    results_dir = args.results_dir or (QUICK_RESULTS if args.quick else RESULTS)
    results_dir.mkdir(parents=True, exist_ok=True)
    markdown = args.markdown if args.markdown is not None else (None if args.quick else ROOT / "BENCHMARKS.md")
    run_machine, run_versions = machine(), versions()
    failed = []
    for group in groups(names, args.quick):
        print(f"== {', '.join(group)}{' (quick)' if args.quick else ''} ...", file=sys.stderr, flush=True)
        for name, result in run_group(group, args.quick, run_versions).items():
            path = results_dir / f"{name}.json"
            if _keep_previous(path, result):
                print(f"   {name}: {result['skipped']}; keeping the earlier result in {path}", file=sys.stderr)
            else:
                path.write_text(json.dumps(result, indent=1, default=str) + "\n")
            if "error" in result:
                failed.append(name)
                print(f"   {name}: not available: {result['error'][:300]}", file=sys.stderr)
            else:
                print(f"   {name}: done in {result.get('bench_seconds')} s", file=sys.stderr)
                print(result.get("markdown", ""), flush=True)
    if markdown is not None:
        write_markdown(results_dir, markdown, run_machine, run_versions)
        print(f"wrote {markdown}", file=sys.stderr)
    return 1 if failed and len(failed) == len(names) else 0


if __name__ == "__main__":
    sys.exit(main())
