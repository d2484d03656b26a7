"""Build, cache and load the native aggregation kernels (_native.c), or report why they are unavailable.

FedAvg's kernel computes exactly what the torch code path computes (the same roundings in the same order), only in
one pass instead of one torch op per row and chunk; the median and trimmed-mean kernel finds the same ranks (a
sorting network over cache-sized blocks of columns, the torch path's own network wherever a NaN is involved) and
averages them with the same roundings; Multi-Krum's Gram kernel sums the same exact products in another order,
within the error bound that Multi-Krum certifies its selection with. So whether they are in use changes the
speed, never the bytes of an aggregate (NaN aside: it lands on the same coordinates, its bit pattern may differ).
It is plain C compiled with the system's C compiler on first use (about a second) into a per-user cache, keyed
by the source, the compiler and the flags, and loaded with ctypes. Builds of other sources (other checkouts or
versions sharing the cache) are left alone unless unused for STALE_DAYS. No compiler, a failed build, or
FEDCHAIN_NATIVE=0 means the torch path is used, with one log line saying why.

    python -c 'from fedchain.aggregation import _native; _native.main()'   # build now (make setup does)
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("_native.c")
ABI = 3  # bump with every change to the exported functions' signatures
STALE_DAYS = 30  # a cached build of another source unused this long is deleted
FLAGS = ["-O3", "-std=c11", "-fPIC", "-shared", "-ffp-contract=off", "-fno-trapping-math"]
# -ffp-contract=off: no fusion beyond the explicit fmaf; -fno-trapping-math: vector min/max (no result changes)

_lock = threading.Lock()
_loaded: ctypes.CDLL | None = None
_reason: str | None = None  # why the kernel is unavailable, once tried


def cache_dir() -> Path:
    """Where built kernels live: $FEDCHAIN_CACHE_DIR, else $XDG_CACHE_HOME/fedchain, else ~/.cache/fedchain."""
    if os.environ.get("FEDCHAIN_CACHE_DIR"):
        return Path(os.environ["FEDCHAIN_CACHE_DIR"]) / "native"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "fedchain" / "native"


def _compiler() -> str | None:
    cc = os.environ.get("CC") or "cc"
    return shutil.which(cc) or shutil.which("gcc") or shutil.which("clang")


def _private_dir(path: Path) -> None:
    # A library loaded from here runs as this user: refuse a directory that someone else could write to.
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = path.stat()
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise OSError(f"{path} belongs to another user")
    if st.st_mode & 0o022:
        raise OSError(f"{path} is writable by group or others (chmod 700 it)")


def build(force: bool = False) -> Path:
    """Compile _native.c into the cache (if not there yet) and return the library's path.

    Raises:
        OSError: no C compiler, an unsafe cache directory, or a failed compile (with the compiler's message).
    """
    cc = _compiler()
    if cc is None:
        raise OSError("no C compiler found (set CC, or install gcc or clang)")
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    key = hashlib.sha256(
        "\0".join([SOURCE.read_text(), version, " ".join(FLAGS), platform.machine(), str(ABI)]).encode()
    ).hexdigest()[:16]
    directory = cache_dir()
    _private_dir(directory)
    target = directory / f"fedchain_native_{key}.so"
    if target.exists() and not force:
        os.utime(target)  # in use: keeps it out of other builds' clean-up of stale ones
        return target
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        built = Path(tmp) / target.name
        proc = subprocess.run([cc, *FLAGS, "-o", str(built), str(SOURCE), "-lm"],
                              capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise OSError(f"{Path(cc).name} failed to build {SOURCE.name}: {proc.stderr.strip()[:2000]}")
        os.replace(built, target)  # atomic: concurrent builders each install a complete file
    _remove_stale(directory, target)
    return target


def _remove_stale(directory: Path, keep: Path) -> None:
    # Builds of other sources not used for STALE_DAYS. Not every other one: checkouts of different versions (or
    # branches) share the cache, and deleting each other's kernel would make each rebuild it on every start.
    cutoff = time.time() - STALE_DAYS * 86_400
    for stale in directory.glob("fedchain_native_*.so"):
        try:
            if stale != keep and stale.stat().st_mtime < cutoff:
                stale.unlink()  # a process that loaded it keeps it mapped
        except OSError:
            pass


def _load() -> ctypes.CDLL:
    lib = ctypes.CDLL(str(build()))
    if lib.fedchain_native_abi() != ABI:
        raise OSError(f"the cached kernel has ABI {lib.fedchain_native_abi()}, expected {ABI}")
    fn = lib.fedchain_fedavg_lerp
    fn.restype = None
    fn.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_float),
                   ctypes.POINTER(ctypes.c_ubyte), ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
    fn = lib.fedchain_gram
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_size_t, ctypes.c_void_p]
    fn = lib.fedchain_rank_mean
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_size_t, ctypes.POINTER(ctypes.c_int),
                   ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.c_int, ctypes.c_int, ctypes.c_int,
                   ctypes.c_void_p, ctypes.POINTER(ctypes.c_longlong)]
    return lib


def library() -> ctypes.CDLL | None:
    """The loaded kernel, or None (the reason is logged once, and kept in `unavailable_reason()`)."""
    global _loaded, _reason
    with _lock:
        if _loaded is not None or _reason is not None:
            return _loaded
        if os.environ.get("FEDCHAIN_NATIVE", "1") == "0":
            _reason = "disabled by FEDCHAIN_NATIVE=0"
        else:
            try:
                _loaded = _load()
            except (OSError, subprocess.SubprocessError, AttributeError) as exc:
                _reason = str(exc)
        if _reason is not None:
            log.info("native aggregation kernel unavailable (%s): using the torch path, same bytes, slower", _reason)
        return _loaded


def unavailable_reason() -> str | None:
    library()
    return _reason


def reset() -> None:
    """Forget the loaded state (tests switch FEDCHAIN_NATIVE)."""
    global _loaded, _reason
    with _lock:
        _loaded, _reason = None, None


def main() -> int:
    """Build now and print where the kernel is, or why not (exit status 0 either way: the kernel is optional)."""
    try:
        path = build(force="--force" in sys.argv[1:])
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"native aggregation kernel not built ({exc}); fedchain will use the slower torch path", file=sys.stderr)
        return 0  # optional: never fail set-up for it
    print(f"native aggregation kernel: {path}")
    return 0

