"""The demo's process management (fedchain.sim.demo, fedchain.sim.launcher): what runs many roles on one machine."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import psutil
import pytest
from rich.console import Console

from fedchain.sim import launcher
from fedchain.sim.demo import _Spawner

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="the launcher forks")


def test_spawning_a_role_leaves_no_log_file_open_in_the_demo(tmp_path):
    log = tmp_path / "role.log"
    process = _Spawner(None, Console())(["--help"], dict(os.environ), log)
    try:
        assert process.wait(timeout=120) == 0
    finally:
        process.kill() if process.poll() is None else None
    open_paths = {f.path for f in psutil.Process().open_files()}
    assert str(log) not in open_paths
    assert "fedchain" in log.read_text()  # the child still wrote its output there


PROBE = textwrap.dedent('''
    import os, random, sys
    print("args", " ".join(sys.argv[1:]), "env", os.environ.get("PROBE_VALUE"), "preloaded", "colorsys" in sys.modules,
          "random", random.random(), flush=True)
    if sys.argv[1] == "raise":
        raise RuntimeError("the probe failed")
    sys.exit(int(sys.argv[1]))
''')


@pytest.fixture
def probe_launcher(tmp_path):
    (tmp_path / "probe.py").write_text(PROBE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    warm = launcher.Launcher(["colorsys"], env, tmp_path / "launcher.log")
    try:
        yield warm, env
    finally:
        warm.close()


@needs_fork
def test_launched_processes_run_as_python_dash_m_with_their_own_args_env_log_and_exit_status(tmp_path, probe_launcher):
    warm, env = probe_launcher
    assert warm.wait_ready()["ready"] is True
    started = [warm.start("probe", [str(code)], {**env, "PROBE_VALUE": f"v{code}"}, tmp_path / f"{code}.log")
               for code in (0, 3, 0)]
    failing = warm.start("probe", ["raise"], env, tmp_path / "raise.log")
    assert [p.wait(timeout=60) for p in started] == [0, 3, 0] and failing.wait(timeout=60) == 1
    lines = [(tmp_path / f"{code}.log").read_text().split() for code in (0, 3)]
    assert lines[0][:7] == ["args", "0", "env", "v0", "preloaded", "True", "random"]  # imported once, before forking
    assert lines[1][:4] == ["args", "3", "env", "v3"]
    assert lines[0][-1] != lines[1][-1]  # each child reseeds: no two share the launcher's random state
    assert "RuntimeError: the probe failed" in (tmp_path / "raise.log").read_text()
    assert {p.pid for p in started} | {failing.pid} <= set(warm.exits) and psutil.pid_exists(warm.proc.pid)


@needs_fork
def test_a_launched_process_can_be_terminated_and_the_demo_falls_back_when_disabled(tmp_path, probe_launcher, monkeypatch):
    warm, env = probe_launcher
    sleeper = warm.start("fedchain.cli.main", ["devnet", "--help"], env, tmp_path / "help.log")
    assert sleeper.wait(timeout=120) == 0 and "devnet" in (tmp_path / "help.log").read_text()
    (tmp_path / "sleep.py").write_text("import time\ntime.sleep(60)\n")
    sleeping = warm.start("sleep", [], env, tmp_path / "sleep.log")
    assert sleeping.poll() is None
    sleeping.terminate()
    assert sleeping.wait(timeout=30) == -15
    monkeypatch.setenv("FEDCHAIN_LAUNCHER", "0")
    assert not launcher.available()


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["contribute", "--help"],
        ["validate", "--help"],
        # a role process that cannot reach its chain fails before its training stack is imported
        ["contribute", "--task", "0", "--data", "x.npz", "--keystore", "missing.json", "--rpc-url", "http://127.0.0.1:9"],
        ["validate", "--task", "0", "--holdout", "x.npz", "--keystore", "missing.json", "--rpc-url", "http://127.0.0.1:9"],
    ],
)
def test_the_cli_and_role_entries_load_no_torch_until_they_train(argv):
    code = (
        "import sys\nfrom fedchain.cli.main import app\n"
        f"try:\n    app({argv!r}, prog_name='fedchain')\nexcept SystemExit:\n    pass\n"
        "print('TORCH', 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert out.strip().splitlines()[-1] == "TORCH False", out
