"""Benchmark: add and cat through the embedded IPFS node over loopback, beside sha256 and fsynced-write speed.

    python -c "import bench.ipfs as b, json; print(json.dumps(b.run(quick=True), indent=1))"

For each size (1 MB, 40 MB, and 400 MB unless quick): a random file is added with `IpfsClient.add_file`
(streamed, CID checked against the one computed locally while sending, durable once acknowledged), read back
with `IpfsClient.cat` (verified, into memory: the "cat" figure) and `IpfsClient.cat_to_file` (verified, written,
fsynced, renamed into place); a raw unverified HTTP read of the same content shows the node's own cat speed.
Client and node share the machine's cores. The node runs in its own process (`start_node_process`); its peak
resident memory is the kernel's VmHWM for that process. Targets for 400 MB: add >= 150 MB/s, cat >= 300 MB/s,
node peak memory < 200 MB.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

MB = 1_000_000
TARGETS = {"add_MBps": 150.0, "cat_MBps": 300.0, "node_peak_rss_MB": 200.0}


def _sha256_mbps(total: int = 256 * MB) -> float:
    piece = os.urandom(1 << 20)
    h = hashlib.sha256()
    n = total // len(piece)
    start = time.perf_counter()
    for _ in range(n):
        h.update(piece)
    return n * len(piece) / MB / (time.perf_counter() - start)


def _fsync_write_mbps(directory: Path, files: int) -> float:
    """Write `files` separate 256 KiB files, each fsynced then renamed (what the block store does per block)."""
    block = os.urandom(262_144)
    start = time.perf_counter()
    for i in range(files):
        tmp, final = directory / f"{i}.tmp", directory / f"{i}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, block)
        os.fsync(fd)
        os.close(fd)
        os.replace(tmp, final)
    elapsed = time.perf_counter() - start
    shutil.rmtree(directory)
    return files * len(block) / MB / elapsed


def _peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set) of a live process, in MB; falls back to psutil's current RSS."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / MB
    except OSError:
        pass
    import psutil

    return float(psutil.Process(pid).memory_info().rss) / MB


def _random_file(path: Path, size: int) -> None:
    with path.open("wb") as fh:
        left = size
        while left:
            n = min(left, 16 << 20)
            fh.write(os.urandom(n))
            left -= n


def _raw_cat_mbps(api_url: str, cid: str, size: int) -> float:
    start = time.perf_counter()
    got = 0
    with httpx.Client(timeout=60, trust_env=False) as http, http.stream(
        "POST", f"{api_url}/api/v0/cat", params={"arg": cid}
    ) as resp:
        for piece in resp.iter_raw():
            got += len(piece)
    assert got == size, (got, size)
    return size / MB / (time.perf_counter() - start)


def run(quick: bool = False) -> dict[str, Any]:
    from fedchain.content.client import IpfsClient
    from fedchain.content.node import start_node_process

    sizes = [1 * MB, 40 * MB] if quick else [1 * MB, 40 * MB, 400 * MB]
    work = Path(tempfile.mkdtemp(prefix="fedchain-bench-ipfs-"))
    rows: list[dict[str, Any]] = []
    try:
        sha = _sha256_mbps(64 * MB if quick else 256 * MB)
        (work / "fsync").mkdir()
        fsync_mbps = _fsync_write_mbps(work / "fsync", 160 if quick else 400)
        with start_node_process(work / "repo") as node, IpfsClient(node.api_url, timeout=120) as client:
            baseline = _peak_rss_mb(node.pid)
            for size in sizes:
                src = work / f"in-{size}"
                _random_file(src, size)
                start = time.perf_counter()
                cid = client.add_file(src)
                add_s = time.perf_counter() - start
                start = time.perf_counter()
                data = client.cat(cid)
                cat_s = time.perf_counter() - start
                assert len(data) == size
                del data
                start = time.perf_counter()
                client.cat_to_file(cid, work / f"out-{size}")
                cat_file_s = time.perf_counter() - start
                raw = _raw_cat_mbps(node.api_url, cid, size)
                rows.append({
                    "size_MB": size / MB,
                    "add_MBps": round(size / MB / add_s, 1),
                    "cat_MBps": round(size / MB / cat_s, 1),
                    "cat_to_file_MBps": round(size / MB / cat_file_s, 1),
                    "cat_raw_http_MBps": round(raw, 1),
                    "node_peak_rss_MB": round(_peak_rss_mb(node.pid), 1),
                })
                src.unlink()
                (work / f"out-{size}").unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    largest = rows[-1]
    result: dict[str, Any] = {
        "name": "ipfs",
        "quick": quick,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "sha256_MBps": round(sha, 1),
        "fsynced_256KiB_write_MBps": round(fsync_mbps, 1),
        "node_baseline_rss_MB": round(baseline, 1),
        "rows": rows,
        "targets_for_400MB": TARGETS,
        "targets_met": None if quick else {
            "add": largest["add_MBps"] >= TARGETS["add_MBps"],
            "cat": largest["cat_MBps"] >= TARGETS["cat_MBps"],
            "node_memory": largest["node_peak_rss_MB"] < TARGETS["node_peak_rss_MB"],
        },
    }
    lines = [
        f"sha256: {result['sha256_MBps']} MB/s; 256 KiB files written with fsync each: "
        f"{result['fsynced_256KiB_write_MBps']} MB/s; node idle RSS {result['node_baseline_rss_MB']} MB",
        "",
        "| size | add MB/s | cat MB/s (verified, to memory) | cat MB/s (verified, to file, fsynced) "
        "| cat MB/s (raw HTTP, unverified) | node peak RSS MB |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['size_MB']:g} MB | {r['add_MBps']} | {r['cat_MBps']} | {r['cat_to_file_MBps']} | "
                     f"{r['cat_raw_http_MBps']} | "
                     f"{r['node_peak_rss_MB']} |")
    lines.append("")
    lines.append("Targets (400 MB): add >= 150 MB/s, cat >= 300 MB/s, node peak RSS < 200 MB.")
    result["markdown"] = "\n".join(lines)
    return result


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=1))
