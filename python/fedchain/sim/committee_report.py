"""The demo's view of a committee: each member's stake, agreement, dividends and slashes, and the contributors'
rewards as the consensus set them (a member's own report holds its own scores, not the consensus)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from fedchain.chain.protocol import Protocol
from fedchain.core.consensus import SCORE_SCALE
from fedchain.views.committee import committee_round


def committee_summary(protocol: Protocol, task_id: int, validators: list[Any], report: dict[str, Any]) -> dict[str, Any]:
    """Per member: behaviour, stake, mean agreement, dividends, slashes; rewrites report["rewards"] (contributors)
    and each round's update rewards to the consensus amounts."""
    committees = protocol.committees
    info = committees.committee(committees.committee_of_task(task_id))
    behaviour = {v.account.address: (v.role if v.role != "validator" else "honest") for v in validators}
    names = {v.account.address: v.name for v in validators}
    dividends = [0] * len(info.members)
    agreement: list[list[float]] = [[] for _ in info.members]
    revealed = [0] * len(info.members)
    slashed = [False] * len(info.members)
    rewards = {a: 0 for a in report["rewards"]}
    for rnd in report["rounds"]:
        view = committee_round(protocol, task_id, rnd["round"])
        if view is None:
            continue
        consensus_rewards = dict(zip(view.inputs, view.outcome.rewards))
        for u in rnd["updates"]:
            u["reward"] = str(consensus_rewards.get(u["contributor"], 0))
        for account, amount in consensus_rewards.items():
            rewards[account] = rewards.get(account, 0) + amount
        rnd["consensus"] = {"scores": list(view.outcome.consensus_scores), "inputs": list(view.inputs),
                            "dividends": [str(d) for d in view.outcome.dividends]}
        for v, member in enumerate(info.members):
            dividends[v] += view.outcome.dividends[v]
            agreement[v].append(view.outcome.agreement[v] / SCORE_SCALE)
            revealed[v] += view.reveals[v] is not None
            slashed[v] = slashed[v] or committees.ballot(task_id, rnd["round"], member).slashed
    report["rewards"] = {a: str(v) for a, v in rewards.items()}
    members = [
        {"member": m, "name": names.get(m, m), "behaviour": behaviour.get(m, "honest"), "stake": str(info.stakes[v]),
         "mean_agreement": sum(agreement[v]) / len(agreement[v]) if agreement[v] else 0.0,
         "rounds_revealed": revealed[v], "dividends": str(dividends[v]), "slashed": slashed[v]}
        for v, m in enumerate(info.members)
    ]
    return {"members": members, "member_share_bps": info.member_share_bps}


def print_committee(console: Console, summary: dict[str, Any]) -> None:
    from fedchain.chain.units import format_fed

    table = Table(title="committee")
    for col in ("member", "behaviour", "stake", "agreement", "revealed", "dividends", "slashed"):
        table.add_column(col)
    for m in summary["members"]:
        table.add_row(f"{m['name']} {m['member'][:10]}…", m["behaviour"], format_fed(int(m["stake"])),
                      f"{m['mean_agreement']:.3f}", str(m["rounds_revealed"]), format_fed(int(m["dividends"])),
                      "yes" if m["slashed"] else "no")
    console.print(table)
