"""The RPC client against misbehaving servers: wrong bytes, gateway errors, silence, oversize, absence."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fedchain.content.client import IpfsClient, api_url
from fedchain.content.errors import (
    CidMismatchError,
    ContentError,
    ContentNotFoundError,
    ContentTooLargeError,
    InvalidCidError,
    NodeUnreachableError,
)
from fedchain.content.unixfs import compute_cid

HELLO = b"hello world\n"
HELLO_V0 = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"

Behaviour = Callable[[BaseHTTPRequestHandler, int], None]


class _Fake(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.calls = 0
        super().__init__(("127.0.0.1", 0), _FakeHandler)


class _FakeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Fake

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.server.calls += 1
        self.server.behaviour(self, self.server.calls)


def _reply(handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
    handler.send_response(status)
    for k, v in (headers or {}).items():
        handler.send_header(k, v)
    if "Content-Length" not in (headers or {}):
        handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@pytest.fixture()
def fake() -> Iterator[Callable[[Behaviour], tuple[IpfsClient, _Fake]]]:
    servers: list[_Fake] = []
    clients: list[IpfsClient] = []

    def make(behaviour: Behaviour) -> tuple[IpfsClient, _Fake]:
        server = _Fake(behaviour)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        client = IpfsClient(f"http://127.0.0.1:{server.server_address[1]}", timeout=1.0, retries=2, backoff=0.01)
        clients.append(client)
        return client, server

    yield make
    for c in clients:
        c.close()
    for s in servers:
        s.shutdown()
        s.server_close()


def test_node_serving_wrong_bytes_is_refused(fake: Callable[[Behaviour], tuple[IpfsClient, _Fake]]) -> None:
    client, _ = fake(lambda h, n: _reply(h, 200, b"hello w0rld\n"))
    with pytest.raises(CidMismatchError, match=HELLO_V0):
        client.cat(HELLO_V0)


def test_wrong_bytes_never_reach_the_destination_file(fake: Callable[[Behaviour], tuple[IpfsClient, _Fake]],
                                                     tmp_path: Path) -> None:
    client, _ = fake(lambda h, n: _reply(h, 200, b"evil"))
    with pytest.raises(CidMismatchError):
        client.cat_to_file(HELLO_V0, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_wrong_block_is_refused(fake: Callable[[Behaviour], tuple[IpfsClient, _Fake]]) -> None:
    client, _ = fake(lambda h, n: _reply(h, 200, b"not the block"))
    with pytest.raises(CidMismatchError):
        client.block_get(HELLO_V0)


def test_add_answer_with_another_cid_is_refused(fake: Callable[[Behaviour], tuple[IpfsClient, _Fake]]) -> None:
    other = compute_cid(b"something else")
    client, _ = fake(lambda h, n: _reply(h, 200, json.dumps({"Name": "x", "Hash": other, "Size": "9"}).encode()))
    with pytest.raises(CidMismatchError, match="ignores the import options"):
        client.add_bytes(HELLO)


def test_gateway_errors_are_retried(fake: Callable[[Behaviour], tuple[IpfsClient, _Fake]]) -> None:
    def flaky(h: BaseHTTPRequestHandler, n: int) -> None:
        if n < 3:
            _reply(h, 503, b"busy")
        else:
            _reply(h, 200, HELLO)

    client, server = fake(flaky)
    assert client.cat(HELLO_V0) == HELLO
    assert server.calls == 3


def test_persistent_gateway_errors_name_the_address(fake: Callable[[Behaviour], tuple[IpfsClient, _Fake]]) -> None:
    client, server = fake(lambda h, n: _reply(h, 502, b"bad gateway"))
    with pytest.raises(NodeUnreachableError, match=client.api):
        client.version()
    assert server.calls == 3  # one try and two retries


def test_kubo_error_shape_maps_to_not_found(fake: Callable[[Behaviour], tuple[IpfsClient, _Fake]]) -> None:
    msg = {"Message": "block was not found locally (offline): ipld: could not find Qm", "Code": 0, "Type": "error"}
    client, _ = fake(lambda h, n: _reply(h, 500, json.dumps(msg).encode()))
    with pytest.raises(ContentNotFoundError, match="could not find"):
        client.cat(HELLO_V0)


def test_silent_node_means_not_found_within_the_timeout(fake: Callable[[Behaviour], tuple[IpfsClient, _Fake]]) -> None:
    client, _ = fake(lambda h, n: time.sleep(3))
    start = time.monotonic()
    with pytest.raises(ContentNotFoundError, match="1.0s"):
        client.cat(HELLO_V0)
    assert time.monotonic() - start < 2.9


def test_announced_oversize_is_refused_before_reading(fake: Callable[[Behaviour], tuple[IpfsClient, _Fake]]) -> None:
    client, _ = fake(lambda h, n: _reply(h, 200, b"x" * 100, {"X-Content-Length": "100"}))
    with pytest.raises(ContentTooLargeError, match="100 bytes"):
        client.cat(HELLO_V0, max_size=50)


def test_unannounced_oversize_is_cut_off(fake: Callable[[Behaviour], tuple[IpfsClient, _Fake]]) -> None:
    def endless(h: BaseHTTPRequestHandler, n: int) -> None:
        h.send_response(200)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        try:
            for _ in range(1000):
                h.wfile.write(b"10000\r\n" + b"y" * 0x10000 + b"\r\n")
        except OSError:
            pass

    client, _ = fake(endless)
    with pytest.raises(ContentTooLargeError):
        client.cat(HELLO_V0, max_size=1 << 20)


def test_unreachable_node_names_the_address() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with IpfsClient(f"/ip4/127.0.0.1/tcp/{port}", retries=1, backoff=0.01) as client:
        with pytest.raises(NodeUnreachableError, match=f"127.0.0.1:{port}"):
            client.version()


@pytest.mark.parametrize("bad", ["", "hello", "Qm123", "/ipfs/", "bafy" + "!" * 50])
def test_invalid_cid_strings_raise_before_any_request(bad: str) -> None:
    with IpfsClient("http://127.0.0.1:9", retries=0) as client, pytest.raises(InvalidCidError):
        client.cat(bad)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://127.0.0.1:5001", "http://127.0.0.1:5001"),
        ("127.0.0.1:5001", "http://127.0.0.1:5001"),
        ("/ip4/127.0.0.1/tcp/5001", "http://127.0.0.1:5001"),
        ("/dns4/ipfs.example.org/tcp/443/https", "https://ipfs.example.org:443"),
        ("/ip6/::1/tcp/5001", "http://[::1]:5001"),
        ("https://rpc.example.org/", "https://rpc.example.org"),
    ],
)
def test_api_addresses(given: str, expected: str) -> None:
    assert api_url(given) == expected


def test_bad_multiaddr_is_refused() -> None:
    with pytest.raises(ContentError, match="multiaddr"):
        api_url("/ip4/127.0.0.1/udp/5001")
