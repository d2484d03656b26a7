"""Serving the dashboard with uvicorn: on a socket bound before the server starts, so its address is known at once.

    with running_dashboard(protocol, ipfs_api, index_dir, port=0) as server:   # in a thread (the demo)
        print(server.url)
    serve_dashboard(protocol, ipfs_api, index_dir, port=8700)                  # in the foreground until Ctrl-C
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import uvicorn

from fedchain.chain.protocol import Protocol
from fedchain.content.client import IpfsClient
from fedchain.errors import ConfigError, FedchainError
from fedchain.views.dashboard import DashboardModel
from fedchain.views.index import EventIndex, default_confirmations
from fedchain.web.app import LOOPBACK_NAMES, Feed, create_app

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8700


class DashboardError(FedchainError):
    """Raised when the dashboard cannot be served (its port taken, its server not starting)."""


class DashboardServer:
    """The app, its feed and a uvicorn server on a bound socket."""

    def __init__(self, protocol: Protocol, ipfs_api: str, index_dir: Path | None, *, host: str = DEFAULT_HOST,
                 port: int = DEFAULT_PORT, confirmations: int | None = None, allowed_hosts: Sequence[str] = (),
                 interval: float = 1.0) -> None:
        if confirmations is None:
            confirmations = default_confirmations(protocol.chain.chain_id)
        index = (EventIndex.open(protocol, index_dir, confirmations=confirmations) if index_dir is not None
                 else EventIndex(protocol, None, confirmations=confirmations))
        # A short timeout and one retry: the page should say "unavailable" soon rather than hang on a dead node.
        self.feed = Feed(DashboardModel(protocol, index, IpfsClient(ipfs_api, timeout=10, retries=1)),
                         interval=interval)
        self.app = create_app(self.feed, allowed_hosts=allowed_names(host, allowed_hosts))
        self.socket = _bind(host, port)
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.socket.getsockname()[1]}/"
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    def serve_forever(self) -> None:
        """Serve in this thread until Ctrl-C or SIGTERM (uvicorn's handlers)."""
        self.feed.start()
        try:
            self.server.run(sockets=[self.socket])
        finally:
            self.feed.stop()
            self.socket.close()

    def start(self) -> None:
        """Serve from a background thread; returns once the server accepts connections."""
        self.feed.start()
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]},
                                        name="dashboard-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise DashboardError(f"the dashboard's server did not start on {self.url}")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.feed.stop()
        self.socket.close()


@contextlib.contextmanager
def running_dashboard(protocol: Protocol, ipfs_api: str, index_dir: Path | None, *, host: str = DEFAULT_HOST,
                      port: int = DEFAULT_PORT, confirmations: int | None = None) -> Iterator[DashboardServer]:
    """The dashboard served from a background thread for the duration of the block."""
    server = DashboardServer(protocol, ipfs_api, index_dir, host=host, port=port, confirmations=confirmations)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def allowed_names(host: str, extra: Sequence[str] = ()) -> list[str]:
    """Host header names to serve: the loopback names, the address bound to (unless it is every interface) and the
    names given. Any other name is refused (a DNS-rebinding page names its own)."""
    names = [*LOOPBACK_NAMES, *extra]
    if host not in (*names, "0.0.0.0", "::"):
        names.append(host)
    return names


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        hint = "choose another with --port (0: any free port)" if exc.errno == 98 else "check --host"
        raise ConfigError(f"cannot serve the dashboard on {host}:{port}: {exc.strerror}; {hint}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock
