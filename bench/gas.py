"""Gas of the on-chain core (StakeRegistry, TaskManager), first-time and steady-state, beside a computed floor.

Run alone: ``python -m bench.gas [--quick]`` (after ``make setup``, which compiles the contracts). It starts its own
Anvil (Prague rules) on a free port, deploys from ``.build/__local__.json`` and drives every function with web3.
Figures are gas used by whole transactions (21,000 intrinsic included), not timings, so they do not depend on the
machine. The floor is what a transaction doing the same job could not go below: intrinsic gas, calldata
(16 per non-zero byte, 4 per zero byte), the storage slots the design must write (22,100 for a new slot,
5,000 to rewrite a cold one) and the logs actually emitted (375 + 375 per topic + 8 per data byte).
"""

from __future__ import annotations

import json
import platform
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import committee_gas

ROOT = Path(__file__).resolve().parents[1]
FED = 10**18
MIN_CONTRIBUTOR = 100 * FED
MIN_VALIDATOR = 1_000 * FED
REWARD = 1_000 * FED
SLASH = 10 * FED

# Targets from issue 2 (gas per transaction).
TARGET_SUBMIT = 70_000
TARGET_CLAIM = 90_000
TARGET_POST = 120_000
TARGET_PER_SLASH = 30_000

# Storage each function must write by design: (new slots, rewritten cold slots). See the module docstring.
DESIGN_STORAGE = {
    "stake (first)": (1, 3),  # account stake slot new; allowance, staker and registry balances rewritten
    "stake (add)": (0, 4),
    "requestUnstake": (1, 1),  # release time new; packed active|unbonding rewritten
    "withdraw": (0, 3),  # packed stake slot, registry and staker balances (release time cleared: refund)
    "createTask": (10, 3),  # 9 task slots + round-0 clock; task count, allowance, owner balance (+ contract balance)
    "submitUpdate": (1, 2),  # the digest slot; the round clock (submission count); the registry's stake|locked slot
    "submitUpdate (closes round)": (1, 2),
    "submitUpdate (carries lock)": (1, 1),  # the previous round's lock moves on: nothing written in the registry
    "submitUpdate (closes round, carries lock)": (1, 1),
    "postResult": (3, 1),  # root, totals (with the outcome), next clock; carry
    "postResult (last round)": (2, 2),  # root, totals; carry, endedAt
    "claim (new holder)": (2, 3),  # claimed flag, recipient balance; round claimed, paidOut, contract balance
    "claim (existing holder)": (1, 4),
    "claimMany (2 rounds)": (2, 5),
    "expireRound": (2, 1),  # outcome, next clock; carry
    "expireRound (last round)": (1, 2),  # outcome; carry, endedAt
    "cancelTask": (0, 1),
    "withdrawRefund": (0, 4),  # carry/refunded, contract and owner balances
    "release": (1, 1),  # the settlement record (released bit); the registry's stake|locked slot
    "release (after a claim)": (0, 2),  # the settlement record already holds the claimed bit
}


# ─── a minimal OpenZeppelin StandardMerkleTree for (taskId, round, account, amount) ───
def _leaf(task_id: int, round_index: int, account: str, amount: int) -> bytes:
    from eth_abi import encode
    from eth_utils import keccak

    return keccak(keccak(encode(["uint256", "uint256", "address", "uint256"], [task_id, round_index, account, amount])))


class _Tree:
    def __init__(self, task_id: int, round_index: int, entries: dict[str, int]) -> None:
        from eth_utils import keccak

        self.leaves = {a: _leaf(task_id, round_index, a, v) for a, v in entries.items()}
        ordered = sorted(self.leaves.values())
        n = len(ordered)
        tree: list[bytes] = [b""] * (2 * n - 1)
        for i, leaf in enumerate(ordered):
            tree[len(tree) - 1 - i] = leaf
        for i in range(len(tree) - 1 - n, -1, -1):
            a, b = tree[2 * i + 1], tree[2 * i + 2]
            tree[i] = keccak(min(a, b) + max(a, b))
        self.tree = tree
        self.index = {leaf: i for i, leaf in enumerate(tree)}
        self.total = sum(entries.values())

    @property
    def root(self) -> bytes:
        return self.tree[0]

    def proof(self, account: str) -> list[bytes]:
        i = self.index[self.leaves[account]]
        out = []
        while i > 0:
            out.append(self.tree[i + 1 if i % 2 == 1 else i - 1])
            i = (i - 1) // 2
        return out


# ─── chain plumbing ───
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _anvil_binary() -> str:
    found = shutil.which("anvil") or str(ROOT / "node_modules" / ".bin" / "anvil")
    if not Path(found).exists():
        raise RuntimeError("no anvil: run `make setup` (npm installs it) or install Foundry")
    return found


def _artifacts() -> dict[str, Any]:
    path = ROOT / ".build" / "__local__.json"
    if not path.exists():
        raise RuntimeError(f"{path} is missing: run `make setup` or `.venv/bin/ape compile` first")
    return json.loads(path.read_text())["contractTypes"]


def _calldata_gas(data: bytes) -> int:
    return sum(4 if b == 0 else 16 for b in data)


def _log_gas(receipt: Any) -> int:
    return sum(375 + 375 * len(log["topics"]) + 8 * len(bytes(log["data"])) for log in receipt["logs"])


@dataclass
class Measurement:
    name: str
    gas: int
    floor: int
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "gas": self.gas, "floor": self.floor, "over_floor": self.gas - self.floor, "note": self.note}


class _Bench:
    def __init__(self, rpc_url: str) -> None:
        from web3 import Web3

        self.w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 60}))
        self.types = _artifacts()
        self.accounts = self.w3.eth.accounts
        self.admin = self.accounts[0]
        self.results: list[Measurement] = []

    def deploy(self, name: str, *args: Any) -> Any:
        entry = self.types[name]
        factory = self.w3.eth.contract(abi=entry["abi"], bytecode=entry["deploymentBytecode"]["bytecode"])
        receipt = self.wait(factory.constructor(*args).transact({"from": self.admin}))
        return self.w3.eth.contract(address=receipt["contractAddress"], abi=entry["abi"])

    def wait(self, tx_hash: bytes) -> Any:
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash)
        if receipt["status"] != 1:
            raise RuntimeError(f"transaction {tx_hash.hex()} reverted")
        return receipt

    def send(self, fn: Any, sender: str) -> Any:
        return self.wait(fn.transact({"from": sender}))

    def fire(self, fn: Any, sender: str) -> bytes:
        """Send without waiting (setup traffic; automine keeps the order)."""
        return fn.transact({"from": sender, "gas": 1_000_000})

    def measure(self, name: str, fn: Any, sender: str, kind: str | None = None, note: str = "", slashes: int = 0,
                design: tuple[int, int] | None = None) -> Measurement:
        """Send and record gas beside its floor; `design` (new slots, rewritten slots) overrides DESIGN_STORAGE."""
        receipt = self.send(fn, sender)
        tx = self.w3.eth.get_transaction(receipt["transactionHash"])
        new, rewrite = design if design is not None else DESIGN_STORAGE.get(kind or name, (0, 0))
        rewrite += 3 * slashes  # per slash: the account's stake slot, the registry's and the treasury's balances
        floor = 21_000 + _calldata_gas(bytes(tx["input"])) + 22_100 * new + 5_000 * rewrite + _log_gas(receipt)
        m = Measurement(name, int(receipt["gasUsed"]), floor, note)
        self.results.append(m)
        return m

    def fund(self, n: int) -> list[str]:
        """n fresh impersonated accounts with ether and FED, each staked at the contributor minimum."""
        from eth_utils import keccak, to_checksum_address

        addrs = [to_checksum_address(keccak(b"fedchain-bench-%d" % (len(self.extra) + i))[12:]) for i in range(n)]
        self.extra.extend(addrs)
        last = b""
        for a in addrs:
            self.w3.provider.make_request("anvil_setBalance", [a, hex(10**20)])
            self.fire(self.fed.functions.mint(a, 10 * MIN_CONTRIBUTOR), self.admin)
            self.fire(self.fed.functions.approve(self.registry.address, MIN_CONTRIBUTOR), a)
            last = self.fire(self.registry.functions.stake(MIN_CONTRIBUTOR), a)
        if last:
            self.wait(last)
        return addrs

    def warp(self, seconds: int) -> None:
        self.w3.provider.make_request("evm_increaseTime", [seconds])
        self.w3.provider.make_request("evm_mine", [])

    def setup(self) -> None:
        self.extra: list[str] = []
        a = self.accounts
        self.owner, self.validator, self.treasury = a[1], a[2], a[3]
        self.fed = self.deploy("FedToken", self.admin)
        self.registry = self.deploy("StakeRegistry", self.fed.address, self.treasury, 3_600, MIN_CONTRIBUTOR, MIN_VALIDATOR, self.admin)
        self.manager = self.deploy("TaskManager", self.registry.address, 7 * 24 * 3_600, self.admin)
        role = self.registry.functions.SLASHER_ROLE().call()
        self.send(self.registry.functions.grantRole(role, self.manager.address), self.admin)
        for acct in (self.owner, self.validator):
            self.send(self.fed.functions.mint(acct, 10**9 * FED), self.admin)
        self.send(self.fed.functions.approve(self.registry.address, 2**256 - 1), self.validator)
        self.send(self.registry.functions.stake(MIN_VALIDATOR), self.validator)
        self.send(self.fed.functions.approve(self.manager.address, 2**256 - 1), self.owner)
        committee_gas.setup(self)  # deployed as deploy_all does: createTask reads the committee manager's slot

    def params(self, token: str, num_rounds: int, max_contributors: int) -> tuple:
        return (token, b"\x5a" * 32, b"\x0a" * 32, num_rounds, REWARD, 3_600, 1_800, MIN_CONTRIBUTOR,
                max_contributors, self.validator, SLASH, 0)

    def new_task(self, num_rounds: int, max_contributors: int, token: str | None = None) -> int:
        self.send(self.manager.functions.createTask(self.params(token or self.fed.address, num_rounds, max_contributors)), self.owner)
        return self.manager.functions.taskCount().call() - 1

    def submit_all(self, task_id: int, round_index: int, contributors: list[str]) -> None:
        last = b""
        for i, c in enumerate(contributors):
            digest = (round_index * 1_000_000 + i + 1).to_bytes(32, "big")
            last = self.fire(self.manager.functions.submitUpdate(task_id, round_index, digest, 100), c)
        if last:
            self.wait(last)
        count = self.manager.functions.getRound(task_id, round_index).call()[4]
        if count < len(contributors):
            raise RuntimeError(f"only {count} of {len(contributors)} submissions landed in task {task_id} round {round_index}")

    def restake(self, accounts: list[str]) -> None:
        for a in accounts:
            self.send(self.fed.functions.approve(self.registry.address, SLASH), a)
            self.send(self.registry.functions.stake(SLASH), a)

    # ─── scenarios ───
    def registry_functions(self) -> None:
        [staker] = self.fund(1)  # fund() stakes once: that first stake is not measured, so stake a fresh account
        from eth_utils import keccak, to_checksum_address

        fresh = to_checksum_address(keccak(b"fedchain-bench-fresh")[12:])
        self.w3.provider.make_request("anvil_setBalance", [fresh, hex(10**20)])
        self.send(self.fed.functions.mint(fresh, 10 * MIN_CONTRIBUTOR), self.admin)
        self.send(self.fed.functions.approve(self.registry.address, 10 * MIN_CONTRIBUTOR), fresh)
        self.measure("stake (first)", self.registry.functions.stake(MIN_CONTRIBUTOR), fresh)
        self.measure("stake (add)", self.registry.functions.stake(MIN_CONTRIBUTOR), fresh)
        self.measure("requestUnstake", self.registry.functions.requestUnstake(MIN_CONTRIBUTOR), fresh)
        self.warp(3_600)
        self.measure("withdraw", self.registry.functions.withdraw(), fresh)

    def lifecycle(self) -> None:
        """One 3-round task with 3 contributors: every TaskManager function, first time and steady state."""
        c = self.fund(3)
        self.measure("createTask", self.manager.functions.createTask(self.params(self.fed.address, 3, 3)), self.owner,
                     note="first task")
        self.measure("createTask", self.manager.functions.createTask(self.params(self.fed.address, 3, 3)), self.owner,
                     note="later task")
        task_id = self.manager.functions.taskCount().call() - 1
        rounds: list[_Tree] = []
        for r in range(2):
            tag = "round 0 (contributor's first)" if r == 0 else "round 1 (contributor's later round)"
            lock = "takes a stake lock" if r == 0 else "carries its round-0 lock"
            for i, who in enumerate(c):
                digest = (r * 100 + i + 1).to_bytes(32, "big")
                name = "submitUpdate (closes round)" if i == 2 else "submitUpdate"
                if r == 0:
                    kind = name
                else:
                    kind = "submitUpdate (closes round, carries lock)" if i == 2 else "submitUpdate (carries lock)"
                note = f"{tag}, submitter {i + 1} of 3, {lock}" + (" (max reached: closes)" if i == 2 else "")
                self.measure(name, self.manager.functions.submitUpdate(task_id, r, digest, 100), who, kind=kind, note=note)
            tree = _Tree(task_id, r, {who: 100 + i for i, who in enumerate(c)})
            rounds.append(tree)
            self.measure("postResult", self.manager.functions.postResult(
                task_id, r, b"\x01" * 32, b"\x02" * 32, tree.root, tree.total, []), self.validator,
                note=f"round {r}, 3 contributors, no slash")
        # Claims in FED: contributors already hold it.
        self.measure("claim (existing holder)", self.manager.functions.claim(task_id, 0, 100, rounds[0].proof(c[0])), c[0],
                     note="3-leaf tree")
        self.measure("claimMany (2 rounds)", self.manager.functions.claimMany(
            task_id, [0, 1], [101, 101], [rounds[0].proof(c[1]), rounds[1].proof(c[1])]), c[1])
        # Round 2 expires; the task ends.
        self.warp(3_600 + 1_800)
        self.measure("expireRound", self.manager.functions.expireRound(task_id, 2), self.validator, kind="expireRound (last round)",
                     note="last round: ends the task")
        self.measure("withdrawRefund", self.manager.functions.withdrawRefund(task_id), self.owner,
                     note="unallocated budget")
        # Round 1's locks (carried from round 0): released by anyone once the round is settled.
        self.measure("release", self.manager.functions.release(task_id, 1, c[2]), self.validator,
                     note="settled round, by a third party")
        self.measure("release (after a claim)", self.manager.functions.release(task_id, 1, c[1]), c[1],
                     note="shares the claim's record")
        # Expiry of a middle round, and cancel.
        other = self.new_task(3, 3)
        self.measure("cancelTask", self.manager.functions.cancelTask(other), self.owner)
        third = self.new_task(3, 3)
        self.warp(3_600 + 1_800)
        self.measure("expireRound", self.manager.functions.expireRound(third, 0), self.validator,
                     note="middle round: opens the next")
        # A claim by a recipient that holds none of the reward token yet.
        token = self.deploy("MockERC20", "Reward", "RWD")
        self.send(token.functions.mint(self.owner, 10**9 * FED), self.admin)
        self.send(token.functions.approve(self.manager.address, 2**256 - 1), self.owner)
        t2 = self.new_task(1, 3, token.address)
        self.submit_all(t2, 0, c)
        tree = _Tree(t2, 0, {who: 100 for who in c})
        self.measure("postResult (last round)", self.manager.functions.postResult(
            t2, 0, b"\x01" * 32, b"\x02" * 32, tree.root, tree.total, []), self.validator, note="ends the task")
        self.measure("claim (new holder)", self.manager.functions.claim(t2, 0, 100, tree.proof(c[0])), c[0],
                     note="first reward-token balance")
        self.measure("claim (new holder)", self.manager.functions.claim(t2, 0, 100, tree.proof(c[1])), c[1],
                     note="2nd claim in the round")

    def scaling(self, sizes: list[int]) -> dict[str, dict[int, int]]:
        """postResult and claim with n contributors in the round; postResult with k slashes at the largest n."""
        out: dict[str, dict[int, int]] = {"postResult": {}, "claim": {}, "submitUpdate": {}}
        pool = self.fund(max(sizes))
        for n in sizes:
            members = pool[:n]
            task_id = self.new_task(2, n)
            self.submit_all(task_id, 0, members)
            tree = _Tree(task_id, 0, {who: 10 + i for i, who in enumerate(members)})
            m = self.measure(f"postResult @ {n}", self.manager.functions.postResult(
                task_id, 0, b"\x01" * 32, b"\x02" * 32, tree.root, tree.total, []), self.validator,
                kind="postResult", note=f"{n} submissions in the round")
            out["postResult"][n] = m.gas
            m = self.measure(f"claim @ {n}", self.manager.functions.claim(task_id, 0, 10 + n // 2, tree.proof(members[n // 2])),
                             members[n // 2], kind="claim (existing holder)",
                             note=f"proof of {len(tree.proof(members[n // 2]))} hashes")
            out["claim"][n] = m.gas
            # A later-round submission by a contributor in a round already holding n - 1 others' submissions.
            self.submit_all(task_id, 1, members[: n - 1])
            m = self.measure(f"submitUpdate @ {n}", self.manager.functions.submitUpdate(task_id, 1, b"\x77" * 32, 100),
                             members[n - 1], kind="submitUpdate (closes round, carries lock)",
                             note="contributor's later round, closes it")
            out["submitUpdate"][n] = m.gas
        n = max(sizes)
        out["postResult with slashes"] = {}
        # The first slash ever also creates the treasury's token balance (a new slot): measured apart.
        for k, label in ((1, "first ever (empty treasury)"), (1, None), (2, None), (5, None)):
            members = pool[:n]
            task_id = self.new_task(2, n)
            self.submit_all(task_id, 0, members)
            slashed = sorted(members[:k], key=lambda a: int(a, 16))
            slashes = [(a, self.manager.functions.submissionOf(task_id, 0, a).call()) for a in slashed]
            tree = _Tree(task_id, 0, {members[-1]: 5})
            m = self.measure(f"postResult @ {n}, {k} slash(es)", self.manager.functions.postResult(
                task_id, 0, b"\x01" * 32, b"\x02" * 32, tree.root, tree.total, slashes), self.validator,
                kind="postResult", note=label or "", slashes=k)
            if label is None:
                out["postResult with slashes"][k] = m.gas
            self.restake(slashed)
        return out


def _function_rows(results: list[Measurement]) -> list[str]:
    lines = ["| function | gas | floor | over floor | note |", "|---|---:|---:|---:|---|"]
    for m in results:
        lines.append(f"| {m.name} | {m.gas:,} | {m.floor:,} | {m.gas - m.floor:,} | {m.note} |")
    return lines


def _markdown(results: list[Measurement], scaling: dict[str, dict[int, int]], committee: list[Measurement],
              committee_table: dict[str, dict[str, int]]) -> str:
    lines = _function_rows(results)
    lines += ["", "| contributors in the round | " + " | ".join(str(n) for n in scaling["postResult"]) + " |",
              "|---|" + "---:|" * len(scaling["postResult"])]
    for key in ("postResult", "claim", "submitUpdate"):
        lines.append(f"| {key} | " + " | ".join(f"{g:,}" for g in scaling[key].values()) + " |")
    slash = scaling["postResult with slashes"]
    lines += ["", "| slashes in postResult | " + " | ".join(str(k) for k in slash) + " |",
              "|---|" + "---:|" * len(slash),
              "| gas | " + " | ".join(f"{g:,}" for g in slash.values()) + " |"]
    lines += ["", "Committees (`bench/committee_gas.py`): one round of a committee task, m members x n contributors, "
              "every member voting every contributor available and revealing; claims against the root finalize built.",
              "", *_function_rows(committee), "", committee_gas.markdown(committee_table)]
    return "\n".join(lines)


def run(quick: bool) -> dict:
    """Deploy on a fresh Anvil and measure gas per function; quick mode (a smoke test) scales to 10 and 20
    contributors."""
    sizes = [10, 20] if quick else [10, 100, 1000]
    port = _free_port()
    cmd = [_anvil_binary(), "--port", str(port), "--hardfork", "prague", "--auto-impersonate", "--silent",
           "--accounts", "10", "--gas-limit", "60000000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    started = time.monotonic()
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"anvil did not listen on port {port}")
        bench = _Bench(f"http://127.0.0.1:{port}")
        bench.setup()
        bench.registry_functions()
        bench.lifecycle()
        scaling = bench.scaling(sizes)
        main_results, bench.results = bench.results, []
        committee_table = committee_gas.measure(bench, quick)
        committee_results, bench.results = bench.results, main_results
        anvil_version = subprocess.run([_anvil_binary(), "--version"], capture_output=True, text=True).stdout.strip()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    steady_submit = max(m.gas for m in bench.results if m.name == "submitUpdate" and "later round" in m.note)
    claim_holder = max(scaling["claim"].values())
    post_flat = max(scaling["postResult"].values())
    slash_gas = scaling["postResult with slashes"]
    checks = {
        "submitUpdate later round <= 70k": steady_submit <= TARGET_SUBMIT,
        "claim existing holder <= 90k (all n)": claim_holder <= TARGET_CLAIM,
        "postResult <= 120k (all n)": post_flat <= TARGET_POST,
        "postResult <= 120k + 30k per slash": all(g <= TARGET_POST + TARGET_PER_SLASH * k for k, g in slash_gas.items()),
    }
    claim_today = next(m.gas for m in bench.results if m.name == "claim (existing holder)")
    checks.update(committee_gas.targets(committee_table, claim_today))
    return {
        "name": "gas",
        "quick": quick,
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0]},
        "versions": {"anvil": anvil_version, "solc": "0.8.30 (optimizer 200 runs, evm prague)"},
        "seconds": round(time.monotonic() - started, 1),
        "functions": [m.as_dict() for m in bench.results],
        "scaling": {k: {str(n): g for n, g in v.items()} for k, v in scaling.items()},
        "committee_functions": [m.as_dict() for m in committee_results],
        "committee": committee_table,
        "targets": checks,
        "note": ("gas figures do not depend on the machine's load. A submission locks the task's slash amount of the "
                 "contributor's stake until its round settles: in round 0 it takes the lock (a registry call), in a "
                 "later round it carries its previous round's lock; `release` frees a settled lock; postResult checks "
                 "the validator's stake (skipped for committee tasks, whose members' seats are locked instead)."),
        "markdown": _markdown(bench.results, scaling, committee_results, committee_table),
    }


if __name__ == "__main__":
    result = run(quick="--quick" in sys.argv[1:])
    print(result["markdown"])
    print()
    for check, ok in result["targets"].items():
        print(f"{'ok  ' if ok else 'MISS'} {check}")
    print(f"({result['seconds']} s)")
