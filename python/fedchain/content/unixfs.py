"""A streaming UnixFS (dag-pb) file DAG builder and reader that gives the same CIDs as Kubo's `ipfs add`.

Layout (Kubo's defaults, fixed here on purpose, since newer Kubo import profiles change them):
- fixed-size chunks of 262,144 bytes;
- a balanced DAG of at most 174 links per node: the tree of minimal depth, filled left to right; a file of one
  chunk is a single leaf;
- leaves: dag-pb nodes wrapping a UnixFS `File` (CIDv0 default), or raw blocks (codec 0x55, CIDv1 default);
- internal nodes: dag-pb, links first (Hash, Name "", Tsize = cumulative block size below), then UnixFS data
  `File` with the file size and one blocksize per child.

Bytes are fed with `write()` in pieces of any size, so a 400 MB file never sits in memory:

    builder = DagBuilder(AddOptions(cid_version=0), sink=store_block)
    for piece in stream: builder.write(piece)
    result = builder.finish()          # AddResult(cid=Cid(...), size=file bytes, tsize=DAG bytes)
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from fedchain.content.errors import ContentError, UnsupportedOptionError
from fedchain.core.cid import DAG_PB, RAW, Cid, decode_varint, encode_varint

DEFAULT_CHUNK_SIZE = 262_144
DEFAULT_MAX_LINKS = 174
MAX_CHUNK_SIZE = 1_048_576  # Kubo refuses larger chunks: blocks over 1 MiB do not travel over bitswap
UNIXFS_FILE = 2
UNIXFS_RAW = 0

BlockParts = Sequence[bytes | bytearray | memoryview]
BlockSink = Callable[[Cid, BlockParts], None]
"""Receives each new block as its CID and the pieces whose concatenation is the block (valid during the call)."""


class DagFormatError(ContentError, ValueError):
    """Raised when a block is not a UnixFS file node this reader understands."""


# ---------------------------------------------------------------- options


@dataclass(frozen=True)
class AddOptions:
    """How a file is cut and encoded; the defaults are Kubo's `ipfs add` defaults."""

    cid_version: int = 0
    raw_leaves: bool | None = None  # None: raw leaves exactly when cid_version == 1 (Kubo's rule)
    chunk_size: int = DEFAULT_CHUNK_SIZE
    max_links: int = DEFAULT_MAX_LINKS

    def __post_init__(self) -> None:
        if self.cid_version not in (0, 1):
            raise UnsupportedOptionError(f"cid-version must be 0 or 1, got {self.cid_version}")
        if not 1 <= self.chunk_size <= MAX_CHUNK_SIZE:
            raise UnsupportedOptionError(f"chunk size must be 1..{MAX_CHUNK_SIZE} bytes, got {self.chunk_size}")
        if not 2 <= self.max_links <= 65_536:
            raise UnsupportedOptionError(f"max links must be 2..65536, got {self.max_links}")

    @property
    def leaves_raw(self) -> bool:
        return self.cid_version == 1 if self.raw_leaves is None else self.raw_leaves

    @property
    def chunker(self) -> str:
        return f"size-{self.chunk_size}"

    @staticmethod
    def parse_chunker(chunker: str) -> int:
        """Chunk size of a Kubo chunker string; only `size-N` (fixed size) is supported."""
        if chunker in ("", "default"):
            return DEFAULT_CHUNK_SIZE
        name, _, value = chunker.partition("-")
        if name != "size" or not value.isdigit():
            raise UnsupportedOptionError(f"unsupported chunker {chunker!r}: only size-N (fixed size) is supported")
        return int(value)


@dataclass(frozen=True)
class AddResult:
    cid: Cid
    size: int  # bytes of the file
    tsize: int  # bytes of all blocks in the DAG (Kubo's "Size" in the add response)


@dataclass(frozen=True)
class _Link:
    cid_bytes: bytes
    tsize: int
    filesize: int


# ---------------------------------------------------------------- building


class DagBuilder:
    """Cuts a byte stream into chunks and builds the balanced DAG, handing each block to `sink`."""

    def __init__(self, options: AddOptions | None = None, sink: BlockSink | None = None) -> None:
        self.options = options or AddOptions()
        self._sink = sink
        self._buf = bytearray()
        self._levels: list[list[_Link]] = [[]]
        self._leaf_count = 0
        self.size = 0
        self._finished = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Feed the next bytes of the file."""
        if self._finished:
            raise ContentError("DagBuilder.write after finish")
        view = memoryview(data).cast("B")
        self.size += len(view)
        size = self.options.chunk_size
        if self._buf:
            take = min(size - len(self._buf), len(view))
            self._buf += view[:take]
            view = view[take:]
            if len(self._buf) < size:
                return
            self._leaf(self._buf)
            self._buf = bytearray()
        while len(view) >= size:
            self._leaf(view[:size])
            view = view[size:]
        if len(view):
            self._buf += view

    def finish(self) -> AddResult:
        """Flush the last chunk and close the tree; return the root."""
        if self._finished:
            raise ContentError("DagBuilder.finish called twice")
        self._finished = True
        if self._buf or self._leaf_count == 0:
            self._leaf(self._buf)  # an empty file is one empty leaf, as in Kubo
            self._buf = bytearray()
        level = 0
        while True:
            top = max(i for i, links in enumerate(self._levels) if links)
            if level == top and len(self._levels[level]) == 1:
                root = self._levels[level][0]
                break
            if self._levels[level]:
                links, self._levels[level] = self._levels[level], []
                self._push(level + 1, self._node(links), eager=False)
            level += 1
        return AddResult(_cid_from_link(root), root.filesize, root.tsize)

    # -- internals

    def _emit(self, cid: Cid, parts: BlockParts) -> None:
        if self._sink is not None:
            self._sink(cid, parts)

    def _leaf(self, chunk: bytes | bytearray | memoryview) -> None:
        n = len(chunk)
        self._leaf_count += 1
        if self.options.leaves_raw:
            cid = Cid(1, RAW, hashlib.sha256(chunk).digest())
            self._emit(cid, (chunk,))
            self._push(0, _Link(cid.to_bytes(), n, n))
            return
        # PBNode{Data: UnixFS{Type: File, Data: chunk, filesize: n}}; an empty chunk has no Data field
        inner_len = 2 + (1 + len(encode_varint(n)) + n if n else 0) + 1 + len(encode_varint(n))
        prefix = b"\x0a" + encode_varint(inner_len) + b"\x08\x02"
        if n:
            prefix += b"\x12" + encode_varint(n)
        suffix = b"\x18" + encode_varint(n)
        h = hashlib.sha256(prefix)
        h.update(chunk)
        h.update(suffix)
        cid = Cid(self.options.cid_version, DAG_PB, h.digest())
        self._emit(cid, (prefix, chunk, suffix))
        self._push(0, _Link(cid.to_bytes(), len(prefix) + n + len(suffix), n))

    def _push(self, level: int, link: _Link, eager: bool = True) -> None:
        while len(self._levels) <= level:
            self._levels.append([])
        links = self._levels[level]
        links.append(link)
        if eager and len(links) == self.options.max_links:
            self._levels[level] = []
            self._push(level + 1, self._node(links))

    def _node(self, links: list[_Link]) -> _Link:
        block = encode_file_node(links)
        cid = Cid(self.options.cid_version, DAG_PB, hashlib.sha256(block).digest())
        self._emit(cid, (block,))
        return _Link(cid.to_bytes(), len(block) + sum(link.tsize for link in links), sum(x.filesize for x in links))


def encode_file_node(links: Sequence[_Link]) -> bytes:
    """dag-pb node: links (Hash, Name "", Tsize) first, then UnixFS File data with filesize and blocksizes."""
    out = bytearray()
    for link in links:
        body = b"\x0a" + encode_varint(len(link.cid_bytes)) + link.cid_bytes + b"\x12\x00\x18" + encode_varint(link.tsize)
        out += b"\x12" + encode_varint(len(body)) + body
    data = bytearray(b"\x08\x02\x18" + encode_varint(sum(link.filesize for link in links)))
    for link in links:
        data += b"\x20" + encode_varint(link.filesize)
    out += b"\x0a" + encode_varint(len(data)) + data
    return bytes(out)


def _cid_from_link(link: _Link) -> Cid:
    from fedchain.core.cid import cid_from_bytes

    return cid_from_bytes(link.cid_bytes)


def build(data: bytes | bytearray | memoryview | BinaryIO, options: AddOptions | None = None,
          sink: BlockSink | None = None, read_size: int = 1 << 20) -> AddResult:
    """Build the DAG of `data` (bytes, or a binary file object read in pieces)."""
    builder = DagBuilder(options, sink)
    if isinstance(data, (bytes, bytearray, memoryview)):
        builder.write(data)
    else:
        while piece := data.read(read_size):
            builder.write(piece)
    return builder.finish()


def compute_cid(data: bytes | bytearray | memoryview | BinaryIO, cid_version: int = 0,
                raw_leaves: bool | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE) -> str:
    """The CID `ipfs add` gives `data` (bytes or a binary file object), without storing anything."""
    return build(data, AddOptions(cid_version, raw_leaves, chunk_size)).cid.encode()


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class PbLink:
    cid: Cid
    tsize: int


@dataclass(frozen=True)
class FileNode:
    """A decoded UnixFS file block: links to children, inline data, sizes."""

    links: tuple[PbLink, ...]
    data: memoryview  # the file bytes held inline in this block (empty for internal nodes)
    filesize: int
    blocksizes: tuple[int, ...]


def _fields(buf: memoryview) -> Iterator[tuple[int, int, Any]]:
    """Protobuf fields as (number, wire type, value: int for varints, memoryview for bytes)."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = decode_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = decode_varint(buf, pos)
            yield number, wire, value
        elif wire == 2:
            length, pos = decode_varint(buf, pos)
            if pos + length > end:
                raise ValueError("field runs past the end of the block")
            yield number, wire, buf[pos : pos + length]
            pos += length
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def _pb_node(view: memoryview) -> tuple[list[PbLink], memoryview]:
    """A dag-pb node's links and its Data field; ValueError if malformed."""
    from fedchain.core.cid import cid_from_bytes

    links: list[PbLink] = []
    data: memoryview | None = None
    for number, wire, value in _fields(view):
        if number == 2 and wire == 2:
            link_hash, tsize = None, 0
            for lnum, lwire, lval in _fields(value):
                if lnum == 1 and lwire == 2:
                    link_hash = cid_from_bytes(bytes(lval))
                elif lnum == 3 and lwire == 0:
                    tsize = lval
            if link_hash is None:
                raise ValueError("link without a hash")
            links.append(PbLink(link_hash, tsize))
        elif number == 1 and wire == 2:
            data = value
    if data is None:
        raise ValueError("dag-pb node without UnixFS data")
    return links, data


def _unixfs_data(data: memoryview) -> tuple[int, memoryview, int | None, list[int]]:
    """(type, inline bytes, filesize, blocksizes) of a UnixFS Data message; ValueError if malformed."""
    kind, inline, filesize, sizes = UNIXFS_FILE, memoryview(b""), None, []
    for number, wire, value in _fields(data):
        if number == 1 and wire == 0:
            kind = value
        elif number == 2 and wire == 2:
            inline = value
        elif number == 3 and wire == 0:
            filesize = value
        elif number == 4 and wire == 0:
            sizes.append(value)
    return kind, inline, filesize, sizes


def decode_file_block(cid: Cid, block: bytes | memoryview) -> FileNode:
    """Decode a block of a UnixFS file DAG (raw leaf or dag-pb File/Raw node).

    Raises:
        DagFormatError: for directories, symlinks, HAMT shards and anything malformed.
    """
    view = memoryview(block)
    if cid.codec == RAW:
        return FileNode((), view, len(view), ())
    if cid.codec != DAG_PB:
        raise DagFormatError(f"{cid} has codec {cid.codec_name}; only dag-pb and raw files can be read")
    try:
        links, data = _pb_node(view)
        kind, inline, filesize, sizes = _unixfs_data(data)
    except ValueError as exc:
        raise DagFormatError(f"block {cid} is not a valid dag-pb UnixFS node: {exc}") from None
    if kind not in (UNIXFS_FILE, UNIXFS_RAW):
        raise DagFormatError(f"{cid} is not a file (UnixFS type {kind}); directories are not supported")
    if len(sizes) != len(links):
        raise DagFormatError(f"{cid}: {len(links)} links but {len(sizes)} blocksizes")
    size = filesize if isinstance(filesize, int) else len(inline) + sum(sizes)
    return FileNode(tuple(links), inline, size, tuple(sizes))


def iter_file(get_block: Callable[[Cid], bytes], root: Cid, offset: int = 0,
              length: int | None = None) -> Iterator[memoryview]:
    """Yield the bytes of the file at `root` (from `offset`, at most `length` bytes), block by block.

    `get_block` returns a block's bytes (and raises if it is missing). Children before `offset` are skipped
    using the blocksizes, so only the blocks that hold wanted bytes are read.
    """
    remaining = -1 if length is None else length
    stack: list[tuple[Cid, int]] = [(root, offset)]  # (block, bytes of it still to skip)
    while stack and remaining != 0:
        cid, skip = stack.pop()
        node = decode_file_block(cid, get_block(cid))
        if len(node.data) > skip:
            piece = node.data[skip:] if remaining < 0 else node.data[skip : skip + remaining]
            skip = 0
            if remaining > 0:
                remaining -= len(piece)
            yield piece
        else:
            skip -= len(node.data)
        children = []
        for link, size in zip(node.links, node.blocksizes):
            if skip >= size:
                skip -= size
                continue
            children.append((link.cid, skip))
            skip = 0
        stack.extend(reversed(children))


def file_size(get_block: Callable[[Cid], bytes], root: Cid) -> int:
    return decode_file_block(root, get_block(root)).filesize


def read_all(get_block: Callable[[Cid], bytes], root: Cid) -> bytes:
    out = io.BytesIO()
    for piece in iter_file(get_block, root):
        out.write(piece)
    return out.getvalue()
