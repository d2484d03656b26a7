"""Collecting a round's inputs: the chain's submissions, each fetched, verified, opened and decoded into its row.

Shared by the single validator and by committee members: both compute the round from these inputs
(fedchain.roles.round.RoundInputs). Outages: while this party's own IPFS node is down it waits and retries (until the
round's aggregation deadline) instead of marking updates unavailable; an update is `unavailable` only when the node
answers and the content cannot be fetched.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fedchain.aggregation import canonical_order
from fedchain.chain.protocol import Protocol, Submission
from fedchain.content.client import IpfsClient
from fedchain.content.errors import ContentError, ContentTooLargeError
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
from fedchain.roles.retry import node_is_up, patiently
from fedchain.roles.round import RoundInputs, SubmittedUpdate
from fedchain.views.taskview import TaskView

log = logging.getLogger(__name__)


class UpdateCollector:
    """A task's view, this party's held-out data and model, and the fetching of each round's updates."""

    def __init__(self, protocol: Protocol, ipfs: IpfsClient, task_id: int, holdout_path: Path | None,
                 sealing_key: X25519PrivateKey | None, device: str | None = None) -> None:
        self.protocol = protocol
        self.ipfs = ipfs
        self.task_id = task_id
        self.sealing_key = sealing_key
        self.task = TaskView(protocol, ipfs, task_id)
        self.device = torch.device(device) if device else pick_device()
        # Without held-out data (a verifier), rounds can be merged but not scored.
        self.holdout = (kind_of(self.task.spec).load_data(holdout_path, self.task.spec) if holdout_path is not None
                        else LocalData(np.zeros((0, *self.task.spec.input_shape), np.float32), np.zeros(0, np.int64)))
        self.model = build_model(self.task.spec).to(self.device)
        if self.task.spec.sealed and sealing_key is None:
            raise ConfigError("this task's updates are sealed: pass the validator's --sealing-key")

    def deadline(self, round_index: int) -> float:
        return float(self.protocol.round(self.task_id, round_index).aggregation_deadline)

    def collect(self, round_index: int) -> RoundInputs:
        """The round's inputs: its submissions in canonical order, each fetched, verified and decoded into its row."""
        deadline = self.deadline(round_index)
        base = patiently(f"fetch round {round_index}'s base model", lambda: self.task.global_model(round_index),
                         until=deadline)
        on_chain = self.protocol.submissions(self.task_id, round_index)  # in chain order (block, log index)
        log.info("round %d: aggregating %d submission(s)", round_index, len(on_chain))
        # Rows in canonical order (by contributor address): the result never depends on arrival order.
        subs = [on_chain[i] for i in canonical_order([s.contributor for s in on_chain])]
        row_of = {s.contributor: i for i, s in enumerate(subs)}
        rows = torch.zeros(len(subs), self.task.layout.total, dtype=torch.float32)  # (K, D)
        rejections: dict[int, str] = {}
        seen = self._digests_before(round_index)
        spends = (self.protocol.privacy_spends(self.task_id, round_index, self.protocol.deployments.block)
                  if self.task.spec.privacy is not None else {})
        for sub in on_chain:  # chain order, so that the first of identical bytes is the original
            row = row_of[sub.contributor]
            reason = (Reason.REPLAY if sub.digest in seen
                      else self._load_update(sub, round_index, base.cid, rows[row], deadline,
                                             spends.get(sub.contributor)))
            seen.add(sub.digest)
            if reason is not None:
                rejections[row] = str(reason)
        info = self.task.info()
        return RoundInputs(
            task_id=self.task_id, round=round_index, spec=self.task.spec,
            updates=[SubmittedUpdate(s.contributor, digest_to_cid(s.digest), s.digest, s.num_samples, rejections.get(i),
                                     spends.get(s.contributor))
                     for i, s in enumerate(subs)],
            submission_order=[row_of[s.contributor] for s in on_chain], rows=rows, base_state=base.state,
            base_cid=base.cid, holdout=self.holdout, budget=info.reward_per_round + info.carry,
        )

    def _digests_before(self, round_index: int) -> set[bytes]:
        """Digests submitted in earlier rounds of this task: the same bytes again are a replay."""
        return {s.digest for s in self.protocol.submissions(self.task_id) if s.round < round_index}

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
                if node_is_up(self.ipfs):
                    log.warning("update %s from %s is unavailable: %s", cid, sub.contributor, exc)
                    return Reason.UNAVAILABLE
                log.warning("cannot fetch update %s: this party's IPFS node at %s is down; waiting for it "
                            "(the update is not marked unavailable for that)", cid, self.ipfs.api)
                patiently("reach this party's IPFS node", self.ipfs.version, until=deadline)

    def _load_update(self, sub: Submission, round_index: int, base_cid: str, row: torch.Tensor,
                     deadline: float, epsilon_micro: int | None = None) -> str | None:
        """Fetch, verify, open and decode one update into `row`; the reason code if it is rejected."""
        spec = self.task.spec
        fetched = self._fetch_update(sub, deadline)
        if isinstance(fetched, Reason):
            return fetched
        data = fetched
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
        privacy_fault = judge_privacy(spec, envelope.extensions, sub.num_samples, epsilon_micro)
        if privacy_fault is not None:
            return privacy_fault
        self.task.layout.flatten_into(envelope.tensors, row)
        return None
