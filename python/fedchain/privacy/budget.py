"""A contributor's privacy spend for one task, kept across restarts.

Each training is recorded before it starts (its noise, sample rate and steps, the round, and the cumulative epsilon
it brings the task to): a crash after training begins never loses a spend, and the data touched by a training whose
update was never submitted still counts. The file lives in the contributor's state directory, bound to the chain
and TaskManager (fedchain.state) and naming its task and accountant, so it is never read for another deployment,
task or accountant:

    <state_dir>/contributor-<address>-task<id>.privacy.json
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedchain.core.spec import PrivacyConfig
from fedchain.errors import FedchainError
from fedchain.privacy.accounting import Steps, epsilon, from_micro
from fedchain.state import StateBinding, read_bound_json, write_bound_json


class BudgetFileError(FedchainError):
    """The privacy file belongs to another task or accountant than the one it is opened for."""


@dataclass(frozen=True)
class Spend:
    round: int
    steps: Steps
    epsilon_micro: int  # cumulative for the task once this training is done


@dataclass
class PrivacyBudget:
    """The trainings of one contributor in one task, in order; saved at `path` when it has one."""

    task_id: int
    config: PrivacyConfig
    path: Path | None = None
    binding: StateBinding | None = None
    spends: list[Spend] = field(default_factory=list)

    @classmethod
    def open(cls, path: Path, binding: StateBinding, task_id: int, config: PrivacyConfig) -> PrivacyBudget:
        """The budget saved at `path` (an empty one if none); StateMismatchError for another chain's file."""
        saved = read_bound_json(path, binding)
        budget = cls(task_id, config, path, binding)
        if saved is None:
            return budget
        if saved.get("task_id") != task_id or saved.get("privacy") != config.model_dump(mode="json"):
            raise BudgetFileError(f"{path} holds the privacy spend of task {saved.get('task_id')} with privacy "
                                  f"{saved.get('privacy')}, not task {task_id}'s; move it aside only if that task's "
                                  "spend may be forgotten")
        budget.spends = [Spend(int(s["round"]), Steps(float(s["noise_multiplier"]), float(s["sample_rate"]),
                                                       int(s["steps"])), int(s["epsilon"])) for s in saved["spends"]]
        return budget

    @property
    def history(self) -> list[Steps]:
        return [s.steps for s in self.spends]

    def spent(self) -> float:
        """The task's cumulative epsilon so far, by the spec's accountant."""
        return epsilon(self.history, self.config)

    def spent_micro(self) -> int:
        return self.spends[-1].epsilon_micro if self.spends else 0

    def last_for(self, round_index: int) -> Spend | None:
        """The latest training recorded for `round_index` (the one whose update is submitted)."""
        return next((s for s in reversed(self.spends) if s.round == round_index), None)

    def record(self, spend: Spend) -> None:
        """Add a training (before it runs) and save."""
        self.spends.append(spend)
        self._save()

    def describe(self) -> str:
        return f"epsilon {from_micro(self.spent_micro()):.4f} of the cap {self.config.epsilon_cap:g}"

    def _save(self) -> None:
        if self.path is None or self.binding is None:
            return
        value: dict[str, Any] = {
            "task_id": self.task_id, "privacy": self.config.model_dump(mode="json"),
            "spends": [{"round": s.round, "noise_multiplier": s.steps.noise_multiplier,
                        "sample_rate": s.steps.sample_rate, "steps": s.steps.steps, "epsilon": s.epsilon_micro}
                       for s in self.spends],
        }
        write_bound_json(self.path, value, self.binding)
