"""The HTTP edge: `POST /api/event` turns a request into validated `Hit`s and hands them on."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from importlib import resources

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from collector.clientip import client_ip, parse_networks
from collector.payload import PayloadError, parse_payload
from firstparty.config import Config
from ingest.hit import Hit
from ingest.ingestor import Ingestor

ACCEPTED_TYPES = ("application/json", "text/plain")
CORS = {"access-control-allow-origin": "*"}


class BodyTooLarge(Exception):
    pass


def error(message: str, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers={**CORS, **(headers or {})})


async def read_body(request: Request, limit: int) -> bytes:
    """Read at most `limit` bytes, also for chunked bodies that declare no length."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def event_routes(
    config: Config, ingestor: Ingestor, clock: Callable[[], dt.datetime] | None = None
) -> list[Route]:
    trusted = parse_networks(config.server.trusted_proxies)
    limit = config.server.max_body_bytes
    now = clock or (lambda: dt.datetime.now(dt.UTC))

    async def event(request: Request) -> Response:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media not in ACCEPTED_TYPES:
            return error("Content-Type must be application/json or text/plain", 415)
        try:
            raw = await read_body(request, limit)
        except BodyTooLarge:
            return error(f"the body is larger than {limit} bytes", 413)
        except ClientDisconnect:
            return error("the client disconnected before sending the whole body", 400)
        try:
            payload = parse_payload(raw)
        except PayloadError as exc:
            return error(str(exc), 400)
        peer = request.client.host if request.client else ""
        ip = client_ip(peer, request.headers.get("x-forwarded-for"), trusted)
        if ip is None:
            return error("the client address could not be determined", 400)
        received = now()
        hits = [
            Hit(
                domain=domain,
                name=payload.name,
                url=payload.url,
                referrer=payload.referrer,
                received_at=received,
                ip=ip,
                user_agent=request.headers.get("user-agent", ""),
                device_id=payload.device_id,
                props=payload.props,
                hash_mode=payload.hash_mode,
                interactive=payload.interactive,
                engagement_ms=payload.engagement_ms,
                scroll_depth=payload.scroll_depth,
                tracker_version=payload.tracker_version,
                dnt=request.headers.get("dnt") == "1",
                gpc=request.headers.get("sec-gpc") == "1",
            )
            for domain in payload.domains
        ]
        reasons = await ingestor.submit(hits)
        headers = dict(CORS)
        if all(r is not None for r in reasons):
            headers["x-dropped"] = ",".join(sorted({str(r) for r in reasons}))
        return Response(
            b'{"ok":true}', status_code=202, media_type="application/json", headers=headers
        )

    async def preflight(request: Request) -> Response:
        return Response(
            status_code=204,
            headers={
                **CORS,
                "access-control-allow-methods": "POST, OPTIONS",
                "access-control-allow-headers": "content-type",
                "access-control-max-age": "86400",
            },
        )

    async def wrong_method(request: Request) -> Response:
        return error("use POST to send events", 405, {"allow": "POST, OPTIONS"})

    async def script(request: Request) -> Response:
        body = resources.files("collector").joinpath("tracker/script.js").read_bytes()
        return Response(
            body,
            media_type="application/javascript",
            headers={"cache-control": "public, max-age=3600", **CORS},
        )

    return [
        Route("/api/event", event, methods=["POST"]),
        Route("/api/event", preflight, methods=["OPTIONS"]),
        Route("/api/event", wrong_method, methods=["GET", "PUT", "DELETE", "PATCH"]),
        Route("/js/script.js", script, methods=["GET"]),
    ]
