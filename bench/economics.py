"""Benchmark: what inflating a self-reported sample count buys, under each sample weighting of the spec's policy.

    python -m bench --only economics [--quick]

One round of the validator's round function (`fedchain.roles.round.compute_outcome`: screening, FedAvg, TMC-Shapley
scoring with the default "share" coalition, the reward split) on real updates: five contributors each train the
MNIST MLP on 200 samples of their own (the MNIST subset shuffled, seed 0); contributor 4 then claims `factor` times
the samples it trained on (its update unchanged). Reported per weighting ("claimed": counts as reported,
"median-capped": the default, "equal") and factor: contributor 4's share of the merge weight and of the round's
rewards, against the same round where it claims honestly. The target (issue 17): under the default weighting an
inflated claim buys neither weight nor reward (gain 1.00x for every factor).
Quick: factors 1 and 10 only, 4 scoring permutations.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from bench._util import now

HONEST_SAMPLES = 200
CONTRIBUTORS = 5
INFLATER = CONTRIBUTORS - 1
WEIGHTINGS = ("claimed", "median-capped", "equal")


def _round(rows: torch.Tensor, spec: Any, base: Any, holdout: Any, claims: list[int]) -> tuple[list[float], list[float]]:
    """Each contributor's (weight share, reward share) in one round."""
    from fedchain.learning.models import build_model
    from fedchain.roles.round import ComputeSettings, RoundInputs, SubmittedUpdate, compute_outcome, merge

    updates = [SubmittedUpdate(f"0x{i + 1:040x}", f"cid-{i}", bytes([i + 1]) * 32, n) for i, n in enumerate(claims)]
    inputs = RoundInputs(task_id=0, round=0, spec=spec, updates=updates, submission_order=list(range(len(claims))),
                         rows=rows.clone(), base_state=base, base_cid="Qm-base", holdout=holdout, budget=10**21)
    weights = merge(inputs).weights
    outcome = compute_outcome(inputs, build_model(spec), ComputeSettings(scoring_workers=1))
    total = sum(v.reward for v in outcome.verdicts)
    return ([w / sum(weights) for w in weights], [v.reward / total if total else 0.0 for v in outcome.verdicts])


def run(quick: bool) -> dict:
    from fedchain.core.spec import ScoringConfig, mnist_spec
    from fedchain.learning.data import mnist_subset
    from fedchain.learning.models import ParamLayout, build_model, initial_state
    from fedchain.learning.trainers import LocalData, train_local

    started = time.monotonic()
    factors = [1, 10] if quick else [1, 2, 10, 100]
    spec = mnist_spec("mlp", scoring=ScoringConfig(permutations=4 if quick else 20, eval_samples=192))
    x, y = mnist_subset()
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order], y[order]
    base = initial_state(spec, seed=0)
    layout = ParamLayout.from_state_dict(base)
    rows = torch.zeros(CONTRIBUTORS, layout.total)
    for i in range(CONTRIBUTORS):
        part = slice(i * HONEST_SAMPLES, (i + 1) * HONEST_SAMPLES)
        trained = train_local(build_model(spec), base, x[part], y[part], spec.training, seed=i, device="cpu",
                              progress=False)
        layout.flatten_into(trained.delta, rows[i])
    holdout = LocalData(x[4000:4400], y[4000:4400])

    table: list[dict[str, Any]] = []
    for weighting in WEIGHTINGS:
        policy = spec.policy.model_copy(update={"sample_weighting": weighting})
        round_spec = spec.model_copy(update={"policy": policy})
        honest_weights, honest_rewards = _round(rows, round_spec, base, holdout, [HONEST_SAMPLES] * CONTRIBUTORS)
        honest_weight, honest_reward = honest_weights[INFLATER], honest_rewards[INFLATER]
        for factor in factors:
            claims = [HONEST_SAMPLES] * INFLATER + [HONEST_SAMPLES * factor]
            weights, rewards = _round(rows, round_spec, base, holdout, claims)
            weight, reward = weights[INFLATER], rewards[INFLATER]
            table.append({
                "weighting": weighting, "factor": factor, "weight_share": round(weight, 4),
                "honest_weight_share": round(honest_weight, 4), "reward_share": round(reward, 4),
                "honest_reward_share": round(honest_reward, 4),
                "reward_gain": round(reward / honest_reward, 3) if honest_reward else None,
            })
    sized = _sized_round(spec, base, layout, x, y, holdout, quick)
    default_gains = [r["reward_gain"] for r in table if r["weighting"] == "median-capped"]
    default_weights = [r["weight_share"] == r["honest_weight_share"] for r in table if r["weighting"] == "median-capped"]
    return {
        "name": "economics", "quick": quick, "when": now(), "seconds": round(time.monotonic() - started, 1),
        "setup": {"contributors": CONTRIBUTORS, "samples_each": HONEST_SAMPLES, "model": "mnist mlp",
                  "scoring": "tmc-shapley, share coalition", "permutations": spec.scoring.permutations},
        "rows": table,
        "sized": sized,
        "targets": {"median-capped: inflating buys no weight": all(default_weights),
                    "median-capped: inflating buys no reward (gain 1.00x)": all(g == 1.0 for g in default_gains)},
        "markdown": _markdown(table, spec.scoring.permutations) + "\n\n" + _sized_markdown(sized),
    }


SIZES = [100, 200, 300, 400, 500]


def _sized_round(spec: Any, base: Any, layout: Any, x: Any, y: Any, holdout: Any, quick: bool) -> dict[str, Any]:
    """The price of not trusting counts: honest contributors holding 100..500 samples, each claiming its true count;
    how their rewards follow their data under each weighting (Spearman's rho of size and reward)."""
    from fedchain.learning.models import build_model
    from fedchain.learning.trainers import train_local

    rows = torch.zeros(len(SIZES), layout.total)
    start = 0
    for i, size in enumerate(SIZES):
        trained = train_local(build_model(spec), base, x[start:start + size], y[start:start + size], spec.training,
                              seed=10 + i, device="cpu", progress=False)
        layout.flatten_into(trained.delta, rows[i])
        start += size
    out: dict[str, Any] = {"sizes": SIZES}
    for weighting in WEIGHTINGS:
        round_spec = spec.model_copy(update={"policy": spec.policy.model_copy(update={"sample_weighting": weighting})})
        shares = _round(rows, round_spec, base, holdout, SIZES)[1]
        out[weighting] = {"reward_shares": [round(s, 4) for s in shares], "spearman": round(_spearman(SIZES, shares), 3)}
    return out


def _spearman(a: list[int], b: list[float]) -> float:
    def ranks(values: list[float]) -> list[float]:
        order = sorted(range(len(values)), key=lambda i: values[i])
        out = [0.0] * len(values)
        i = 0
        while i < len(order):  # average ranks for ties
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                out[order[k]] = (i + j) / 2
            i = j + 1
        return out

    ra, rb = ranks([float(v) for v in a]), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((p - ma) * (q - mb) for p, q in zip(ra, rb))
    var = (sum((p - ma) ** 2 for p in ra) * sum((q - mb) ** 2 for q in rb)) ** 0.5
    return cov / var if var else 0.0


def _sized_markdown(sized: dict[str, Any]) -> str:
    lines = [
        f"The price of not trusting counts: honest contributors holding {', '.join(map(str, sized['sizes']))} samples "
        "(each claiming its true count), their reward shares and Spearman's rho of data size and reward:",
        "",
        "| weighting | reward shares (by size) | Spearman rho |",
        "|---|---|---:|",
    ]
    for weighting in WEIGHTINGS:
        r = sized[weighting]
        lines.append(f"| {weighting} | {', '.join(f'{s:.3f}' for s in r['reward_shares'])} | {r['spearman']:.2f} |")
    return "\n".join(lines)


def _markdown(table: list[dict[str, Any]], permutations: int) -> str:
    lines = [
        f"One round, {CONTRIBUTORS} contributors with {HONEST_SAMPLES} MNIST samples each (MLP, TMC-Shapley with "
        f"{permutations} permutations, share coalition); contributor {INFLATER} claims `factor` x its real count. "
        "Shares are the inflater's; 'honest' is the same round with its true claim.",
        "",
        "| weighting | factor | weight share | honest weight share | reward share | honest reward share | reward gain |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in table:
        gain = "n/a" if r["reward_gain"] is None else f"{r['reward_gain']:.2f}x"
        lines.append(f"| {r['weighting']} | {r['factor']} | {r['weight_share']:.3f} | {r['honest_weight_share']:.3f} | "
                     f"{r['reward_share']:.3f} | {r['honest_reward_share']:.3f} | {gain} |")
    return "\n".join(lines)


if __name__ == "__main__":
    result = run(quick=False)
    print(result["markdown"])
    print(result["targets"], f"({result['seconds']} s)")
