"""Helpers shared by the benchmark sections: statistics over repeats, the machine, the versions."""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FLOWER_PY = ROOT / ".venv-flower" / "bin" / "python"

try:
    import fedchain  # noqa: F401
except ImportError:  # run from a checkout without PYTHONPATH=python
    sys.path.insert(0, str(ROOT / "python"))


def stats(values: Sequence[float], digits: int = 4) -> dict[str, Any]:
    """Median of repeated measurements with its spread (min, max) and the count."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": round(statistics.median(vals), digits), "min": round(min(vals), digits),
            "max": round(max(vals), digits), "n": len(vals)}


def mean_spread(values: Sequence[float], digits: int = 4) -> dict[str, Any]:
    """Mean and spread (sample standard deviation, min, max): used for accuracies over seeds."""
    vals = [float(v) for v in values]
    return {"mean": round(statistics.fmean(vals), digits), "std": round(statistics.stdev(vals), digits) if len(vals) > 1 else 0.0,
            "min": round(min(vals), digits), "max": round(max(vals), digits), "n": len(vals), "values": [round(v, digits) for v in vals]}


def fmt_stats(s: dict[str, Any], fmt: str = "{:.2f}") -> str:
    """'median (min-max)' for a stats() dict."""
    if not s or s.get("median") is None:
        return "n/a"
    if s["n"] == 1:
        return fmt.format(s["median"])
    return f"{fmt.format(s['median'])} ({fmt.format(s['min'])}-{fmt.format(s['max'])})"


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "memory_GB": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1),
        "platform": platform.platform(),
        "load_average": load,
    }


def _cmd_version(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0].strip() if text else None


def versions() -> dict[str, Any]:
    """Python, torch, numpy, solc, anvil and Flower (from .venv-flower when it exists)."""
    import numpy
    import torch

    import fedchain

    found: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
                             "fedchain": fedchain.__version__}
    solc_dir = Path(os.environ.get("SOLCX_BINARY_PATH", ROOT / ".solcx"))
    solcs = sorted(solc_dir.glob("solc-v*")) if solc_dir.is_dir() else []
    found["solc"] = None
    if solcs:
        line = _cmd_version([str(solcs[-1]), "--version"])
        out = subprocess.run([str(solcs[-1]), "--version"], capture_output=True, text=True).stdout if line else ""
        found["solc"] = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Version")), line)
    anvil = shutil.which("anvil") or (str(ROOT / "node_modules/.bin/anvil") if (ROOT / "node_modules/.bin/anvil").exists() else None)
    found["anvil"] = _cmd_version([anvil, "--version"]) if anvil else None
    if FLOWER_PY.exists():
        found["flwr"] = _cmd_version([str(FLOWER_PY), "-c", "import flwr; print(flwr.__version__)"])
    else:
        found["flwr"] = None
    return found


def flower_available() -> bool:
    return FLOWER_PY.exists() and (ROOT / ".venv-flower" / ".flower-installed").exists()
