"""The UnixFS DAG builder gives Kubo's CIDs; the reader returns the bytes back, with offsets."""

from __future__ import annotations

import hashlib
import io
import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedchain.content.unixfs import (
    AddOptions,
    DagBuilder,
    _Link,
    build,
    compute_cid,
    encode_file_node,
    iter_file,
    read_all,
)
from fedchain.core.cid import DAG_PB, RAW, Cid, cid_from_bytes

CHUNK = 262_144

# Published by Kubo (see shared/TOOLCHAIN.md).
VECTORS = [
    (b"hello world\n", 0, "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"),
    (b"hello world", 0, "Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD"),
    (b"hello world", 1, "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"),
    (b"", 0, "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"),
]

SIZES = {
    "empty": 0,
    "one-byte": 1,
    "chunk-minus-1": CHUNK - 1,
    "one-chunk": CHUNK,
    "chunk-plus-1": CHUNK + 1,
    "174-chunks": 174 * CHUNK,
    "174-chunks-plus-1": 174 * CHUNK + 1,
    "about-50MB": 50_000_017,
}


def _random_bytes(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.mark.parametrize(("data", "version", "expected"), VECTORS)
def test_published_kubo_vectors(data: bytes, version: int, expected: str) -> None:
    assert compute_cid(data, cid_version=version) == expected


def test_empty_file_with_raw_leaves_is_the_raw_block_of_nothing() -> None:
    assert compute_cid(b"", cid_version=1) == Cid(1, RAW, hashlib.sha256(b"").digest()).encode()


@pytest.fixture(scope="module")
def ipfs_cid_binary() -> str:
    path = shutil.which("ipfs_cid")
    if path is None:
        pytest.skip("Debian's ipfs_cid is not installed (apt-get install -y ipfs-cid): independent CID check skipped")
    return path


@pytest.mark.parametrize("name", list(SIZES))
def test_cid_equals_independent_implementation(name: str, ipfs_cid_binary: str, tmp_path: Path) -> None:
    data = _random_bytes(SIZES[name], seed=SIZES[name])
    path = tmp_path / name
    path.write_bytes(data)
    out = subprocess.run([ipfs_cid_binary, str(path)], capture_output=True, text=True, check=True).stdout
    expected = json.loads(out[: out.index("}") + 1])["CIDv0"]
    with path.open("rb") as fh:
        assert compute_cid(fh) == expected


def test_bytes_and_stream_in_odd_pieces_give_the_same_cid() -> None:
    data = _random_bytes(3 * CHUNK + 12345, seed=7)
    builder = DagBuilder()
    rng = random.Random(1)
    pos = 0
    while pos < len(data):
        step = rng.choice([1, 100, 65_536, CHUNK, CHUNK + 3, 700_000])
        builder.write(data[pos : pos + step])
        pos += step
    assert builder.finish().cid.encode() == compute_cid(data) == compute_cid(io.BytesIO(data))


def test_v1_uses_raw_leaves_and_dag_pb_root() -> None:
    blocks: dict[Cid, bytes] = {}
    result = build(_random_bytes(2 * CHUNK + 1, 3), AddOptions(cid_version=1), sink=lambda c, p: blocks.__setitem__(c, b"".join(p)))
    assert result.cid.version == 1 and result.cid.codec == DAG_PB
    assert sorted(c.codec for c in blocks) == sorted([DAG_PB, RAW, RAW, RAW])


def test_add_result_sizes_match_kubo_convention() -> None:
    # Kubo reports Size 20 for "hello world\n": the 20-byte leaf block.
    result = build(b"hello world\n")
    assert (result.size, result.tsize) == (12, 20)


def _reference_balanced(chunks: list[bytes], opts: AddOptions) -> Cid:
    """A literal transcription of go-unixfs's balanced.Layout / fillNodeRec (recursive)."""
    blocks: dict[Cid, bytes] = {}
    sink = lambda c, p: blocks.__setitem__(c, b"".join(p))  # noqa: E731

    def leaf(chunk: bytes) -> _Link:
        sub = DagBuilder(AddOptions(opts.cid_version, opts.raw_leaves, max(1, len(chunk)), opts.max_links), sink)
        sub.write(chunk)
        res = sub.finish()
        return _Link(res.cid.to_bytes(), res.tsize, res.size)

    def node(links: list[_Link]) -> _Link:
        block = encode_file_node(links)
        cid = Cid(opts.cid_version, DAG_PB, hashlib.sha256(block).digest())
        return _Link(cid.to_bytes(), len(block) + sum(x.tsize for x in links), sum(x.filesize for x in links))

    pending = list(chunks)

    def done() -> bool:
        return not pending

    def next_leaf() -> _Link:
        return leaf(pending.pop(0))

    def fill(links: list[_Link], depth: int) -> _Link:
        while len(links) < opts.max_links and not done():
            links.append(next_leaf() if depth == 1 else fill([], depth - 1))
        return node(links)

    root = next_leaf()
    depth = 1
    while not done():
        root = fill([root], depth)
        depth += 1
    return cid_from_bytes(root.cid_bytes)


@settings(max_examples=60, deadline=None)
@given(n_bytes=st.integers(1, 300), chunk=st.integers(1, 5), max_links=st.integers(2, 4), version=st.sampled_from([0, 1]))
def test_streaming_builder_matches_recursive_balanced_layout(n_bytes: int, chunk: int, max_links: int, version: int) -> None:
    data = _random_bytes(n_bytes, n_bytes)
    opts = AddOptions(cid_version=version, chunk_size=chunk, max_links=max_links)
    chunks = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    assert build(data, opts).cid == _reference_balanced(chunks, opts)


@settings(max_examples=40, deadline=None)
@given(n_bytes=st.integers(0, 200), chunk=st.integers(1, 7), max_links=st.integers(2, 4),
       version=st.sampled_from([0, 1]), offset=st.integers(0, 220), length=st.one_of(st.none(), st.integers(0, 220)))
def test_reader_returns_the_bytes_from_any_offset(n_bytes: int, chunk: int, max_links: int, version: int,
                                                  offset: int, length: int | None) -> None:
    data = _random_bytes(n_bytes, n_bytes + 1)
    blocks: dict[Cid, bytes] = {}
    opts = AddOptions(cid_version=version, chunk_size=chunk, max_links=max_links)
    root = build(data, opts, sink=lambda c, p: blocks.__setitem__(c, b"".join(p))).cid
    got = b"".join(bytes(p) for p in iter_file(blocks.__getitem__, root, offset, length))
    assert got == data[offset : None if length is None else offset + length]
    assert read_all(blocks.__getitem__, root) == data


def test_sink_sees_every_block_once_with_its_cid() -> None:
    blocks: list[tuple[Cid, bytes]] = []
    build(_random_bytes(5 * CHUNK, 9), sink=lambda c, p: blocks.append((c, b"".join(p))))
    for cid, block in blocks:
        assert hashlib.sha256(block).digest() == cid.digest
    assert len(blocks) == 6  # five leaves and one root
