"""The dashboard's web app (Starlette): one static page and the JSON it renders. Read-only; it holds no keys.

Routes (GET and HEAD only):
  /                the page: static HTML; everything dynamic is rendered from JSON as text (never as HTML)
  /static/…        its script and styles and the vendored uPlot, served from the package (the page works offline)
  /api/snapshot    the current snapshot (fedchain.views.dashboard)
  /api/events      server-sent events: a snapshot whenever the index moved, and every few seconds
  /content/{cid}   a spec, model, update or report that this deployment's events name, read from IPFS

Requests whose Host header is not an allowed name are refused (a page on another site that rebinds its DNS name to
127.0.0.1 cannot read the dashboard), and every response carries a Content-Security-Policy that allows scripts and
styles from this origin only: even a string from the chain that slipped into the page as markup would not run.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fedchain.core.cid import cid_to_digest, digest_to_cid
from fedchain.errors import FedchainError
from fedchain.views.dashboard import DashboardModel

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
CONTENT_MAX_BYTES = 64 << 20
LOOPBACK_NAMES = ("127.0.0.1", "localhost")
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-resource-policy": "same-origin",
}


class Feed:
    """Follows the chain in a background thread (`index.sync()` every `interval` seconds) and serves snapshots,
    rebuilt when the index moved and at least every `refresh` seconds (phases change with the clock)."""

    def __init__(self, model: DashboardModel, *, interval: float = 1.0, refresh: float = 5.0) -> None:
        self.model = model
        self.interval = interval
        self.refresh = refresh
        self.head: int | None = None
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._cached: tuple[tuple, float, str] | None = None  # (version, built at, JSON)

    @property
    def version(self) -> tuple:
        return self.model.index.cursor, self.error

    def start(self) -> None:
        self.poll()  # the first snapshot is there before the first page load
        self._thread = threading.Thread(target=self._run, name="dashboard-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def poll(self) -> None:
        """One sync; an error (the chain unreachable) is shown on the page, not raised."""
        try:
            self.head = self.model.index.sync().head
            self.error = None
        except Exception as exc:  # the feed outlives outages: the page says what is wrong
            message = self._describe(exc)
            if message != self.error:
                log.warning("dashboard: cannot follow the chain: %s", message)
            self.error = message

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def _describe(self, exc: Exception) -> str:
        rpc = self.model.protocol.chain.rpc_url  # an RPC URL can carry a provider's API key: never shown
        return f"{type(exc).__name__}: {exc}".replace(rpc, "the RPC endpoint")[:500]

    def snapshot_json(self) -> str:
        with self._lock:
            version = self.version
            if self._cached and self._cached[0] == version and time.monotonic() - self._cached[1] < self.refresh:
                return self._cached[2]
            body = json.dumps(self.model.snapshot(head=self.head, error=self.error))
            self._cached = (version, time.monotonic(), body)
            return body


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every response (pure ASGI, so streamed responses get them too)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items() if k.encode() not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(feed: Feed, *, allowed_hosts: Sequence[str] = LOOPBACK_NAMES) -> Starlette:
    """The dashboard app over `feed` (started and stopped by the caller)."""

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-store"})

    async def snapshot(request: Request) -> Response:
        body = await run_in_threadpool(feed.snapshot_json)
        return Response(body, media_type="application/json", headers={"cache-control": "no-store"})

    async def events(request: Request) -> Response:
        return StreamingResponse(_event_stream(request, feed), media_type="text/event-stream",
                                 headers={"cache-control": "no-store", "x-accel-buffering": "no"})

    async def content(request: Request) -> Response:
        return await _content(request, feed.model)

    routes = [
        Route("/", page, methods=["GET"]),
        Route("/api/snapshot", snapshot, methods=["GET"]),
        Route("/api/events", events, methods=["GET"]),
        Route("/content/{cid}", content, methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = [Middleware(SecurityHeaders), Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))]
    return Starlette(routes=routes, middleware=middleware)


async def _event_stream(request: Request, feed: Feed) -> AsyncIterator[str]:
    sent: tuple | None = None
    sent_at = 0.0
    while not await request.is_disconnected():
        if feed.version != sent or time.monotonic() - sent_at >= feed.refresh:
            version = feed.version
            body = await run_in_threadpool(feed.snapshot_json)
            yield f"event: snapshot\ndata: {body}\n\n"
            sent, sent_at = version, time.monotonic()
        await anyio.sleep(0.25)


async def _content(request: Request, model: DashboardModel) -> Response:
    """Content this deployment's events name (by digest), fetched from IPFS and verified against its CID. JSON
    (specs, reports) is shown as text; anything else is a download. Other CIDs are refused: the dashboard is not
    an open IPFS gateway."""
    try:
        digest = cid_to_digest(request.path_params["cid"])
    except (FedchainError, ValueError):
        return PlainTextResponse("not a CID", status_code=404)
    if not await run_in_threadpool(model.index.knows_digest, digest):
        return PlainTextResponse("no event of this deployment names this content", status_code=404)
    cid = digest_to_cid(digest)
    try:
        body: bytes = await run_in_threadpool(model.ipfs.cat, cid, CONTENT_MAX_BYTES)
    except FedchainError as exc:
        return PlainTextResponse(f"could not read {cid} from IPFS: {exc}", status_code=502)
    headers: dict[str, Any] = {"content-security-policy": "sandbox", "cache-control": "max-age=3600"}
    if body[:1] == b"{" and _is_json(body):
        return Response(body, media_type="text/plain; charset=utf-8", headers=headers)
    headers["content-disposition"] = f'attachment; filename="{cid}"'
    return Response(body, media_type="application/octet-stream", headers=headers)


def _is_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return False
    return True
