"""Following a task through its contract events, from a block cursor saved on disk (so a restart resumes there)."""

from __future__ import annotations

from pathlib import Path

from fedchain.chain.protocol import Protocol
from fedchain.state import read_json, write_json_atomic


class TaskFollower:
    """Reports whether the task logged anything (a round opened, closed, finalized or expired; the task ended)
    since the last call. Callers re-read the task's state only then, instead of on every poll."""

    def __init__(self, protocol: Protocol, task_id: int, cursor_path: Path, start_block: int = 0) -> None:
        self.protocol = protocol
        self.task_id = task_id
        self.cursor_path = cursor_path
        saved = read_json(cursor_path, {})
        self.cursor = int(saved.get("block", start_block - 1))  # last block already looked at

    def poll(self) -> bool:
        head = self.protocol.chain.block_number()
        if head <= self.cursor:
            return False
        found = self.protocol.task_event_count(self.task_id, self.cursor + 1, head) > 0
        self.cursor = head
        write_json_atomic(self.cursor_path, {"block": head, "task_id": self.task_id})
        return found
