"""Benchmark: contribution scoring at 10 and 50 contributors, on the same rounds: cost and agreement.

    python -m bench --only scoring [--quick]

Real rounds of the default MNIST task (the CNN, the spec's training, Dirichlet(0.5) shards of the MNIST subset, one
shard per contributor; the validator's held-out 20%): round 0 trains from the initial model, each later round from
the FedAvg of the one before. One contributor in ten attacks (noise, sign-flip, label-flip in turn: a label-flipper
trains on 9 - y) so that the scores have something to find. Every method values the same rows with the validator's
own code path (`LossEvaluator` over the spec's `eval_samples`, share coalitions, one torch thread, one worker):

- `tmc-shapley` as today's default spec runs it (20 permutations, truncation 0.05), with seeds 0, 1, 2: its cost,
  and its agreement with itself across seeds;
- the reference: `tmc-shapley` with 10x the permutations (200, seed 100);
- `gradient-shapley` (3 Gauss-Legendre points): its cost and agreement;
- exact Shapley by enumeration where computable (8 contributors; 256 coalitions).

Agreement is Spearman's rank correlation of the raw values (loss units, before clipping) over the round's
contributors, and the reward distance: half the L1 distance between the two methods' reward shares (0: the same
split, 1: disjoint). Incentives on the same rounds: the attackers' share of the rewards, and Spearman(shard size,
reward) over honest contributors, per method.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from bench._util import now, stats

TARGET_SCORING_SECONDS = 2.0  # at 50 contributors, default spec
TARGET_RANK_CORRELATION = 0.9  # against the 10x-permutation TMC-Shapley
ATTACKS = ("noise", "sign-flip", "label-flip")


def _rounds(k: int, rounds: int, seed: int = 0, skip: int = 0) -> list[dict[str, Any]]:
    """Train `rounds` real rounds of k contributors; each round's (K, D) rows, weights, roles, base state, holdout."""
    import torch

    from fedchain.aggregation import fedavg
    from fedchain.core.spec import mnist_spec
    from fedchain.learning.data import dirichlet_shards, mnist_subset, train_test_split
    from fedchain.learning.models import ParamLayout, apply_delta, build_model, initial_state
    from fedchain.learning.trainers import train_local

    spec = mnist_spec("cnn")
    x, y = mnist_subset()
    x_train, y_train, x_test, y_test = train_test_split(x, y, test_fraction=0.2, seed=seed)
    shards = dirichlet_shards(y_train, k, alpha=0.5, seed=seed)
    roles = [ATTACKS[(i // 10) % 3] if i % 10 == 9 else "honest" for i in range(k)]
    state = initial_state(spec, seed=seed)
    layout = ParamLayout.from_state_dict(state)
    out = []
    for r in range(rounds):
        buffer = torch.zeros(k, layout.total)
        train_seconds = []
        for i, shard in enumerate(shards):
            labels = y_train[shard] if roles[i] != "label-flip" else 9 - y_train[shard]
            started = time.perf_counter()
            res = train_local(build_model(spec), state, x_train[shard], labels, spec.training, seed=seed * 1000 + r * k + i,
                              device="cpu", progress=False)
            train_seconds.append(time.perf_counter() - started)
            layout.flatten_into(res.delta, buffer[i])
            if roles[i] == "sign-flip":
                buffer[i].mul_(-1.0)
            elif roles[i] == "noise":
                buffer[i] = torch.randn(layout.total, generator=torch.Generator().manual_seed(r * k + i)) * float(buffer[i].std())
        weights = [len(s) for s in shards]
        if r >= skip:
            out.append({"round": r, "buffer": buffer, "weights": weights, "roles": roles, "state": state, "layout": layout,
                        "spec": spec, "holdout": (x_test, y_test), "train_seconds": train_seconds})
        state = apply_delta(state, fedavg(buffer, weights), layout)
    return out


def _agreement(a: dict[int, float], b: dict[int, float]) -> float:
    from scipy.stats import spearmanr

    rows = sorted(a)
    return float(spearmanr([a[r] for r in rows], [b[r] for r in rows]).correlation)


def _reward_distance(a: dict[int, float], b: dict[int, float]) -> float:
    return 0.5 * math.fsum(abs(a[r] - b.get(r, 0.0)) for r in a)


def _score_one_round(rd: dict[str, Any], exact: bool, reference_permutations: int) -> dict[str, Any]:
    import torch

    from fedchain.learning.evaluation import LossEvaluator
    from fedchain.learning.models import build_model
    from fedchain.learning.scoring import exact_shapley, gradient_shapley, share_combine, tmc_shapley

    spec, buffer, weights = rd["spec"], rd["buffer"], rd["weights"]
    scoring = spec.scoring
    rows = list(range(buffer.shape[0]))
    torch.set_num_threads(1)
    loss_of = LossEvaluator(build_model(spec), rd["layout"], rd["state"], *rd["holdout"], device="cpu",
                            max_samples=scoring.eval_samples, seed=scoring.seed)
    combine = share_combine(buffer, weights, rows)
    out: dict[str, Any] = {"round": rd["round"], "contributors": len(rows)}
    results: dict[str, Any] = {}

    def timed(name: str, fn) -> None:
        started = time.perf_counter()
        results[name] = fn()
        out.setdefault("seconds", {})[name] = round(time.perf_counter() - started, 3)
        out.setdefault("evaluations", {})[name] = results[name].evaluations if hasattr(results[name], "evaluations") else None

    for seed in (0, 1, 2):
        timed(f"tmc-{seed}", lambda seed=seed: tmc_shapley(buffer, weights, rows, loss_of, permutations=scoring.permutations,
                                                           truncation_tol=scoring.truncation_tol, seed=seed, combine=combine))
    timed("tmc-10x", lambda: tmc_shapley(buffer, weights, rows, loss_of, permutations=reference_permutations,
                                         truncation_tol=scoring.truncation_tol, seed=100, combine=combine))
    timed("gradient", lambda: gradient_shapley(buffer, weights, rows, loss_of.gradient, loss_of, points=3))
    ref = results["tmc-10x"]
    raw = {name: res.raw for name, res in results.items()}
    scores = {name: res.scores for name, res in results.items()}
    if exact:
        started = time.perf_counter()
        raw["exact"] = exact_shapley(buffer, weights, rows, loss_of, combine=combine)
        out["seconds"]["exact"] = round(time.perf_counter() - started, 3)
        from fedchain.learning.scoring import normalise

        scores["exact"] = normalise(raw["exact"])[0]
    out["completeness_gap"] = results["gradient"].params.get("completeness_gap")
    out["spearman_vs_reference"] = {n: round(_agreement(raw[n], ref.raw), 4) for n in raw if n != "tmc-10x"}
    out["reward_distance_vs_reference"] = {n: round(_reward_distance(scores[n], ref.scores), 4) for n in scores if n != "tmc-10x"}
    out["tmc_self_spearman"] = [round(_agreement(raw[f"tmc-{a}"], raw[f"tmc-{b}"]), 4) for a, b in ((0, 1), (0, 2), (1, 2))]
    if exact:
        out["spearman_vs_exact"] = {n: round(_agreement(raw[n], raw["exact"]), 4) for n in raw if n != "exact"}
    roles, sizes = rd["roles"], weights
    honest = [r for r in rows if roles[r] == "honest"]
    out["attacker_share"] = {n: round(math.fsum(s[r] for r in rows if roles[r] != "honest"), 4) for n, s in scores.items()}
    from scipy.stats import spearmanr

    out["spearman_size_score_honest"] = {
        n: round(float(spearmanr([sizes[r] for r in honest], [s[r] for r in honest]).correlation), 4) for n, s in scores.items()
    }
    out["train_seconds_median"] = round(float(np.median(rd["train_seconds"])), 3)
    return out


def run(quick: bool) -> dict:
    sizes = [(8, True), (10, False)] if quick else [(8, True), (10, False), (50, False)]
    n_rounds = 1 if quick else 3
    reference = 40 if quick else 200
    per_round = []
    for k, exact in sizes:
        # at 50 the 10x reference costs minutes a round: score the later rounds (round 0's large steps are the easy case)
        for rd in _rounds(k, n_rounds, skip=1 if k >= 50 else 0):
            per_round.append(_score_one_round(rd, exact, reference))
    summary = {}
    for k, _ in sizes:
        rows = [r for r in per_round if r["contributors"] == k]
        methods = list(rows[0]["seconds"])
        summary[k] = {
            "seconds": {m: stats([r["seconds"][m] for r in rows], 3) for m in methods},
            "spearman_vs_reference": {m: stats([r["spearman_vs_reference"][m] for r in rows], 4) for m in rows[0]["spearman_vs_reference"]},
            "reward_distance_vs_reference": {m: stats([r["reward_distance_vs_reference"][m] for r in rows], 4)
                                             for m in rows[0]["reward_distance_vs_reference"]},
            "tmc_self_spearman": stats([x for r in rows for x in r["tmc_self_spearman"]], 4),
            "attacker_share": {m: stats([r["attacker_share"][m] for r in rows], 4) for m in rows[0]["attacker_share"]},
            "spearman_size_score_honest": {m: stats([r["spearman_size_score_honest"][m] for r in rows], 4)
                                           for m in rows[0]["spearman_size_score_honest"]},
            "completeness_gap": stats([abs(r["completeness_gap"]) for r in rows], 4),
        }
        if "spearman_vs_exact" in rows[0]:
            summary[k]["spearman_vs_exact"] = {m: stats([r["spearman_vs_exact"][m] for r in rows], 4) for m in rows[0]["spearman_vs_exact"]}
    result = {"name": "scoring", "quick": quick, "date": now(),
              "command": "python -m bench --only scoring" + (" --quick" if quick else ""),
              "setup": {"sizes": [k for k, _ in sizes], "rounds": n_rounds, "reference_permutations": reference,
                        "architecture": "cnn", "eval_samples": 192, "default_permutations": 20, "truncation_tol": 0.05,
                        "gradient_points": 3, "threads": 1},
              "per_round": per_round, "summary": {str(k): v for k, v in summary.items()}}
    result["targets"] = targets(result)
    result["markdown"] = markdown(result)
    return result


def targets(r: dict) -> list[dict[str, Any]]:
    s = r["summary"].get("50")
    if s is None:
        return []
    secs = s["seconds"]["gradient"]["max"]
    rho = s["spearman_vs_reference"]["gradient"]["min"]
    return [
        {"target": "gradient-shapley seconds per round at 50 contributors (worst round)", "goal": TARGET_SCORING_SECONDS,
         "measured": secs, "met": secs <= TARGET_SCORING_SECONDS},
        {"target": "gradient-shapley Spearman vs 10x-permutation TMC at 50 (worst round)", "goal": TARGET_RANK_CORRELATION,
         "measured": rho, "met": rho >= TARGET_RANK_CORRELATION},
    ]


def _m(s: dict[str, Any] | None, fmt: str = "{:.3f}") -> str:
    if not s or s.get("median") is None:
        return "-"
    return f"{fmt.format(s['median'])} ({fmt.format(s['min'])}-{fmt.format(s['max'])})"


def markdown(r: dict) -> str:
    st = r["setup"]
    names = {"tmc-0": "tmc-shapley, default (20 perm., seed 0)", "tmc-1": "tmc-shapley, default, seed 1",
             "tmc-2": "tmc-shapley, default, seed 2", "gradient": "gradient-shapley (3 points)",
             "exact": "exact Shapley (enumeration)", "tmc-10x": f"reference: tmc-shapley, {st['reference_permutations']} perm."}
    lines = [
        f"The same real rounds scored by each method: CNN, Dirichlet 0.5 shards, one contributor in ten attacking "
        f"(noise, sign-flip, label-flip), {st['rounds']} rounds per size (at 50: rounds 1 and 2), share coalitions, {st['eval_samples']} "
        f"held-out samples, one torch thread. Agreement: Spearman of raw values; reward distance: half the L1 "
        f"distance of reward shares (0 = same split). Medians (min-max) over rounds. `{r['command']}`",
        "",
        "| contributors | method | seconds per round | loss evaluations | Spearman vs reference | reward distance vs reference | Spearman vs exact | attackers' share | Spearman(size, reward), honest |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for k, s in r["summary"].items():
        rows = [p for p in r["per_round"] if str(p["contributors"]) == k]
        for m in ["tmc-0", "tmc-1", "tmc-2", "gradient", "exact", "tmc-10x"]:
            if m not in s["seconds"] and m != "exact":
                continue
            if m == "exact" and "exact" not in rows[0]["seconds"]:
                continue
            evals = [p["evaluations"].get(m) for p in rows if p.get("evaluations", {}).get(m) is not None]
            lines.append(
                f"| {k} | {names[m]} | {_m(s['seconds'].get(m))} | {int(np.median(evals)) if evals else '-'} "
                f"| {_m(s['spearman_vs_reference'].get(m))} | {_m(s['reward_distance_vs_reference'].get(m))} "
                f"| {_m((s.get('spearman_vs_exact') or {}).get(m))} | {_m(s['attacker_share'].get(m), '{:.2%}')} "
                f"| {_m(s['spearman_size_score_honest'].get(m))} |")
    lines += ["", "TMC-Shapley at the default budget against itself across seeds (Spearman, pairs of seeds 0/1/2, all rounds): "
              + ", ".join(f"{k} contributors {_m(s['tmc_self_spearman'])}" for k, s in r["summary"].items())
              + ". gradient-shapley's completeness gap |v(A) - sum of values| / |v(A)|: "
              + ", ".join(f"{k}: {_m(s['completeness_gap'], '{:.2%}')}" for k, s in r["summary"].items()) + "."]
    if r.get("targets"):
        lines += ["", "| target | goal | measured | met |", "|---|---|---|---|"]
        for t in r["targets"]:
            lines.append(f"| {t['target']} | {t['goal']} | {t['measured']:.3f} | {'yes' if t['met'] else 'NO'} |")
    return "\n".join(lines)
