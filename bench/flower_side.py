"""Flower's side of the aggregation benchmark: a small server run inside .venv-flower (flwr[simulation]==1.41.0).

    .venv-flower/bin/python bench/flower_side.py      # started by bench/aggregation.py, not by hand

Protocol: one JSON object per line on stdin, one JSON reply per line on stdout (everything else Flower or numpy
print goes to stderr). Inputs arrive as .npy files, memory-mapped.

    {"cmd": "hello"}                                   -> {"ok": true, "flwr": ..., "numpy": ..., "python": ...}
    {"cmd": "load", "path": X.npy, "weights": [...]}   -> {"ok": true, "k": K, "d": D}
    {"cmd": "run", "fn": NAME, "args": {...}, "save": OUT.npy | null, "memory": bool}
                                                       -> {"ok": true, "ms": ..., "peak_extra_bytes": ...}
    {"cmd": "quit"}

NAME is one of Flower's own functions in flwr.server.strategy.aggregate: "aggregate", "aggregate_inplace",
"aggregate_median", "aggregate_trimmed_avg" (args: proportiontocut), "aggregate_krum" (args: num_malicious,
to_keep). Each client's update is one layer: row i of X, with weights[i] examples. aggregate_inplace gets FitRes
objects built (once per load, untimed) with Flower's ndarrays_to_parameters, as its FedAvg strategy receives them.
Peak extra memory: the kernel's peak resident set (VmHWM, reset through /proc/self/clear_refs) minus the resident
set before the call.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

PROTOCOL = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)  # anything else written to stdout lands on stderr
sys.stdout = sys.stderr

import flwr  # noqa: E402
import numpy as np  # noqa: E402
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters  # noqa: E402
from flwr.server.strategy import aggregate as flower  # noqa: E402


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def measure(fn: Any, memory: bool) -> tuple[Any, float, int]:
    """Run fn() once: (result, milliseconds, peak extra resident bytes); see bench/aggregation.py's measure."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 65_536 if memory else 32 * 1024 * 1024)  # M_MMAP_THRESHOLD
        if memory:
            libc.malloc_trim(0)  # freed heap memory back first, or reuse would hide from the peak
    except (OSError, AttributeError):
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    before = _status_kb("VmRSS")
    start = time.perf_counter()
    result = fn()
    ms = (time.perf_counter() - start) * 1e3
    return result, ms, max(0, _status_kb("VmHWM") - before) * 1024


class Server:
    def __init__(self) -> None:
        self.x: np.ndarray | None = None
        self.weights: list[int] = []
        self.fit_results: list[tuple[None, FitRes]] | None = None

    def load(self, path: str, weights: list[int]) -> dict[str, Any]:
        self.x = np.load(path, mmap_mode="r")
        self.weights = [int(w) for w in weights]
        self.fit_results = None
        np.add.reduce(self.x, axis=None)  # touch every page once, outside any timing
        return {"ok": True, "k": int(self.x.shape[0]), "d": int(self.x.shape[1])}

    def _results(self) -> list[tuple[list[np.ndarray], int]]:
        assert self.x is not None, "load first"
        return [([self.x[i]], self.weights[i]) for i in range(self.x.shape[0])]

    def _fit_results(self) -> list[tuple[None, FitRes]]:
        assert self.x is not None, "load first"
        if self.fit_results is None:
            self.fit_results = [
                (None, FitRes(Status(Code.OK, ""), ndarrays_to_parameters([np.array(self.x[i])]), w, {}))
                for i, w in enumerate(self.weights)
            ]
        return self.fit_results

    def run(self, fn: str, args: dict[str, Any], save: str | None, memory: bool) -> dict[str, Any]:
        if fn == "aggregate_inplace":
            results: Any = self._fit_results()
        else:
            results = self._results()
        calls = {
            "aggregate": lambda: flower.aggregate(results),
            "aggregate_inplace": lambda: flower.aggregate_inplace(results),
            "aggregate_median": lambda: flower.aggregate_median(results),
            "aggregate_trimmed_avg": lambda: flower.aggregate_trimmed_avg(results, **args),
            "aggregate_krum": lambda: flower.aggregate_krum(results, **args),
        }
        if fn not in calls:
            return {"ok": False, "error": f"unknown function {fn}"}
        out, ms, peak = measure(calls[fn], memory)
        if save:
            np.save(save, np.asarray(out[0], dtype=np.float32))
        return {"ok": True, "ms": ms, "peak_extra_bytes": peak}


def main() -> None:
    server = Server()
    for line in sys.stdin:
        if not line.strip():
            continue
        msg = json.loads(line)
        try:
            if msg["cmd"] == "hello":
                reply = {"ok": True, "flwr": flwr.__version__, "numpy": np.__version__, "python": platform.python_version()}
            elif msg["cmd"] == "load":
                reply = server.load(msg["path"], msg["weights"])
            elif msg["cmd"] == "run":
                reply = server.run(msg["fn"], msg.get("args", {}), msg.get("save"), bool(msg.get("memory")))
            elif msg["cmd"] == "quit":
                PROTOCOL.write(json.dumps({"ok": True}) + "\n")
                return
            else:
                reply = {"ok": False, "error": f"unknown command {msg['cmd']}"}
        except Exception as exc:  # failures go back as data; the benchmark reports them
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        PROTOCOL.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    main()
