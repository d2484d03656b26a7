"""What the roles act on: the deployment's events at a confirmations depth, read from the event index.

    events = ConfirmedEvents(protocol)            # 0 blocks deep on a devnet, 3 elsewhere (default_confirmations)
    events.refresh()                              # one eth_getLogs page per call, not a scan from the deployment
    if events.round_closed(task_id, r):
        subs = events.submissions(task_id, r)     # final: no reorganisation short of `confirmations` changes it

A validator or committee member scores, rejects and slashes a round's submissions; a contributor trains on the
latest finalized model and claims from round reports. Each of those acts on logs, and a log that a reorganisation
later drops would make the act wrong: a slash whose evidence the chain no longer holds, an update trained on a model
that is no longer the round's base. So roles read logs only from here: an EventIndex (fedchain.views.index) that
stays `confirmations` blocks below the head and rolls back what a reorganisation replaced, kept in memory by each
process (a restart reads the deployment's logs once again).

Chain state (a round's phase and deadlines, a task's current round) is still read at the head: it says *when* to act;
these events say *what* to act on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from fedchain.chain.protocol import Finalization, Protocol, PseudoLabelDeclaration, Submission
from fedchain.views import records
from fedchain.views.index import EventIndex, default_confirmations

log = logging.getLogger(__name__)


class ConfirmedEvents:
    """A task-agnostic view of the deployment's confirmed events (thread-safe: the index holds one lock)."""

    def __init__(self, protocol: Protocol, confirmations: int | None = None) -> None:
        self.protocol = protocol
        self.confirmations = default_confirmations(protocol.chain.chain_id) if confirmations is None else confirmations
        # No transaction window: roles need the logs, not the receipts the dashboard shows.
        self.index = EventIndex(protocol, None, confirmations=self.confirmations, tx_window=0)

    def refresh(self) -> int:
        """Read what the chain confirmed since the last call (rolling back a reorganisation); the confirmed block."""
        return self.index.sync().cursor

    @property
    def confirmed_block(self) -> int:
        return self.index.cursor

    # ─── a round's submissions ───
    def submissions(self, task_id: int, round_index: int | None = None) -> list[Submission]:
        """UpdateSubmitted less the displaced, in chain order, as far as confirmed."""
        return records.submissions(self.index, task_id, round_index)

    def round_closed(self, task_id: int, round_index: int) -> bool:
        """Whether the confirmed chain already shows that the round takes no more submissions: its
        SubmissionsClosed (it filled up), or a confirmed block at or past the submission deadline its RoundOpened
        announced. Until then its confirmed submissions may still grow (or lose one to a displacement).

        Not the deadline the contract holds now: a round that fills up moves it to its closing block's time, and
        earlier blocks of that same second hold submissions too."""
        if self.index.logs(task_id=task_id, round_index=round_index, events=("SubmissionsClosed",)):
            return True
        opened = self.index.logs(task_id=task_id, round_index=round_index, events=("RoundOpened",))
        stamp = self.index.block_timestamp(self.confirmed_block)
        return bool(opened) and stamp is not None and stamp >= int(opened[0].args["submissionDeadline"])

    def round_opened(self, task_id: int, round_index: int) -> bool:
        """Whether the round's RoundOpened is confirmed: from then on its base model (the latest confirmed
        finalization before it) is final."""
        return bool(self.index.logs(task_id=task_id, round_index=round_index, events=("RoundOpened",)))

    def digests_before(self, task_id: int, round_index: int) -> set[bytes]:
        """Digests submitted to the task's earlier rounds."""
        return {s.digest for s in self.submissions(task_id) if s.round < round_index}

    # ─── what submissions declared beside their digests ───
    def pseudo_label_declarations(self, task_id: int, round_index: int) -> list[PseudoLabelDeclaration]:
        return records.pseudo_label_declarations(self.index, task_id, round_index)

    def privacy_spends(self, task_id: int, round_index: int) -> dict[str, int]:
        """contributor -> the cumulative spend (micro-epsilon) its submission to `round_index` declared."""
        return {s.contributor: s.epsilon_micro for s in records.privacy_spends(self.index, task_id, round_index)}

    # ─── results ───
    def finalizations(self, task_id: int, round_index: int | None = None) -> list[Finalization]:
        return records.finalizations(self.index, task_id, round_index)

    def wait_for(self, what: str, ready: Callable[[], bool], until: float, poll: float = 0.5) -> bool:
        """Refresh until `ready()` holds or the wall clock reaches `until` (False then). On a devnet, blocks come
        only with transactions: mine empty ones, so that a confirmations depth is reached and the chain's clock
        follows the wall clock."""
        waited = False
        while True:
            self.refresh()
            if ready():
                return True
            if time.time() >= until:
                return False
            if not waited:
                log.info("waiting for %s (%d confirmations)", what, self.confirmations)
                waited = True
            if self.confirmations:
                self.protocol.chain.mine_if_dev()
            else:
                self.protocol.chain.sync_clock()  # a deadline that passed by the wall clock, on Anvil
            time.sleep(poll)
