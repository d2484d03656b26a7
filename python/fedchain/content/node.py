"""The embedded local IPFS node: the Kubo RPC API subset fedchain uses, served on loopback over HTTP.

Run it:  python -m fedchain.content.node --api 127.0.0.1:5001 --repo ~/.fedchain/ipfs
    or:  fedchain ipfs serve --api 127.0.0.1:5001 --repo DIR
Then:    curl -X POST -F file=@model.safetensors "http://127.0.0.1:5001/api/v0/add?cid-version=0"

Endpoints (POST, as Kubo requires): add, cat, block/get, block/stat, pin/add, pin/ls, pin/rm, repo/gc, version.
Responses and errors have Kubo's shapes: errors are `{"Message": ..., "Code": 0|1, "Type": "error"}` with
HTTP 500 (Code 0, a failed command) or 400 (Code 1, a bad request), as go-ipfs-cmds does.

Streaming: `add` feeds the multipart body, read from the socket 1 MiB at a time, through python-multipart's
streaming parser into the DAG builder, whose blocks go to the block store as they are cut; `cat` sends one
block at a time. Memory stays flat whatever the file size. The node imports only the standard library and
python-multipart (no ML library, no HTTP client) so it starts in a fraction of a second.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from python_multipart.multipart import MultipartParser, parse_options_header

from fedchain import __version__
from fedchain.content.blockstore import DIRECT, RECURSIVE, Blockstore
from fedchain.content.errors import ContentError, ContentNotFoundError, InvalidCidError, UnsupportedOptionError
from fedchain.content.unixfs import AddOptions, DagBuilder, decode_file_block, iter_file
from fedchain.core.cid import Cid, parse_ipfs_path

log = logging.getLogger("fedchain.content.node")

READ_SIZE = 1 << 20  # socket reads of the request body
NODE_VERSION = f"0.1.0-fedchain.{__version__}"


class RpcError(Exception):
    """An error answered in Kubo's shape; code 0 → HTTP 500, code 1 → HTTP 400."""

    def __init__(self, message: str, code: int = 0, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status or (400 if code == 1 else 500)


# ---------------------------------------------------------------- request bodies


class _BodyReader:
    """Reads a request body of known length, or with chunked transfer encoding (curl -T, ipfshttpclient)."""

    def __init__(self, rfile: Any, length: int | None, chunked: bool) -> None:
        self._rfile = rfile
        self._remaining = length if length is not None else -1
        self._chunked = chunked
        self._chunk_left = 0
        self._done = length == 0 and not chunked

    def read(self, n: int) -> bytes:
        if self._done:
            return b""
        if not self._chunked:
            data = self._rfile.read(min(n, self._remaining))
            if not data:
                raise RpcError("request body ended early (connection closed)", code=1)
            self._remaining -= len(data)
            self._done = self._remaining == 0
            return data
        if self._chunk_left == 0:
            line = self._rfile.readline(1024)
            try:
                self._chunk_left = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise RpcError("malformed chunked request body", code=1) from None
            if self._chunk_left == 0:  # last chunk: skip trailers
                while self._rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                self._done = True
                return b""
        data = self._rfile.read(min(n, self._chunk_left))
        if not data:
            raise RpcError("request body ended early (connection closed)", code=1)
        self._chunk_left -= len(data)
        if self._chunk_left == 0:
            self._rfile.readline(16)
        return data

    @property
    def done(self) -> bool:
        return self._done


# ---------------------------------------------------------------- parameters


def _bool(params: dict[str, list[str]], name: str, default: bool) -> bool:
    values = params.get(name)
    if not values:
        return default
    value = values[-1].strip().lower()
    if value in ("", "1", "t", "true"):
        return True
    if value in ("0", "f", "false"):
        return False
    raise RpcError(f"invalid value {values[-1]!r} for option {name!r}: expected a boolean", code=1)


def _int(params: dict[str, list[str]], name: str, default: int | None) -> int | None:
    values = params.get(name)
    if not values or values[-1] == "":
        return default
    try:
        value = int(values[-1])
    except ValueError:
        raise RpcError(f"invalid value {values[-1]!r} for option {name!r}: expected an integer", code=1) from None
    if value < 0:
        raise RpcError(f"option {name!r} must not be negative, got {value}", code=1)
    return value


def _args(params: dict[str, list[str]], what: str) -> list[str]:
    args = params.get("arg") or []
    if not args:
        raise RpcError(f'argument "{what}" is required', code=1)
    return args


def _path_arg(arg: str) -> Cid:
    try:
        return parse_ipfs_path(arg)
    except InvalidCidError as exc:
        message = str(exc)
        raise RpcError(message if message.startswith("invalid path") else f"invalid path {arg!r}: {message}") from None


def _add_options(params: dict[str, list[str]]) -> AddOptions:
    for name in ("trickle", "wrap-with-directory", "inline", "nocopy", "fscache"):
        if _bool(params, name, False):
            raise RpcError(f"option {name!r} is not supported by the fedchain node", code=1)
    hash_name = (params.get("hash") or ["sha2-256"])[-1]
    if hash_name != "sha2-256":
        raise RpcError(f"hash {hash_name!r} is not supported: only sha2-256", code=1)
    try:
        chunk = AddOptions.parse_chunker((params.get("chunker") or ["size-262144"])[-1])
        raw = None if "raw-leaves" not in params else _bool(params, "raw-leaves", False)
        return AddOptions(cid_version=_int(params, "cid-version", 0) or 0, raw_leaves=raw, chunk_size=chunk)
    except UnsupportedOptionError as exc:
        raise RpcError(str(exc), code=1) from None


# ---------------------------------------------------------------- the add command


@dataclass
class _Added:
    name: str
    cid: Cid
    tsize: int


class _MultipartAdd:
    """Callbacks of python-multipart's streaming parser: each file part goes through its own DagBuilder."""

    def __init__(self, options: AddOptions, sink: Callable[..., None] | None) -> None:
        self.options = options
        self.sink = sink
        self.added: list[_Added] = []
        self.ended = False
        self._headers: dict[str, str] = {}
        self._field = b""
        self._value = b""
        self._builder: DagBuilder | None = None
        self._name = ""

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda d, s, e: setattr(self, "_field", self._field + d[s:e]),
            "on_header_value": lambda d, s, e: setattr(self, "_value", self._value + d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _part_begin(self) -> None:
        self._headers = {}

    def _header_end(self) -> None:
        self._headers[self._field.decode("latin-1").strip().lower()] = self._value.decode("latin-1").strip()
        self._field = self._value = b""

    def _headers_finished(self) -> None:
        ctype, _ = parse_options_header(self._headers.get("content-type", "application/octet-stream"))
        if ctype == b"application/x-directory":
            raise RpcError("directories are not supported by the fedchain node: add files one by one", code=1)
        _, disp = parse_options_header(self._headers.get("content-disposition", ""))
        filename = disp.get(b"filename", b"") or b""
        self._name = unquote(filename.decode("utf-8", "replace")) if filename else ""
        self._builder = DagBuilder(self.options, self.sink)

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        assert self._builder is not None
        self._builder.write(memoryview(data)[start:end])

    def _part_end(self) -> None:
        assert self._builder is not None
        result = self._builder.finish()
        self._builder = None
        self.added.append(_Added(self._name or result.cid.encode(), result.cid, result.tsize))

    def _end(self) -> None:
        self.ended = True


# ---------------------------------------------------------------- the HTTP handler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = f"fedchain-ipfs/{__version__}"
    server: NodeServer

    # -- plumbing

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without NODELAY, Nagle holds the body until the client's
        # delayed ACK (40 ms) for every small answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s " + format, self.address_string(), *args)

    def _send_json_lines(self, objects: list[dict[str, Any]], status: int = 200, chunked_output: bool = False) -> None:
        body = b"".join(json.dumps(o, separators=(",", ":")).encode() + b"\n" for o in objects)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if chunked_output:
            self.send_header("X-Chunked-Output", "1")
        self.end_headers()
        self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's own refusals (request line or headers too long, malformed request line) in Kubo's error
        shape instead of an HTML page, so that every client reads one format."""
        self.close_connection = True
        text = message or self.responses.get(code, ("error",))[0]
        body = json.dumps({"Message": f"{text}: {explain}" if explain else text, "Code": 1, "Type": "error"},
                          separators=(",", ":"))
        self.send_response(code, message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")
        self.send_header("Content-Length", str(len(body) + 1))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body.encode() + b"\n")

    def _send_error(self, err: RpcError) -> None:
        self._send_json_lines([{"Message": str(err), "Code": err.code, "Type": "error"}], status=err.status)

    def _discard_body(self) -> None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > (1 << 20):
            self.close_connection = True
            return
        if length:
            self.rfile.read(length)

    def _dispatch(self, allow: bool) -> None:
        url = urlsplit(self.path)
        command = url.path[len("/api/v0/") :].strip("/") if url.path.startswith("/api/v0/") else None
        handler = _COMMANDS.get(command or "")
        try:
            if handler is None:
                self.close_connection = True
                raise RpcError(f"unknown command {url.path!r}: this node serves {', '.join(sorted(_COMMANDS))}",
                               code=1, status=404)
            if not allow:
                self.close_connection = True
                raise RpcError(f"method {self.command} not allowed: the RPC API takes POST", code=1, status=405)
            params = parse_qs(url.query, keep_blank_values=True)
            if command != "add":
                self._discard_body()
            handler(self, params)
        except RpcError as err:
            self._send_error(err)
        except ContentNotFoundError as exc:
            self._send_error(RpcError(str(exc)))
        except ContentError as exc:
            self._send_error(RpcError(str(exc)))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # answer in Kubo's shape rather than dropping the connection
            log.exception("internal error on %s", self.path)
            self.close_connection = True
            self._send_error(RpcError(f"internal error: {type(exc).__name__}: {exc}", code=2))

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        self._dispatch(allow=True)

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch(allow=False)

    do_PUT = do_DELETE = do_HEAD = do_GET  # noqa: N815

    @property
    def store(self) -> Blockstore:
        return self.server.store

    # -- commands

    def cmd_version(self, params: dict[str, list[str]]) -> None:
        self._send_json_lines([{
            "Version": NODE_VERSION,
            "Commit": "",
            "Repo": "fedchain-1",
            "System": f"{platform.machine()}/{sys.platform}",
            "Golang": f"none (Python {platform.python_version()})",
        }])

    def _multipart_boundary(self) -> bytes:
        ctype, ctype_opts = parse_options_header(self.headers.get("Content-Type", ""))
        boundary = ctype_opts.get(b"boundary")
        if ctype != b"multipart/form-data" or not boundary:
            raise RpcError("file argument 'path' is required (send a multipart/form-data body)", code=1)
        return boundary

    def _body_reader(self) -> _BodyReader:
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        length_header = self.headers.get("Content-Length")
        if not chunked and length_header is None:
            raise RpcError("a request body needs Content-Length or chunked transfer encoding", code=1, status=411)
        try:
            length = None if chunked else int(length_header or "0")
        except ValueError:
            raise RpcError(f"invalid Content-Length {length_header!r}", code=1) from None
        return _BodyReader(self.rfile, length, chunked)

    def cmd_add(self, params: dict[str, list[str]]) -> None:
        self.close_connection = True  # until the body is fully read, what follows on the socket is unknown
        options = _add_options(params)
        pin = _bool(params, "pin", True)
        only_hash = _bool(params, "only-hash", False)
        boundary = self._multipart_boundary()
        reader = self._body_reader()
        batch = None if only_hash else self.store.batch()
        try:
            state = _MultipartAdd(options, None if batch is None else batch.put)
            callbacks: Any = state.callbacks()  # python-multipart's TypedDict of callbacks
            parser = MultipartParser(boundary, callbacks)
            try:
                while data := reader.read(READ_SIZE):
                    parser.write(data)
                parser.finalize()
            except RpcError:
                raise
            except (ValueError, Exception) as exc:  # python-multipart's MultipartParseError is a ValueError
                if isinstance(exc, ContentError):
                    raise
                raise RpcError(f"malformed multipart body: {exc}", code=1) from None
            if not state.ended:
                raise RpcError("malformed multipart body: it ends before the closing boundary", code=1)
            if not state.added:
                raise RpcError("file argument 'path' is required", code=1)
            self.close_connection = False
            if batch is not None:
                batch.commit()  # durable before acknowledged
                if pin:
                    for added in state.added:
                        batch.pin(added.cid)
        finally:
            if batch is not None:
                batch.close()
        self._send_json_lines(
            [{"Name": a.name, "Hash": a.cid.encode(), "Size": str(a.tsize)} for a in state.added],
            chunked_output=True,
        )

    def cmd_cat(self, params: dict[str, list[str]]) -> None:
        args = _args(params, "ipfs-path")
        offset = _int(params, "offset", 0) or 0
        length = _int(params, "length", None)
        roots = [_path_arg(a) for a in args]
        sizes = [self._check_dag(root) for root in roots]
        spans, total = _cat_spans(roots, sizes, offset, length)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("X-Stream-Output", "1")
        self.send_header("X-Content-Length", str(total))
        self.send_header("Content-Length", str(total))
        self.end_headers()
        sent = 0
        try:
            for root, start, n in spans:
                for piece in iter_file(self.store.get, root, start, n):
                    self.wfile.write(piece)
                    sent += len(piece)
        except ContentError as exc:  # a block vanished (gc) mid-stream: cut the connection, the client sees it
            log.warning("cat %s aborted after %d bytes: %s", args, sent, exc)
            self.close_connection = True

    def _check_dag(self, root: Cid) -> int:
        """Size of the file at root, after checking every block is here (so errors come before the body)."""
        node = decode_file_block(root, self.store.get(root))
        for _ in self.store.walk(root):  # raises ContentNotFoundError on the first missing block
            pass
        return node.filesize

    def cmd_block_get(self, params: dict[str, list[str]]) -> None:
        cid = _path_arg(_args(params, "cid")[0])
        block = self.store.get(cid)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(block)))
        self.end_headers()
        self.wfile.write(block)

    def cmd_block_stat(self, params: dict[str, list[str]]) -> None:
        cid = _path_arg(_args(params, "cid")[0])
        self._send_json_lines([{"Key": cid.encode(), "Size": self.store.size(cid)}])

    def cmd_pin_add(self, params: dict[str, list[str]]) -> None:
        recursive = _bool(params, "recursive", True)
        cids = [_path_arg(a) for a in _args(params, "ipfs-path")]
        for cid in cids:
            self.store.pin_add(cid, recursive=recursive)
        self._send_json_lines([{"Pins": [c.encode() for c in cids]}])

    def cmd_pin_rm(self, params: dict[str, list[str]]) -> None:
        recursive = _bool(params, "recursive", True)
        cids = [_path_arg(a) for a in _args(params, "ipfs-path")]
        for cid in cids:
            if not self.store.pin_rm(cid, recursive=recursive):
                raise RpcError(f"{cid}: not pinned or pinned indirectly")
        self._send_json_lines([{"Pins": [c.encode() for c in cids]}])

    def cmd_pin_ls(self, params: dict[str, list[str]]) -> None:
        kind = (params.get("type") or ["all"])[-1]
        if kind not in ("all", RECURSIVE, DIRECT, "indirect"):
            raise RpcError(f"invalid type {kind!r}, must be one of {{direct, indirect, recursive, all}}", code=1)
        keys: dict[str, dict[str, str]] = {}
        if params.get("arg"):
            indirect = None
            for arg in params["arg"]:
                cid = _path_arg(arg)
                found = self.store.pin_type(cid)
                if found and kind in ("all", found):
                    keys[cid.encode()] = {"Type": found}
                    continue
                if kind in ("all", "indirect"):
                    indirect = self.store.indirect_pins() if indirect is None else indirect
                    if cid.digest.hex() in indirect:
                        keys[cid.encode()] = {"Type": f"indirect through {indirect[cid.digest.hex()]}"}
                        continue
                raise RpcError(f"path '{arg}' is not pinned")
        else:
            for name, found in self.store.pins().items():
                if kind in ("all", found):
                    keys[name] = {"Type": found}
            if kind in ("all", "indirect"):
                for digest_hex in self.store.indirect_pins():
                    name = Cid(0, 0x70, bytes.fromhex(digest_hex)).encode()
                    keys.setdefault(name, {"Type": "indirect"})
        self._send_json_lines([{"Keys": keys}])

    def cmd_repo_gc(self, params: dict[str, list[str]]) -> None:
        removed = self.store.gc()
        self._send_json_lines([{"Key": {"/": c.encode()}} for c in removed], chunked_output=True)


def _cat_spans(roots: list[Cid], sizes: list[int], offset: int, length: int | None
               ) -> tuple[list[tuple[Cid, int, int]], int]:
    """(root, start, count) per file and the total: as Kubo, `offset` and `length` apply to the files joined
    in order, not to each file."""
    skip = min(offset, sum(sizes))
    left = sum(sizes) - skip if length is None else min(length, sum(sizes) - skip)
    total = left
    spans = []
    for root, size in zip(roots, sizes, strict=True):
        start = min(skip, size)
        skip -= start
        n = min(size - start, left)
        if n > 0:
            spans.append((root, start, n))
            left -= n
    return spans, total


_COMMANDS: dict[str, Callable[[_Handler, dict[str, list[str]]], None]] = {
    "version": _Handler.cmd_version,
    "add": _Handler.cmd_add,
    "cat": _Handler.cmd_cat,
    "block/get": _Handler.cmd_block_get,
    "block/stat": _Handler.cmd_block_stat,
    "pin/add": _Handler.cmd_pin_add,
    "pin/rm": _Handler.cmd_pin_rm,
    "pin/ls": _Handler.cmd_pin_ls,
    "repo/gc": _Handler.cmd_repo_gc,
}


# ---------------------------------------------------------------- the server


class NodeServer(ThreadingHTTPServer):
    """A thread per connection; all share one Blockstore."""

    daemon_threads = True
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], store: Blockstore) -> None:
        super().__init__(address, _Handler)
        self.store = store

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        super().server_bind()

    @property
    def api_multiaddr(self) -> str:
        host, port = self.server_address[:2]
        host_text = host.decode() if isinstance(host, bytes) else str(host)
        return f"/ip4/{host_text}/tcp/{port}"


def parse_listen(api: str) -> tuple[str, int]:
    """'127.0.0.1:5001', '/ip4/127.0.0.1/tcp/5001' or 'http://127.0.0.1:5001' → (host, port)."""
    m = re.fullmatch(r"/ip4/([0-9.]+)/tcp/(\d+)/?(?:http)?", api) or re.fullmatch(
        r"(?:https?://)?([^:/]+):(\d+)/?", api
    )
    if not m:
        raise ValueError(f"cannot read listen address {api!r}: use HOST:PORT or /ip4/HOST/tcp/PORT")
    return m.group(1), int(m.group(2))


def make_server(host: str, port: int, repo_dir: str | os.PathLike[str], fsync: bool = True) -> NodeServer:
    store = Blockstore(repo_dir, fsync=fsync)
    return NodeServer((host, port), store)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve(host: str = "127.0.0.1", port: int = 5001, repo_dir: str | os.PathLike[str] = ".fedchain/ipfs",
          fsync: bool = True) -> None:
    """Serve the RPC API until SIGINT/SIGTERM. Prints one line with the bound address (port 0 picks one)."""
    try:
        server = make_server(host, port, repo_dir, fsync=fsync)
    except OSError as exc:
        raise ContentError(f"cannot listen on {host}:{port} ({exc.strerror}): is another node running there? "
                           "Stop it or give another --api address") from None
    api_file = Path(repo_dir) / "api"
    api_file.write_text(server.api_multiaddr + "\n")
    signal.signal(signal.SIGTERM, _raise_interrupt)
    print(f"RPC API server listening on {server.api_multiaddr}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        server.store.close()
        api_file.unlink(missing_ok=True)


# ---------------------------------------------------------------- a subprocess helper for tests and the devnet


class NodeProcess:
    """A node running in a child process. `.api_url`, `.stop()`; a context manager."""

    def __init__(self, proc: subprocess.Popen[bytes], host: str, port: int, repo_dir: Path) -> None:
        self.proc = proc
        self.host = host
        self.port = port
        self.repo_dir = repo_dir
        self.api_url = f"http://{host}:{port}"
        self.api_multiaddr = f"/ip4/{host}/tcp/{port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()

    def __enter__(self) -> NodeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _wait_for_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
    result: list[bytes] = []
    reader = threading.Thread(target=lambda: result.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    if not result or not result[0]:
        proc.kill()
        raise ContentError(f"the IPFS node did not start within {timeout}s (exit code {proc.poll()})")
    return result[0].decode()


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that has Linux send the child SIGTERM when its parent dies (even by SIGKILL), so that a
    killed devnet leaves no node or chain behind; None where that is not available."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)  # loaded here: the child only makes the one system call
    pr_set_pdeathsig = 1
    return lambda: libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def start_node_process(repo_dir: str | os.PathLike[str], port: int = 0, host: str = "127.0.0.1",
                       timeout: float = 20.0, fsync: bool = True, *, detach: bool = False,
                       log_path: Path | None = None) -> NodeProcess:
    """Start `python -m fedchain.content.node` in a subprocess and wait until /api/v0/version answers.

    `detach`: in a session of its own (a Ctrl-C meant for the parent does not reach it: the parent stops it) and
    stopped when the parent dies. `log_path`: where its log lines go (default: the parent's stderr)."""
    repo = Path(repo_dir)
    repo.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "fedchain.content.node", "--api", f"{host}:{port}", "--repo", str(repo)]
    if not fsync:
        cmd.append("--no-fsync")
    if log_path is None:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, start_new_session=detach,
                                preexec_fn=die_with_parent() if detach else None)
    else:
        with open(log_path, "ab") as log_file:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log_file, env=env, start_new_session=detach,
                                    preexec_fn=die_with_parent() if detach else None)
    line = _wait_for_line(proc, timeout)
    m = re.search(r"/ip4/([0-9.]+)/tcp/(\d+)", line)
    if not m:
        proc.kill()
        raise ContentError(f"unexpected first line from the IPFS node: {line!r}")
    handle = NodeProcess(proc, m.group(1), int(m.group(2)), repo)
    deadline = time.monotonic() + timeout
    while True:
        try:
            req = urllib.request.Request(handle.api_url + "/api/v0/version", method="POST", data=b"")
            with urllib.request.urlopen(req, timeout=2) as resp:
                if resp.status == 200:
                    return handle
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline or proc.poll() is not None:
                handle.stop()
                raise ContentError(f"the IPFS node at {handle.api_url} did not answer within {timeout}s") from None
            time.sleep(0.05)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fedchain.content.node", description=__doc__.split("\n\n")[0])
    parser.add_argument("--api", default="127.0.0.1:5001", help="listen address, HOST:PORT or /ip4/HOST/tcp/PORT")
    parser.add_argument("--repo", default=".fedchain/ipfs", help="repo directory (blocks and pins)")
    parser.add_argument("--no-fsync", action="store_true", help="skip fsync (tests only: not crash-safe)")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host, port = parse_listen(args.api)
    serve(host, port, args.repo, fsync=not args.no_fsync)


if __name__ == "__main__":
    main()
