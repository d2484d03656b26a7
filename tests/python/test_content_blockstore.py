"""The on-disk block store: atomic durable writes, dedupe, pins, gc, leftovers of crashes."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from fedchain.content.blockstore import Blockstore
from fedchain.content.errors import ContentNotFoundError
from fedchain.content.unixfs import AddOptions, DagBuilder, read_all
from fedchain.core.cid import DAG_PB, Cid

CHUNK = 262_144


def _add(store: Blockstore, data: bytes, pin: bool = True) -> Cid:
    with store.batch() as batch:
        builder = DagBuilder(AddOptions(), batch.put)
        builder.write(data)
        cid = builder.finish().cid
        batch.commit()
        if pin:
            batch.pin(cid)
    return cid


def test_blocks_are_named_by_their_hash(tmp_path: Path) -> None:
    store = Blockstore(tmp_path)
    cid = _add(store, b"x" * (CHUNK + 1))
    files = [p for p in (tmp_path / "blocks").rglob("*") if p.is_file()]
    assert len(files) == 3
    for p in files:
        assert hashlib.sha256(p.read_bytes()).hexdigest() == p.name
    assert read_all(store.get, cid) == b"x" * (CHUNK + 1)


def test_identical_blocks_are_stored_once(tmp_path: Path) -> None:
    store = Blockstore(tmp_path)
    _add(store, b"a" * (4 * CHUNK))  # four identical leaves
    assert sum(1 for p in (tmp_path / "blocks").rglob("*") if p.is_file()) == 2


def test_concurrent_adds_of_the_same_content_are_safe(tmp_path: Path) -> None:
    store = Blockstore(tmp_path)
    data = bytes(range(256)) * 5000
    cids: list[Cid] = []
    threads = [threading.Thread(target=lambda: cids.append(_add(store, data))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(cids)) == 1
    assert read_all(store.get, cids[0]) == data
    assert list((tmp_path / "tmp").iterdir()) == []


def test_missing_block_is_not_found(tmp_path: Path) -> None:
    store = Blockstore(tmp_path)
    with pytest.raises(ContentNotFoundError, match="could not find"):
        store.get(Cid(0, DAG_PB, b"\0" * 32))


def test_gc_keeps_pinned_dags_and_drops_the_rest(tmp_path: Path) -> None:
    store = Blockstore(tmp_path)
    kept = _add(store, b"k" * (3 * CHUNK) + b"!")
    dropped = _add(store, b"d" * (2 * CHUNK) + b"?", pin=False)
    removed = store.gc()
    assert {c.digest for c in removed} >= {dropped.digest}
    assert read_all(store.get, kept) == b"k" * (3 * CHUNK) + b"!"
    with pytest.raises(ContentNotFoundError):
        store.get(dropped)


def test_unpinned_content_goes_at_the_next_gc(tmp_path: Path) -> None:
    store = Blockstore(tmp_path)
    cid = _add(store, b"temporary")
    assert store.pin_rm(cid)
    assert not store.pin_rm(cid)
    store.gc()
    assert not store.has(cid)


def test_gc_clears_leftovers_of_a_crashed_add(tmp_path: Path) -> None:
    store = Blockstore(tmp_path)
    (tmp_path / "tmp" / "deadbeef.123.tmp").write_bytes(b"half a block")
    store.gc()
    assert list((tmp_path / "tmp").iterdir()) == []


def test_pin_add_requires_every_block(tmp_path: Path) -> None:
    store = Blockstore(tmp_path)
    cid = _add(store, b"z" * (2 * CHUNK), pin=False)
    leaf = next(c for c in store.walk(cid) if c != cid)
    store.path_of(leaf).unlink()
    with pytest.raises(ContentNotFoundError):
        store.pin_add(cid)


def test_store_reopens_with_its_pins(tmp_path: Path) -> None:
    cid = _add(Blockstore(tmp_path), b"persist")
    again = Blockstore(tmp_path)
    assert again.pins() == {cid.encode(): "recursive"}
    assert read_all(again.get, cid) == b"persist"
