"""Gas of the CommitteeManager (part of the gas section, `python -m bench --only gas`): a committee of m members
judging one round of n contributors, for (m, n) in 3x10, 8x32, 16x64, 16x128: propose, join, createTask, each
member's availability vote, commit and reveal, finalize (consensus, reward root and postResult in one transaction),
and the claims of a contributor and a member against the root finalize built.

Floors follow bench.gas: intrinsic gas, calldata, the logs emitted, and the storage the design must write (given per
measurement below: new slots at 22,100, rewritten cold slots at 5,000). finalize's floor counts only its writes; its
work is reading the reveals (m x (4 + n/8) cold slots) and the O(n m^2) consensus in memory.
"""

from __future__ import annotations

from typing import Any

FED = 10**18
MIN_VALIDATOR = 1_000 * FED
WINDOWS = (300, 300, 300)  # availability, commit, reveal: within the tasks' 1,800 s aggregation window
SHARE_BPS = 1_000
SIZES = [(3, 10), (8, 32), (16, 64), (16, 128)]
QUICK_SIZES = [(3, 10), (8, 32)]
TARGET_COMMIT = 60_000
TARGET_FINALIZE_16x64 = 10_000_000
TARGET_CLAIM_RATIO = 1.2


def _scores(v: int, n: int) -> list[int]:
    """Member v's scores: a deterministic, member-dependent vector summing to the scale (so clipping does work)."""
    from fedchain.core.consensus import integer_scores

    return list(integer_scores([1 + (i * 7 + v * 3) % 11 for i in range(n)]))


def setup(bench: Any) -> None:
    """Deploy the CommitteeManager beside bench.manager, let it lock and slash, set it as the committee manager."""
    bench.committees = bench.deploy("CommitteeManager", bench.manager.address)
    role = bench.registry.functions.SLASHER_ROLE().call()
    bench.send(bench.registry.functions.grantRole(role, bench.committees.address), bench.admin)
    bench.send(bench.manager.functions.setCommitteeManager(bench.committees.address), bench.admin)


def _fund_members(bench: Any, n: int) -> list[str]:
    """n fresh accounts staked at 4x the validator minimum (room for a seat in each of the four committees), each
    keeping 1 FED unstaked, so that their claims are those of existing token holders, as the contributors' are."""
    from eth_utils import keccak, to_checksum_address

    addrs = [to_checksum_address(keccak(b"fedchain-bench-member-%d" % i)[12:]) for i in range(n)]
    last = b""
    for a in addrs:
        bench.w3.provider.make_request("anvil_setBalance", [a, hex(10**20)])
        bench.fire(bench.fed.functions.mint(a, 4 * MIN_VALIDATOR + FED), bench.admin)
        bench.fire(bench.fed.functions.approve(bench.registry.address, 4 * MIN_VALIDATOR), a)
        last = bench.fire(bench.registry.functions.stake(4 * MIN_VALIDATOR), a)
    bench.wait(last)
    return addrs


def _round(bench: Any, members: list[str], contributors: list[str], out: dict[str, dict[str, int]]) -> None:
    """One committee task of len(members) x len(contributors), measured function by function."""
    from fedchain.core.consensus import Reveal, commitment, consensus
    from fedchain.core.merkle import RewardTree

    cm, tm = bench.committees.functions, bench.manager.functions
    m, n = len(members), len(contributors)
    size = f"{m}x{n}"
    # propose: the committee's two slots, the members' array (length and m entries), m seats, the pending pointer
    rec = bench.measure(f"propose @ {size}", cm.propose(members, MIN_VALIDATOR, *WINDOWS, SHARE_BPS), bench.owner,
                        design=(2 * m + 4, 1), note=f"{m} members")
    out.setdefault("propose", {})[size] = rec.gas
    committee_id = bench.committees.functions.committeeCount().call()
    last = b""
    for i, member in enumerate(members):
        if i == 0:  # the seat, the committee's totals, the registry's stake|locked slot
            rec = bench.measure(f"join @ {size}", cm.join(committee_id, MIN_VALIDATOR), member, design=(0, 3),
                                note="locks the seat stake")
            out.setdefault("join", {})[size] = rec.gas
        else:
            last = bench.fire(cm.join(committee_id, MIN_VALIDATOR), member)
    if last:
        bench.wait(last)  # every seat is taken before createTask's gas estimate
    params = list(bench.params(bench.fed.address, 2, n))
    params[9] = bench.committees.address
    # createTask's own writes, plus the binding, the committee's task id and bound flag, the cleared pending pointer
    rec = bench.measure(f"createTask (committee) @ {size}", tm.createTask(tuple(params)), bench.owner,
                        design=(12, 4), note="binds the owner's committee")
    out.setdefault("createTask (committee)", {})[size] = rec.gas
    task_id = bench.manager.functions.taskCount().call() - 1
    bench.submit_all(task_id, 0, contributors)  # the n-th submission closes the round: the availability phase begins
    ordered = sorted(contributors, key=lambda a: int(a, 16))
    for v, member in enumerate(members):
        call = cm.voteAvailability(task_id, 0, ordered)
        if v in (0, m - 1):  # first: n new availability slots and the round's; later: the same, rewritten
            label = "first member" if v == 0 else "last member"
            design = (n + 1, 0) if v == 0 else (0, n + 1)
            rec = bench.measure(f"voteAvailability @ {size}", call, member, design=design, note=f"{label}, {n} contributors")
            out.setdefault(f"voteAvailability ({label})", {})[size] = rec.gas
        else:
            bench.send(call, member)
    bench.warp(WINDOWS[0])
    chain_id = bench.w3.eth.chain_id
    results = []
    for v, member in enumerate(members):
        scores, salt = _scores(v, n), bytes([v + 1]) * 32
        results.append((scores, salt))
        digest = commitment(chain_id=chain_id, contract=bench.committees.address, task_id=task_id, round_index=0,
                            member=member, model_digest=b"\x01" * 32, report_digest=b"\x02" * 32, slash=[False] * n,
                            scores=scores, salt=salt)
        if v == m - 1:
            rec = bench.measure(f"commit @ {size}", cm.commit(task_id, 0, digest), member, design=(1, 0))
            out.setdefault("commit", {})[size] = rec.gas
        else:
            bench.send(cm.commit(task_id, 0, digest), member)
    bench.warp(WINDOWS[1])
    for v, member in enumerate(members):
        scores, salt = results[v]
        call = cm.reveal(task_id, 0, b"\x01" * 32, b"\x02" * 32, ordered, scores, 0, salt)
        words = (n + 7) // 8
        if v in (0, m - 1):
            label = "first, stores the inputs" if v == 0 else "later"
            design = (2 + words + n + 2, 1) if v == 0 else (2 + words, 0)
            rec = bench.measure(f"reveal @ {size}", call, member, design=design, note=label)
            out.setdefault(f"reveal ({'first' if v == 0 else 'later'})", {})[size] = rec.gas
        else:
            bench.send(call, member)
    rec = bench.measure(f"finalize @ {size}", cm.finalize(task_id, 0), bench.validator, design=(3, 2),
                        note="consensus, reward root, postResult")
    out.setdefault("finalize", {})[size] = rec.gas
    # Claims against the root finalize built: the reference's amounts give the proofs.
    outcome = consensus([MIN_VALIDATOR] * m, [Reveal((True,) * n, b"\x01" * 32, tuple(s), (False,) * n) for s, _ in results],
                        contributors_budget=(1_000 * FED) - (1_000 * FED) * SHARE_BPS // 10_000,
                        members_budget=(1_000 * FED) * SHARE_BPS // 10_000)
    entries = {a: r for a, r in zip(ordered, outcome.rewards) if r}
    entries.update({a: d for a, d in zip(members, outcome.dividends) if d})
    tree = RewardTree(task_id, 0, entries)
    if bench.manager.functions.getRound(task_id, 0).call()[5] != tree.root:
        raise RuntimeError(f"finalize's root differs from fedchain.core.merkle's at {size}")
    for who, kind in ((ordered[n // 2], "contributor"), (members[0], "member")):
        rec = bench.measure(f"claim ({kind}) @ {size}", tm.claim(task_id, 0, tree.amount(who), tree.proof(who)), who,
                            kind="claim (existing holder)", note=f"{len(tree)} leaves, proof of {len(tree.proof(who))}")
        out.setdefault(f"claim ({kind})", {})[size] = rec.gas


def measure(bench: Any, quick: bool) -> dict[str, dict[str, int]]:
    """Every committee size in turn; returns {function: {"mxn": gas}}."""
    sizes = QUICK_SIZES if quick else SIZES
    members = _fund_members(bench, max(m for m, _ in sizes))
    pool = bench.fund(max(n for _, n in sizes))
    out: dict[str, dict[str, int]] = {}
    for m, n in sizes:
        _round(bench, members[:m], pool[:n], out)
    return out


def markdown(table: dict[str, dict[str, int]]) -> str:
    sizes = list(next(iter(table.values())))
    lines = ["| committee (members x contributors) | " + " | ".join(sizes) + " |", "|---|" + "---:|" * len(sizes)]
    for name, row in table.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[s]:,}" if s in row else "" for s in sizes) + " |")
    return "\n".join(lines)


def targets(table: dict[str, dict[str, int]], claim_today: int) -> dict[str, bool]:
    claims = list(table["claim (contributor)"].values()) + list(table["claim (member)"].values())
    checks = {
        "committee commit <= 60k (all sizes)": max(table["commit"].values()) <= TARGET_COMMIT,
        f"committee claims <= 1.2x today's claim ({claim_today:,})": max(claims) <= TARGET_CLAIM_RATIO * claim_today,
    }
    if "16x64" in table["finalize"]:
        checks["committee finalize <= 10M at 16x64"] = table["finalize"]["16x64"] <= TARGET_FINALIZE_16x64
    return checks
