"""A client for the Kubo RPC API (Kubo, an IPFS Cluster proxy, a hosted RPC, or fedchain's embedded node).

    with IpfsClient("http://127.0.0.1:5001") as ipfs:
        cid = ipfs.add_bytes(b"hello world\\n")      # 'QmT78zSu…', pinned
        data = ipfs.cat(cid)                         # verified: the bytes rebuild to that CID

Why plain httpx rather than ipfshttpclient: ipfshttpclient 0.7.0 (last release 2021) refuses every Kubo newer
than 0.7 in `connect()`, pulls in requests and multiaddr, and hands back bytes without any way to verify them
while they stream. The RPC calls needed here are a handful of POSTs; httpx gives per-phase timeouts, connection
pooling and streaming request and response bodies, so the client can hash content as it flows (for `cat` and
for `add`) and cap its size, without ever holding a 400 MB file in memory.

Every fetch is verified: the client rebuilds the CID from the bytes received (UnixFS, 256 KiB chunks, balanced
DAG of 174 links; dag-pb leaves for CIDv0, raw leaves for CIDv1) and raises CidMismatchError otherwise; no
unverified byte is returned or left at the destination path. Every add sends its chunker, raw-leaves and
cid-version explicitly (newer Kubo import profiles change the defaults) and checks the node's answer against
the CID computed locally from the same stream.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import queue
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TypeVar
from urllib.parse import quote

import httpcore._sync.http11 as _httpcore_http11
import httpx

from fedchain.content.errors import (
    CidMismatchError,
    ContentError,
    ContentNotFoundError,
    ContentTooLargeError,
    NodeRefusedCidError,
    NodeRpcError,
    NodeUnreachableError,
)
from fedchain.content.unixfs import AddOptions, DagBuilder
from fedchain.core.cid import Cid, parse_cid

log = logging.getLogger(__name__)

MiB = 1 << 20
DEFAULT_API = "http://127.0.0.1:5001"
_READ = MiB
_TRANSIENT_STATUS = {429, 502, 503, 504}
T = TypeVar("T")


# httpcore reads responses 64 KiB per recv(); a 400 MB cat then costs ~6,000 trips through h11 in Python. A recv()
# of up to 1 MiB returns whatever the socket holds, so raising the cap only saves work (cat: 170 -> 250 MB/s here).
if getattr(_httpcore_http11.HTTP11Connection, "READ_NUM_BYTES", MiB) < MiB:
    _httpcore_http11.HTTP11Connection.READ_NUM_BYTES = MiB


class _Transient(Exception):
    """A failure worth retrying (connection refused or reset, gateway errors)."""


def api_url(api: str) -> str:
    """Normalise an API address: http(s) URL, HOST:PORT, or a multiaddr (/ip4|ip6|dns|dns4|dns6/…/tcp/PORT[/https])."""
    api = api.strip()
    if api.startswith("/"):
        m = re.fullmatch(r"/(ip4|ip6|dns|dns4|dns6)/([^/]+)/tcp/(\d+)(/https?)?/?", api)
        if not m:
            raise ContentError(f"cannot read the IPFS API multiaddr {api!r}: expected /ip4/HOST/tcp/PORT")
        host = f"[{m.group(2)}]" if m.group(1) == "ip6" else m.group(2)
        scheme = "https" if m.group(4) == "/https" else "http"
        return f"{scheme}://{host}:{m.group(3)}"
    if not re.match(r"https?://", api):
        api = "http://" + api
    return api.rstrip("/")


def _verification_options(cid: Cid) -> list[AddOptions]:
    """Import settings that can have produced `cid`, most likely first."""
    if cid.version == 0:
        return [AddOptions(cid_version=0), AddOptions(cid_version=0, raw_leaves=True)]
    if cid.codec == 0x55:
        return [AddOptions(cid_version=1, raw_leaves=True)]
    return [AddOptions(cid_version=1, raw_leaves=True), AddOptions(cid_version=1, raw_leaves=False)]


class _Verifier:
    """Rebuilds the CID of a stream with the likeliest settings; others are tried afterwards on the stored copy.

    Hashing runs on a worker thread (hashlib releases the GIL on large buffers), so it overlaps with receiving.
    """

    def __init__(self, cid: Cid) -> None:
        self.cid = cid
        self.options = _verification_options(cid)
        self._builder = DagBuilder(self.options[0])
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=16)  # bounds memory: 16 pieces in flight
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="cid-verifier", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while (piece := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._builder.write(piece)
                except BaseException as exc:  # surfaced by check()
                    self._error = exc

    def write(self, data: bytes) -> None:
        self._queue.put(data)

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def check(self, reread: Callable[[], BinaryIO]) -> None:
        self.close()
        if self._error is not None:
            raise self._error
        got = self._builder.finish().cid
        if got == self.cid:
            return
        for options in self.options[1:]:
            builder = DagBuilder(options)
            with reread() as fh:
                while piece := fh.read(_READ):
                    builder.write(piece)
            if builder.finish().cid == self.cid:
                return
        raise CidMismatchError(
            f"content received for {self.cid} hashes to {got}: refusing it (the node served other bytes, or the "
            "content was added with another chunker or DAG layout than 256 KiB chunks / balanced / 174 links)"
        )


class _Sink(Protocol):
    def write(self, piece: bytes, /) -> int: ...


class _Pieces:
    """Received pieces kept as they are and joined once (a growing BytesIO re-copies as it grows)."""

    def __init__(self) -> None:
        self._pieces: list[bytes] = []

    def write(self, piece: bytes) -> int:
        self._pieces.append(piece)
        return len(piece)

    def clear(self) -> None:
        self._pieces = []

    def join(self) -> bytes:
        if len(self._pieces) != 1:
            self._pieces = [b"".join(self._pieces)]
        return self._pieces[0]


class IpfsClient:
    """Kubo RPC API client: add, cat (verified), pins, blocks, version.

    Args:
        api: http(s) URL, HOST:PORT or multiaddr of the RPC API.
        timeout: seconds allowed for connecting and for each read; a fetch that gets no data for this long
            counts as not found.
        max_size: default cap on the bytes of any fetch.
        retries: extra attempts after a transient failure (refused connection, reset, HTTP 429/502/503/504),
            with exponential backoff from `backoff` seconds.
        add_options: chunker / raw leaves / CID version sent with every add (Kubo's historical defaults).
    """

    def __init__(self, api: str = DEFAULT_API, timeout: float = 30.0, max_size: int = 512 * MiB, retries: int = 3,
                 backoff: float = 0.2, add_options: AddOptions | None = None) -> None:
        self.api = api_url(api)
        self.timeout = timeout
        self.max_size = max_size
        self.retries = retries
        self.backoff = backoff
        self.add_options = add_options or AddOptions()
        loopback = re.match(r"https?://(127\.|localhost|\[::1\])", self.api) is not None
        self._http = httpx.Client(
            base_url=self.api + "/api/v0/",
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            trust_env=not loopback,  # a proxy set in the environment must not capture loopback traffic
        )

    # ------------------------------------------------------------ plumbing

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> IpfsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"IpfsClient({self.api!r})"

    def _retry(self, what: str, attempt_fn: Callable[[], T]) -> T:
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                return attempt_fn()
            except _Transient as exc:
                if attempt == self.retries:
                    raise NodeUnreachableError(
                        f"no IPFS RPC API answered at {self.api} ({what}: {exc}) after {attempt + 1} attempts; "
                        "start one with `fedchain ipfs serve` or point --ipfs-api at a Kubo node"
                    ) from None
                log.info("%s at %s failed (%s); retrying in %.2fs", what, self.api, exc, delay)
                time.sleep(delay * (1 + random.random() / 4))
                delay *= 2
        raise AssertionError("unreachable")

    def _send(self, command: str, params: dict[str, Any] | list[tuple[str, str]] | None = None,
              content: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
        """POST a command and return the open streaming response (status 200), mapping errors."""
        try:
            query: Any = params  # httpx's QueryParamTypes, spelled out by the callers
            request = self._http.build_request("POST", command, params=query, content=content, headers=headers)
            response = self._http.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.PoolTimeout,
                httpx.WriteError, httpx.ReadError) as exc:
            raise _Transient(f"{type(exc).__name__}: {exc}") from None
        except httpx.ReadTimeout:
            raise ContentNotFoundError(
                f"{command} {params!r}: no answer from {self.api} within {self.timeout}s (content not found?)"
            ) from None
        except httpx.HTTPError as exc:
            raise NodeUnreachableError(f"{command} at {self.api} failed: {type(exc).__name__}: {exc}") from None
        if response.status_code == 200:
            return response
        try:
            body = response.read()[:65536]
        except httpx.HTTPError:
            body = b""
        finally:
            response.close()
        if response.status_code in _TRANSIENT_STATUS:
            raise _Transient(f"HTTP {response.status_code}")
        raise self._error(command, response.status_code, body)

    def _error(self, command: str, status: int, body: bytes) -> ContentError:
        try:
            message = str(json.loads(body.splitlines()[0])["Message"])
        except (ValueError, KeyError, IndexError, TypeError):
            message = body.decode("utf-8", "replace").strip()[:500] or f"HTTP {status}"
        text = f"{command} at {self.api}: {message}"
        lowered = message.lower()
        if any(s in lowered for s in ("not found", "could not find", "no link named", "not pinned")):
            return ContentNotFoundError(text)
        if "invalid path" in lowered or "invalid cid" in lowered or "selected encoding not supported" in lowered:
            return NodeRefusedCidError(text)
        if status == 404:
            return NodeRpcError(f"{text} (is {self.api} an IPFS RPC API? the gateway port is not)", status)
        return NodeRpcError(text, status)

    def _json(self, command: str, params: Any = None) -> list[dict[str, Any]]:
        def attempt() -> list[dict[str, Any]]:
            with closing(self._send(command, params)) as resp:
                try:
                    body = resp.read()
                except httpx.ReadTimeout:
                    raise ContentNotFoundError(f"{command} at {self.api}: no answer within {self.timeout}s") from None
                except httpx.HTTPError as exc:
                    raise _Transient(f"{type(exc).__name__}: {exc}") from None
            try:
                return [json.loads(line) for line in body.splitlines() if line.strip()]
            except ValueError:
                raise NodeRpcError(f"{command} at {self.api}: answer is not JSON: {body[:200]!r}") from None

        return self._retry(command, attempt)

    # ------------------------------------------------------------ add

    def _add_params(self, pin: bool, only_hash: bool, options: AddOptions) -> list[tuple[str, str]]:
        return [
            ("cid-version", str(options.cid_version)),
            ("raw-leaves", "true" if options.leaves_raw else "false"),
            ("chunker", options.chunker),
            ("hash", "sha2-256"),
            ("pin", "true" if pin else "false"),
            ("only-hash", "true" if only_hash else "false"),
            ("trickle", "false"),
            ("quieter", "true"),
        ]

    def _add_stream(self, open_stream: Callable[[], BinaryIO], size: int, name: str, pin: bool, only_hash: bool,
                    options: AddOptions) -> str:
        boundary = uuid.uuid4().hex
        head = (
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{quote(name)}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        headers = {
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(len(head) + size + len(tail)),
        }

        def attempt() -> str:
            builder = DagBuilder(options)

            def body() -> Iterator[bytes]:
                yield head
                with open_stream() as fh:
                    while piece := fh.read(_READ):
                        builder.write(piece)
                        yield piece
                yield tail

            with closing(self._send("add", self._add_params(pin, only_hash, options), content=body(), headers=headers)) as r:
                try:
                    lines = [json.loads(x) for x in r.read().splitlines() if x.strip()]
                except httpx.HTTPError as exc:
                    raise _Transient(f"{type(exc).__name__}: {exc}") from None
                except ValueError:
                    raise NodeRpcError(f"add at {self.api}: answer is not JSON") from None
            if builder.size != size:
                raise ContentError(f"the file changed size while it was being added ({size} -> {builder.size})")
            expected = builder.finish().cid.encode()
            hashes = [x.get("Hash") for x in lines if "Hash" in x]
            if not hashes:
                raise NodeRpcError(f"add at {self.api} returned no CID: {lines!r:.300}")
            if hashes[-1] != expected:
                raise CidMismatchError(
                    f"the node at {self.api} stored the content as {hashes[-1]} but it hashes to {expected} with "
                    f"{options}: the node ignores the import options"
                )
            return expected

        return self._retry("add", attempt)

    def add_bytes(self, data: bytes, pin: bool = True, *, only_hash: bool = False, name: str = "data",
                  options: AddOptions | None = None) -> str:
        """Add bytes; return their CID (CIDv0 by default), checked against the locally computed one."""
        view = bytes(data)
        return self._add_stream(lambda: io.BytesIO(view), len(view), name, pin, only_hash,
                                options or self.add_options)

    def add_file(self, path: str | os.PathLike[str], pin: bool = True, *, only_hash: bool = False,
                 options: AddOptions | None = None) -> str:
        """Add a file, streaming it; return its CID."""
        p = Path(path)
        return self._add_stream(lambda: p.open("rb"), p.stat().st_size, p.name, pin, only_hash,
                                options or self.add_options)

    # ------------------------------------------------------------ cat

    def _cat_into(self, cid: Cid, sink: _Sink, limit: int, reread: Callable[[], BinaryIO],
                  reset: Callable[[], None]) -> int:
        def attempt() -> int:
            reset()
            received = 0
            with closing(self._send("cat", {"arg": cid.encode()})) as resp, closing(_Verifier(cid)) as verifier:
                announced = resp.headers.get("X-Content-Length") or resp.headers.get("Content-Length")
                if announced and announced.isdigit() and int(announced) > limit:
                    raise ContentTooLargeError(f"{cid} is {int(announced)} bytes, over the cap of {limit} bytes")
                try:
                    for piece in resp.iter_raw():
                        received += len(piece)
                        if received > limit:
                            raise ContentTooLargeError(f"{cid} is over the cap of {limit} bytes")
                        verifier.write(piece)
                        sink.write(piece)
                except httpx.ReadTimeout:
                    raise ContentNotFoundError(
                        f"{cid}: no data from {self.api} for {self.timeout}s after {received} bytes"
                    ) from None
                except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
                    raise _Transient(f"stream cut after {received} bytes: {exc}") from None
            verifier.check(reread)
            return received

        return self._retry("cat", attempt)

    def cat(self, cid: str, max_size: int | None = None) -> bytes:
        """The content of `cid`, verified against it. Raises CidMismatchError, ContentTooLargeError, …"""
        parsed = parse_cid(cid)
        pieces = _Pieces()
        self._cat_into(parsed, pieces, max_size or self.max_size, lambda: io.BytesIO(pieces.join()), pieces.clear)
        return pieces.join()

    def cat_to_file(self, cid: str, path: str | os.PathLike[str], max_size: int | None = None) -> int:
        """Stream `cid` to `path` (written beside it, renamed into place only once verified); return its size."""
        parsed = parse_cid(cid)
        dest = Path(path)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.partial")
        fh = tmp.open("w+b")
        try:
            def reset() -> None:
                fh.seek(0)
                fh.truncate()

            def reread() -> BinaryIO:
                fh.flush()
                return tmp.open("rb")

            size = self._cat_into(parsed, fh, max_size or self.max_size, reread, reset)
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
            os.replace(tmp, dest)
            return size
        finally:
            fh.close()
            tmp.unlink(missing_ok=True)

    # ------------------------------------------------------------ blocks, pins, version

    def block_get(self, cid: str, max_size: int | None = None) -> bytes:
        """One raw block, verified against its multihash."""
        parsed = parse_cid(cid)
        limit = max_size or min(self.max_size, 4 * MiB)

        def attempt() -> bytes:
            with closing(self._send("block/get", {"arg": parsed.encode()})) as resp:
                buf = bytearray()
                try:
                    for piece in resp.iter_raw():
                        buf += piece
                        if len(buf) > limit:
                            raise ContentTooLargeError(f"block {parsed} is over the cap of {limit} bytes")
                except httpx.ReadTimeout:
                    raise ContentNotFoundError(f"block {parsed}: no data from {self.api} in {self.timeout}s") from None
                except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
                    raise _Transient(str(exc)) from None
            if hashlib.sha256(buf).digest() != parsed.digest:
                raise CidMismatchError(f"block received for {parsed} does not hash to it: refusing it")
            return bytes(buf)

        return self._retry("block/get", attempt)

    def pin_add(self, cid: str, recursive: bool = True) -> list[str]:
        out = self._json("pin/add", {"arg": parse_cid(cid).encode(), "recursive": str(recursive).lower()})
        return [str(p) for obj in out for p in obj.get("Pins", [])]

    def pin_rm(self, cid: str, recursive: bool = True) -> list[str]:
        out = self._json("pin/rm", {"arg": parse_cid(cid).encode(), "recursive": str(recursive).lower()})
        return [str(p) for obj in out for p in obj.get("Pins", [])]

    def pin_ls(self, cid: str | None = None, type: str = "recursive") -> dict[str, str]:  # noqa: A002 - Kubo's name
        """Pinned CIDs → pin type. Raises ContentNotFoundError if `cid` is given and not pinned."""
        params: dict[str, str] = {"type": type}
        if cid is not None:
            params["arg"] = parse_cid(cid).encode()
        keys: dict[str, str] = {}
        for obj in self._json("pin/ls", params):
            if "Keys" in obj:
                keys.update({k: v.get("Type", "") for k, v in obj["Keys"].items()})
            elif "Cid" in obj:  # Kubo's --stream form
                keys[obj["Cid"]] = obj.get("Type", "")
        return keys

    def is_pinned(self, cid: str) -> bool:
        try:
            return bool(self.pin_ls(cid, type="all"))
        except (ContentNotFoundError, NodeRpcError) as exc:
            if "not pinned" in str(exc):
                return False
            raise

    def gc(self) -> list[str]:
        """Drop unpinned blocks (repo/gc); return the removed keys."""
        return [str(obj["Key"]["/"]) for obj in self._json("repo/gc") if isinstance(obj.get("Key"), dict)]

    def version(self) -> dict[str, Any]:
        out = self._json("version")
        return out[0] if out else {}
