"""A loopback HTTP proxy in front of a chain's JSON-RPC endpoint that drops, delays and fails requests at seeded rates.

    with RpcProxy("http://127.0.0.1:8545", FaultRates(drop=0.05, fail=0.05, delay=0.2), seed=3) as proxy:
        ...  # point roles at proxy.url

What a flaky provider does to a client, each drawn per request from one seeded generator:
- `drop`: the connection is closed without an answer; half of the drops forward the request first, so the chain
  acts on it (a transaction is mined) while the client never hears so, the case a resend must survive;
- `fail`: an HTTP 503 answer (a gateway in front of a node that is down), the request not forwarded;
- `delay`: the answer comes up to `max_delay` seconds late.
Only the standard library: it runs in a thread of the harness.
"""

from __future__ import annotations

import random
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class FaultRates:
    drop: float = 0.0
    fail: float = 0.0
    delay: float = 0.0
    max_delay: float = 0.5  # seconds

    @property
    def any(self) -> bool:
        return bool(self.drop or self.fail or self.delay)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ProxyServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        action, delay = self.server.draw()
        if action == "fail":
            self._answer(503, b"service unavailable (injected)", "text/plain")
            return
        if action == "drop-before":
            self.close_connection = True
            return
        try:
            request = urllib.request.Request(self.server.upstream, data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=60) as response:
                answer = response.read()
        except (urllib.error.URLError, OSError):
            self._answer(502, b"upstream unreachable", "text/plain")
            return
        if action == "drop-after":
            self.close_connection = True
            return
        if delay:
            time.sleep(delay)
        self._answer(200, answer, "application/json")

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client was killed while it waited
            self.close_connection = True


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, upstream: str, rates: FaultRates, seed: int) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = upstream
        self.rates = rates
        self.enabled = True
        self.counts: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a killed client's socket is no proxy error
            super().handle_error(request, client_address)

    def draw(self) -> tuple[str, float]:
        """The fate of the next request: ("pass" | "fail" | "drop-before" | "drop-after", delay seconds)."""
        with self._lock:
            roll, split, wait = self._rng.random(), self._rng.random(), self._rng.random()
            r = self.rates if self.enabled else FaultRates()
            if roll < r.fail:
                action = "fail"
            elif roll < r.fail + r.drop:
                action = "drop-before" if split < 0.5 else "drop-after"
            else:
                action = "pass"
            delay = wait * r.max_delay if action == "pass" and split < r.delay else 0.0
            self.counts[action] += 1
            self.counts["delayed"] += bool(delay)
            return action, delay


class RpcProxy:
    """The proxy, serving in a daemon thread; `.url` to dial, `.counts` of what it did, `.enabled` to stop faults."""

    def __init__(self, upstream: str, rates: FaultRates, seed: int = 0) -> None:
        self._server = _ProxyServer(upstream, rates, seed)
        host, port = self._server.server_address[:2]
        self.url = f"http://{host!s}:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()

    @property
    def counts(self) -> dict[str, int]:
        return dict(self._server.counts)

    def calm(self) -> None:
        """Stop injecting faults (requests pass straight through)."""
        self._server.enabled = False

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> RpcProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
