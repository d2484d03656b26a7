"""Benchmark: fedchain's aggregation rules against the memory-bandwidth floor and Flower's own functions.

    python -m bench.aggregation [--quick] [--json OUT.json]

First a STREAM-like copy measures the memory bandwidth (bytes read + written per second, best of repeats). Then,
for each rule at K in {10, 50} and D in {1M, 10M} float32 (quick: K=10, D=1M), fedchain's function runs on a
(K, D) buffer and Flower's equivalent (flwr[simulation]==1.41.0, in .venv-flower, driven through
bench/flower_side.py) runs on the same rows, alternately, pair by pair; the ratio is taken per pair.

    fedavg        fedavg(buffer, weights)           aggregate, aggregate_inplace (Flower's FedAvg default)
    fedavg-out    fedavg(buffer, weights, out=out)  (none: Flower has no output argument)
    median        coordinate_median(buffer)         aggregate_median
    trimmed-mean  trimmed_mean(buffer, 0.1)         aggregate_trimmed_avg(proportiontocut=0.1)
    median, trimmed-mean (torch path)               the same, with the native kernels off (the bytes are equal)
    multi-krum    multi_krum(buffer, 1, K-1, w)     aggregate_krum(num_malicious=1, to_keep=K-1)

Reported per rule and size: milliseconds (median, min, max of the repeats), GB/s counting the K*D*4 bytes read
and D*4 written, that as a fraction of the copy bandwidth, peak extra resident memory (kernel VmHWM, reset
before each call, minus the resident set before it; allocations above 64 KiB are forced to mmap so that freed
memory leaves the resident set), and the ratio Flower ms / fedchain ms. Peaks come from the first (warm-up) call of each function, made with
allocations above 64 KiB forced to mmap; timed calls use glibc's steady-state reuse. Both sides use every core the process
may run on (torch.set_num_threads; Flower's numpy as it comes). Targets (issue 5), judged at K=10, D=10M:
FedAvg >= 50% of the copy bandwidth and >= 5x Flower's aggregate (both judged on fedavg, which allocates its
output as Flower's functions do; fedavg-out, writing into an output touched before as the copy does, is shown too); median and trimmed mean >= 3x Flower's;
Multi-Krum >= 5x Flower's Krum; peak extra memory of any rule <= one copy of the buffer. Issue 18: median and trimmed
mean within 2x of a single pass over the updates at K=10 (>= 50% of the copy bandwidth, the "x floor" column <= 2)
and within 4x at K=50 (D=10M both).
If .venv-flower is missing it is created with bench/setup-flower-venv.sh, except in quick mode, where Flower is
reported as skipped.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

try:
    import fedchain
except ImportError:  # run from a checkout without PYTHONPATH=python
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))
    import fedchain
from bench._util import machine
from fedchain.aggregation import _native, coordinate_median, fedavg, multi_krum, trimmed_mean

ROOT = Path(__file__).resolve().parent.parent
FLOWER_VENV = ROOT / ".venv-flower"
FLOWER_PY = FLOWER_VENV / "bin" / "python"
SETUP = ROOT / "bench" / "setup-flower-venv.sh"
M = 1_000_000
BETA = 0.1
TARGETS = {"fedavg_bandwidth_fraction": 0.5, "fedavg_vs_aggregate": 5.0, "median_vs_flower": 3.0,
           "trimmed_mean_vs_flower": 3.0, "multi_krum_vs_flower": 5.0, "peak_extra_buffer_copies": 1.0}
FLOOR_TARGETS = {10: 2.0, 50: 4.0}  # robust rules: at most this many times a single pass (D=10M), by K
FLOWER_SECONDS_PER_SEQUENCE = 40.0  # repeats shrink for slow Flower calls (K=50, D=10M Krum takes minutes)


# ---------------------------------------------------------------- measurement


def set_mmap_threshold(nbytes: int) -> None:
    """glibc: allocations of at least `nbytes` get their own mmap (returned to the kernel when freed)."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, nbytes)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def _trim_heap() -> None:
    # Hand freed heap memory back first, or a reused free block would hide from the resident-set peak.
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def measure(fn: Callable[[], Any], memory: bool = False) -> tuple[Any, float, int]:
    """Run fn() once: (result, milliseconds, peak extra resident bytes).

    memory=True: allocations above 64 KiB are mmapped, so freed memory leaves the resident set and the peak
    (VmHWM, reset first) shows every buffer a rule allocates; otherwise glibc keeps freed memory for reuse, as a
    long-running process would (32 MiB threshold), and only the time is meaningful.
    """
    set_mmap_threshold(65_536 if memory else 32 * 1024 * 1024)
    if memory:
        _trim_heap()
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    before = _status_kb("VmRSS")
    start = time.perf_counter()
    result = fn()
    ms = (time.perf_counter() - start) * 1e3
    return result, ms, max(0, _status_kb("VmHWM") - before) * 1024


def copy_bandwidth(n: int, repeats: int) -> dict[str, float]:
    """STREAM-like copy of n float32: bytes read + written per second (GB/s), best and median of repeats."""
    src, dst = torch.ones(n), torch.empty(n)
    dst.copy_(src)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        dst.copy_(src)
        rates.append(2 * n * 4 / (time.perf_counter() - start) / 1e9)
    return {"best_GBps": max(rates), "median_GBps": statistics.median(rates), "bytes": 2 * n * 4}


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


# ---------------------------------------------------------------- Flower's side


class FlowerSide:
    """bench/flower_side.py in .venv-flower, spoken to in JSON lines."""

    def __init__(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "PYTHONPATH")}
        self.proc = subprocess.Popen(
            [str(FLOWER_PY), str(ROOT / "bench" / "flower_side.py")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
        )
        self.info = self.ask({"cmd": "hello"})

    def ask(self, msg: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("Flower's side exited: run bench/flower_side.py by hand in .venv-flower to see why")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise RuntimeError(f"Flower's side failed: {reply.get('error')}")
        return reply

    def close(self) -> None:
        try:
            self.ask({"cmd": "quit"})
        except (RuntimeError, BrokenPipeError, OSError):
            pass
        self.proc.wait(timeout=30)


def flower_side(quick: bool) -> tuple[FlowerSide | None, str | None]:
    """Start Flower's side, installing its venv first when missing (not in quick mode)."""
    if not FLOWER_PY.exists():
        if quick:
            return None, "skipped: .venv-flower missing (quick mode does not install it; run bench/setup-flower-venv.sh)"
        subprocess.run(["bash", str(SETUP)], check=True)
    try:
        return FlowerSide(), None
    except (RuntimeError, OSError) as exc:
        return None, f"skipped: {exc}"


# ---------------------------------------------------------------- rules


def torch_path(fn: Callable[[], torch.Tensor]) -> torch.Tensor:
    """fn() with the native kernels off, as on a machine without a C compiler."""
    saved = _native.library
    _native.library = lambda: None
    try:
        return fn()
    finally:
        _native.library = saved


def rules(k: int, d: int) -> list[tuple[str, Callable[[torch.Tensor, list[int]], torch.Tensor], list[tuple[str, dict]]]]:
    out = torch.zeros(d)  # touched once here, as a validator's output buffer is after its first round
    return [
        ("fedavg", lambda b, w: fedavg(b, w), [("aggregate", {}), ("aggregate_inplace", {})]),
        ("fedavg-out", lambda b, w: fedavg(b, w, out=out), []),
        ("median", lambda b, w: coordinate_median(b), [("aggregate_median", {})]),
        ("trimmed-mean", lambda b, w: trimmed_mean(b, BETA), [("aggregate_trimmed_avg", {"proportiontocut": BETA})]),
        ("median (torch path)", lambda b, w: torch_path(lambda: coordinate_median(b)), []),
        ("trimmed-mean (torch path)", lambda b, w: torch_path(lambda: trimmed_mean(b, BETA)), []),
        ("multi-krum", lambda b, w: multi_krum(b, 1, k - 1, w)[0],
         [("aggregate_krum", {"num_malicious": 1, "to_keep": k - 1})]),
    ]


def bench_case(k: int, d: int, flower: FlowerSide | None, tmp: Path, repeats: int, bandwidth: float,
               only: set[str] | None = None) -> list[dict]:
    g = torch.Generator().manual_seed(k * 1_000_003 + d)
    buffer = torch.randn(k, d, generator=g).mul_(0.01)
    weights = [int(v) for v in torch.randint(100, 2_000, (k,), generator=g)]
    moved = (k * d + d) * 4
    if flower is not None:
        path = tmp / f"x_{k}_{d}.npy"
        np.save(path, buffer.numpy())
        flower.ask({"cmd": "load", "path": str(path), "weights": weights})
    rows: list[dict[str, Any]] = []
    for name, ours, theirs in rules(k, d):
        if only is not None and name not in only:
            continue
        out, _, peak = measure(lambda: ours(buffer, weights), memory=True)  # noqa: B023, F821 - called at once; `buffer` is deleted later  # warm-up, and the memory figure
        times: list[float] = []
        comparisons = {}
        sequences = theirs if flower is not None and theirs else [(None, {})]
        for fn, args in sequences:
            agrees, diff, reps = None, None, repeats
            if fn is not None:
                save = tmp / "flower_out.npy"
                warm = flower.ask({"cmd": "run", "fn": fn, "args": args, "save": str(save), "memory": True})
                theirs_out = torch.from_numpy(np.load(save))
                diff = float((theirs_out.double() - out.double()).abs().max())
                agrees = diff <= 1e-5 * max(1e-30, float(out.abs().max()))
                reps = max(1, min(repeats, int(FLOWER_SECONDS_PER_SEQUENCE * 1e3 // max(warm["ms"], 1.0))))
            ratios, their_ms = [], []
            for i in range(repeats):  # ours every time; Flower's as often as its time budget allows, alternately
                _, ms, _ = measure(lambda: ours(buffer, weights))  # noqa: B023, F821 - called at once
                times.append(ms)
                if fn is not None and i < reps:
                    reply = flower.ask({"cmd": "run", "fn": fn, "args": args, "save": None, "memory": False})
                    their_ms.append(reply["ms"])
                    ratios.append(reply["ms"] / ms)
            if fn is not None:
                comparisons[fn] = {"ms": summary(their_ms), "peak_extra_bytes": warm["peak_extra_bytes"],
                                   "ratio": summary(ratios), "agrees": agrees, "max_abs_diff": diff}
        ms = summary(times)
        gbps = moved / (ms["median"] / 1e3) / 1e9
        rows.append({
            "rule": name, "k": k, "d": d,
            "fedchain": {"ms": ms, "GBps": gbps, "bandwidth_fraction": gbps / bandwidth, "x_floor": bandwidth / gbps,
                         "peak_extra_bytes": peak, "peak_extra_buffer_copies": peak / (k * d * 4)},
            "flower": comparisons,
        })
    del buffer
    single = next((r["fedchain"]["ms"]["median"] for r in rows if r["rule"] == "fedavg-out"), None)
    for r in rows:  # against the single pass FedAvg makes over the same rows, timed in this case
        r["fedchain"]["x_fedavg_out"] = None if single is None else r["fedchain"]["ms"]["median"] / single
    return rows


# ---------------------------------------------------------------- report


def _target_checks(rows: list[dict], copy_best: float) -> list[dict]:
    at = {r["rule"]: r for r in rows if r["k"] == 10 and r["d"] == 10 * M}
    if not at:
        return [{"target": "all", "note": "K=10, D=10M not measured in quick mode"}]
    checks = []

    def add(target: str, measured: float | None, goal: float, lower_is_better: bool = False) -> None:
        met = None if measured is None else (measured <= goal if lower_is_better else measured >= goal)
        checks.append({"target": target, "goal": goal, "measured": measured, "met": met})

    def ratio(rule: str, fn: str) -> float | None:
        c = at[rule]["flower"].get(fn) if rule in at else None
        return c["ratio"]["median"] if c else None

    def field(rule: str, key: str) -> float | None:
        return at[rule]["fedchain"][key] if rule in at else None

    add("fedavg_bandwidth_fraction", field("fedavg", "bandwidth_fraction"), TARGETS["fedavg_bandwidth_fraction"])
    checks.append({"target": "fedavg_bandwidth_fraction_given_output", "goal": None,
                   "measured": field("fedavg-out", "bandwidth_fraction"), "met": None})
    add("fedavg_vs_aggregate", ratio("fedavg", "aggregate"), TARGETS["fedavg_vs_aggregate"])
    checks.append({"target": "fedavg_vs_aggregate_inplace", "goal": None,
                   "measured": ratio("fedavg", "aggregate_inplace"), "met": None})
    add("median_vs_flower", ratio("median", "aggregate_median"), TARGETS["median_vs_flower"])
    add("trimmed_mean_vs_flower", ratio("trimmed-mean", "aggregate_trimmed_avg"), TARGETS["trimmed_mean_vs_flower"])
    add("multi_krum_vs_flower", ratio("multi-krum", "aggregate_krum"), TARGETS["multi_krum_vs_flower"])
    for k, goal in FLOOR_TARGETS.items():
        for rule in ("median", "trimmed-mean"):
            row = next((r for r in rows if r["rule"] == rule and r["k"] == k and r["d"] == 10 * M), None)
            add(f"{rule}_x_single_pass (K={k})", row["fedchain"]["x_floor"] if row else None, goal, lower_is_better=True)
            add(f"{rule}_x_fedavg_out (K={k})", row["fedchain"].get("x_fedavg_out") if row else None, goal,
                lower_is_better=True)
    worst = max(r["fedchain"]["peak_extra_buffer_copies"] for r in rows)
    add("peak_extra_buffer_copies (all sizes)", worst, TARGETS["peak_extra_buffer_copies"], lower_is_better=True)
    return checks


def markdown(result: dict) -> str:
    bw = result["copy_bandwidth"]
    lines = [
        f"Aggregation, float32, {result['threads']} threads; copy bandwidth {bw['best_GBps']:.1f} GB/s "
        f"(best; median {bw['median_GBps']:.1f}). `{result['command']}`",
        "",
        "| rule | K | D | fedchain ms (min-max) | GB/s | of bandwidth | x floor | x fedavg-out | peak extra (buffer copies) "
        "| Flower function | Flower ms | ratio (min-max) | same result |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["cases"]:
        fc = r["fedchain"]
        ours = f"{fc['ms']['median']:.1f} ({fc['ms']['min']:.1f}-{fc['ms']['max']:.1f})"
        head = (f"| {r['rule']} | {r['k']} | {r['d'] // M}M | {ours} | {fc['GBps']:.1f} | "
                f"{fc['bandwidth_fraction']:.0%} | {fc['x_floor']:.1f} | "
                f"{'-' if fc.get('x_fedavg_out') is None else format(fc['x_fedavg_out'], '.1f')} | "
                f"{fc['peak_extra_buffer_copies']:.2f} |")
        if not r["flower"]:
            none = r["rule"] == "fedavg-out" or "torch path" in r["rule"]
            lines.append(head + (" (none) | | | |" if none else " (skipped) | | | |"))
        for fn, c in r["flower"].items():
            lines.append(head + f" `{fn}` | {c['ms']['median']:.1f} | {c['ratio']['median']:.1f}x "
                         f"({c['ratio']['min']:.1f}-{c['ratio']['max']:.1f}) | {'yes' if c['agrees'] else 'NO'} |")
    if result.get("flower_status"):
        lines += ["", f"Flower: {result['flower_status']}"]
    checks = [c for c in result["targets"] if "goal" in c]
    if checks:
        lines += ["", "x floor: the time over a single pass at the copy bandwidth (K*D*4 bytes read, D*4 written); x "
                  "fedavg-out: the time over FedAvg's own single pass over the same rows (into a touched output), "
                  "timed in the same case.", "",
                  "| target (K=10, D=10M unless named) | goal | measured | met |", "|---|---|---|---|"]
        for c in checks:
            m = "n/a" if c["measured"] is None else f"{c['measured']:.2f}"
            met = "n/a" if c["met"] is None else ("yes" if c["met"] else "NO")
            goal = "-" if c["goal"] is None else c["goal"]
            lines.append(f"| {c['target']} | {goal} | {m} | {met} |")
    return "\n".join(lines)


def run(quick: bool, cases: list[tuple[int, int]] | None = None, only: set[str] | None = None) -> dict:
    """Run the benchmark; returns JSON-serialisable figures with a "markdown" table (see the module docstring).

    `cases`: (K, D) pairs to run instead of the default set; `only`: rule names to run (for a partial run by hand).
    """
    threads = len(os.sched_getaffinity(0))
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    default_cases = [(10, 1 * M)] if quick else [(10, 1 * M), (10, 10 * M), (50, 1 * M), (50, 10 * M)]
    cases = cases or default_cases
    repeats = 3 if quick else 7
    flower, status = flower_side(quick)
    try:
        bandwidth = copy_bandwidth(16 * M if quick else 64 * M, 5 if quick else 10)
        rows: list[dict] = []
        with tempfile.TemporaryDirectory(prefix="fedchain-bench-agg-") as tmp:
            for k, d in cases:
                rows += bench_case(k, d, flower, Path(tmp), repeats, bandwidth["best_GBps"], only)
        info = flower.info if flower else {}
    finally:
        if flower is not None:
            flower.close()
        torch.set_num_threads(previous_threads)
    result: dict[str, Any] = {
        "name": "aggregation",
        "quick": quick,
        "command": "python -m bench.aggregation" + (" --quick" if quick else "")
        + "".join(f" --case {k},{d}" for k, d in (cases if cases != default_cases else []))
        + (f" --rules '{','.join(sorted(only))}'" if only else ""),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
                     "fedchain": fedchain.__version__, "flwr": info.get("flwr"), "flower_numpy": info.get("numpy")},
        "threads": threads,
        "copy_bandwidth": bandwidth,
        "flower_status": status,
        "cases": rows,
    }
    result["targets"] = _target_checks(rows, bandwidth["best_GBps"])
    result["markdown"] = markdown(result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="K=10, D=1M only; Flower skipped if not installed")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--case", action="append", metavar="K,D", help="run only this size (repeatable), e.g. 10,10000000")
    parser.add_argument("--rules", help="run only these rules (comma-separated names as in the table)")
    args = parser.parse_args()
    cases = [(int(c.split(",")[0]), int(c.split(",")[1])) for c in args.case] if args.case else None
    only = {r.strip() for r in args.rules.split(",")} if args.rules else None
    result = run(args.quick, cases, only)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    print(result["markdown"])


if __name__ == "__main__":
    main()
