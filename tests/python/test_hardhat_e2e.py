"""Any EVM chain: the contracts and the protocol on a second EVM implementation besides Anvil, Hardhat Network
(npm `hardhat` 2.x, pinned in package.json): `hardhat node` on loopback, `ape run deploy --network URL`, then a small
demo (2 contributors, 1 round, the MLP, sealed updates) attached to that chain and an embedded IPFS node.

Hardhat must not dial out: it runs with HARDHAT_DISABLE_TELEMETRY_PROMPT=true and CI=true (no consent prompt, so no
analytics; no banner or version check), and compiles nothing (ape compiles the contracts)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
HARDHAT = ROOT / "node_modules" / ".bin" / "hardhat"
QUIET_HARDHAT = {"HARDHAT_DISABLE_TELEMETRY_PROMPT": "true", "CI": "true", "HARDHAT_HIDE_SOLIDITY_SURVEY_MESSAGE": "true"}


def _hardhat_or_skip() -> Path:
    if HARDHAT.exists():
        return HARDHAT
    problem = "Hardhat is not installed (npm ci installs it from package.json; `make setup` does)"
    if os.environ.get("CI"):
        pytest.fail(f"the Hardhat test cannot run: {problem}", pytrace=False)
    pytest.skip(problem)


def _start(cmd: list[str], log: Path, port: int, env: dict[str, str] | None = None, cwd: Path = ROOT):
    from fedchain.sim.devnet import port_in_use

    with open(log, "wb") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True,
                                   env={**os.environ, **(env or {})})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{cmd[0]} exited with {process.returncode}: {log.read_text()[-2000:]}")
        if port_in_use(port):
            return process
        time.sleep(0.1)
    _stop(process)
    raise AssertionError(f"{cmd[0]} did not listen on port {port} within 60 s")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)  # its own session: hardhat's node child too
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def hardhat_chain(tmp_path_factory):
    from fedchain.sim.devnet import free_port

    hardhat = _hardhat_or_skip()
    tmp = tmp_path_factory.mktemp("hardhat")
    port = free_port()
    process = _start([str(hardhat), "node", "--hostname", "127.0.0.1", "--port", str(port)], tmp / "hardhat.log",
                     port, env=QUIET_HARDHAT)
    try:
        yield f"http://127.0.0.1:{port}", tmp
    finally:
        _stop(process)


def test_deploy_and_demo_on_hardhat_network(hardhat_chain):
    from fedchain.chain.client import Chain
    from fedchain.chain.deployments import Deployments
    from fedchain.chain.protocol import Protocol, RoundPhase
    from fedchain.sim.devnet import free_port

    rpc_url, tmp = hardhat_chain
    chain = Chain(rpc_url)
    assert chain.w3.client_version.startswith("HardhatNetwork/2.")
    ape = shutil.which("ape", path=str(Path(sys.executable).parent)) or "ape"
    deployed = subprocess.run([ape, "run", "deploy", "--network", rpc_url, "--out", str(tmp / "deployments")],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert deployed.returncode == 0, deployed.stdout[-2000:] + deployed.stderr[-2000:]
    (deployments_path,) = (tmp / "deployments").glob("*.json")
    deployments = Deployments.model_validate(json.loads(deployments_path.read_text()))
    protocol = Protocol(chain, deployments)
    assert protocol.registry.functions.rolesFrozen().call()

    ipfs_port = free_port()
    ipfs = _start([sys.executable, "-m", "fedchain.cli.main", "ipfs", "serve", "--api", f"127.0.0.1:{ipfs_port}",
                   "--repo", str(tmp / "ipfs")], tmp / "ipfs.log", ipfs_port)
    try:
        demo = subprocess.run(
            [sys.executable, "-m", "fedchain.cli.main", "demo", "--rpc-url", rpc_url,
             "--ipfs-api", f"http://127.0.0.1:{ipfs_port}", "--deployments", str(deployments_path),
             "--clients", "2", "--rounds", "1", "--architecture", "mlp", "--scoring", "equal",
             "--workdir", str(tmp / "demo")],
            cwd=tmp, capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "200"},
        )
    finally:
        _stop(ipfs)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    report = json.loads((tmp / "report.json").read_text())
    assert report["outcome"]["honest_slashed"] == 0
    task_id = protocol.task_count() - 1
    assert protocol.round(task_id, 0).phase == RoundPhase.FINALIZED and protocol.task(task_id).ended
    claimed = [e["args"]["amount"] for e in protocol.events("RewardClaimed", taskId=task_id)]
    assert len(claimed) == 2 and sum(claimed) == protocol.round(task_id, 0).total_rewards > 0
