"""The embedded node over real HTTP, in a subprocess: Kubo's API shapes, streaming, pins, gc, restarts, crashes."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fedchain.content.client import IpfsClient
from fedchain.content.errors import ContentNotFoundError, InvalidCidError
from fedchain.content.node import NodeProcess, start_node_process
from fedchain.content.unixfs import AddOptions, compute_cid
from fedchain.core.cid import cid_to_digest

CHUNK = 262_144
HELLO_V0 = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"


def _rand(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    with start_node_process(tmp_path_factory.mktemp("ipfs") / "repo") as handle:
        yield handle


@pytest.fixture()
def ipfs(node: NodeProcess) -> Iterator[IpfsClient]:
    with IpfsClient(node.api_url, timeout=10) as client:
        yield client


def _post(node: NodeProcess, path: str, **kwargs: object) -> httpx.Response:
    return httpx.post(node.api_url + path, timeout=10, **kwargs)  # type: ignore[arg-type]


def _multipart(data: bytes, boundary: str = "b0undary", name: str = "f.bin") -> tuple[bytes, dict[str, str]]:
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


# ---------------------------------------------------------------- add / cat through the client


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 7])
def test_add_then_cat_returns_the_bytes_under_kubos_cid(ipfs: IpfsClient, size: int) -> None:
    data = _rand(size, size)
    cid = ipfs.add_bytes(data)
    assert cid == compute_cid(data)
    assert ipfs.cat(cid) == data


def test_cid_version_1_uses_raw_leaves(ipfs: IpfsClient) -> None:
    data = _rand(2 * CHUNK + 5, 11)
    cid = ipfs.add_bytes(data, options=AddOptions(cid_version=1))
    assert cid == compute_cid(data, cid_version=1) and cid.startswith("bafybei")
    assert ipfs.cat(cid) == data


def test_add_file_and_cat_to_file_stream(ipfs: IpfsClient, tmp_path: Path) -> None:
    src = tmp_path / "in.bin"
    src.write_bytes(_rand(5 * CHUNK + 99, 5))
    cid = ipfs.add_file(src)
    dest = tmp_path / "out.bin"
    assert ipfs.cat_to_file(cid, dest) == src.stat().st_size
    assert dest.read_bytes() == src.read_bytes()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []


def test_block_get_returns_a_verified_block(ipfs: IpfsClient) -> None:
    ipfs.add_bytes(b"hello world\n")
    block = ipfs.block_get(HELLO_V0)
    assert hashlib.sha256(block).digest() == cid_to_digest(HELLO_V0)
    assert block.endswith(b"hello world\n\x18\x0c")


def test_multiaddr_address_works(node: NodeProcess) -> None:
    with IpfsClient(node.api_multiaddr) as client:
        assert client.version()["Version"]


# ---------------------------------------------------------------- Kubo's HTTP shapes (raw HTTP and curl)


def test_add_response_has_kubos_shape(node: NodeProcess) -> None:
    body, headers = _multipart(b"hello world\n", name="hello.txt")
    r = _post(node, "/api/v0/add?cid-version=0&pin=false", content=body, headers=headers)
    assert r.status_code == 200
    assert json.loads(r.text) == {"Name": "hello.txt", "Hash": HELLO_V0, "Size": "20"}


def test_add_accepts_chunked_transfer_encoding(node: NodeProcess) -> None:
    data = _rand(CHUNK + 10, 3)
    body, headers = _multipart(data)
    r = _post(node, "/api/v0/add", content=iter([body[:1000], body[1000:]]), headers=headers)
    assert r.status_code == 200 and json.loads(r.text)["Hash"] == compute_cid(data)


def test_add_with_only_hash_stores_nothing(node: NodeProcess, ipfs: IpfsClient) -> None:
    data = _rand(1000, 999)
    body, headers = _multipart(data)
    r = _post(node, "/api/v0/add?only-hash=true", content=body, headers=headers)
    cid = json.loads(r.text)["Hash"]
    assert cid == compute_cid(data)
    with pytest.raises(ContentNotFoundError):
        ipfs.cat(cid)


def test_add_honours_the_chunker_option(node: NodeProcess) -> None:
    data = _rand(5000, 4)
    body, headers = _multipart(data)
    r = _post(node, "/api/v0/add?chunker=size-1024&pin=false", content=body, headers=headers)
    assert json.loads(r.text)["Hash"] == compute_cid(data, chunk_size=1024)


def test_cat_offset_and_length(node: NodeProcess, ipfs: IpfsClient) -> None:
    data = _rand(3 * CHUNK, 8)
    cid = ipfs.add_bytes(data)
    r = _post(node, f"/api/v0/cat?arg=/ipfs/{cid}&offset={CHUNK - 5}&length=20")
    assert r.status_code == 200 and r.content == data[CHUNK - 5 : CHUNK + 15]


@pytest.mark.parametrize(("offset", "length"), [(0, None), (3, None), (CHUNK - 5, 20), (CHUNK + 90, 30),
                                               (CHUNK + 100, None), (10, 0), (CHUNK + 300, 5), (5, 10**9)])
def test_cat_offset_and_length_apply_to_the_joined_files(node: NodeProcess, ipfs: IpfsClient, offset: int,
                                                         length: int | None) -> None:
    """As Kubo: `cat A B` with offset/length slices A+B, not each file (a length past the end is clipped)."""
    first, second = _rand(CHUNK + 100, 21), _rand(200, 22)
    a, b = ipfs.add_bytes(first), ipfs.add_bytes(second)
    query = f"/api/v0/cat?arg={a}&arg=/ipfs/{b}&offset={offset}" + ("" if length is None else f"&length={length}")
    r = _post(node, query)
    joined = first + second
    want = joined[offset : None if length is None else offset + length]
    assert r.status_code == 200 and r.content == want
    assert r.headers["X-Content-Length"] == str(len(want))


def test_curl_add_and_cat(node: NodeProcess, tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    f = tmp_path / "hello.txt"
    f.write_bytes(b"hello world\n")
    out = subprocess.run(["curl", "-sS", "-X", "POST", "-F", f"file=@{f}", f"{node.api_url}/api/v0/add"],
                         capture_output=True, check=True, text=True).stdout
    assert json.loads(out)["Hash"] == HELLO_V0
    cat = subprocess.run(["curl", "-sS", "-X", "POST", f"{node.api_url}/api/v0/cat?arg={HELLO_V0}"],
                         capture_output=True, check=True).stdout
    assert cat == b"hello world\n"


def _assert_kubo_error(r: httpx.Response, status: int, code: int, contains: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"Message", "Code", "Type"} and body["Type"] == "error" and body["Code"] == code
    assert contains in body["Message"]


def test_missing_argument_is_a_client_error(node: NodeProcess) -> None:
    _assert_kubo_error(_post(node, "/api/v0/cat"), 400, 1, 'argument "ipfs-path" is required')


def test_get_is_refused(node: NodeProcess) -> None:
    r = httpx.get(node.api_url + f"/api/v0/cat?arg={HELLO_V0}")
    _assert_kubo_error(r, 405, 1, "POST")


def test_unknown_command_is_404(node: NodeProcess) -> None:
    _assert_kubo_error(_post(node, "/api/v0/swarm/peers"), 404, 1, "unknown command")


@pytest.mark.parametrize(
    "arg",
    ["../../../../etc/passwd", "/etc/passwd", f"/ipfs/{HELLO_V0}/../../etc/passwd", f"{HELLO_V0}/x",
     "/ipns/example.com", "%2e%2e%2fetc%2fpasswd", "..", "C:\\Windows\\win.ini", "blocks/00"],
)
def test_path_tricks_in_arg_are_invalid_paths(node: NodeProcess, arg: str) -> None:
    for command in ("cat", "block/get", "pin/add"):
        r = _post(node, f"/api/v0/{command}", params={"arg": arg})
        _assert_kubo_error(r, 500, 0, "invalid path")


def test_ipfs_prefixed_path_is_accepted(node: NodeProcess, ipfs: IpfsClient) -> None:
    ipfs.add_bytes(b"hello world\n")
    assert _post(node, "/api/v0/cat", params={"arg": f"/ipfs/{HELLO_V0}"}).content == b"hello world\n"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"--b0undary\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nno closing boundary", None),
        (b"garbage without any boundary at all", None),
        (b"--b0undary--\r\n", None),  # no file part
        (b"hello", "application/octet-stream"),  # not multipart
        (b"--b0undary\r\n" + b"X" * 10000 + b"\r\n\r\n", None),  # header line far too long
    ],
)
def test_malformed_multipart_is_a_client_error(node: NodeProcess, body: bytes, content_type: str | None) -> None:
    headers = {"Content-Type": content_type or "multipart/form-data; boundary=b0undary"}
    r = _post(node, "/api/v0/add", content=body, headers=headers)
    assert r.status_code == 400 and r.json()["Type"] == "error", r.text


def test_unsupported_add_options_are_refused(node: NodeProcess) -> None:
    body, headers = _multipart(b"x")
    for query in ("chunker=rabin", "hash=blake2b-256", "trickle=true", "cid-version=2", "pin=maybe"):
        r = _post(node, f"/api/v0/add?{query}", content=body, headers=headers)
        assert r.status_code == 400, query


# ---------------------------------------------------------------- pins and gc


def test_pin_ls_rm_and_gc(node: NodeProcess, ipfs: IpfsClient) -> None:
    kept = ipfs.add_bytes(_rand(2 * CHUNK, 21))
    dropped = ipfs.add_bytes(_rand(2 * CHUNK, 22), pin=False)
    unpinned = ipfs.add_bytes(_rand(100, 23))
    assert ipfs.pin_ls()[kept] == "recursive"
    assert dropped not in ipfs.pin_ls()
    assert ipfs.pin_rm(unpinned) == [unpinned]
    removed = ipfs.gc()
    assert len(removed) >= 4  # dropped: 2 leaves + root; unpinned: 1 leaf
    assert ipfs.cat(kept) == _rand(2 * CHUNK, 21)
    for cid in (dropped, unpinned):
        with pytest.raises(ContentNotFoundError):
            ipfs.cat(cid)


def test_pin_add_of_missing_content_fails(ipfs: IpfsClient) -> None:
    with pytest.raises(ContentNotFoundError):
        ipfs.pin_add(compute_cid(b"never added 314159"))


def test_pin_ls_of_unpinned_cid_says_not_pinned(ipfs: IpfsClient) -> None:
    cid = ipfs.add_bytes(b"pin me not", pin=False)
    assert not ipfs.is_pinned(cid)
    ipfs.pin_add(cid)
    assert ipfs.is_pinned(cid)


def test_invalid_cid_is_refused_before_any_request(ipfs: IpfsClient) -> None:
    with pytest.raises(InvalidCidError):
        ipfs.cat("not-a-cid")


# ---------------------------------------------------------------- persistence, crashes, several processes


def test_blocks_survive_a_restart(tmp_path: Path) -> None:
    data = _rand(3 * CHUNK + 1, 31)
    with start_node_process(tmp_path / "repo") as first, IpfsClient(first.api_url) as client:
        cid = client.add_bytes(data)
    with start_node_process(tmp_path / "repo") as second, IpfsClient(second.api_url) as client:
        assert client.cat(cid) == data
        assert client.pin_ls()[cid] == "recursive"


def test_crash_in_the_middle_of_an_add_leaves_no_half_written_block(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    node = start_node_process(repo)
    data = _rand(40 * CHUNK, 41)
    body, headers = _multipart(data)
    with socket.create_connection((node.host, node.port)) as sock:
        sock.sendall(
            f"POST /api/v0/add HTTP/1.1\r\nHost: x\r\nContent-Type: {headers['Content-Type']}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        sock.sendall(body[: len(body) // 2])
        time.sleep(0.5)
        node.kill()
    blocks = [p for p in (repo / "blocks").rglob("*") if p.is_file()]
    assert blocks, "the node should have stored some blocks before the crash"
    for p in blocks:
        assert hashlib.sha256(p.read_bytes()).hexdigest() == p.name
    with start_node_process(repo) as again, IpfsClient(again.api_url) as client:
        assert client.add_bytes(data) == compute_cid(data)
        assert client.cat(compute_cid(data)) == data


_WORKER = textwrap.dedent(
    """
    import random, sys
    from fedchain.content.client import IpfsClient
    api, seed = sys.argv[1], int(sys.argv[2])
    shared = random.Random(1234).randbytes(3 * 262144 + 17)
    own = random.Random(seed).randbytes(262144 + seed)
    with IpfsClient(api) as c:
        for _ in range(3):
            a = c.add_bytes(shared)
            b = c.add_bytes(own)
            assert c.cat(a) == shared and c.cat(b) == own
    print(a)
    """
)


def test_several_processes_share_one_node(node: NodeProcess, ipfs: IpfsClient) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, node.api_url, str(seed)], stdout=subprocess.PIPE,
                              env=env) for seed in range(4)]
    outs = [p.communicate(timeout=60)[0].decode().strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    shared = random.Random(1234).randbytes(3 * CHUNK + 17)
    assert set(outs) == {compute_cid(shared)}
    assert ipfs.cat(outs[0]) == shared
