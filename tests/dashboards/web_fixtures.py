"""Fixtures for the web dashboard: the dashboards' routes on a real store, a user, some traffic."""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from dashboards.routes import routes
from dashboards.users import add_user
from firstparty.config import Config, parse
from ingest.event import Event
from ingest.sessions import Sessionizer
from ingest.writer import insert_events
from store.aio import AsyncStore
from store.base import Store

WEB_CONFIG = """
[[site]]
domain = "example.com"

[[site]]
domain = "shop.example.org"

[[goal]]
name = "Signup"
event = "Signup"
"""
PASSWORD = "correct horse battery"
# The dashboard's clock: late on today's date, so the fixture's noon traffic is already in the
# past (and on the chart) whatever hour the suite runs at, midnight included.
NOW = dt.datetime.combine(dt.datetime.now(dt.UTC).date(), dt.time(23, 30), dt.UTC)


@dataclass
class Dashboard:
    client: httpx.Client
    store: Store
    config: Config

    def login(self, email: str, password: str = PASSWORD) -> None:
        page = self.client.get("/login")
        csrf = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        response = self.client.post(
            "/login",
            data={"email": email, "password": password, "csrf_token": csrf, "next": "/"},
            follow_redirects=False,
        )
        assert response.status_code == 303, response.text


def traffic(store: Store, today: dt.date) -> None:
    """A small, known mix: 3 visitors from Google, 1 direct, 1 from a newsletter; one signup."""
    noon = dt.datetime.combine(today, dt.time(12), dt.UTC)
    events = [
        Event(
            "example.com",
            noon,
            "pageview",
            1,
            pathname="/",
            referrer_source="Google",
            channel="Organic Search",
            country_code="BE",
            browser="Chrome",
            os="Windows",
            device="Desktop",
        ),
        Event(
            "example.com",
            noon + dt.timedelta(minutes=1),
            "pageview",
            1,
            pathname="/pricing",
            referrer_source="Google",
            channel="Organic Search",
            country_code="BE",
            browser="Chrome",
            os="Windows",
            device="Desktop",
        ),
        Event(
            "example.com",
            noon + dt.timedelta(minutes=2),
            "Signup",
            1,
            pathname="/pricing",
            referrer_source="Google",
            channel="Organic Search",
            country_code="BE",
            browser="Chrome",
            os="Windows",
            device="Desktop",
        ),
        Event(
            "example.com",
            noon,
            "pageview",
            2,
            pathname="/",
            referrer_source="Google",
            channel="Organic Search",
            country_code="FR",
            browser="Firefox",
            os="Linux",
            device="Desktop",
        ),
        Event(
            "example.com",
            noon,
            "pageview",
            3,
            pathname="/blog",
            referrer_source="Google",
            channel="Organic Search",
            country_code="FR",
            browser="Safari",
            os="iOS",
            device="Mobile",
        ),
        Event(
            "example.com",
            noon,
            "pageview",
            4,
            pathname="/",
            channel="Direct",
            country_code="DE",
            browser="Chrome",
            os="Android",
            device="Mobile",
        ),
        Event(
            "example.com",
            noon,
            "pageview",
            5,
            pathname="/",
            referrer_source="Newsletter",
            utm_source="newsletter",
            utm_campaign="spring",
            channel="Email",
            country_code="BE",
            browser="Safari",
            os="Mac",
            device="Desktop",
        ),
        Event("shop.example.org", noon, "pageview", 9, pathname="/cart", country_code="NL"),
    ]
    insert_events(store, events, Sessionizer(dt.timedelta(minutes=30)))


@pytest.fixture
def dashboard(store: Store, tmp_path: Path) -> Iterator[Dashboard]:
    config = parse(WEB_CONFIG, env={})
    config = replace(config, server=replace(config.server, data_dir=str(tmp_path / "data")))
    app = Starlette(routes=routes(config, AsyncStore(store), clock=lambda: NOW))
    add_user(store, "admin@example.com", "admin", PASSWORD)
    add_user(store, "viewer@example.com", "viewer", PASSWORD)
    add_user(store, "privacy@example.com", "privacy", PASSWORD)
    with serving(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield Dashboard(client, store, config)


@contextlib.contextmanager
def serving(app: Starlette) -> Iterator[str]:
    """Serve `app` over real HTTP on a free port, in a thread of this process (it shares the
    test's embedded store, which admits one process)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # As `firstparty serve`: uvicorn does not rewrite the scheme or client from proxy headers.
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="off", proxy_headers=False)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
