"""Security headers on every dashboard response (DESIGN.md section 7).

A strict Content-Security-Policy (no inline scripts or styles, nothing from other origins),
no MIME sniffing, no framing, no referrer leaks to other sites, and no caching of data.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

HEADERS: dict[str, str] = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
}
NO_STORE = "no-store"
ASSETS_CACHE = "public, max-age=3600"


class SecurityHeaders:
    """Pure ASGI middleware: adds the headers a handler did not set itself."""

    def __init__(self, app: ASGIApp, cache_control: str = NO_STORE) -> None:
        self.app = app
        self.cache_control = cache_control

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                wanted = {**HEADERS, "cache-control": self.cache_control}
                for name, value in wanted.items():
                    if name.encode() not in present:
                        headers.append((name.encode(), value.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def secured(routes: Sequence[BaseRoute]) -> list[BaseRoute]:
    """The routes, each response given the security headers (no-store unless it is assets)."""
    for route in routes:
        if isinstance(route, Route | Mount) and not isinstance(route.app, SecurityHeaders):
            cache = ASSETS_CACHE if route.path.startswith("/assets") else NO_STORE
            route.app = SecurityHeaders(route.app, cache)
    return list(routes)
