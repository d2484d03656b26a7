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

    pseudo = _pseudo_label_rounds(report)
    fig, axes = plt.subplots(1, 3 if pseudo else 2, figsize=(16 if pseudo else 11, 4))
    left, right = axes[0], axes[1]
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
    if pseudo:
        _plot_pseudo_labels(axes[2], pseudo)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _pseudo_label_rounds(report: dict) -> list[tuple[int, int, int, float, int]]:
    """Per round with pseudo-labels: (round, pseudo-labelled, unlabelled seen, mean confidence, flagged updates)."""
    out = []
    for r in report["rounds"]:
        records = [u["pseudo_labels"] for u in r.get("updates", []) if u.get("pseudo_labels")]
        if records:
            labelled = sum(p["pseudo_labelled"] for p in records)
            mean = (sum(p["mean_confidence"] * p["pseudo_labelled"] for p in records) / labelled) if labelled else 0.0
            out.append((r["round"], labelled, sum(p["unlabelled_seen"] for p in records), mean,
                        sum(bool(p["flags"]) for p in records)))
    return out


def _plot_pseudo_labels(ax, rows: list[tuple[int, int, int, float, int]]) -> None:
    rounds = [r[0] for r in rows]
    share = [100 * r[1] / r[2] if r[2] else 0.0 for r in rows]
    ax.bar(rounds, share, color="tab:blue", alpha=0.6, label="pseudo-labelled (% of unlabelled)")
    confidence = [100 * r[3] if r[1] else float("nan") for r in rows]  # no point where nothing was pseudo-labelled
    ax.plot(rounds, confidence, color="tab:orange", marker="o", label="mean confidence of the pseudo-labels (%)")
    for r, s, row in zip(rounds, share, rows):
        if row[4]:
            ax.annotate(f"{row[4]} flagged", (r, s), ha="center", va="bottom", fontsize=7, color="tab:red")
    ax.set_ylim(0, 105)
    ax.set_xlabel("round")
    ax.set_title("pseudo-labels per round (all contributors)")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
