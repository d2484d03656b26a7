"""Every input a user or the network gives, malformed: one table, each row fed as a user or peer would feed it.

Each row: what the input is, how it is fed (the `fedchain` command through typer's CliRunner, a function call, or
an HTTP request to a real IPFS node in a subprocess) and what must come back: an error whose message says what is
wrong and what to do (asserted on), no traceback, nothing lost (the files a row names keep their bytes) and no
crash (the node answers `version` after every request). docs/ERRORS.md lists the same inputs for people.
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from fedchain.cli.main import app
from fedchain.content.node import NodeProcess, start_node_process
from fedchain.errors import FedchainError
from fedchain.sim.devnet import free_port

runner = CliRunner()
PASSWORD = {"FEDCHAIN_PASSWORD": "right"}
ADDRESS = "0xABaBaBaBABabABabAbAbABAbABabababaBaBABaB"
CID = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"


@dataclass
class Fed:
    """What a row's feeding gave back: the message a person or a peer reads, and the files that must be unchanged."""

    message: str
    kept: dict[Path, bytes] = field(default_factory=dict)


@dataclass
class Ctx:
    tmp: Path
    node: NodeProcess
    anvil: str  # a bare chain's JSON-RPC URL (nothing deployed)
    keep: list[Path] = field(default_factory=list)

    def file(self, name: str, content: bytes | str) -> Path:
        path = self.tmp / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    def kept(self, path: Path) -> Path:
        """Mark `path` as a file the row must leave as it was."""
        self.keep.append(path)
        return path


# ---------------------------------------------------------------- the three ways in


def cli(ctx: Ctx, *args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    result = runner.invoke(app, [str(a) for a in args], env=env or {}, input=stdin)
    text = " ".join(result.output.split())
    assert result.exit_code != 0, f"accepted: {text}"
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in text, text
    return text


def call(func: Callable[..., object], *args: object, **kwargs: object) -> str:
    try:
        func(*args, **kwargs)
    except FedchainError as exc:
        return str(exc)
    raise AssertionError(f"{func.__name__} accepted the input")


def http(ctx: Ctx, path: str, body: bytes = b"", headers: dict[str, str] | None = None, method: str = "POST",
         status: int | None = None) -> str:
    """`status` 500: Kubo's answer for an argument its command refuses (Code 0); else a 4xx bad request (Code 1)."""
    r = httpx.request(method, ctx.node.api_url + path, content=body, headers=headers or {}, timeout=20)
    assert r.status_code == status if status else 400 <= r.status_code < 500, (r.status_code, r.text)
    answer = r.json()
    assert answer["Type"] == "error" and answer["Code"] == (0 if status == 500 else 1), answer
    return f"{r.status_code} {answer['Message']}"


def raw(ctx: Ctx, request: bytes, half_close: bool = False) -> str:
    """Bytes straight onto the node's socket (what no HTTP client would send); the answer's status line and body."""
    with socket.create_connection((ctx.node.host, ctx.node.port), timeout=20) as sock:
        sock.sendall(request)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    answer = b"".join(chunks).decode("latin-1")
    assert answer.startswith("HTTP/1.1 4"), answer[:200]
    return " ".join(answer.split())


def multipart(data: bytes, boundary: str = "b0undary", closing: bool = True, name: str = "f.bin") -> bytes:
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    return head + data + (f"\r\n--{boundary}--\r\n".encode() if closing else b"")


MULTIPART = {"Content-Type": "multipart/form-data; boundary=b0undary"}


# ---------------------------------------------------------------- inputs that need building


def keystore(ctx: Ctx) -> Path:
    from fedchain.chain.accounts import create_keystore

    path = ctx.tmp / "user.json"
    create_keystore(path, "right", light=True)
    return ctx.kept(path)


def npz(ctx: Ctx, name: str, **arrays: np.ndarray) -> Path:
    path = ctx.tmp / name
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def pickled_npz(ctx: Ctx) -> Path:
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    path = ctx.tmp / "pickled.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", buf.getvalue())
        archive.writestr("y.npy", buf.getvalue())
    return path


def spec_json(**changes: object) -> str:
    from fedchain.core.spec import mnist_spec

    value = json.loads(mnist_spec("mlp", sealed=False).to_json_bytes())
    value.update(changes)
    return json.dumps(value)


def update_bytes(**meta: object) -> bytes:
    from fedchain.core.envelope import UpdateEnvelope, canonical_json, encode_update

    env = UpdateEnvelope(1, 0, CID, 10, ADDRESS, {"w": np.ones(3, np.float32)})
    data = bytearray(encode_update(env))
    if meta:
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
        inner = json.loads(header["__metadata__"]["fedchain"])
        header["__metadata__"]["fedchain"] = canonical_json({**inner, **meta})
        new_header = json.dumps(header).encode()
        new_header += b" " * (-len(new_header) % 8)
        data = bytearray(len(new_header).to_bytes(8, "little") + new_header + data[8 + header_len :])
    return bytes(data)


def sealed(ctx: Ctx, *, tamper: bool = False, other_round: bool = False) -> str:
    from fedchain.core.sealing import SealBinding, open_sealed, public_key_of, random_private_key, seal

    key = random_private_key()
    binding = SealBinding(1, 0, ADDRESS)
    box = bytearray(seal(b"update bytes" * 100, [public_key_of(key)], binding))
    if tamper:
        box[-20] ^= 1
    expected = SealBinding(1, 1, ADDRESS) if other_round else binding
    return call(open_sealed, bytes(box), key, expected)


def report_json(**changes: object) -> bytes:
    from fedchain.core.report import RoundReport

    schema = RoundReport.model_json_schema()
    value = {name: None for name in schema.get("required", [])}
    value.update(changes)
    return json.dumps(value).encode()


# ---------------------------------------------------------------- the table

Row = tuple[str, str, Callable[[Ctx], str], list[str]]

ROWS: list[Row] = [
    # -- keystores and passwords
    ("keystore missing", "cli account address",
     lambda c: cli(c, "account", "address", "--keystore", c.tmp / "none.json"),
     ["no keystore at", "fedchain account create --out"]),
    ("keystore is a directory", "cli account address",
     lambda c: cli(c, "account", "address", "--keystore", c.tmp),
     ["is a directory, not a keystore file"]),
    ("keystore is binary", "cli account address",
     lambda c: cli(c, "account", "address", "--keystore", c.kept(c.file("k.bin", bytes(range(256)) * 3))),
     ["is a binary file, not a keystore"]),
    ("keystore is truncated JSON", "cli account address",
     lambda c: cli(c, "account", "address", "--keystore", c.kept(c.file("k.json", '{"version": 3, "crypto": {'))),
     ["is not a keystore (invalid JSON)"]),
    ("keystore is other JSON", "cli account address",
     lambda c: cli(c, "account", "address", "--keystore", c.kept(c.file("k.json", '{"hello": 1}'))),
     ["JSON but not an Ethereum keystore"]),
    ("keystore is huge", "cli account address",
     lambda c: cli(c, "account", "address", "--keystore", c.file("k.json", b" " * (1 << 20))),
     ["far larger than a keystore"]),
    ("wrong keystore password", "load_keystore",
     lambda c: call(_load_keystore, keystore(c), "wrong"), ["password does not decrypt", "FEDCHAIN_PASSWORD"]),
    ("no password and no terminal", "resolve_password",
     lambda c: call(_resolve_password, "FEDCHAIN_TEST_UNSET_PASSWORD"),
     ["no password", "set $FEDCHAIN_TEST_UNSET_PASSWORD"]),
    ("wrong sealing key password", "cli keys public",
     lambda c: cli(c, "keys", "public", "--key", sealing_key(c), "--password-env", "KEYPW", env={"KEYPW": "wrong"}),
     ["password", "v.key"]),
    ("account create over an existing keystore", "cli account create",
     lambda c: cli(c, "account", "create", "--out", keystore(c), env=PASSWORD),
     ["already exists", "choose another path"]),
    # -- sealing key files
    ("sealing key file missing", "cli keys public",
     lambda c: cli(c, "keys", "public", "--key", c.tmp / "none.key"),
     ["none.key", "fedchain keys create"]),
    ("sealing key file is garbage", "cli keys public",
     lambda c: cli(c, "keys", "public", "--key", c.kept(c.file("bad.key", b"\x00" * 7))),
     ["bad.key", "not a PEM private key", "fedchain keys create"]),
    ("sealing key create over an existing key", "cli keys create",
     lambda c: cli(c, "keys", "create", "--out", c.kept(c.file("v.key", b"precious")), "--no-password"),
     ["already exists", "--force"]),
    ("sealing public key of the wrong length", "cli task init-spec",
     lambda c: cli(c, "task", "init-spec", "--out", c.tmp / "s.json", "--sealing-key", "abcd"),
     ["public key", "64 hex"]),
    # -- data files
    ("data file missing", "load_npz", lambda c: call(_load_npz, c.tmp / "none.npz"), ["not found"]),
    ("data file is not an archive", "load_npz",
     lambda c: call(_load_npz, c.file("d.npz", b"hello")), ["not an .npz archive"]),
    ("data file lacks y", "load_npz",
     lambda c: call(_load_npz, npz(c, "d.npz", x=np.zeros((2, 784), np.float32))),
     ["missing array(s) y", "np.savez(path, x=features, y=labels)"]),
    ("data file with pickled arrays", "load_npz", lambda c: call(_load_npz, pickled_npz(c)), ["refused"]),
    ("data file x and y of different lengths", "load_npz",
     lambda c: call(_load_npz, npz(c, "d.npz", x=np.zeros((3, 1, 28, 28), np.float32), y=np.zeros(2, np.int64))),
     ["x has 3 samples but y has 2"]),
    ("data file with labels out of range", "load_npz",
     lambda c: call(_load_npz, npz(c, "d.npz", x=np.zeros((2, 1, 28, 28), np.float32), y=np.array([0, 10]))),
     ["labels must be in [0, 10)"]),
    ("data file with NaN features", "load_npz",
     lambda c: call(_load_npz, npz(c, "d.npz", x=np.full((2, 1, 28, 28), np.nan, np.float32), y=np.zeros(2, int))),
     ["x contains NaN or infinite values"]),
    # -- specs
    ("spec file missing", "load_spec_file", lambda c: call(_load_spec, c.tmp / "none.json"), ["not found"]),
    ("spec is not JSON", "load_spec_file", lambda c: call(_load_spec, c.file("s.json", "{model: ")), ["task spec is not valid JSON"]),
    ("spec with an unknown field", "load_spec_file",
     lambda c: call(_load_spec, c.file("s.json", spec_json(learning_rte=0.1))), ["learning_rte", "unknown field"]),
    ("spec with a wrong type", "load_spec_file",
     lambda c: call(_load_spec, c.file("s.json", spec_json(kind=7))), ["kind"]),
    ("spec with duplicate keys", "load_spec_file",
     lambda c: call(_load_spec, c.file("s.json", spec_json()[:-1] + ', "kind": "x"}')), ["duplicate key"]),
    # -- CIDs
    ("CID that is not one", "cli ipfs cat",
     lambda c: cli(c, "ipfs", "cat", "not-a-cid", "--out", c.tmp / "o", "--api", c.node.api_url),
     ["not-a-cid", "a CID looks like Qm"]),
    ("CID of another hash function", "cli ipfs cat",
     lambda c: cli(c, "ipfs", "cat", "bafkr4ihkr4ld3m4gqkjf4reryxsy2s5tkbxprqkow6fin2iiyvreuzzab4",
                   "--out", c.tmp / "o", "--api", c.node.api_url),
     ["bafkr4ihkr4ld3m4gqkjf4reryxsy2s5tkbxprqkow6fin2iiyvreuzzab4", "only sha2-256"]),
    ("CID of absent content", "cli ipfs cat",
     lambda c: cli(c, "ipfs", "cat", "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o", "--out", c.tmp / "o",
                   "--api", c.node.api_url),
     ["QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"]),
    # -- envelopes, sealed headers, reports: what the network hands a validator or a verifier
    ("update envelope that is not safetensors", "decode_update",
     lambda c: call(_decode_update, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      "), ["safetensors header is not JSON"]),
    ("update envelope with a huge declared header", "decode_update",
     lambda c: call(_decode_update, (1 << 40).to_bytes(8, "little") + b"{}"), ["header length", "runs past the end"]),
    ("update envelope with unknown metadata", "decode_update",
     lambda c: call(_decode_update, update_bytes(extra="1")), ["unknown metadata fields", "extra"]),
    ("update envelope truncated", "decode_update",
     lambda c: call(_decode_update, update_bytes()[:-5]), ["not a valid safetensors file"]),
    ("sealed envelope tampered with", "open_sealed", lambda c: sealed(c, tamper=True), ["does not authenticate", "changed"]),
    ("sealed envelope for another round", "open_sealed", lambda c: sealed(c, other_round=True), ["round=0", "expected", "round=1"]),
    ("sealed envelope that is garbage", "open_sealed",
     lambda c: call(_open_sealed, b"FCSEAL" + b"\xff" * 40), ["not a fedchain sealed envelope"]),
    ("report that is not JSON", "RoundReport.from_json_bytes",
     lambda c: call(_report, b"\x00not json"), ["not valid JSON"]),
    ("report with wrong fields", "RoundReport.from_json_bytes",
     lambda c: call(_report, report_json(bogus=1)), ["invalid RoundReport", "bogus"]),
    # -- chain and IPFS addresses
    ("RPC URL that is not a URL", "cli status",
     lambda c: cli(c, "status", "--task", "0", "--rpc-url", "localhost-8545"), ["localhost-8545", "not an http(s) URL", "http://127.0.0.1:8545"]),
    ("RPC URL nobody answers", "cli status",
     lambda c: cli(c, "status", "--task", "0", "--rpc-url", (url := _dead_url())) + f" [{url}]", ["cannot reach"]),
    ("RPC URL that answers something else than JSON-RPC", "cli status",
     lambda c: cli(c, "status", "--task", "0", "--rpc-url", c.node.api_url), ["JSON-RPC endpoint", "404"]),
    ("IPFS API multiaddr that is malformed", "cli ipfs cat",
     lambda c: cli(c, "ipfs", "cat", "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o", "--out", c.tmp / "o",
                   "--api", "/ip4/127.0.0.1/udp/5001"),
     ["/ip4/HOST/tcp/PORT"]),
    ("IPFS API nobody answers", "cli ipfs add",
     lambda c: cli(c, "ipfs", "add", c.file("a.txt", "hi"), "--api", _dead_url()), ["no IPFS RPC API answered", "fedchain ipfs serve"]),
    ("IPFS node listen address malformed", "cli ipfs serve",
     lambda c: cli(c, "ipfs", "serve", "--api", "127.0.0.1", "--repo", c.tmp / "repo"), ["HOST:PORT"]),
    ("IPFS node listen address already taken", "cli ipfs serve",
     lambda c: cli(c, "ipfs", "serve", "--api", f"127.0.0.1:{c.node.port}", "--repo", c.tmp / "repo"),
     ["cannot listen on", "another --api"]),
    ("IPFS node repo that is a file", "cli ipfs serve",
     lambda c: cli(c, "ipfs", "serve", "--api", "127.0.0.1:0", "--repo", c.kept(c.file("repo", "x"))),
     ["cannot create the IPFS repo"]),
    # -- command-line arguments
    ("task id that is not a number", "cli status",
     lambda c: cli(c, "status", "--task", "one"), ["Invalid value for '--task'", "integer"]),
    ("amount that is not a number", "cli stake add",
     lambda c: cli(c, "stake", "add", "--amount", "ten", "--keystore", keystore(c), "--rpc-url", _dead_url(),
                   env=PASSWORD),
     ["ten", "FED"]),
    ("negative amount", "cli stake add",
     lambda c: cli(c, "stake", "add", "--amount", "-5", "--keystore", keystore(c), "--rpc-url", _dead_url(),
                   env=PASSWORD),
     ["-5"]),
    ("address that is not one", "cli stake show",
     lambda c: cli(c, "stake", "show", "--account", "0x1234", "--rpc-url", _dead_url()), ["is not an address"]),
    ("unknown demo preset", "cli demo",
     lambda c: cli(c, "demo", "--rule", "mean-of-everything", "--workdir", c.tmp / "w"), ["mean-of-everything"]),
    ("state file corrupted", "read_bound_json",
     lambda c: call(_read_state, c.kept(c.file("checkpoint.json", '{"round": 3'))), ["not valid JSON", "delete it"]),
    ("state file of another chain", "read_bound_json",
     lambda c: call(_read_state, c.kept(c.file("checkpoint.json", json.dumps(
         {"round": 3, "binding": {"chain_id": 1, "contract": ADDRESS, "block": 0, "block_hash": "0x00"}})))),
     ["chain 1", "--state-dir"]),
    ("deployments file malformed", "cli status",
     lambda c: cli(c, "status", "--task", "0", "--deployments", c.kept(c.file("dep.json", "[1, 2]")),
                   "--rpc-url", c.anvil),
     ["dep.json (malformed)", "(top level): Input should be an object", "ape run deploy"]),
    # -- HTTP requests to the IPFS node
    ("IPFS: unknown command", "HTTP", lambda c: http(c, "/api/v0/shutdown"), ["404", "unknown command"]),
    ("IPFS: GET instead of POST", "HTTP", lambda c: http(c, "/api/v0/version", method="GET"), ["405", "POST"]),
    ("IPFS: add without a multipart body", "HTTP",
     lambda c: http(c, "/api/v0/add", b"raw bytes", {"Content-Type": "application/octet-stream"}),
     ["400", "multipart/form-data"]),
    ("IPFS: multipart body without its closing boundary", "HTTP",
     lambda c: http(c, "/api/v0/add", multipart(b"data", closing=False), MULTIPART), ["closing boundary"]),
    ("IPFS: multipart body with garbage for headers", "HTTP",
     lambda c: http(c, "/api/v0/add", b"--b0undary\r\n\x00\x01\x02 no colon\r\n\r\ndata\r\n--b0undary--\r\n",
                    MULTIPART),
     ["malformed multipart body"]),
    ("IPFS: multipart with another boundary than declared", "HTTP",
     lambda c: http(c, "/api/v0/add", multipart(b"data", boundary="other"), MULTIPART), ["malformed multipart"]),
    ("IPFS: a directory part", "HTTP",
     lambda c: http(c, "/api/v0/add", b"--b0undary\r\nContent-Type: application/x-directory\r\n"
                    b"Content-Disposition: form-data; name=\"file\"; filename=\"d\"\r\n\r\n\r\n--b0undary--\r\n",
                    MULTIPART),
     ["directories are not supported"]),
    ("IPFS: oversized multipart part header", "HTTP",
     lambda c: http(c, "/api/v0/add", b"--b0undary\r\nX-Padding: " + b"a" * (4 << 20) + b"\r\n\r\nx\r\n--b0undary--\r\n",
                    MULTIPART),
     ["malformed multipart body", "header size exceeded"]),
    ("IPFS: body shorter than its Content-Length", "raw socket",
     lambda c: raw(c, b"POST /api/v0/add HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b0undary\r\n"
                   b"Content-Length: 1000000000\r\n\r\n" + multipart(b"abc", closing=False), half_close=True),
     ["ended early"]),
    ("IPFS: Content-Length that is not a number", "raw socket",
     lambda c: raw(c, b"POST /api/v0/add HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b0undary\r\n"
                   b"Content-Length: lots\r\n\r\n"),
     ["Content-Length"]),
    ("IPFS: malformed chunked body", "raw socket",
     lambda c: raw(c, b"POST /api/v0/add HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b0undary\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
     ["chunked"]),
    ("IPFS: oversized request line", "raw socket",
     lambda c: raw(c, b"POST /api/v0/cat?arg=" + b"Q" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"), ["414", '"Type":"error"']),
    ("IPFS: too many headers", "raw socket",
     lambda c: raw(c, b"POST /api/v0/version HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150))
                   + b"\r\n"),
     ["431", '"Type":"error"']),
    ("IPFS: cat of a malformed CID", "HTTP", lambda c: http(c, "/api/v0/cat?arg=Qmnope", status=500), ["invalid path 'Qmnope'", "not a CID"]),
    ("IPFS: negative offset", "HTTP",
     lambda c: http(c, "/api/v0/cat?arg=QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o&offset=-1"),
     ["offset", "negative"]),
    ("IPFS: boolean option that is not one", "HTTP",
     lambda c: http(c, "/api/v0/add?pin=maybe", multipart(b"x"), MULTIPART), ["maybe", "boolean"]),
    ("IPFS: unsupported hash", "HTTP",
     lambda c: http(c, "/api/v0/add?hash=md5", multipart(b"x"), MULTIPART), ["md5", "sha2-256"]),
]


def _load_keystore(path: Path, password: str) -> object:
    from fedchain.chain.accounts import load_keystore

    return load_keystore(path, password)


def _resolve_password(env: str) -> object:
    from fedchain.chain.accounts import resolve_password

    return resolve_password(env)


def sealing_key(ctx: Ctx) -> Path:
    from fedchain.core.keys import generate_sealing_key

    path = ctx.tmp / "v.key"
    generate_sealing_key(path, password="right")
    return ctx.kept(path)


def _dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def _load_npz(path: Path) -> object:
    from fedchain.core.spec import mnist_spec
    from fedchain.learning.data import load_npz

    return load_npz(path, mnist_spec("mlp", sealed=False))


def _load_spec(path: Path) -> object:
    from fedchain.core.spec import load_spec_file

    return load_spec_file(path)


def _decode_update(data: bytes) -> object:
    from fedchain.core.envelope import decode_update

    return decode_update(data, {"w": ((3,), "float32")})


def _open_sealed(data: bytes) -> object:
    from fedchain.core.sealing import SealBinding, open_sealed, random_private_key

    return open_sealed(data, random_private_key(), SealBinding(1, 0, ADDRESS))


def _report(data: bytes) -> object:
    from fedchain.core.report import RoundReport

    return RoundReport.from_json_bytes(data)


def _read_state(path: Path) -> object:
    from fedchain.state import StateBinding, read_bound_json

    return read_bound_json(path, StateBinding(31337, ADDRESS, 0, "0x" + "11" * 32))


@pytest.fixture(scope="module")
def anvil() -> Iterator[str]:
    from fedchain.sim.devnet import start_anvil

    handle = start_anvil(accounts=1)
    yield f"http://127.0.0.1:{handle.port}"
    handle.stop()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    with start_node_process(tmp_path_factory.mktemp("ipfs") / "repo") as handle:
        yield handle


def _digest(path: Path) -> bytes:
    return hashlib.sha256(path.read_bytes()).digest() if path.is_file() else b"(not a file)"


def test_the_table_covers_at_least_thirty_kinds_of_input() -> None:
    assert len(ROWS) >= 30 and len({row[0] for row in ROWS}) == len(ROWS)


@pytest.mark.parametrize(("what", "how", "feed", "expected"), ROWS, ids=[row[0] for row in ROWS])
def test_bad_input_gets_a_clear_error_and_loses_nothing(what: str, how: str, feed: Callable[[Ctx], str],
                                                         expected: list[str], node: NodeProcess,
                                                         anvil: str, tmp_path: Path) -> None:
    ctx = Ctx(tmp_path, node, anvil)
    snapshots: dict[Path, bytes] = {}
    original_kept = ctx.kept

    def kept(path: Path) -> Path:  # snapshot at the moment a row marks the file, before it is fed
        snapshots[path] = _digest(path)
        return original_kept(path)

    ctx.kept = kept  # type: ignore[method-assign]
    message = feed(ctx)
    for text in expected:
        assert text in message, f"{what} ({how}): {text!r} not in {message!r}"
    for path, digest in snapshots.items():
        assert _digest(path) == digest, f"{what}: {path} changed"
    version = httpx.post(node.api_url + "/api/v0/version", timeout=5)
    assert version.status_code == 200, f"the IPFS node stopped answering after {what}"


def test_docs_list_every_row() -> None:
    """docs/ERRORS.md is this table for people: every row is there."""
    listed = (Path(__file__).resolve().parents[2] / "docs" / "ERRORS.md").read_text()
    missing = [what for what, *_ in ROWS if f"| {what} |" not in listed]
    assert not missing, f"docs/ERRORS.md lacks {missing}"
