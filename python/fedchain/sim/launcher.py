"""Start the demo's role processes from a warm process that has already imported what they need.

A fresh `python -m fedchain.cli.main contribute …` spends seconds of CPU importing torch, web3 and the package
before it does anything, and the demo starts one per contributor and validator at once: on a two-core machine that
was most of the first round's 20-30 s. The launcher does those imports once, in a process started before the
devnet (so they overlap its start and the data's preparation), then forks one child per role process. A child runs
exactly what `python -m MODULE ARGS` runs (`runpy`, as `-m` does), with its own arguments, environment, log file
and exit status; it only starts with the modules already imported (pages shared copy-on-write).

The launcher forks before any thread or torch kernel has run, and each child reseeds Python's and numpy's global
random generators (the role processes seed what must be reproducible explicitly). POSIX only: without os.fork,
with FEDCHAIN_LAUNCHER=0, or if the launcher fails, the demo starts fresh interpreters as before.

Protocol, one JSON object a line: the launcher prints {"ready": …} once its imports are done; each request
{"module", "args", "env", "log"} is answered {"pid": …}; each child's end is reported {"exit": pid, "code": …}
(the exit status as subprocess gives it: negative for a signal). EOF on its input stops it.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from fedchain.errors import FedchainError

log = logging.getLogger(__name__)
READY_TIMEOUT = 120.0  # seconds for the launcher's imports, on a loaded machine


class LauncherError(FedchainError):
    """Raised when the launcher cannot start or start a process; the demo then spawns fresh interpreters."""


def available() -> bool:
    """Whether processes can be forked from a launcher here (POSIX, not disabled by FEDCHAIN_LAUNCHER=0)."""
    return hasattr(os, "fork") and os.environ.get("FEDCHAIN_LAUNCHER", "1") != "0"


class Launcher:
    """The parent's handle on a launcher process: start processes, learn how they ended."""

    def __init__(self, preload: list[str], env: dict[str, str], log_path: Path) -> None:
        """Start the launcher, importing `preload` (module names) with `env` (thread counts must be set here: torch
        reads them when it is imported). Returns at once; `wait_ready` waits for the imports."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "fedchain.sim.launcher", *preload],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=env,
            )
        self.log_path = log_path
        self.exits: dict[int, int] = {}
        self.ready: dict[str, Any] | None = None
        self._pending = b""

    def _read(self, timeout: float) -> dict[str, Any] | None:
        # One message, if one comes within `timeout` seconds (exits are recorded on the way). Read from the
        # descriptor with a buffer of our own: a buffered reader could hold lines that select() does not see.
        assert self.proc.stdout is not None
        if b"\n" not in self._pending:
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, timeout))
            if not ready:
                return None
            chunk = os.read(self.proc.stdout.fileno(), 65_536)
            if not chunk:
                raise LauncherError(f"the launcher exited ({self.proc.poll()}); see {self.log_path}")
            self._pending += chunk
            if b"\n" not in self._pending:
                return None
        line, self._pending = self._pending.split(b"\n", 1)
        message: dict[str, Any] = json.loads(line)
        if "exit" in message:
            self.exits[int(message["exit"])] = int(message["code"])
        return message

    def _expect(self, key: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self._read(deadline - time.monotonic())
            if message is not None and key in message:
                return message
        raise LauncherError(f"no answer from the launcher within {timeout:.0f} s; see {self.log_path}")

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> dict[str, Any]:
        """Wait until the launcher has imported its modules; returns its ready message (with import seconds)."""
        if self.ready is None:
            self.ready = self._expect("ready", timeout)
        return self.ready

    def start(self, module: str, args: list[str], env: dict[str, str], log_path: Path) -> LaunchedProcess:
        """Fork a child that runs `python -m module *args` with `env`, its output into `log_path`."""
        self.wait_ready()
        assert self.proc.stdin is not None
        request = {"module": module, "args": args, "env": env, "log": str(log_path)}
        try:
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise LauncherError(f"the launcher is gone ({exc}); see {self.log_path}") from exc
        return LaunchedProcess(self, int(self._expect("pid", 30.0)["pid"]))

    def poll_exits(self) -> None:
        """Record the exits reported so far, without waiting."""
        while self._read(0.0) is not None:
            pass

    def close(self) -> None:
        """Stop the launcher (its children, if any are left, are the caller's to stop)."""
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class LaunchedProcess:
    """A forked child, with the parts of subprocess.Popen's interface that the demo uses."""

    def __init__(self, launcher: Launcher, pid: int) -> None:
        self.launcher, self.pid = launcher, pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            with contextlib.suppress(LauncherError):
                self.launcher.poll_exits()
            self.returncode = self.launcher.exits.get(self.pid)
            if self.returncode is None and self.launcher.proc.poll() is not None and not _alive(self.pid):
                self.returncode = -signal.SIGKILL  # the launcher died before reporting: the exit status is lost
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
            time.sleep(0.05)
        assert self.returncode is not None
        return self.returncode

    def terminate(self) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)

    def kill(self) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    # A child of the launcher, not of this process: signal 0 says whether it (or its unreaped zombie) exists.
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ─── the launcher process ───
def _child(request: dict[str, Any], channel: int) -> None:
    """In the forked child: become `python -m module args` and never return."""
    code = 1
    try:
        os.close(channel)
        # Standard descriptors onto the log and /dev/null (which closes the launcher's pipes in this process).
        out = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(out)
        os.close(null)
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the process's own descriptors, for its lifetime
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        os.environ.clear()
        os.environ.update(request["env"])
        _reseed()
        import runpy

        sys.argv = [request["module"], *request["args"]]
        sys.modules.pop(request["module"], None)  # run afresh as __main__, as `python -m` does (its imports stay)
        try:
            runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if exc.code is not None and not isinstance(exc.code, int):
                print(exc.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - whatever happens, the child must end here, never return to the loop
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(Exception):
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _reseed() -> None:
    # Every child would otherwise share the launcher's random state (fresh interpreters each seed from the OS).
    import random

    random.seed()
    np = sys.modules.get("numpy")
    if np is not None:
        np.random.seed()


def _send(out: IO[bytes], message: dict[str, Any]) -> None:
    out.write(json.dumps(message).encode() + b"\n")
    out.flush()


def _reap(out: IO[bytes]) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(out, {"exit": pid, "code": os.waitstatus_to_exitcode(status)})


def serve(preload: list[str]) -> None:
    """The launcher's loop: import `preload`, say ready, fork a child per request, report exits, stop at EOF."""
    started = time.perf_counter()
    # The messages go out on a private copy of stdout; anything printed (by an import, say) goes to the log.
    stdout = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    for name in preload:
        importlib.import_module(name)
    stdin = sys.stdin.buffer
    _send(stdout, {"ready": True, "import_seconds": round(time.perf_counter() - started, 3), "modules": len(sys.modules)})
    pending = b""
    while True:
        readable, _, _ = select.select([stdin], [], [], 0.1)
        _reap(stdout)
        if not readable:
            continue
        chunk = os.read(stdin.fileno(), 65_536)
        if not chunk:
            return
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            request = json.loads(line)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(request, stdout.fileno())
            _send(stdout, {"pid": pid})


if __name__ == "__main__":
    serve(sys.argv[1:])
