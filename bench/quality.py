"""Benchmark: model quality of fedchain FedAvg beside Flower FedAvg and centralized training.

    python -m bench --only quality [--quick]

One non-IID split of the MNIST subset (the demo's: stratified 80/20 train/test split with seed 0, then Dirichlet
alpha 0.5 shards over 5 clients with seed 0), the demo's CNN (43,082 parameters) and training settings (the task
spec's defaults: 2 local epochs, batch 16, SGD lr 0.1, momentum 0.5), 5 rounds, for 3 seeds (the seed sets the
initial model and every client's per-round training seed; the split stays the same). For each seed, in turn:

- fedchain: each client runs fedchain's own `train_local` from the global state; the deltas go into a (K, D)
  buffer and are merged with `fedchain.aggregation.fedavg` (the validator's math), then `apply_delta`. In-process,
  clients one after another, one torch thread.
- Flower: bench/flower_quality.py in .venv-flower: Flower `NumPyClient`s with the same local loop and seeds, and
  Flower's `FedAvg` strategy (`aggregate_fit`, default in-place path) on `FitRes` objects, in-process (not Ray),
  one torch thread. Skipped when .venv-flower is missing (install it with bench/setup-flower-venv.sh).
- centralized: `train_local` on the pooled training data for rounds x local epochs epochs (the same passes over
  the data), from the same initial model.

Reported: final test accuracy (mean, std, min, max over seeds), seconds per round (median over rounds and seeds;
training + aggregation, not evaluation) and, per seed, the ratio Flower s/round / fedchain s/round. Target
(issue 6): fedchain within 1 point of Flower and of centralized. Full mode also runs one real `fedchain demo`
(5 contributors as processes, 5 rounds, seed 0, same split) and reports its accuracy per round.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._util import FLOWER_PY, ROOT, flower_available, fmt_stats, mean_spread, now, stats

SPLIT_SEED = 0
ALPHA = 0.5
TARGET_POINTS = 1.0


def client_seed(seed: int, client: int, round_index: int) -> int:
    # As the demo: contributor i gets --seed seed*100+i, and trains round r with seed*1_000_003 + r.
    return (seed * 100 + client) * 1_000_003 + round_index


def _setup(clients: int, quick: bool):
    from fedchain.core.spec import TrainingConfig, mnist_spec
    from fedchain.learning.data import dirichlet_shards, mnist_subset, train_test_split

    x, y = mnist_subset()
    split = train_test_split(x, y, test_fraction=0.2, seed=SPLIT_SEED)
    shards = dirichlet_shards(split.y_train, clients, alpha=ALPHA, seed=SPLIT_SEED)
    # quick: one local epoch (the code path is the same; the figures are only a smoke test)
    return split, shards, mnist_spec("cnn", training=TrainingConfig(local_epochs=1) if quick else None)


def run_fedchain(split, shards, spec, seed: int, rounds: int) -> dict[str, Any]:
    import torch

    from fedchain.aggregation import fedavg
    from fedchain.learning.evaluation import evaluate
    from fedchain.learning.models import ParamLayout, apply_delta, build_model, initial_state
    from fedchain.learning.trainers import train_local

    state = initial_state(spec, seed)
    layout = ParamLayout.from_state_dict(state)
    model = build_model(spec)
    weights = [len(s) for s in shards]
    out = []
    for r in range(rounds):
        started = time.perf_counter()
        buffer = torch.zeros(len(shards), layout.total, dtype=torch.float32)
        for i, shard in enumerate(shards):
            res = train_local(model, state, split.x_train[shard], split.y_train[shard], spec.training,
                              seed=client_seed(seed, i, r), device="cpu", progress=False)
            layout.flatten_into(res.delta, buffer[i])
        agg_started = time.perf_counter()
        state = apply_delta(state, fedavg(buffer, weights), layout)
        done = time.perf_counter()
        ev = evaluate(model, state, split.x_test, split.y_test, device="cpu")
        out.append({"round": r, "seconds": done - started, "aggregate_seconds": done - agg_started,
                    "test_accuracy": ev.accuracy, "test_loss": ev.loss})
    return {"rounds": out}


def run_centralized(split, spec, seed: int, rounds: int) -> dict[str, Any]:
    from fedchain.learning.evaluation import evaluate
    from fedchain.learning.models import build_model, initial_state
    from fedchain.learning.trainers import train_local

    state = initial_state(spec, seed)
    model = build_model(spec)
    cfg = spec.training.model_copy(update={"local_epochs": spec.training.local_epochs * rounds})
    res = train_local(model, state, split.x_train, split.y_train, cfg, seed=seed * 1_000_003, device="cpu",
                      progress=False)
    ev = evaluate(model, None, split.x_test, split.y_test, device="cpu")
    return {"seconds_per_round": res.seconds / rounds, "test_accuracy": ev.accuracy, "test_loss": ev.loss}


def run_flower(split, shards, spec, seed: int, rounds: int, work: Path) -> dict[str, Any]:
    import numpy as np

    from fedchain.learning.models import initial_state

    state = initial_state(spec, seed)
    names = list(state)
    arrays = {"x_train": split.x_train, "y_train": split.y_train, "x_test": split.x_test, "y_test": split.y_test}
    arrays |= {f"shard_{i}": s for i, s in enumerate(shards)}
    arrays |= {f"init_{j}": state[n].numpy() for j, n in enumerate(names)}
    data = work / f"flower-{seed}.npz"
    np.savez(data, **arrays)
    t = spec.training
    cfg = {"architecture": spec.architecture, "arch_config": spec.arch_config, "names": names, "rounds": rounds,
           "local_epochs": t.local_epochs, "batch_size": t.batch_size, "learning_rate": t.learning_rate,
           "momentum": t.momentum,
           "client_seeds": [[client_seed(seed, i, r) for r in range(rounds)] for i in range(len(shards))]}
    (work / "flower.json").write_text(json.dumps(cfg))
    out = work / f"flower-out-{seed}.json"
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    proc = subprocess.run([str(FLOWER_PY), str(ROOT / "bench" / "flower_quality.py"), str(data),
                           str(work / "flower.json"), str(out)], capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"flower_quality.py failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return json.loads(out.read_text())


def run_demo_once(rounds: int, clients: int) -> dict[str, Any]:
    """One real `fedchain demo` (processes, devnet, sealed updates), seed 0, fedavg."""
    import io

    from rich.console import Console

    from fedchain.sim.demo import DemoConfig, run_demo

    with tempfile.TemporaryDirectory(prefix="fedchain-bench-quality-demo-") as tmp:
        cfg = DemoConfig(clients=clients, rounds=rounds, seed=0, workdir=Path(tmp), report=Path(tmp) / "report.json",
                         plot=None)
        started = time.perf_counter()
        report = run_demo(cfg, Console(file=io.StringIO()))
        wall = time.perf_counter() - started
    rounds_out = [{"round": r["round"], "test_accuracy": r["test_accuracy"], "seconds": r["seconds"]} for r in report["rounds"]]
    return {"clients": clients, "rounds": rounds_out, "final_accuracy": rounds_out[-1]["test_accuracy"],
            "seconds_per_round_after_first": stats([r["seconds"] for r in rounds_out[1:]]), "wall_seconds": round(wall, 1)}


def run(quick: bool) -> dict:
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    seeds = [0] if quick else [0, 1, 2]
    rounds = 1 if quick else 5
    clients = 3 if quick else 5
    use_flower = flower_available()
    try:
        split, shards, spec = _setup(clients, quick)
        per_seed = []
        with tempfile.TemporaryDirectory(prefix="fedchain-bench-quality-") as tmp:
            for seed in seeds:  # the sides alternate, seed by seed
                row: dict[str, Any] = {"seed": seed}
                row["fedchain"] = run_fedchain(split, shards, spec, seed, rounds)
                if use_flower:
                    row["flower"] = run_flower(split, shards, spec, seed, rounds, Path(tmp))
                row["centralized"] = run_centralized(split, spec, seed, rounds)
                per_seed.append(row)
        demo = None
        if not quick:
            try:
                demo = run_demo_once(rounds=rounds, clients=clients)
            except Exception as exc:  # noqa: BLE001 - a failed demo is reported, the table still stands
                demo = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    finally:
        torch.set_num_threads(previous)
    result = summarise(per_seed, quick, rounds, clients, use_flower, spec)
    result["demo"] = demo
    result["markdown"] = markdown(result)
    return result


def summarise(per_seed, quick, rounds, clients, use_flower, spec) -> dict[str, Any]:
    fc_acc = [s["fedchain"]["rounds"][-1]["test_accuracy"] for s in per_seed]
    fc_sec = [r["seconds"] for s in per_seed for r in s["fedchain"]["rounds"]]
    ce_acc = [s["centralized"]["test_accuracy"] for s in per_seed]
    ce_sec = [s["centralized"]["seconds_per_round"] for s in per_seed]
    sides: dict[str, Any] = {
        "fedchain": {"accuracy": mean_spread(fc_acc), "seconds_per_round": stats(fc_sec),
                     "aggregate_seconds": stats([r["aggregate_seconds"] for s in per_seed for r in s["fedchain"]["rounds"]])},
        "centralized": {"accuracy": mean_spread(ce_acc), "seconds_per_round": stats(ce_sec)},
    }
    targets = [{"target": "fedchain within 1 point of centralized", "goal_points": TARGET_POINTS,
                "measured_points": round(100 * abs(sides["fedchain"]["accuracy"]["mean"] - sides["centralized"]["accuracy"]["mean"]), 2)}]
    ratios = None
    if use_flower:
        fl_acc = [s["flower"]["rounds"][-1]["test_accuracy"] for s in per_seed]
        fl_sec = [r["seconds"] for s in per_seed for r in s["flower"]["rounds"]]
        sides["flower"] = {"accuracy": mean_spread(fl_acc), "seconds_per_round": stats(fl_sec),
                           "aggregate_seconds": stats([r["aggregate_seconds"] for s in per_seed for r in s["flower"]["rounds"]]),
                           "flwr": per_seed[0]["flower"]["flwr"], "numpy": per_seed[0]["flower"]["numpy"]}
        ratios = stats([_median([r["seconds"] for r in s["flower"]["rounds"]]) / _median([r["seconds"] for r in s["fedchain"]["rounds"]])
                        for s in per_seed], 3)
        targets.insert(0, {"target": "fedchain within 1 point of Flower", "goal_points": TARGET_POINTS,
                           "measured_points": round(100 * abs(sides["fedchain"]["accuracy"]["mean"] - sides["flower"]["accuracy"]["mean"]), 2)})
    else:
        targets.insert(0, {"target": "fedchain within 1 point of Flower", "goal_points": TARGET_POINTS,
                           "measured_points": None, "note": "skipped: .venv-flower missing"})
    for t in targets:
        t["met"] = None if t["measured_points"] is None else t["measured_points"] <= TARGET_POINTS
    return {
        "name": "quality", "quick": quick, "date": now(),
        "command": "python -m bench --only quality" + (" --quick" if quick else ""),
        "setup": {"clients": clients, "rounds": rounds, "seeds": [s["seed"] for s in per_seed], "alpha": ALPHA,
                  "split_seed": SPLIT_SEED, "architecture": spec.architecture, "arch_config": spec.arch_config,
                  "training": spec.training.model_dump(), "threads": 1,
                  "flower_mode": "in-process: NumPyClient.fit + FedAvg.aggregate_fit (aggregate_inplace), not Ray"},
        "flower_status": "ok" if use_flower else "skipped: .venv-flower missing (bench/setup-flower-venv.sh installs it)",
        "sides": sides, "flower_over_fedchain_seconds_ratio": ratios, "targets": targets, "per_seed": per_seed,
    }


def _median(values):
    import statistics

    return statistics.median(values)


def markdown(result: dict) -> str:
    s = result["setup"]
    lines = [
        f"Model quality: MNIST subset, Dirichlet alpha {s['alpha']} over {s['clients']} clients, CNN "
        f"({s['architecture']} {s['arch_config']}), {s['rounds']} rounds x {s['training']['local_epochs']} local epochs, "
        f"batch {s['training']['batch_size']}, SGD lr {s['training']['learning_rate']} momentum {s['training']['momentum']}, "
        f"seeds {s['seeds']}, 1 torch thread. `{result['command']}`",
        "",
        "| side | final test accuracy, mean ± std (min-max) | seconds per round, median (min-max) |",
        "|---|---|---|",
    ]
    for name, label in (("fedchain", "fedchain FedAvg (train_local + aggregation.fedavg)"),
                        ("flower", f"Flower FedAvg (flwr {result['sides'].get('flower', {}).get('flwr', '')}, aggregate_fit)"),
                        ("centralized", "centralized (pooled data, same epochs in total)")):
        side = result["sides"].get(name)
        if side is None:
            lines.append(f"| {label} | {result['flower_status']} | |")
            continue
        a = side["accuracy"]
        lines.append(f"| {label} | {100 * a['mean']:.2f}% ± {100 * a['std']:.2f} ({100 * a['min']:.2f}-{100 * a['max']:.2f}) "
                     f"| {fmt_stats(side['seconds_per_round'])} |")
    if result["flower_over_fedchain_seconds_ratio"]:
        lines += ["", f"Seconds per round, Flower / fedchain, per seed pair: {fmt_stats(result['flower_over_fedchain_seconds_ratio'])} "
                      f"(both in-process on one thread; Flower side: {result['setup']['flower_mode']})."]
    lines += ["", "| target | goal | measured | met |", "|---|---|---|---|"]
    for t in result["targets"]:
        m = "n/a" if t["measured_points"] is None else f"{t['measured_points']:.2f} points"
        met = "n/a" if t["met"] is None else ("yes" if t["met"] else "NO")
        lines.append(f"| {t['target']} | ≤ {t['goal_points']} point | {m} | {met} |")
    demo = result.get("demo")
    if demo and "error" not in demo:
        accs = ", ".join(f"{100 * r['test_accuracy']:.1f}%" for r in demo["rounds"])
        lines += ["", f"Real `fedchain demo --clients {demo['clients']} --rounds {len(demo['rounds'])} --seed 0` (processes, devnet, "
                      f"sealed updates, TMC-Shapley scoring): accuracy per round {accs}; seconds per round after the first "
                      f"{fmt_stats(demo['seconds_per_round_after_first'])}; wall {demo['wall_seconds']} s."]
    elif demo:
        lines += ["", f"Real demo run failed: {demo['error']}"]
    return "\n".join(lines)
