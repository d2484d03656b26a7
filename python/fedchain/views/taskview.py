"""What contributors and validators both need to know about a task: its spec and each round's base model."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from fedchain.chain.errors import TaskNotFoundError  # noqa: F401 - re-exported: where callers look for it
from fedchain.chain.protocol import Protocol, TaskInfo
from fedchain.content.client import IpfsClient
from fedchain.core.cid import digest_to_cid
from fedchain.core.envelope import decode_model
from fedchain.core.spec import TaskSpec
from fedchain.learning.models import ParamLayout, build_model, tensors_from_arrays
from fedchain.views.confirmed import ConfirmedEvents


@dataclass
class GlobalModel:
    round: int  # the round this model is the base of
    cid: str
    state: dict[str, torch.Tensor]


class TaskView:
    """A task's spec (from IPFS, verified) and its chain of global models, read from confirmed events."""

    def __init__(self, protocol: Protocol, ipfs: IpfsClient, task_id: int, confirmations: int | None = None) -> None:
        self.protocol = protocol
        self.ipfs = ipfs
        self.task_id = task_id
        self.confirmations = confirmations  # None: the chain's default (fedchain.views.index.default_confirmations)
        protocol.require_task(task_id)

    @cached_property
    def events(self) -> ConfirmedEvents:
        """The deployment's confirmed events: what a role acts on (made on first use, then kept up to date)."""
        return ConfirmedEvents(self.protocol, self.confirmations)

    def info(self) -> TaskInfo:
        return self.protocol.task(self.task_id)

    @cached_property
    def spec(self) -> TaskSpec:
        info = self.info()
        return TaskSpec.from_json_bytes(self.ipfs.cat(digest_to_cid(info.spec_digest), max_size=1 << 20))

    @cached_property
    def layout(self) -> ParamLayout:
        return ParamLayout.from_model(build_model(self.spec))

    def base_model_cid(self, round_index: int) -> str:
        """CID of the global model that round `round_index` trains from: the latest finalized model before it, as far
        as confirmed (a role first waits for the round's RoundOpened to be confirmed: then this is final)."""
        self.events.refresh()
        earlier = [f for f in self.events.finalizations(self.task_id) if f.round < round_index]
        if earlier:
            return digest_to_cid(max(earlier, key=lambda f: f.round).model_digest)
        return digest_to_cid(self.info().initial_model_digest)

    def model_max_bytes(self) -> int:
        return self.layout.total * 4 + (1 << 20)

    def load_model(self, cid: str) -> dict[str, torch.Tensor]:
        data = self.ipfs.cat(cid, max_size=self.model_max_bytes())
        state, _metadata = decode_model(data, expected=self.layout.expected_tensors(), max_bytes=self.model_max_bytes())
        return tensors_from_arrays(state)

    def global_model(self, round_index: int) -> GlobalModel:
        cid = self.base_model_cid(round_index)
        return GlobalModel(round_index, cid, self.load_model(cid))
