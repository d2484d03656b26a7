"""Benchmark: a round's anatomy, seconds per phase, and the protocol's overhead as a share of the round.

    python -m bench --only anatomy [--quick]

A real devnet (Anvil + the embedded IPFS node, `fedchain.sim.devnet.running_devnet`), a sealed MNIST task with the
"mlp" architecture at hidden width 1,258 (1,000,120 parameters, 4 MB updates), TMC-Shapley scoring (the spec's
defaults), 10 contributors holding the demo's Dirichlet(0.5) shards, one validator. In-process, calling the
functions the contributor and validator processes call, each timed:

contributor (one after another, on this machine): fetch the global model (`TaskView.global_model`: chain lookup,
IPFS cat, CID check, decode), train (`train_local`), seal (`Contributor.build_payload`: envelope + sealing),
add to IPFS (`IpfsClient.add_bytes`), submit (`Protocol.submit_update`, mined), then after the round claim
(`Contributor.claim`: report fetch, Merkle proof, `claimMany`);
validator (`Validator.finalize_round`, its own timer laps): fetch + verify (IPFS cat, unseal, decode, checks),
aggregate (screening + the rule), score (TMC-Shapley), evaluate (measured by wrapping the evaluation call) and
publish (the new model and the round report to IPFS; the model's share is the evaluate lap minus the evaluation),
post (`postResult`, mined).

The round's time is its critical path as it runs when contributors work in parallel on their own machines: the
slowest contributor's phases, then the validator's, then a (median) claim. The protocol overhead is everything on
that path but training, evaluation and scoring. Targets (issue 6): overhead <= 10% of the round and <= 2 s.
Repeated over 3 rounds (quick: 3 contributors, 1 round); figures are medians with their range.
"""

from __future__ import annotations

import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._util import fmt_stats, now, stats

HIDDEN = 1258  # 784*1258 + 1258 + 1258*10 + 10 = 1,000,120 parameters
CONTRIBUTOR_PHASES = ["fetch_model", "train", "seal", "ipfs_add", "submit"]
VALIDATOR_PHASES = ["fetch_verify", "aggregate", "score", "evaluate", "publish", "post"]
NOT_OVERHEAD = {"train", "score", "evaluate"}
TARGET_SHARE = 0.10
TARGET_SECONDS = 2.0


class _Timed:
    """Wraps a function and accumulates the seconds spent in it."""

    def __init__(self, fn) -> None:
        self.fn, self.seconds = fn, 0.0

    def __call__(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0


def _setup(net, work: Path, clients: int, rounds: int):
    from fedchain.chain.protocol import Protocol
    from fedchain.content.client import IpfsClient
    from fedchain.core.keys import generate_sealing_key, load_sealing_key
    from fedchain.core.spec import mnist_spec
    from fedchain.learning.data import dirichlet_shards, mnist_subset, save_npz, train_test_split
    from fedchain.roles.contributor import Contributor, ContributorConfig
    from fedchain.roles.owner import create_task_from_spec
    from fedchain.roles.validator import Validator, ValidatorConfig
    from fedchain.sim.devnet import dev_account, fund_dev_accounts

    protocol = Protocol(net.chain, net.deployments)
    ipfs = IpfsClient(net.ipfs_api)
    fund_dev_accounts(net, clients + 2)
    owner, validator_account = dev_account(0), dev_account(1)
    accounts = [dev_account(2 + i) for i in range(clients)]
    password = secrets.token_hex(8)
    public = generate_sealing_key(work / "validator.key", password=password)
    sealing_key = load_sealing_key(work / "validator.key", password=password)
    spec = mnist_spec("mlp", sealing_keys=[public.hex()], arch_config={"hidden": [HIDDEN]})
    protocol.ensure_stake(validator_account, protocol.registry.functions.minValidatorStake().call())
    task_id = create_task_from_spec(
        protocol, ipfs, owner, spec, rounds=rounds, reward_per_round=1_000 * 10**18, submission_window=3600,
        aggregation_window=3600, max_contributors=clients, validator=validator_account.address, seed=0,
    )
    x, y = mnist_subset()
    split = train_test_split(x, y, test_fraction=0.2, seed=0)
    shards = dirichlet_shards(split.y_train, clients, alpha=0.5, seed=0)
    holdout = save_npz(work / "holdout.npz", split.x_test, split.y_test)
    people = []
    min_stake = protocol.task(task_id).min_contributor_stake
    for i, (account, shard) in enumerate(zip(accounts, shards)):
        path = save_npz(work / f"client-{i}.npz", split.x_train[shard], split.y_train[shard])
        c = Contributor(protocol, ipfs, account, ContributorConfig(
            task_id=task_id, data_path=path, state_dir=work / "state", seed=i, progress=False, claim_at_end=False,
            device="cpu"))
        protocol.ensure_stake(account, min_stake)
        people.append((c, split.x_train[shard], split.y_train[shard]))
    validator = Validator(protocol, ipfs, validator_account, sealing_key,
                          ValidatorConfig(task_id=task_id, holdout_path=holdout, state_dir=work / "state", device="cpu"))
    return protocol, spec, task_id, people, validator


def _contribute(c, x, y, round_index: int) -> dict[str, float]:
    """Contributor.contribute_round, phase by phase (same calls, same order)."""
    from fedchain.core.cid import cid_to_digest
    from fedchain.learning.models import build_model
    from fedchain.learning.trainers import train_local

    t: dict[str, float] = {}
    t0 = time.perf_counter()
    base = c.task.global_model(round_index)
    t1 = time.perf_counter()
    model = build_model(c.task.spec)
    result = train_local(model, base.state, x, y, c.task.spec.training, seed=c.config.seed * 1_000_003 + round_index,
                         device=c.device, progress=False)
    t2 = time.perf_counter()
    payload = c.build_payload(round_index, base.cid, result.num_samples, result.delta)
    t3 = time.perf_counter()
    cid = c.ipfs.add_bytes(payload)
    t4 = time.perf_counter()
    c.protocol.submit_update(c.account, c.config.task_id, round_index, cid_to_digest(cid), result.num_samples)
    t5 = time.perf_counter()
    t.update(fetch_model=t1 - t0, train=t2 - t1, seal=t3 - t2, ipfs_add=t4 - t3, submit=t5 - t4)
    t["update_bytes"] = len(payload)
    return t


def _validate(validator, round_index: int) -> tuple[dict[str, float], Any]:
    import fedchain.roles.round as vmod

    timed = _Timed(vmod.evaluate)
    original = vmod.evaluate
    vmod.evaluate = timed
    try:
        if not validator._ready_to_aggregate(round_index):
            raise RuntimeError(f"round {round_index} is not closed after every contributor submitted")
        result = validator.finalize_round(round_index)
    finally:
        vmod.evaluate = original
    s = dict(result.seconds)
    evaluate = timed.seconds  # the model evaluations alone (the "evaluate" lap also applies the merged delta)
    phases = {"fetch_verify": s["fetch_verify"], "aggregate": s["aggregate"], "score": s["score"],
              "evaluate": evaluate, "publish": s.get("publish", 0.0), "post": s.get("post", 0.0)}
    return phases, result


def run(quick: bool) -> dict:
    import torch

    from fedchain.sim.devnet import running_devnet

    clients = 3 if quick else 10
    rounds = 1 if quick else 3
    per_round = []
    with tempfile.TemporaryDirectory(prefix="fedchain-bench-anatomy-") as tmp:
        work = Path(tmp)
        with running_devnet(work / "devnet") as net:
            protocol, spec, task_id, people, validator = _setup(net, work, clients, rounds)
            for r in range(rounds):
                contributors, prefetch = [], 0.0
                for i, (c, x, y) in enumerate(people):
                    contributors.append(_contribute(c, x, y, r))
                    if i < len(people) - 1:
                        # What the validator's loop does while the round is open: fetch the updates submitted so far
                        # (off the critical path: the slower contributors are still training). The last update is
                        # fetched when the round closes, inside fetch + verify.
                        t0 = time.perf_counter()
                        validator.collector.prefetch(r)
                        prefetch += time.perf_counter() - t0
                v_phases, result = _validate(validator, r)
                claims = []
                for c, _, _ in people:
                    t0 = time.perf_counter()
                    c.claim()
                    claims.append(time.perf_counter() - t0)
                per_round.append({"round": r, "contributors": contributors, "validator": v_phases, "claims": claims,
                                  "prefetch_off_path": prefetch,
                                  "test_accuracy": result.test_accuracy})
    return summarise(per_round, quick, clients, rounds, spec, torch.get_num_threads())


def _round_path(rd: dict, rounds: int) -> dict[str, Any]:
    slowest = max(rd["contributors"], key=lambda c: sum(c[p] for p in CONTRIBUTOR_PHASES))
    claim = sorted(rd["claims"])[len(rd["claims"]) // 2]
    path = {**{p: slowest[p] for p in CONTRIBUTOR_PHASES}, **rd["validator"], "claim": claim}
    total = sum(path.values())
    overhead = sum(v for k, v in path.items() if k not in NOT_OVERHEAD)
    # The client claims once, at the end of the task, for every round (claimMany): per round, a share of one claim.
    amortized = overhead - claim + claim / rounds
    return {"phases": path, "total": total, "overhead": overhead, "share": overhead / total,
            "share_claim_amortized": amortized / (total - claim + claim / rounds)}


def summarise(per_round, quick, clients, rounds, spec, threads) -> dict[str, Any]:
    from fedchain.learning.kinds import num_parameters

    paths = [_round_path(rd, rounds) for rd in per_round]
    contributor_phase = {p: stats([c[p] for rd in per_round for c in rd["contributors"]]) for p in CONTRIBUTOR_PHASES}
    validator_phase = {p: stats([rd["validator"][p] for rd in per_round]) for p in VALIDATOR_PHASES}
    claim = stats([x for rd in per_round for x in rd["claims"]])
    share = stats([p["share"] for p in paths])
    share_amortized = stats([p["share_claim_amortized"] for p in paths])
    prefetch = stats([rd.get("prefetch_off_path", 0.0) for rd in per_round])
    # What bounds the share: the overhead is a fixed cost per round (bytes moved, transactions), training is not.
    # The training seconds at which this overhead would be 10% of the round, the other work as measured:
    work = stats([p["phases"]["score"] + p["phases"]["evaluate"] for p in paths])
    o = stats([p["overhead"] for p in paths])["median"]
    train_for_target = round(o / TARGET_SHARE - o - work["median"], 3)
    overhead = stats([p["overhead"] for p in paths])
    total = stats([p["total"] for p in paths])
    seq = stats([sum(c[p] for c in rd["contributors"] for p in CONTRIBUTOR_PHASES) + sum(rd["validator"].values())
                 for rd in per_round])
    targets = [
        {"target": "overhead share of the round", "goal": f"<= {TARGET_SHARE:.0%}", "measured": share["median"],
         "met": share["median"] <= TARGET_SHARE},
        {"target": "overhead seconds", "goal": f"<= {TARGET_SECONDS} s", "measured": overhead["median"],
         "met": overhead["median"] <= TARGET_SECONDS},
        {"target": "overhead share, the claim amortized over the task (claimMany once at its end, as the client does)",
         "goal": f"<= {TARGET_SHARE:.0%}", "measured": share_amortized["median"],
         "met": share_amortized["median"] <= TARGET_SHARE},
    ]
    result = {
        "name": "anatomy", "quick": quick, "date": now(),
        "command": "python -m bench --only anatomy" + (" --quick" if quick else ""),
        "setup": {"contributors": clients, "rounds": rounds, "architecture": spec.architecture,
                  "arch_config": spec.arch_config, "parameters": num_parameters(spec), "sealed": spec.sealed,
                  "scoring": spec.scoring.model_dump(), "training": spec.training.model_dump(), "torch_threads": threads,
                  "update_bytes": per_round[0]["contributors"][0]["update_bytes"],
                  "mode": "in-process against a real devnet; contributors one after another"},
        "contributor_phases": contributor_phase, "validator_phases": validator_phase, "claim": claim,
        "critical_path": {"total_seconds": total, "overhead_seconds": overhead, "overhead_share": share,
                          "overhead_share_claim_amortized": share_amortized, "per_round": paths},
        "prefetch_off_path_seconds": prefetch, "train_seconds_for_target_share": train_for_target,
        "sequential_seconds_all_contributors_and_validator": seq,
        "final_accuracy": per_round[-1]["test_accuracy"], "targets": targets, "per_round": per_round,
    }
    result["markdown"] = markdown(result)
    return result


def markdown(r: dict) -> str:
    s = r["setup"]
    path = r["critical_path"]
    med_phases = {p: stats([x["phases"][p] for x in path["per_round"]])["median"] for p in path["per_round"][0]["phases"]}
    total = path["total_seconds"]["median"]
    lines = [
        f"{s['contributors']} contributors, {s['rounds']} round(s), MLP {s['arch_config']} = {s['parameters']:,} parameters "
        f"({s['update_bytes'] / 1e6:.1f} MB sealed update), {s['training']['local_epochs']} local epochs, batch "
        f"{s['training']['batch_size']}, scoring {s['scoring']['method']} ({s['scoring']['permutations']} permutations, "
        f"{s['scoring']['eval_samples']} samples); {s['mode']}, {s['torch_threads']} torch thread(s). `{r['command']}`",
        "",
        "| phase | who | seconds, median (min-max) | on the critical path (median round) | share | overhead? |",
        "|---|---|---|---|---|---|",
    ]
    names = {"fetch_model": "fetch global model", "train": "train", "seal": "seal (envelope + encryption)",
             "ipfs_add": "add to IPFS", "submit": "submit (tx mined)", "fetch_verify": "fetch + verify all updates",
             "aggregate": "screen + aggregate", "score": f"score ({s['scoring']['method']})", "evaluate": "evaluate new model",
             "publish": "publish model + report to IPFS", "post": "post result (tx mined)", "claim": "claim (tx mined)"}
    rows = [(p, "contributor", r["contributor_phases"][p]) for p in CONTRIBUTOR_PHASES]
    rows += [(p, "validator", r["validator_phases"][p]) for p in VALIDATOR_PHASES]
    rows += [("claim", "contributor", r["claim"])]
    for p, who, st in rows:
        on_path = med_phases.get(p, 0.0)
        lines.append(f"| {names[p]} | {who} | {fmt_stats(st, '{:.3f}')} | {on_path:.3f} | {on_path / total:.1%} | "
                     f"{'no' if p in NOT_OVERHEAD else 'yes'} |")
    lines += [
        "",
        f"Critical path of a round (slowest contributor, then the validator, then a median claim): "
        f"{fmt_stats(path['total_seconds'])} s; protocol overhead {fmt_stats(path['overhead_seconds'], '{:.3f}')} s = "
        f"{fmt_stats(path['overhead_share'], '{:.1%}')} of the round. (Everything run one after another on this machine: "
        f"{fmt_stats(r['sequential_seconds_all_contributors_and_validator'])} s per round.)",
        "",
        f"The validator prefetches the updates submitted while the round is open (`UpdateCollector.prefetch`): "
        f"{fmt_stats(r['prefetch_off_path_seconds'], '{:.3f}')} s per round spent off the critical path, while the "
        f"slower contributors train (each fetched, opened, verified and decoded then); fetch + verify above is what "
        f"is left once the round closes (the last update, the replay checks, copying the decoded rows). What bounds the share: the overhead is a fixed cost per round (the "
        f"updates' bytes moved and opened, the transactions) while training here is "
        f"{med_phases.get('train', 0.0):.2f} s (2 epochs of a few hundred digits); with this overhead, training "
        f"would have to take {r['train_seconds_for_target_share']} s a round for the overhead to be 10% of it. "
        f"Claims: counted once per round above; the client claims once per task (claimMany): with the claim "
        f"amortized over the task's {s['rounds']} rounds the share is "
        f"{fmt_stats(path['overhead_share_claim_amortized'], '{:.1%}')}.",
        "",
        "| target | goal | measured (median) | met |", "|---|---|---|---|",
    ]
    for t in r["targets"]:
        m = f"{t['measured']:.1%}" if "share" in t["target"] else f"{t['measured']:.2f} s"
        lines.append(f"| {t['target']} | {t['goal']} | {m} | {'yes' if t['met'] else 'NO'} |")
    return "\n".join(lines)
