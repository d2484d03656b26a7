"""Benchmark: contributors as separate OS processes at 5, 10 and 20 per round: seconds per round, validator memory.

    python -m bench --only scale [--quick]

Each size is one `fedchain demo` run (`fedchain.sim.demo.run_demo`: contributors and the validator are separate
`python -m fedchain.cli.main` processes, sealed updates, the CNN, Dirichlet(0.5) shards, fedavg, TMC-Shapley
scoring) on one devnet shared by the runs of this section, 3 rounds each (5 for 5 contributors, the default demo;
quick: 3 contributors, 1 round). Target (issue 5): scoring takes at most 20% of a default round (5 contributors,
every round after the first).
While it runs, a sampler thread finds the validator's process among this process's children (its command line
holds `fedchain.cli.main validate`) and reads its peak resident set (the kernel's VmHWM) every 0.2 s; the
contributors' peak likewise. Seconds per round: the time between consecutive finalizations as the demo observes
them (round 0 also holds the processes' start-up, so it is reported apart). All processes share this machine's
cores: on 2 cores the contributors' training runs at most two at a time, so seconds per round grow with the
number of contributors here although each contributor holds less data.
"""

from __future__ import annotations

import contextlib
import io
import math
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
                if "fedchain.cli.main" not in cmd:
                    continue
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


def _row(n: int, m: dict[str, Any]) -> dict[str, Any]:
    rep = m["report"]
    secs = [r["seconds"] for r in rep["rounds"]]
    phases = [r.get("phases", {}) for r in rep["rounds"]]
    score_shares = [p.get("score", math.nan) / s if s else math.nan for p, s in zip(phases, secs)]  # stats() drops nan
    return {
        "contributors": n, "rounds": len(rep["rounds"]),
        "seconds_per_round": stats(secs[1:] if len(secs) > 1 else secs, 2),
        "first_round_seconds": round(secs[0], 2),
        "validator_seconds": {k: stats([p.get(k) for p in phases if k in p], 3)
                              for k in ("fetch_verify", "aggregate", "score", "evaluate", "publish", "post")},
        "validator_peak_MB": m["validator_peak_MB"], "contributor_peak_MB": m["contributor_peak_MB"],
        "final_accuracy": rep["rounds"][-1]["test_accuracy"], "wall_seconds": m["wall_seconds"],
        "accepted": [sum(u["status"] == "accepted" for u in r["updates"]) for r in rep["rounds"]],
        "score_share": stats(score_shares[1:] or score_shares, 3),  # round 0 holds the processes' start-up
    }


def run(quick: bool) -> dict:
    sizes = [3] if quick else [5, 10, 20]
    rounds = 1 if quick else 3
    rows = []
    reused = _LAST_QUICK.get("run") if quick else None
    if reused is not None:
        # quick mode is a smoke test: reuse the robustness section's small demo (same process, same measurement code)
        cfg = reused["config"]
        rows.append(_row(cfg.get("clients", 0) + sum(cfg.get("attack", {}).values()), reused) | {"reused_from": "robustness --quick"})
    else:
        with tempfile.TemporaryDirectory(prefix="fedchain-bench-scale-") as tmp, shared_devnet(Path(tmp)) as net:
            for n in sizes:
                # 5 contributors is the default demo: run it whole (5 rounds), it is where scoring's share is judged
                n_rounds = 5 if n == 5 and not quick else rounds
                rows.append(_row(n, measured_demo(net, Path(tmp), clients=n, rounds=n_rounds, seed=0)))
    result = {"name": "scale", "quick": quick, "date": now(),
              "command": "python -m bench --only scale" + (" --quick" if quick else ""),
              "setup": {"sizes": sizes, "rounds": rounds, "architecture": "cnn", "rule": "fedavg", "scoring": "tmc-shapley",
                        "sealed": True, "alpha": 0.5, "mode": "fedchain demo on a shared devnet, processes on this machine"},
              "rows": rows}
    result["targets"] = targets(result)
    result["markdown"] = markdown(result)
    return result


def targets(r: dict) -> list[dict[str, Any]]:
    """Issue 5: scoring takes at most 20% of a default round (the default demo has 5 contributors)."""
    default = [row for row in r["rows"] if row["contributors"] == 5 and not row.get("reused_from")]
    if not default or default[0]["score_share"]["median"] is None:
        return []
    share = default[0]["score_share"]["max"]
    return [{"target": "scoring share of a default round (5 contributors, worst round)", "goal": TARGET_SCORE_SHARE,
             "measured": share, "met": share <= TARGET_SCORE_SHARE}]


def markdown(r: dict) -> str:
    s = r["setup"]
    lines = [
        f"`fedchain demo` with N contributor processes and one validator process, {s['rounds']} rounds each "
        f"({'5 for 5 contributors, the default demo' if not r['quick'] else 'quick'}), "
        f"{s['architecture']}, {s['rule']}, {s['scoring']} scoring, sealed updates, Dirichlet {s['alpha']}; all on this "
        f"machine's cores. `{r['command']}`",
        "",
        "| contributors | seconds per round after the first, median (min-max) | first round (with start-up) "
        "| validator: fetch+verify / aggregate / score / evaluate s | scoring share of the round (min-max) "
        "| validator peak RSS | contributor peak RSS | final accuracy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        v = row["validator_seconds"]
        vs = " / ".join(f"{v[k]['median']:.2f}" if v[k]["median"] is not None else "-" for k in ("fetch_verify", "aggregate", "score", "evaluate"))
        label = f"{row['contributors']} (reused: {row['reused_from']})" if row.get("reused_from") else row["contributors"]
        share = row.get("score_share") or {}
        shares = f"{share['median']:.0%} ({share['min']:.0%}-{share['max']:.0%})" if share.get("median") is not None else "-"
        lines.append(f"| {label} | {fmt_stats(row['seconds_per_round'])} | {row['first_round_seconds']:.1f} | {vs} | {shares} "
                     f"| {row['validator_peak_MB']} MB | {row['contributor_peak_MB']} MB | {100 * row['final_accuracy']:.1f}% |")
    for t in r.get("targets", []):
        lines += ["", f"Target: {t['target']} <= {t['goal']:.0%}: measured {t['measured']:.1%}, "
                      f"{'met' if t['met'] else 'NOT met'}."]
    return "\n".join(lines)
