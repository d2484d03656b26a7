"""The demo's PNG: global accuracy per round and each contributor's rewards."""

from __future__ import annotations

from pathlib import Path

FED = 10**18


def plot_demo(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    rounds = [r["round"] for r in report["rounds"]]
    accuracy = [100 * r["test_accuracy"] for r in report["rounds"]]
    roles = report.get("roles", {})
    addresses = list(report["rewards"])
    rewards = [int(report["rewards"][a]) / FED for a in addresses]
    colors = ["tab:green" if roles.get(a, "honest") == "honest" else "tab:red" for a in addresses]

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot(rounds, accuracy, marker="o")
    left.set_xlabel("round")
    left.set_ylabel("global test accuracy (%)")
    left.set_title(f"task {report['task_id']}: accuracy per round ({report.get('rule', 'fedavg')})")
    left.grid(alpha=0.3)
    labels = [f"{a[:6]}…\n{roles.get(a, '')}" for a in addresses]
    right.bar(range(len(addresses)), rewards, color=colors)
    right.set_xticks(range(len(addresses)), labels, fontsize=7)
    right.set_ylabel("rewards (FED)")
    right.set_title("rewards per contributor (red: attackers)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
