"""Fixtures for the collector: the real worker app in-process (over httpx's ASGI transport) and
a real `firstparty serve` shared by a module."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from firstparty.config import Config, parse
from store.base import Store
from tests.conftest import SITE_CONFIG, Server, start_server

VISITOR_IP = "203.0.113.77"
PROXY_ADDRESS = "127.0.0.2"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)


class AppClient:
    """Requests against the worker app in this process, from a chosen peer address."""

    def __init__(self, app: Starlette, peer: str = VISITOR_IP) -> None:
        self.app = app
        self.peer = peer

    def request(self, method: str, path: str, peer: str | None = None, **kw: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, client=(peer or self.peer, 40000))
            async with httpx.AsyncClient(
                transport=transport, base_url="http://collector.test"
            ) as c:
                return await c.request(method, path, **kw)

        return asyncio.run(go())

    def event(self, body: bytes | str, **kw: Any) -> httpx.Response:
        headers = {"content-type": "text/plain", "user-agent": CHROME, **kw.pop("headers", {})}
        content = body.encode() if isinstance(body, str) else body
        return self.request("POST", "/api/event", content=content, headers=headers, **kw)


def app_config(tmp_path: Path, extra: str = "") -> Config:
    text = f'{SITE_CONFIG}\n[server]\ndata_dir = "{tmp_path / "data"}"\n{extra}'
    return parse(text, env={})


@pytest.fixture
def app(store: Store, tmp_path: Path) -> Iterator[AppClient]:
    from firstparty.app import build_app

    built = build_app(app_config(tmp_path), store, worker="test")
    yield AppClient(built)
    built.state.spool.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real server for a whole module (start-up costs seconds).

    It trusts 127.0.0.2 as a reverse proxy: requests from 127.0.0.1 are an ordinary client's,
    requests from 127.0.0.2 (see PROXY_ADDRESS) are the proxy's.
    """
    server = start_server(
        tmp_path_factory.mktemp("live") / "srv",
        extra_env={"FIRSTPARTY_TRUSTED_PROXIES": PROXY_ADDRESS},
    )
    yield server
    server.stop()
