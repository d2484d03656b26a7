"""Collecting a round's inputs: the chain's submissions, each fetched, verified, opened and decoded into its row.

Shared by the single validator and by committee members: both compute the round from these inputs
(fedchain.roles.round.RoundInputs). The submissions, declarations and base model come from confirmed events only
(fedchain.views.confirmed): a round is collected once its close is `confirmations` blocks deep.

Outages: while this party's own IPFS node is down it waits and retries (until the round's aggregation deadline)
instead of marking updates unavailable; an update is `unavailable` only when the node answers and the content cannot
be fetched.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fedchain.aggregation import canonical_order
from fedchain.chain.protocol import Protocol, Submission
from fedchain.content.client import IpfsClient
from fedchain.content.errors import ContentError, ContentTooLargeError, NodeUnreachableError
from fedchain.core.cid import digest_to_cid
from fedchain.core.envelope import EnvelopeError, decode_update
from fedchain.core.reasons import Reason
from fedchain.core.sealing import SealBinding, SealError, open_sealed, read_binding
from fedchain.errors import ConfigError
from fedchain.learning.evaluation import pick_device
from fedchain.learning.kinds import kind_of
from fedchain.learning.models import build_model
from fedchain.learning.trainers import LocalData
from fedchain.privacy.declaration import judge as judge_privacy  # also registers the "privacy/1" extension
from fedchain.roles.retry import STARTUP_WAIT, node_is_up, patiently
from fedchain.roles.round import RoundInputs, SubmittedUpdate
from fedchain.unlabelled.checks import check_record
from fedchain.unlabelled.record import Summary
from fedchain.views.confirmed import ConfirmedEvents
from fedchain.views.taskview import TaskView

log = logging.getLogger(__name__)
# Prefetched (decoded) updates held in memory at most, in bytes (beyond it, the rest wait for the round's collection).
PREFETCH_BYTES = 512 * 1024 * 1024


class UpdateCollector:
    """A task's view, this party's held-out data and model, and the fetching of each round's updates."""

    def __init__(self, protocol: Protocol, ipfs: IpfsClient, task_id: int, holdout_path: Path | None,
                 sealing_key: X25519PrivateKey | None, device: str | None = None,
                 confirmations: int | None = None) -> None:
        self.protocol = protocol
        self.ipfs = ipfs
        self.task_id = task_id
        self.sealing_key = sealing_key
        # confirmations: blocks below the head an event must lie before it is acted on (None: the chain's default)
        self.task = TaskView(protocol, ipfs, task_id, confirmations)
        # A role restarted while its IPFS node is also restarting waits for it rather than exiting (cached after).
        patiently("fetch the task's spec", lambda: self.task.spec, until=time.time() + STARTUP_WAIT)
        self.device = torch.device(device) if device else pick_device()
        # Without held-out data (a verifier), rounds can be merged but not scored.
        self.holdout = (kind_of(self.task.spec).load_data(holdout_path, self.task.spec) if holdout_path is not None
                        else LocalData(np.zeros((0, *self.task.spec.input_shape), np.float32), np.zeros(0, np.int64)))
        if (self.holdout.y < 0).any():  # a task with unlabelled data reads -1 labels; held-out data needs every label
            raise ConfigError(f"{holdout_path}: the held-out data must be fully labelled (found labels -1)")
        self.model = build_model(self.task.spec).to(self.device)
        if self.task.spec.sealed and sealing_key is None:
            raise ConfigError("this task's updates are sealed: pass the validator's --sealing-key")
        self._prefetch_round: int | None = None
        # (digest, contributor, samples, base model) -> (rejection reason or None, the decoded row), for one round
        self._prefetched: dict[tuple[bytes, str, int, str], tuple[str | None, torch.Tensor]] = {}
        self._prefetch_tried: set[tuple[bytes, str, int, str]] = set()
        # Pseudo-label declarations on chain, per round (contributor -> summary), and the records found in updates
        # (round, contributor, digest) -> the report's pseudo-label entry: prefetching and collecting both fill them.
        self._declared: dict[int, dict[str, Summary]] = {}
        self._pseudo_labels: dict[tuple[int, str, bytes], dict[str, object]] = {}
        # A private task's spends declared on chain (PrivacySpent) per round: contributor -> micro-epsilon.
        self._spends: dict[int, dict[str, int]] = {}

    def prefetch(self, round_index: int) -> int:
        """While the round is open, fetch, verify, open and decode the updates submitted so far, so that collecting
        the round once it closes finds them done: that work overlaps the slower contributors' training instead of
        following it. Each is checked exactly as `collect` checks it (the same function, the same base model);
        `collect` uses the verdict as it is: replays are decided by what the bytes bind, not by chain order. An update that cannot be
        fetched now is left to `collect`, which decides (with its outage handling) whether it is unavailable.
        Returns how many updates were prefetched."""
        if self._prefetch_round != round_index:
            self._prefetch_round, self._prefetched, self._prefetch_tried = round_index, {}, set()
        base_cid = self.task.base_model_cid(round_index)  # brings the confirmed events up to date
        row_bytes = self.task.layout.total * 4
        done = 0
        for sub in self.events.submissions(self.task_id, round_index):
            key = (sub.digest, sub.contributor.lower(), sub.num_samples, base_cid)
            if key in self._prefetch_tried:
                continue
            if (len(self._prefetched) + 1) * row_bytes > PREFETCH_BYTES:
                break
            if not done:  # a declaration lands with its submission: read them once there is something new
                self._refresh_declarations(round_index)
            self._prefetch_tried.add(key)
            try:
                data = self.ipfs.cat(digest_to_cid(sub.digest), max_size=self.task.spec.max_update_bytes)
            except ContentError:
                continue
            row = torch.empty(self.task.layout.total, dtype=torch.float32)
            self._prefetched[key] = (self._open_update(sub, round_index, base_cid, data, row), row)
            done += 1
        return done

    def _refresh_declarations(self, round_index: int) -> None:
        """Read what the round's submissions declared on chain beside their digests (PseudoLabelsDeclared, a private
        task's PrivacySpent), forgetting older rounds'."""
        self._spends = {round_index: (
            self.events.privacy_spends(self.task_id, round_index) if self.task.spec.privacy is not None else {})}
        self._declared = {round_index: {
            d.contributor: Summary.from_event(d.summary, d.labels_root, d.histogram)
            for d in self.events.pseudo_label_declarations(self.task_id, round_index)}}
        self._pseudo_labels = {k: v for k, v in self._pseudo_labels.items() if k[0] == round_index}

    @property
    def events(self) -> ConfirmedEvents:
        return self.task.events

    @property
    def confirmations(self) -> int:
        return self.events.confirmations

    def deadline(self, round_index: int) -> float:
        return float(self.protocol.round(self.task_id, round_index).aggregation_deadline)

    def collect(self, round_index: int) -> RoundInputs:
        """The round's inputs: its submissions in canonical order, each fetched, verified and decoded into its row."""
        deadline = self.deadline(round_index)
        on_chain = self.confirmed_submissions(round_index, deadline)  # in chain order (block, log index)
        base = patiently(f"fetch round {round_index}'s base model", lambda: self.task.global_model(round_index),
                         until=deadline)
        log.info("round %d: aggregating %d submission(s)", round_index, len(on_chain))
        # Rows in canonical order (by contributor address): the result never depends on arrival order.
        subs = [on_chain[i] for i in canonical_order([s.contributor for s in on_chain])]
        row_of = {s.contributor: i for i, s in enumerate(subs)}
        rows = torch.zeros(len(subs), self.task.layout.total, dtype=torch.float32)  # (K, D)
        rejections: dict[int, str] = {}
        self._refresh_declarations(round_index)
        earlier = self._digests_before(round_index)
        fetched: dict[bytes, bytes | Reason] = {}  # one fetch per digest: copies of one update share it
        if self._prefetch_round != round_index:
            self._prefetched = {}  # another round's: never used for this one
        for sub in subs:
            # Who owns bytes submitted twice in this round is what the bytes bind (the sealed header's sender and
            # round, the envelope's contributor), never who reached the chain first: a front-runner can land an
            # honest digest first, and only the copy is then a replay. A prefetched verdict is the same check.
            row = row_of[sub.contributor]
            ready = self._prefetched.pop((sub.digest, sub.contributor.lower(), sub.num_samples, base.cid), None)
            if sub.digest in earlier:
                reason: str | None = Reason.REPLAY
            elif ready is not None:
                reason = ready[0]
                if reason is None:
                    rows[row].copy_(ready[1])
            else:
                reason = self._load_update(sub, round_index, base.cid, rows[row], deadline, fetched)
            if reason is not None:
                rejections[row] = str(reason)
        self._prefetch_round, self._prefetched, self._prefetch_tried = None, {}, set()
        info = self.task.info()
        return RoundInputs(
            task_id=self.task_id, round=round_index, spec=self.task.spec,
            updates=[SubmittedUpdate(s.contributor, digest_to_cid(s.digest), s.digest, s.num_samples, rejections.get(i),
                                     self._pseudo_labels.get((round_index, s.contributor.lower(), s.digest)),
                                     self._spends.get(round_index, {}).get(s.contributor))
                     for i, s in enumerate(subs)],
            submission_order=[row_of[s.contributor] for s in on_chain], rows=rows, base_state=base.state,
            base_cid=base.cid, holdout=self.holdout, budget=info.reward_per_round + info.carry,
        )

    def confirmed_submissions(self, round_index: int, deadline: float | None = None) -> list[Submission]:
        """The round's submissions once the round's close is `confirmations` blocks deep (its SubmissionsClosed, or
        a block past its submission deadline): a submission a reorganisation may still drop, or one that may still
        come, is never aggregated, scored or slashed. Called once the round stopped taking submissions; should the
        aggregation deadline come first, what is confirmed by then."""
        closed = self.events.wait_for(
            f"round {round_index}'s close", lambda: self.events.round_closed(self.task_id, round_index),
            until=float("inf") if deadline is None else deadline)
        if not closed:
            log.warning("round %d: its close was not %d blocks deep by the aggregation deadline: acting on the "
                        "submissions confirmed so far", round_index, self.confirmations)
        return self.events.submissions(self.task_id, round_index)

    def _digests_before(self, round_index: int) -> set[bytes]:
        """Digests submitted in earlier rounds of this task: the same bytes again are a replay (they bind an earlier
        round, so no submission of this round can own them)."""
        return self.events.digests_before(self.task_id, round_index)

    def _fetch_update(self, sub: Submission, deadline: float) -> bytes | Reason:
        """The update's bytes; a reason code only for the update's own fault: while our own node is down, wait."""
        cid = digest_to_cid(sub.digest)
        while True:
            try:
                return self.ipfs.cat(cid, max_size=self.task.spec.max_update_bytes)
            except ContentTooLargeError as exc:
                log.warning("update %s from %s rejected: %s", cid, sub.contributor, exc)
                return Reason.TOO_LARGE
            except ContentError as exc:
                # Our node not answering says nothing about the update, even if it answers again by the time we
                # ask (a node restarting: the fault harness found this race).
                if not isinstance(exc, NodeUnreachableError) and node_is_up(self.ipfs):
                    log.warning("update %s from %s is unavailable: %s", cid, sub.contributor, exc)
                    return Reason.UNAVAILABLE
                log.warning("cannot fetch update %s: this party's IPFS node at %s is down; waiting for it "
                            "(the update is not marked unavailable for that)", cid, self.ipfs.api)
                patiently("reach this party's IPFS node", self.ipfs.version, until=deadline)

    def _load_update(self, sub: Submission, round_index: int, base_cid: str, row: torch.Tensor,
                     deadline: float, cache: dict[bytes, bytes | Reason]) -> str | None:
        """Fetch, verify, open and decode one update into `row`; the reason code if it is rejected."""
        if sub.digest not in cache:
            cache[sub.digest] = self._fetch_update(sub, deadline)
        fetched = cache[sub.digest]
        if isinstance(fetched, Reason):
            return fetched
        return self._open_update(sub, round_index, base_cid, fetched, row)

    def _open_update(self, sub: Submission, round_index: int, base_cid: str, data: bytes,
                     row: torch.Tensor) -> str | None:
        """Verify, open and decode an update's fetched bytes into `row`; the reason code if it is rejected."""
        spec = self.task.spec
        try:
            if spec.sealed:
                binding = SealBinding(self.task_id, round_index, sub.contributor)
                if read_binding(data) != binding:
                    return Reason.REPLAY  # sealed for another sender or round
                assert self.sealing_key is not None  # checked in __init__ for sealed tasks
                data = open_sealed(data, self.sealing_key, binding)
            envelope = decode_update(data, self.task.layout.expected_tensors(), max_bytes=spec.max_update_bytes)
        except (SealError, EnvelopeError) as exc:
            return exc.reason
        if (envelope.task_id, envelope.round) != (self.task_id, round_index):
            return Reason.REPLAY
        if envelope.contributor.lower() != sub.contributor.lower():
            return Reason.REPLAY
        if envelope.base_model_cid != base_cid:
            return Reason.WRONG_BASE
        if envelope.num_samples != sub.num_samples:
            return Reason.BAD_METADATA
        problem, pseudo_labels = check_record(spec, envelope.extensions,
                                              self._declared.get(round_index, {}).get(sub.contributor),
                                              sub.num_samples)
        if problem is not None:
            log.warning("update %s from %s rejected: %s", digest_to_cid(sub.digest), sub.contributor, problem)
            return Reason.BAD_METADATA
        if pseudo_labels is not None:
            self._pseudo_labels[(round_index, sub.contributor.lower(), sub.digest)] = pseudo_labels
        privacy_fault = judge_privacy(spec, envelope.extensions, sub.num_samples,
                                      self._spends.get(round_index, {}).get(sub.contributor))
        if privacy_fault is not None:
            return privacy_fault
        self.task.layout.flatten_into(envelope.tensors, row)
        return None
