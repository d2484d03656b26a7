"""Following a task through its contract events, from a block cursor saved on disk (so a restart resumes there).

The cursor is bound to the deployment it was read from: a cursor from a chain that was since reset (a block
number the new chain may never reach) is refused with a clear message rather than followed into a silent hang.
"""

from __future__ import annotations

from pathlib import Path

from fedchain.chain.protocol import Protocol
from fedchain.state import read_bound_json, write_bound_json


class TaskFollower:
    """Reports whether the task logged anything (a round opened, closed, finalized or expired; the task ended)
    since the last call. Callers re-read the task's state only then, instead of on every poll."""

    def __init__(self, protocol: Protocol, task_id: int, cursor_path: Path, start_block: int = 0) -> None:
        self.protocol = protocol
        self.task_id = task_id
        self.cursor_path = cursor_path
        self.binding = protocol.binding()
        saved = read_bound_json(cursor_path, self.binding) or {}  # StateMismatchError: another chain's cursor
        self.cursor = int(saved.get("block", start_block - 1))  # last block already looked at

    def poll(self) -> bool:
        head = self.protocol.chain.block_number()
        if head <= self.cursor:
            return False
        found = self.protocol.task_event_count(self.task_id, self.cursor + 1, head) > 0
        self.cursor = head
        write_bound_json(self.cursor_path, {"block": head, "task_id": self.task_id}, self.binding)
        return found
