"""Riding out outages: retry what failed because a node was down, with backoff, for as long as the round allows.

    cid = patiently("pin the update", lambda: ipfs.add_bytes(payload), until=round_info.submission_deadline)

A short outage of the IPFS node must not cost a contributor the update it just trained, nor a validator its
round: both wait and retry until the deadline that makes the work pointless, and say so in the log while they wait.
Only failures to reach a node are retried; a refusal (content too large, a CID mismatch) is an answer, not an outage.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from fedchain.chain.errors import RpcUnreachableError
from fedchain.content.client import IpfsClient
from fedchain.content.errors import NodeUnreachableError
from fedchain.errors import FedchainError

log = logging.getLogger(__name__)
T = TypeVar("T")
TRANSIENT: tuple[type[Exception], ...] = (NodeUnreachableError, RpcUnreachableError)
STARTUP_WAIT = 120.0  # seconds a starting role waits for its IPFS node (restarted with it, say) before giving up
FIRST_DELAY = 1.0   # seconds before the first retry; doubles up to MAX_DELAY
MAX_DELAY = 30.0


class OutageError(FedchainError):
    """Raised when a node stayed unreachable until the deadline of the work that needed it."""


def patiently(
    what: str,
    attempt: Callable[[], T],
    *,
    until: float | None = None,
    sleep: Callable[[float], None] | None = None,
    clock: Callable[[], float] | None = None,
) -> T:
    """`attempt()`, retried with backoff while it fails with a TRANSIENT error, until unix time `until` (None:
    forever). Raises OutageError once the next try would start after `until`."""
    delay = FIRST_DELAY
    while True:
        try:
            return attempt()
        except TRANSIENT as exc:
            now = (clock or time.time)()
            if until is not None and now + delay >= until:
                raise OutageError(f"could not {what} before its deadline: {exc}") from exc
            left = "" if until is None else f"; {until - now:.0f} s left before the deadline"
            log.warning("could not %s (%s); retrying in %.0f s%s", what, _short(exc), delay, left)
            (sleep or time.sleep)(delay)
            delay = min(delay * 2, MAX_DELAY)


def node_is_up(ipfs: IpfsClient) -> bool:
    """Whether our own IPFS node answers at all: a fetch that fails while it is down says nothing about the content."""
    try:
        ipfs.version()
    except NodeUnreachableError:
        return False
    return True


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) <= 160 else text[:157] + "…"
