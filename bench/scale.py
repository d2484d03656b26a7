"""Benchmark: seconds per round and each phase's share at 5, 20, 50 and 100 contributors, validator memory, and a
100-contributor, 10-round task with a committee, in simulation mode.

    python -m bench --only scale [--quick]

Each row is one `fedchain demo` run (`fedchain.sim.demo.run_demo`) on one devnet shared by the section's runs, all
on this machine's cores, sealed updates, the CNN, Dirichlet(0.5) shards, fedavg:
- the default demo (5 contributor processes, TMC-Shapley, 5 rounds): issue 5's target, scoring at most 20% of its
  rounds (skipped with SCALE_DEFAULT_DEMO=0);
- simulation mode (`--simulate`: the contributors dealt over one process per core, fedchain.sim.swarm) with one
  validator process and gradient-shapley scoring at 5, 20, 50 and 100 contributors, 2 rounds each (3 at 100):
  seconds per round after the first and where they go;
- simulation mode at 100 contributors for 10 rounds with a committee of 3 validator processes (each member fetches,
  scores and publishes): the whole task's wall time (target: at most 10 minutes) and the members' peak memory
  (target: at most 1.5 GB).
Phases: the contributors' share is the slowest swarm process's time from its first training to its last submission
(train, seal, pin, stake and submit, two contributors at a time per process); the validator's phases come from its
checkpoints (a committee's: each phase's slowest member); "wait" is the rest of the round: polling, the committee's
windows, block times. Seconds per round: the time between consecutive finalizations as the demo observes them
(round 0 also holds the processes' start-up and staking, so it is reported apart).
While it runs, a sampler thread finds the validator's processes among this process's children (their command
lines hold `fedchain.cli.main validate`) and reads their peak resident set (the kernel's VmHWM) every 0.2 s; the
contributors' processes (`contribute`, or `fedchain.sim.swarm` in simulation mode) likewise.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench._util import fmt_stats, now, stats

TARGET_SCORE_SHARE = 0.20


class ProcessSampler(threading.Thread):
    """Peak resident memory (VmHWM) of this process's `fedchain.cli.main` children, by role, sampled every period."""

    def __init__(self, period: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.period = period
        self.peaks: dict[int, tuple[str, int]] = {}  # pid -> (role, peak bytes)
        self._halt = threading.Event()

    @staticmethod
    def _hwm(pid: int) -> int:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except (OSError, ValueError):
            pass
        return 0

    @staticmethod
    def _launched_role(pid: int) -> str | None:
        """A role process forked from the demo's launcher keeps the launcher's command line: its role is in the name
        of the log file its stdout goes to (validator*.log; every other role log is a contributor's). The launcher
        itself writes to no role log."""
        try:
            log = Path(os.readlink(f"/proc/{pid}/fd/1"))
        except OSError:
            return None
        if log.suffix != ".log" or log.parent.name != "logs":
            return None
        return "validator" if log.name.startswith("validator") else "contributor"

    def run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._halt.is_set():
            try:
                children = me.children(recursive=True)
            except psutil.Error:
                children = []
            for child in children:
                try:
                    cmd = child.cmdline()
                except psutil.Error:
                    continue
                if "fedchain.sim.swarm" in cmd:
                    role: str | None = "contributor"
                elif "fedchain.sim.launcher" in cmd:
                    role = self._launched_role(child.pid)
                elif "fedchain.cli.main" not in cmd:
                    continue
                else:
                    role = "validator" if "validate" in cmd else "contributor" if "contribute" in cmd else None
                if role is None:
                    continue
                peak = self._hwm(child.pid)
                if peak > self.peaks.get(child.pid, (role, 0))[1]:
                    self.peaks[child.pid] = (role, peak)
            self._halt.wait(self.period)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)

    def peak_mb(self, role: str) -> float | None:
        values = [b for r, b in self.peaks.values() if r == role]
        return round(max(values) / 1e6, 1) if values else None


@contextlib.contextmanager
def shared_devnet(work: Path) -> Iterator[Any]:
    from fedchain.sim.devnet import running_devnet

    with running_devnet(work / "devnet") as net:
        yield net


_LAST_QUICK: dict[str, Any] = {}  # quick mode: robustness's run, reused by scale in the same process


def measured_demo(net, work: Path, **config: Any) -> dict[str, Any]:
    """Run one demo on `net` with DemoConfig(**config); the report plus wall time and processes' peak memory."""
    from rich.console import Console

    from fedchain.sim.demo import DemoConfig, run_demo

    tag = f"run-{int(time.time() * 1000)}"
    cfg = DemoConfig(rpc_url=net.rpc_url, ipfs_api=net.ipfs_api, deployments=net.deployments_path,
                     workdir=work / tag, report=work / tag / "report.json", plot=None, **config)
    sampler = ProcessSampler()
    sampler.start()
    started = time.perf_counter()
    try:
        report = run_demo(cfg, Console(file=io.StringIO(), width=200))
    finally:
        wall = time.perf_counter() - started
        sampler.stop()
    out = {"report": report, "wall_seconds": round(wall, 2), "validator_peak_MB": sampler.peak_mb("validator"),
           "contributor_peak_MB": sampler.peak_mb("contributor"), "config": {k: v for k, v in config.items()}}
    _LAST_QUICK["run"] = out
    return out


VALIDATOR_PHASES = ("fetch_verify", "aggregate", "score", "evaluate", "publish", "post")
TARGET_TASK_SECONDS = 600.0  # 100 contributors, 10 rounds
TARGET_VALIDATOR_MB = 1500.0  # validator (member) peak memory at 100 contributors
TARGET_SCORE_SECONDS_50 = 2.0
DEFAULT_DEMO = os.environ.get("SCALE_DEFAULT_DEMO", "1") != "0"


def _row(n: int, m: dict[str, Any], label: str) -> dict[str, Any]:
    rep = m["report"]
    secs = [r["seconds"] for r in rep["rounds"]]
    phases = [r.get("phases", {}) for r in rep["rounds"]]
    contrib = [r.get("contributor_phases", {}) for r in rep["rounds"]]
    later = slice(1, None) if len(secs) > 1 else slice(None)
    score_shares = [p.get("score", math.nan) / s if s else math.nan for p, s in zip(phases, secs)]  # stats() drops nan
    shares: dict[str, list[float]] = {}
    for p, c, s in zip(phases[later], contrib[later], secs[later]):
        if not s:
            continue
        parts = {"contributors": c.get("wall", math.nan), **{k: p.get(k, 0.0) for k in VALIDATOR_PHASES}}
        known = sum(v for v in parts.values() if not math.isnan(v))
        parts["wait"] = max(0.0, s - known)
        for k, v in parts.items():
            shares.setdefault(k, []).append(v / s)
    return {
        "label": label, "contributors": n, "rounds": len(rep["rounds"]), "config": m["config"],
        "seconds_per_round": stats(secs[later], 2),
        "first_round_seconds": round(secs[0], 2),
        "validator_seconds": {k: stats([p.get(k) for p in phases[later] if k in p], 3) for k in VALIDATOR_PHASES},
        "contributor_seconds": {k: stats([c.get(k) for c in contrib[later] if k in c], 3)
                                for k in ("wall", "train", "stake", "submit")},
        "phase_share": {k: stats(v, 3) for k, v in shares.items()},
        "validator_peak_MB": m["validator_peak_MB"], "contributor_peak_MB": m["contributor_peak_MB"],
        "final_accuracy": rep["rounds"][-1]["test_accuracy"], "wall_seconds": m["wall_seconds"],
        "accepted": [sum(u["status"] == "accepted" for u in r["updates"]) for r in rep["rounds"]],
        "score_share": stats(score_shares[later], 3),  # round 0 holds the processes' start-up
        "outcome": rep.get("outcome"),
    }


def run(quick: bool) -> dict:
    rows = []
    reused = _LAST_QUICK.get("run") if quick else None
    plan: list[tuple[str, int, dict[str, Any]]]
    if quick:
        plan = [("simulate", 6, {"clients": 6, "rounds": 2, "simulate": True, "scoring": "gradient-shapley"})]
    else:
        # The default demo's row (issue 5's target) is skipped with SCALE_DEFAULT_DEMO=0.
        plan = [("default demo (processes, tmc-shapley)", 5, {"clients": 5, "rounds": 5})] if DEFAULT_DEMO else []
        plan += [("simulate, gradient-shapley", n, {"clients": n, "rounds": 3 if n == 100 else 2, "simulate": True,
                                                     "scoring": "gradient-shapley"}) for n in (5, 20, 50, 100)]
        plan += [("simulate, committee of 3, gradient-shapley", 100,
                  {"clients": 100, "rounds": 10, "simulate": True, "scoring": "gradient-shapley", "validators": 3})]
    if reused is not None:
        # quick mode is a smoke test: reuse the robustness section's small demo (same process, same measurement code)
        cfg = reused["config"]
        rows.append(_row(cfg.get("clients", 0) + sum(cfg.get("attack", {}).values()), reused, "robustness --quick")
                    | {"reused_from": "robustness --quick"})
    with tempfile.TemporaryDirectory(prefix="fedchain-bench-scale-") as tmp, shared_devnet(Path(tmp)) as net:
        for label, n, config in plan:
            print(f"scale: {label}, {n} contributors", flush=True)
            try:
                rows.append(_row(n, measured_demo(net, Path(tmp), seed=0, timeout=1800, **config), label))
            except Exception as exc:  # noqa: BLE001 - one failed run must not lose the others' rows
                rows.append({"label": label, "contributors": n, "error": f"{type(exc).__name__}: {exc}"[:500]})
    result = {"name": "scale", "quick": quick, "date": now(),
              "command": "python -m bench --only scale" + (" --quick" if quick else ""),
              "setup": {"architecture": "cnn", "rule": "fedavg", "sealed": True, "alpha": 0.5,
                        "mode": "fedchain demo on a shared devnet, processes on this machine"},
              "rows": rows}
    result["targets"] = targets(result)
    result["markdown"] = markdown(result)
    return result


def targets(r: dict) -> list[dict[str, Any]]:
    out = []
    ok = [row for row in r["rows"] if "error" not in row]
    default = [row for row in ok if row["label"].startswith("default demo")]
    if default and default[0]["score_share"]["median"] is not None:
        share = default[0]["score_share"]["max"]
        out.append({"target": "scoring share of a default round (5 contributors, worst round)", "goal": TARGET_SCORE_SHARE,
                    "measured": share, "met": share <= TARGET_SCORE_SHARE})
    at50 = [row for row in ok if row["contributors"] == 50 and row["validator_seconds"]["score"]["max"] is not None]
    if at50:
        secs = at50[0]["validator_seconds"]["score"]["max"]
        out.append({"target": "scoring seconds per round at 50 contributors (gradient-shapley, worst round)",
                    "goal": TARGET_SCORE_SECONDS_50, "measured": secs, "met": secs <= TARGET_SCORE_SECONDS_50})
    committee = [row for row in ok if "committee" in row["label"]]
    if committee:
        c = committee[0]
        out.append({"target": f"{c['contributors']} contributors x {c['rounds']} rounds, committee of 3: task wall seconds",
                    "goal": TARGET_TASK_SECONDS, "measured": c["wall_seconds"], "met": c["wall_seconds"] <= TARGET_TASK_SECONDS})
        if c["validator_peak_MB"] is not None:
            out.append({"target": "validator (member) peak memory at 100 contributors, MB", "goal": TARGET_VALIDATOR_MB,
                        "measured": c["validator_peak_MB"], "met": c["validator_peak_MB"] <= TARGET_VALIDATOR_MB})
    return out


def _pct(s: dict[str, Any] | None) -> str:
    return f"{s['median']:.0%}" if s and s.get("median") is not None else "-"


def markdown(r: dict) -> str:
    lines = [
        "`fedchain demo` runs on one devnet, all processes on this machine's 2 cores (cnn, fedavg, sealed updates, "
        f"Dirichlet 0.5). `{r['command']}`",
        "",
        "| run | contributors | rounds | seconds per round after the first, median (min-max) | first round | task wall s "
        "| contributors | fetch+verify | aggregate | score | evaluate | publish | post | wait | score s (median, max) "
        "| validator peak RSS | contributor process peak RSS | final accuracy |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        if "error" in row:
            lines.append(f"| {row['label']} | {row['contributors']} | failed: `{row['error'][:200]}` |")
            continue
        sh = row.get("phase_share", {})
        sc = row["validator_seconds"]["score"]
        score = f"{sc['median']:.2f}, {sc['max']:.2f}" if sc.get("median") is not None else "-"
        lines.append(
            f"| {row['label']} | {row['contributors']} | {row['rounds']} | {fmt_stats(row['seconds_per_round'])} "
            f"| {row['first_round_seconds']:.1f} | {row['wall_seconds']:.0f} | {_pct(sh.get('contributors'))} ""| "
            + " | ".join(_pct(sh.get(k)) for k in VALIDATOR_PHASES) + f" | {_pct(sh.get('wait'))} | {score} "
            f"| {row['validator_peak_MB']} MB | {row['contributor_peak_MB']} MB | {100 * row['final_accuracy']:.1f}% |")
    lines += ["", "Phase columns: median share of a round (rounds after the first). 'contributors': the slowest "
              "contributor process from its first training to its last submission (in the default demo, one process per "
              "contributor: not measured, inside 'wait'); 'wait': the rest (polling, the committee's windows, blocks)."]
    if r.get("targets"):
        lines += ["", "| target | goal | measured | met |", "|---|---|---|---|"]
        for t in r["targets"]:
            lines.append(f"| {t['target']} | {t['goal']} | {t['measured']} | {'yes' if t['met'] else 'NO'} |")
    return "\n".join(lines)
