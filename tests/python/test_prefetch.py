"""The validator's prefetch: updates fetched, verified and decoded while the round is open, exactly as collecting
the round would, so that collecting it once it closes finds them done."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import torch

from fedchain.content.errors import ContentNotFoundError
from fedchain.core.cid import digest_to_cid
from fedchain.core.envelope import UpdateEnvelope, encode_update
from fedchain.core.reasons import Reason
from fedchain.core.spec import mnist_spec
from fedchain.learning.models import ParamLayout, build_model
from fedchain.roles import collect
from fedchain.roles.collect import UpdateCollector

BASE = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
SPEC = mnist_spec("mlp", sealed=False)
LAYOUT = ParamLayout.from_model(build_model(SPEC))


class CountingIpfs:
    def __init__(self) -> None:
        self.content: dict[str, bytes] = {}
        self.calls: list[str] = []
        self.api = "http://127.0.0.1:5001"

    def put(self, data: bytes) -> bytes:
        digest = hashlib.sha256(data).digest()  # a stand-in address: this fake node addresses content by it
        self.content[digest_to_cid(digest)] = data
        return digest

    def cat(self, cid: str, max_size: int | None = None) -> bytes:
        self.calls.append(cid)
        if cid not in self.content:
            raise ContentNotFoundError(f"{cid}: not found")
        return self.content[cid]

    def version(self) -> dict:
        return {"Version": "test"}


def _update(ipfs: CountingIpfs, i: int, round_index: int = 3, signer: int | None = None, store: bool = True):
    """A submission of contributor i: an envelope whose tensors are all i (signed as `signer` if given)."""
    tensors = {e.name: torch.full(e.shape, float(i)) for e in LAYOUT.entries}
    envelope = UpdateEnvelope(0, round_index, BASE, 10, f"0x{(signer or i):040x}", tensors)
    data = encode_update(envelope)
    digest = ipfs.put(data) if store else hashlib.sha256(data).digest()
    return SimpleNamespace(contributor=f"0x{i:040x}", digest=digest, num_samples=10)


def _collector(subs_by_round: dict[int, list], ipfs: CountingIpfs) -> UpdateCollector:
    collector = UpdateCollector.__new__(UpdateCollector)
    events = SimpleNamespace(submissions=lambda task_id, r: subs_by_round.get(r, []),  # the confirmed events
                             pseudo_label_declarations=lambda task_id, r: [])
    collector.ipfs, collector.task_id, collector.sealing_key = ipfs, 0, None
    collector.task = SimpleNamespace(spec=SPEC, layout=LAYOUT, base_model_cid=lambda r: BASE, events=events)
    collector._prefetch_round, collector._prefetched, collector._prefetch_tried = None, {}, set()
    collector._declared, collector._pseudo_labels = {}, {}
    return collector


def _key(sub) -> tuple:
    return (sub.digest, sub.contributor.lower(), sub.num_samples, BASE)


def test_prefetch_decodes_each_update_once_as_collecting_would():
    ipfs = CountingIpfs()
    subs = {3: [_update(ipfs, 1), _update(ipfs, 2, signer=9), _update(ipfs, 3, store=False)]}
    c = _collector(subs, ipfs)
    assert c.prefetch(3) == 2  # the third is not on IPFS (yet): left to collect
    assert c.prefetch(3) == 0 and len(ipfs.calls) == 3  # nothing is fetched twice
    reason, row = c._prefetched[_key(subs[3][0])]
    assert reason is None and torch.equal(row, torch.full((LAYOUT.total,), 1.0))
    assert c._prefetched[_key(subs[3][1])][0] == Reason.REPLAY  # signed by another address: as collect decides
    direct = torch.empty(LAYOUT.total)
    assert c._load_update(subs[3][1], 3, BASE, direct, deadline=2**40, cache={}) == Reason.REPLAY


def test_a_new_round_drops_the_previous_rounds_prefetch():
    ipfs = CountingIpfs()
    subs = {0: [_update(ipfs, 1, round_index=0)], 1: [_update(ipfs, 2, round_index=1)]}
    c = _collector(subs, ipfs)
    c.prefetch(0)
    c.prefetch(1)
    assert list(c._prefetched) == [_key(subs[1][0])]


def test_prefetch_holds_at_most_its_byte_budget(monkeypatch):
    monkeypatch.setattr(collect, "PREFETCH_BYTES", 2 * LAYOUT.total * 4 + 1)
    ipfs = CountingIpfs()
    subs = {3: [_update(ipfs, i) for i in range(1, 6)]}
    c = _collector(subs, ipfs)
    assert c.prefetch(3) == 2 and len(ipfs.calls) == 2  # two decoded rows fit; collect fetches the rest
