"""The HTTP edge: `POST /api/event` turns a request into validated `Hit`s and hands them on.

This is the hot path, so it stays thin: read a bounded body, parse, build Hits, submit. The
tracker variants and the opt-out page are read once at start-up and served from memory.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import logging
import re
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from collector.clientip import Network, client_ip, joined_lines, parse_networks
from collector.payload import PayloadError, hits, parse_payload
from firstparty.config import Config
from ingest.ingestor import Ingestor, IngestUnavailable
from ingest.spool import SpoolFull

log = logging.getLogger("firstparty.collector")

EVENT_PATH = "/api/event"
ACCEPTED_TYPES = ("application/json", "text/plain")
CORS = {"access-control-allow-origin": "*"}
SCRIPT_CACHE = "public, max-age=3600, stale-while-revalidate=86400"
# Extension aliases a site may put in the script name, in any order (`script.<ext>.<ext>.js`).
EXTENSIONS = ("file-downloads", "outbound-links", "tagged-events")
ALIASES = {"full": EXTENSIONS}
SCRIPT_NAME = re.compile(r"script((?:\.[a-z0-9-]{1,30}){0,6})\.js")

TRACKER_DIR = Path(__file__).resolve().parent / "tracker"

Handler = Callable[[Request], Awaitable[Response]]


class BodyTooLarge(Exception):
    pass


class Disconnected(Exception):
    pass


def error(message: str, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers={**CORS, **(headers or {})})


def failure(exc: BaseException, path: str) -> JSONResponse:
    """A JSON 503 for an unexpected failure, logged without request data.

    Only the exception type and the code path are logged: an exception message may quote
    request data (an address, a URL), which must not reach a log.
    """
    frames = "".join(traceback.format_tb(exc.__traceback__))
    log.error("collector: %s in %s\n%s", type(exc).__name__, path, frames)
    return error("the event could not be processed; try again later", 503, {"retry-after": "5"})


def guarded(handler: Handler) -> Handler:
    """Turn an unexpected failure of a handler into `failure`'s answer."""

    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception as exc:  # noqa: BLE001 - whatever it is, the client gets JSON
            return failure(exc, request.url.path)

    return run


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    gzipped: bytes
    etag: str
    media_type: str
    headers: dict[str, str]

    def response(self, request: Request) -> Response:
        headers = {**self.headers, "etag": self.etag, "vary": "accept-encoding"}
        if self.etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        if "gzip" in request.headers.get("accept-encoding", ""):
            headers["content-encoding"] = "gzip"
            return Response(self.gzipped, media_type=self.media_type, headers=headers)
        return Response(self.body, media_type=self.media_type, headers=headers)


def asset(body: bytes, media_type: str, headers: dict[str, str]) -> Asset:
    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
    return Asset(body, gzip.compress(body, 9, mtime=0), etag, media_type, headers)


def load_scripts() -> dict[tuple[str, ...], Asset]:
    """Every built variant, keyed by its sorted extension names."""
    folder = TRACKER_DIR
    scripts: dict[tuple[str, ...], Asset] = {}
    for entry in folder.iterdir():
        match = SCRIPT_NAME.fullmatch(entry.name)
        if match:
            key = tuple(sorted(p for p in match.group(1).split(".") if p))
            scripts[key] = asset(
                entry.read_bytes(),
                "application/javascript",
                {**CORS, "cache-control": SCRIPT_CACHE, "x-content-type-options": "nosniff"},
            )
    return scripts


def script_key(name: str) -> tuple[str, ...] | None:
    match = SCRIPT_NAME.fullmatch(name)
    if match is None:
        return None
    parts: set[str] = set()
    for part in (p for p in match.group(1).split(".") if p):
        parts.update(ALIASES.get(part, (part,)))
    return tuple(sorted(parts))


def optout_page() -> Asset:
    body = (TRACKER_DIR / "optout.html").read_bytes()
    # Allow exactly the page's own inline script and style, nothing else.
    script = re.search(rb"<script>(.*?)</script>", body, re.S)
    style = re.search(rb"<style>(.*?)</style>", body, re.S)
    digests = [
        "'sha256-" + base64.b64encode(hashlib.sha256(m.group(1)).digest()).decode() + "'"
        for m in (script, style)
        if m
    ]
    csp = (
        f"default-src 'none'; script-src {digests[0]}; style-src {digests[1]}; "
        "frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
    )
    return asset(
        body,
        "text/html; charset=utf-8",
        {
            "cache-control": "public, max-age=3600",
            "content-security-policy": csp,
            "x-content-type-options": "nosniff",
            "referrer-policy": "no-referrer",
        },
    )


# The headers a beacon's answer carries, encoded once.
_ACCEPTED = [
    (b"content-type", b"application/json"),
    (b"content-length", b"11"),
    (b"access-control-allow-origin", b"*"),
]
_PREFLIGHT = Response(
    status_code=204,
    headers={
        **CORS,
        "access-control-allow-methods": "POST, OPTIONS",
        "access-control-allow-headers": "content-type",
        "access-control-max-age": "86400",
    },
)
# Request headers the endpoint reads; the rest are skipped without decoding.
_WANTED = frozenset((b"content-type", b"content-length", b"user-agent", b"dnt", b"sec-gpc"))


async def read_body(receive: Receive, declared: str | None, limit: int) -> bytes:
    """Read at most `limit` bytes (plus one network chunk), also for chunked bodies."""
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class EventEndpoint:
    """`/api/event` as a bare ASGI app: request -> validated `Hit`s -> the ingestor.

    The hot path of the collector, so no Request or Response object is built for an accepted
    beacon: the few headers it needs are picked from the scope in one pass and the 202 is sent
    from pre-encoded headers. Every method gets a JSON answer; an unexpected failure becomes a
    503 and a log line with no request data (`failure`).
    """

    def __init__(
        self,
        trusted: tuple[Network, ...],
        limit: int,
        ingestor: Ingestor,
        now: Callable[[], dt.datetime],
    ) -> None:
        self.trusted = trusted
        self.limit = limit
        self.ingestor = ingestor
        self.now = now

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            if scope["method"] == "POST":
                response = await self.accept(scope, receive, send)
            elif scope["method"] == "OPTIONS":
                response = _PREFLIGHT
            else:
                response = error("use POST to send events", 405, {"allow": "POST, OPTIONS"})
        except (SpoolFull, IngestUnavailable) as exc:
            response = error(
                "the collector cannot take events right now; retry later",
                503,
                {"retry-after": str(exc.retry_after)},
            )
        except Exception as exc:  # noqa: BLE001 - whatever it is, the client gets JSON
            response = failure(exc, "/api/event")
        if response is not None:
            await response(scope, receive, send)

    async def accept(self, scope: Scope, receive: Receive, send: Send) -> Response | None:
        """Take one beacon; returns the error response, or None once the 202 is sent."""
        headers: dict[bytes, str] = {}
        forwarded: list[str] = []
        for key, value in scope["headers"]:
            if key == b"x-forwarded-for":
                forwarded.append(value.decode("latin-1"))
            elif key in _WANTED and key not in headers:
                headers[key] = value.decode("latin-1")
        media = headers.get(b"content-type", "").split(";")[0].strip().lower()
        if media not in ACCEPTED_TYPES:
            return error("Content-Type must be application/json or text/plain", 415)
        try:
            raw = await read_body(receive, headers.get(b"content-length"), self.limit)
        except BodyTooLarge:
            return error(
                f"the body is larger than {self.limit} bytes", 413, {"connection": "close"}
            )
        except Disconnected:
            return error("the client disconnected before sending the whole body", 400)
        try:
            payload = parse_payload(raw)
        except PayloadError as exc:
            return error(str(exc), 400)
        client = scope.get("client")
        ip = client_ip(client[0] if client else "", joined_lines(forwarded), self.trusted)
        if ip is None:
            return error("the client address could not be determined", 400)
        beacon = hits(
            payload,
            self.now(),
            ip,
            headers.get(b"user-agent", ""),
            dnt=headers.get(b"dnt") == "1",
            gpc=headers.get(b"sec-gpc") == "1",
        )
        reasons = await self.ingestor.submit(beacon)
        out = _ACCEPTED
        if all(r is not None for r in reasons):
            dropped = ",".join(sorted({str(r) for r in reasons}))
            out = [*_ACCEPTED, (b"x-dropped", dropped.encode("latin-1"))]
        await send({"type": "http.response.start", "status": 202, "headers": out})
        await send({"type": "http.response.body", "body": b'{"ok":true}'})
        return None


def event_endpoint(
    config: Config, ingestor: Ingestor, clock: Callable[[], dt.datetime] | None = None
) -> EventEndpoint:
    trusted = parse_networks(config.server.trusted_proxies)
    now = clock or (lambda: dt.datetime.now(dt.UTC))
    return EventEndpoint(trusted, config.server.max_body_bytes, ingestor, now)


def event_routes(endpoint: EventEndpoint) -> list[Route]:
    scripts = load_scripts()
    optout = optout_page()

    @guarded
    async def script(request: Request) -> Response:
        key = script_key(request.path_params["name"])
        found = scripts.get(key) if key is not None else None
        if found is None:
            known = ", ".join(sorted(EXTENSIONS))
            return error(f"no such tracker variant; extensions are {known} (or full)", 404)
        return found.response(request)

    @guarded
    async def optout_handler(request: Request) -> Response:
        return optout.response(request)

    return [
        Route(EVENT_PATH, endpoint),
        Route("/js/{name:str}", script, methods=["GET"]),
        Route("/optout", optout_handler, methods=["GET"]),
    ]
