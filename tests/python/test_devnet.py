"""`fedchain devnet` as a person runs it: the chain survives a restart, --fresh starts a new one and clears the old
one's local state, Ctrl-C and SIGTERM stop everything without a traceback, and a dead IPFS node is reported."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedchain.sim.devnet import dev_account, free_port
from fedchain.state import StateBinding, write_bound_json

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


class DevnetCommand:
    """`fedchain devnet` in a directory of its own, in a session of its own (as in a terminal)."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.anvil_port, self.ipfs_port = free_port(), free_port()
        self.runs = 0

    def start(self, *args: str) -> subprocess.Popen:
        self.runs += 1
        self.log = self.cwd / f"devnet-{self.runs}.log"
        env = {**os.environ, "FEDCHAIN_ANVIL_PORT": str(self.anvil_port), "FEDCHAIN_IPFS_PORT": str(self.ipfs_port),
               "PYTHONPATH": str(ROOT / "python"), "COLUMNS": "200"}
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "fedchain.cli.main", "devnet", *args], cwd=self.cwd,
                                            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 90
        while "Ctrl-C stops it" not in self.output():
            assert self.process.poll() is None, self.output()
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.1)
        self.children = [int(p) for p in subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True,
                                                        text=True).stdout.split()]
        assert len(self.children) == 2, self.children  # Anvil and the IPFS node
        return self.process

    def output(self) -> str:
        return " ".join(self.log.read_text(errors="replace").split())

    def stop(self, how: str) -> int:
        if how == "ctrl-c":  # the terminal sends SIGINT to the foreground process group
            os.killpg(self.process.pid, signal.SIGINT)
        else:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        assert not [pid for pid in self.children if _alive(pid)], "a child process was left running"
        return code

    def protocol(self):
        from fedchain.chain.client import Chain
        from fedchain.chain.deployments import load_deployments
        from fedchain.chain.protocol import Protocol

        return Protocol(Chain(f"http://127.0.0.1:{self.anvil_port}"), load_deployments(self.cwd / "deployments/local.json"))


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_devnet_keeps_its_chain_across_restarts_and_fresh_clears_the_old_ones_state(tmp_path):
    devnet = DevnetCommand(tmp_path)
    devnet.start()
    assert "started a new chain" in devnet.output()
    protocol = devnet.protocol()
    staker = dev_account(3)
    protocol.stake(staker, 250 * 10**18)
    first = protocol.binding()
    assert devnet.stop("ctrl-c") == 0
    assert "Traceback" not in devnet.output() and "the chain is saved in .fedchain/devnet" in devnet.output()

    devnet.start()
    assert "resumed the chain saved in .fedchain/devnet/anvil-state.json" in devnet.output()
    protocol = devnet.protocol()
    assert protocol.active_stake(staker.address) == 250 * 10**18  # stakes, tasks and rewards survive a restart
    assert protocol.binding() == first  # so does the state made against it
    state = tmp_path / ".fedchain" / "state"
    write_bound_json(state / "validator-task0" / "round-0.json", {"round": 0}, first)
    other_chain = StateBinding(11155111, "0x" + "12" * 20, 5, "0x" + "ab" * 32)
    write_bound_json(state / "validator-task0" / "round-9.json", {"round": 9}, other_chain)
    assert devnet.stop("sigterm") == 0
    assert "Traceback" not in devnet.output()

    (tmp_path / ".fedchain" / "devnet" / "anvil-state.json").unlink()  # the saved chain is lost: a new one starts
    devnet.start()
    assert "started a new chain" in devnet.output()
    assert "1 file(s) in .fedchain/state hold state of an earlier chain" in devnet.output()  # said, not silently kept
    assert devnet.stop("ctrl-c") == 0

    devnet.start("--fresh")
    assert "started a new chain" in devnet.output() and "deleted the old chain and its local state" in devnet.output()
    protocol = devnet.protocol()
    assert protocol.active_stake(staker.address) == 0
    assert protocol.binding() != first and protocol.binding().contract == first.contract  # same addresses, new chain
    assert not (state / "validator-task0" / "round-0.json").exists()  # the old chain's checkpoint is gone
    assert (state / "validator-task0" / "round-9.json").exists()  # another chain's state is not this devnet's
    assert devnet.stop("ctrl-c") == 0


def test_devnet_says_when_its_ipfs_node_dies(tmp_path):
    devnet = DevnetCommand(tmp_path)
    devnet.start()
    node = next(pid for pid in devnet.children if "fedchain.content.node" in Path(f"/proc/{pid}/cmdline").read_text())
    os.kill(node, signal.SIGKILL)
    assert devnet.process.wait(timeout=30) == 1
    assert f"the IPFS node (pid {node}) exited" in devnet.output() and "Traceback" not in devnet.output()
    assert not [pid for pid in devnet.children if _alive(pid)]


def test_ipfs_serve_uses_the_devnets_repo():
    """The README's `fedchain ipfs serve --repo .fedchain/ipfs` must see what the devnet's node stored."""
    import typer

    from fedchain.cli.main import app

    command = typer.main.get_command(app)
    serve = command.commands["ipfs"].commands["serve"]  # type: ignore[attr-defined]
    devnet = command.commands["devnet"]  # type: ignore[attr-defined]
    default = {p.name: p.default for p in serve.params}["repo"]
    assert default == {p.name: p.default for p in devnet.params}["ipfs_repo"] == Path(".fedchain/ipfs")
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "fedchain ipfs serve --api 127.0.0.1:5001 --repo .fedchain/ipfs" in readme
