"""Simulation mode: many contributors in one process, each with its own account, data shard and state, against the
real chain and IPFS node (`fedchain demo --simulate`: the demo's contributors dealt over a few such processes).

    python -m fedchain.sim.swarm MANIFEST.json      # what the demo spawns; the password in $FEDCHAIN_PASSWORD

A process per contributor costs a Python interpreter and a torch import each (about 400 MB and seconds of start-up):
a hundred of them do not fit a small machine. Here one process hosts many `Contributor`s. In each round it walks
its contributors one after another: stake if needed, train on the contributor's own shard (with its own seed),
seal, pin and submit from the contributor's own account (each account its own nonces); at the end each claims.
What the contributors share is only what is the same for all of them: the connection, the task's spec and each
round's base model, fetched once per process instead of once per contributor. A process per CPU core keeps the
cores busy, since training is the work (and threads would only queue on them).

The manifest (JSON): rpc_url, ipfs_api, deployments, task_id, state_dir, wait_for_task (seconds), and members: a
list of {"name", "keystore", "data", "seed"}; every keystore opens with the password in $FEDCHAIN_PASSWORD.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedchain.errors import ConfigError, FedchainError

log = logging.getLogger(__name__)
PASSWORD_ENV = "FEDCHAIN_PASSWORD"


@dataclass(frozen=True)
class SwarmMember:
    name: str
    keystore: Path
    data: Path
    seed: int


@dataclass(frozen=True)
class SwarmManifest:
    rpc_url: str
    ipfs_api: str
    deployments: Path
    task_id: int
    state_dir: Path
    members: tuple[SwarmMember, ...]
    wait_for_task: float = 0.0
    poll_interval: float = 0.3
    threads: int = 2  # contributors of this process at work at once (training overlaps another's pin + transaction)

    def to_json(self) -> dict[str, Any]:
        return {"rpc_url": self.rpc_url, "ipfs_api": self.ipfs_api, "deployments": str(self.deployments),
                "task_id": self.task_id, "state_dir": str(self.state_dir), "wait_for_task": self.wait_for_task,
                "poll_interval": self.poll_interval, "threads": self.threads,
                "members": [{"name": m.name, "keystore": str(m.keystore), "data": str(m.data), "seed": m.seed}
                            for m in self.members]}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> SwarmManifest:
        try:
            members = tuple(SwarmMember(str(m["name"]), Path(m["keystore"]), Path(m["data"]), int(m["seed"]))
                            for m in obj["members"])
            return cls(str(obj["rpc_url"]), str(obj["ipfs_api"]), Path(obj["deployments"]), int(obj["task_id"]),
                       Path(obj["state_dir"]), members, float(obj.get("wait_for_task", 0.0)),
                       float(obj.get("poll_interval", 0.3)), max(1, int(obj.get("threads", 2))))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"a swarm manifest needs rpc_url, ipfs_api, deployments, task_id, state_dir and members "
                              f"(name, keystore, data, seed): {exc!r}") from exc


class SwarmError(FedchainError):
    """Raised when a swarm cannot start (no task, a keystore that does not open) or loses every contributor."""


class Swarm:
    """Many contributors of one task, served round by round from one process (see the module docstring)."""

    def __init__(self, protocol, ipfs, manifest: SwarmManifest, password: str) -> None:
        from fedchain.chain.accounts import load_keystore
        from fedchain.roles.contributor import Contributor, ContributorConfig

        self.protocol, self.ipfs, self.manifest = protocol, ipfs, manifest
        self.view = _round_cached_view(protocol, ipfs, manifest.task_id)
        self.members: list[tuple[SwarmMember, Contributor]] = []
        for m in manifest.members:
            config = ContributorConfig(task_id=manifest.task_id, data_path=m.data, state_dir=manifest.state_dir,
                                       seed=m.seed, progress=False, claim_at_end=False,
                                       poll_interval=manifest.poll_interval)
            contributor = Contributor(protocol, ipfs, load_keystore(m.keystore, password), config)
            contributor.task = self.view  # one spec and one base model per round for every contributor here
            self.members.append((m, contributor))
        self._lock = threading.Lock()
        self.rounds: dict[int, dict[str, float]] = {}  # round -> seconds: train, stake, submit (pin + tx), wall

    def run(self) -> dict[str, Any]:
        """Contribute to every round until the task ends, then claim for every member. Returns a summary."""
        from fedchain.learning.kinds import kind_of
        from fedchain.views.follow import TaskFollower

        spec = self.view.spec
        data = {m.name: kind_of(spec).load_data(m.data, spec) for m, _ in self.members}
        info = self.view.info()
        if not info.ended:
            for _, c in self.members:
                c.check_can_stake(info.min_contributor_stake)
        first = self.members[0][1]
        follower = TaskFollower(self.protocol, self.manifest.task_id,
                                self.manifest.state_dir / f"swarm-{first.account.address}.cursor.json",
                                start_block=self.protocol.deployments.block)
        active = list(self.members)
        attempted: set[int] = set()
        submitted = 0
        while active:
            info = self.view.info()
            if info.ended:
                break
            r = info.current_round
            ready = [] if r in attempted else self._ready(active, r)
            if not ready:
                self._wait_for_news(follower, first, r)
                continue
            attempted.add(r)
            laps = self.rounds.setdefault(r, {"train": 0.0, "submit": 0.0, "stake": 0.0, "contributors": 0})
            round_started = time.perf_counter()
            # A few contributors at a time: one trains while another pins and waits for its transaction.
            with ThreadPoolExecutor(max_workers=self.manifest.threads, thread_name_prefix="swarm") as pool:
                futures = [pool.submit(self._contribute, m, c, r, info.min_contributor_stake, data[m.name], laps)
                           for m, c in ready]
                done = [f.result() for f in futures]
            for (m, c), ok in zip(ready, done):
                if ok is None:
                    active.remove((m, c))
                submitted += bool(ok)
            laps["wall"] = round(time.perf_counter() - round_started, 3)
            self._write_laps(first)
            log.info("round %d: %d of %d contributors submitted (train %.1f s, stake %.1f s, pin+submit %.1f s, "
                     "summed over contributors)", r, laps["contributors"], len(active), laps["train"], laps["stake"],
                     laps["submit"])
        if not active:
            raise SwarmError("every contributor of this swarm stopped (see the log)")
        first.wait_for_end()
        # Claims read the round reports and send a transaction each: a few at a time, like the rounds.
        with ThreadPoolExecutor(max_workers=max(2, self.manifest.threads), thread_name_prefix="swarm-claim") as pool:
            claimed = sum(pool.map(lambda member: member[1].claim(), self.members))
        log.info("swarm of %d: %d submissions, claimed %d in total", len(self.members), submitted, claimed)
        return {"members": len(self.members), "submissions": submitted, "claimed": claimed, "rounds": self.rounds}

    def _ready(self, active: list, round_index: int) -> list:
        """The members that can submit to the round now: two reads for the whole swarm (the round, its submissions)
        instead of two per contributor."""
        from fedchain.chain.protocol import RoundPhase

        info = self.protocol.round(self.manifest.task_id, round_index)
        if info.phase != RoundPhase.OPEN or time.time() >= info.submission_deadline:
            return []
        done = {s.contributor.lower() for s in self.protocol.submissions(self.manifest.task_id, round_index)}
        return [(m, c) for m, c in active if c.account.address.lower() not in done]

    def _contribute(self, member: SwarmMember, contributor, round_index: int, minimum: int, data,
                    laps: dict[str, float]) -> bool | None:
        """Stake if needed, train, pin and submit one contributor's update: True if submitted, False if not (the
        round closed), None if it can no longer stake (it stops)."""
        from fedchain.roles.contributor import CannotStakeError

        started = time.perf_counter()
        try:
            contributor.top_up_stake(minimum)
        except CannotStakeError as exc:
            log.error("%s: %s; it stops contributing", member.name, exc)
            return None
        staked = time.perf_counter()
        outcome = contributor.contribute_round(round_index, data)
        with self._lock:
            laps["stake"] += staked - started
            if outcome is not None:
                laps["contributors"] += 1
                laps["train"] += outcome.train_seconds
                laps["submit"] += time.perf_counter() - staked - outcome.train_seconds
        return outcome is not None

    def _write_laps(self, first) -> None:
        """Each round's seconds (summed over this process's contributors; `wall`: the process's own time from the
        first training to the last submission), for the demo's round anatomy."""
        path = self.manifest.state_dir / f"swarm-{first.account.address}-task{self.manifest.task_id}.rounds.json"
        path.write_text(json.dumps({str(r): v for r, v in self.rounds.items()}))

    def _wait_for_news(self, follower, contributor, round_index: int) -> None:
        from fedchain.roles.contributor import STALL_CHECK_SECONDS

        last_check = time.monotonic()
        while not follower.poll():
            if time.monotonic() - last_check >= STALL_CHECK_SECONDS:
                contributor.expire_if_stalled(round_index)
                last_check = time.monotonic()
            time.sleep(self.manifest.poll_interval)


def _round_cached_view(protocol, ipfs, task_id: int):
    """A TaskView that fetches each round's base model once (a round's base never changes once it opened). Built
    here, on first use, so that writing a manifest (the demo's parent) does not import torch."""
    from fedchain.views.taskview import GlobalModel, TaskView

    class RoundCachedView(TaskView):
        _models: dict[int, GlobalModel] = {}
        _lock = threading.Lock()  # contributors on several threads ask for the same model: fetch it once

        def global_model(self, round_index: int) -> GlobalModel:
            with self._lock:
                if round_index not in self._models:
                    self._models = {round_index: super().global_model(round_index)}  # only the current round's
                return self._models[round_index]

    return RoundCachedView(protocol, ipfs, task_id)


def _wait_for_task(protocol, task_id: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while protocol.task_count() <= task_id:
        if time.monotonic() > deadline:
            raise SwarmError(f"task {task_id} does not exist (waited {seconds:.0f} s)")
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fedchain.sim.swarm", description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest", type=Path, help="the swarm's manifest (JSON; see the module docstring)")
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    password = os.environ.get(PASSWORD_ENV)
    if password is None:
        print(f"error: set ${PASSWORD_ENV} to the members' keystore password", file=sys.stderr)
        return 2
    try:
        manifest = SwarmManifest.from_json(json.loads(args.manifest.read_text()))
        from fedchain.chain.client import Chain
        from fedchain.chain.deployments import load_deployments
        from fedchain.chain.protocol import Protocol
        from fedchain.content.client import IpfsClient

        protocol = Protocol(Chain(manifest.rpc_url), load_deployments(manifest.deployments))
        _wait_for_task(protocol, manifest.task_id, manifest.wait_for_task)
        summary = Swarm(protocol, IpfsClient(manifest.ipfs_api), manifest, password).run()
    except (FedchainError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({k: v for k, v in summary.items() if k != "rounds"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
