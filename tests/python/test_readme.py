"""The README's "Using it on your own" section, run as written, in an empty directory (a fresh clone's state).

The commands are read from the README's code block, so the documentation and this test cannot drift apart. Each
line runs as a person would type it, in one shell: `fedchain devnet`, `validate` and `contribute` keep running (the
README gives them terminals of their own), so they run in the background here; the commands after them wait for the
contributors to finish, as the README says. The only additions are ports (so that a devnet a developer runs on the
default ports is left alone) and log files.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
from pathlib import Path

import pytest

from fedchain.sim.devnet import free_port

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BACKGROUND = ("fedchain devnet", "fedchain validate", "fedchain contribute")


def readme_commands() -> list[str]:
    """The commands of the first sh block after "## Using it on your own": continuation lines joined, comments
    dropped."""
    section = README.read_text().split("## Using it on your own", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "the README's 'Using it on your own' section has no sh code block"
    commands = []
    for line in match.group(1).replace("\\\n", " ").splitlines():
        command = re.sub(r"\s+#.*$", "", line).strip()  # no command in the block has a '#' of its own
        if command and not command.startswith("#"):
            commands.append(command)
    return commands


def as_script(commands: list[str], logs: Path) -> str:
    """One bash script: the README's lines in order, long-running ones in the background with their output logged."""
    lines = ["set -euo pipefail", "ROLES=()", "trap 'kill -TERM ${DEVNET:-} 2>/dev/null; wait ${DEVNET:-} || true' EXIT"]
    waiting = False
    for i, command in enumerate(commands):
        log = shlex.quote(str(logs / f"{i:02d}-{command.split()[1]}.log"))
        if command.startswith("fedchain devnet"):
            lines += [f"{command} > {log} 2>&1 &", "DEVNET=$!",
                      f'until grep -q "Ctrl-C stops it" {log}; do kill -0 $DEVNET; sleep 0.2; done']
        elif command.startswith(BACKGROUND):
            lines += [f"echo '$ {command}'", f"{command} > {log} 2>&1 &", "ROLES+=($!)"]
            waiting = True
        else:
            if waiting:  # "when they are done": every role process must exit successfully
                lines += ['for pid in "${ROLES[@]}"; do wait $pid; done', "ROLES=()"]
                waiting = False
            lines += [f"echo '$ {command}'", command]
    return "\n".join(lines) + "\n"


def test_the_readme_block_is_what_this_test_expects():
    commands = readme_commands()
    assert commands[0] == "source .venv/bin/activate" and commands[1] == "fedchain devnet"
    assert sum(c.startswith("fedchain contribute") for c in commands) == 2
    assert all(c.startswith(("source ", "export ", "fedchain ")) for c in commands)


def test_using_it_on_your_own_works_as_written(tmp_path):
    work = tmp_path / "clone"
    work.mkdir()
    (work / ".venv").symlink_to(ROOT / ".venv")  # what `make setup` made in the clone
    logs = tmp_path / "logs"
    logs.mkdir()
    script = tmp_path / "readme.sh"
    script.write_text(as_script(readme_commands(), logs))
    anvil, ipfs = free_port(), free_port()
    env = {
        **os.environ, "PYTHONPATH": str(ROOT / "python"), "COLUMNS": "160",
        "FEDCHAIN_ANVIL_PORT": str(anvil), "FEDCHAIN_IPFS_PORT": str(ipfs),
        "FEDCHAIN_RPC_URL": f"http://127.0.0.1:{anvil}", "FEDCHAIN_IPFS_API": f"http://127.0.0.1:{ipfs}",
    }
    env.pop("FEDCHAIN_PASSWORD", None)
    process = subprocess.Popen(["bash", str(script)], cwd=work, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)  # background jobs of a script ignore SIGINT
        output, _ = process.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):  # anything of the script still running: the devnet, roles
            os.killpg(process.pid, signal.SIGTERM)
    transcript = output + "".join(f"\n--- {p.name}\n" + p.read_text(errors="replace")[-3000:]
                                  for p in sorted(logs.iterdir()))
    assert process.returncode == 0, transcript
    text = " ".join(output.split())

    # What a person reads along the way.
    assert "started a new chain" in (logs / "01-devnet.log").read_text()
    assert "encrypted with the password in $FEDCHAIN_PASSWORD" in text
    assert "wrote .fedchain/data/test.npz" in text
    assert "task 0: 2 round(s) of 1000 FED" in text
    for role in ("alice", "bob"):
        log = next(p for p in logs.iterdir() if "contribute" in p.name and role in _command_of(p, output))
        assert "submitted 2 update(s) to task 0" in " ".join(log.read_text().split()), log.read_text()[-2000:]
    assert "task 0 (ended): 2 round(s)" in text
    assert re.search(r"accuracy 0\.[5-9]\d+", text), text  # model evaluate on the held-out digits
    assert "unbonding" in text and "active stake 0 FED" in text
    assert "Traceback" not in transcript

    # Nothing the README wrote is offered to git: it all lives under .fedchain/, which .gitignore covers.
    written = sorted(str(p.relative_to(work)) for p in work.rglob("*") if p.is_file())
    assert written and all(p.startswith((".fedchain/", "deployments/local.json")) for p in written), written
    ignored = (ROOT / ".gitignore").read_text().split()
    assert "/.fedchain/" in ignored and "deployments/local.json" in ignored

    # The README's Python recipe for the pulled model.
    from fedchain.core.envelope import decode_model
    from fedchain.core.spec import load_spec_file
    from fedchain.learning.models import build_model, tensors_from_arrays

    arrays, metadata = decode_model((work / ".fedchain/model.safetensors").read_bytes())
    build_model(load_spec_file(work / ".fedchain/spec.json")).load_state_dict(tensors_from_arrays(arrays))
    assert metadata["round"] == 1


def _command_of(log: Path, output: str) -> str:
    index = int(log.name[:2])
    return readme_commands()[index]
