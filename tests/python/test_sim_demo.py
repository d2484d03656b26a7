"""The demo's process management (fedchain.sim.demo): what runs many roles on one machine."""

from __future__ import annotations

import os

import psutil

from fedchain.sim.demo import _spawn


def test_spawning_a_role_leaves_no_log_file_open_in_the_demo(tmp_path):
    log = tmp_path / "role.log"
    process = _spawn(["--help"], dict(os.environ), log)
    try:
        assert process.wait(timeout=120) == 0
    finally:
        process.kill() if process.poll() is None else None
    open_paths = {f.path for f in psutil.Process().open_files()}
    assert str(log) not in open_paths
    assert "fedchain" in log.read_text()  # the child still wrote its output there


