"""Two collectors writing one store agree on visitors and sessions without talking to each other.

Two real `firstparty serve` processes, each with its own data dir, spool and writer, share one
store: the second joins the embedded engine the first one owns (through its admin socket), and
with CLICKHOUSE_URL set both also write to a ClickHouse server directly, as in docker-compose.
The only thing they share is the store: the day's salt is read from it, and a writer that has
no open session for a visitor looks the visitor up in it. No sticky routing: one visitor's
beacons alternate between the two.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from store import connect
from store.base import Store
from tests.conftest import SITE_CONFIG, Server, start_server

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"


def server_store_url() -> str:
    """A fresh database on the ClickHouse server at CLICKHOUSE_URL."""
    server = os.environ["CLICKHOUSE_URL"]
    base = server.rstrip("/").rsplit("/", 1)[0] if server.count("/") > 2 else server
    return f"{base}/t_{uuid.uuid4().hex[:12]}"


@pytest.fixture(
    scope="module", params=["embedded", pytest.param("server", marks=pytest.mark.server)]
)
def collectors(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Server, Store]]:
    """Two collectors on one store; both tests share the pair, each with its own site.

    embedded: the second `serve` joins the engine the first owns. server: both write to a
    ClickHouse server directly, the topology of docker-compose (run when CLICKHOUSE_URL is set).
    """
    if request.param == "server" and not os.environ.get("CLICKHOUSE_URL"):
        pytest.skip("set CLICKHOUSE_URL=clickhouse://user:pass@host:8123 to test a server")
    tmp_path = tmp_path_factory.mktemp("collectors")
    if request.param == "server":
        url = server_store_url()
        first = start_server(tmp_path / "a", workers=1, extra_env={"FIRSTPARTY_STORE": url})
    else:
        first = start_server(tmp_path / "a", workers=1)
        url = f"chdb://{first.root / 'data' / 'clickhouse'}"
    second = start_server(
        tmp_path / "b", SITE_CONFIG, workers=1, extra_env={"FIRSTPARTY_STORE": url}
    )
    store = connect(url)  # the embedded engine through its owner's admin socket, or the server
    try:
        if request.param == "embedded":
            assert "joined as an extra collector" in second.output()
        yield first, second, store
    finally:
        second.stop()
        first.stop()
        if request.param == "server":
            store.command(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[-1]}")
        store.close()


def beacon(server: Server, domain: str, path: str, ua: str = CHROME) -> None:
    body = {"n": "pageview", "u": f"https://{domain}{path}", "d": domain}
    response = httpx.post(
        server.url + "/api/event",
        content=json.dumps(body).encode(),
        headers={"content-type": "text/plain", "user-agent": ua},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    assert "x-dropped" not in response.headers, response.headers["x-dropped"]


def wait_for_rows(store: Store, site: str, count: int) -> None:
    """Until `count` events are stored and folded into `sessions` (an insert's materialized
    view parts become visible a moment after its events part)."""
    deadline = time.monotonic() + 20
    while True:
        (row,) = store.query(
            "SELECT (SELECT count() FROM events WHERE site_id = {s:String}) AS stored, "
            "(SELECT sum(events) FROM sessions WHERE site_id = {s:String}) AS folded",
            {"s": site},
        ).dicts()
        stored, folded = row["stored"], row["folded"]
        if stored == count and folded == count:
            return
        assert stored is not None and int(stored) <= count, f"{stored} rows, expected {count}"
        assert time.monotonic() < deadline, f"{stored} of {count} events, {folded} in sessions"
        time.sleep(0.05)


def stats(server: Server, key: str, site: str) -> list[int]:
    response = httpx.post(
        server.url + "/api/v2/query",
        headers={"authorization": f"Bearer {key}"},
        json={"site_id": site, "metrics": ["visitors", "visits", "pageviews"], "date_range": "day"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return list(response.json()["results"][0]["metrics"])


def test_one_visitor_alternating_between_collectors_is_one_visitor_in_one_session(
    collectors: tuple[Server, Server, Store],
) -> None:
    first, second, store = collectors
    pages = 6
    for n in range(pages):
        # Each beacon is stored before the next is sent (as a person reading pages would):
        # the other collector's writer then finds the session in the store.
        beacon(first if n % 2 == 0 else second, "example.com", f"/page/{'abcdef'[n]}")
        wait_for_rows(store, "example.com", n + 1)

    row = store.query(
        "SELECT uniqExact(visitor_id) AS visitors, uniqExact(session_id) AS sessions, "
        "count() AS pageviews FROM events WHERE site_id = 'example.com'"
    ).dicts()[0]
    assert (row["visitors"], row["sessions"], row["pageviews"]) == (1, 1, pages)
    folded = store.query(
        "SELECT session_id, sum(pageviews) AS pageviews, "
        "argMinMerge(entry_page) AS entry, argMaxMerge(exit_page) AS exit "
        "FROM sessions WHERE site_id = 'example.com' GROUP BY session_id"
    ).dicts()
    assert [(r["pageviews"], r["entry"], r["exit"]) for r in folded] == [
        (pages, "/page/a", "/page/f")
    ]
    # The dashboards of both collectors report the same exact counts.
    created = first.cli("keys", "create", "--site", "example.com")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert stats(first, key, "example.com") == [1, 1, pages]
    assert stats(second, key, "example.com") == [1, 1, pages]


def test_both_collectors_hash_the_same_visitor_the_same_way(
    collectors: tuple[Server, Server, Store],
) -> None:
    """Each collector computes the visitor hash itself, from the day's salt in the store.

    A writer continues a session only for the same hash (the lookup is keyed by it), so equal
    ids below are the two collectors' own, equal computations for the same IP and user agent
    on the same day; another user agent gives another hash.
    """
    first, second, store = collectors
    beacon(first, "shop.example.org", "/cart", FIREFOX)
    beacon(second, "shop.example.org", "/checkout", FIREFOX)
    beacon(second, "shop.example.org", "/cart", CHROME)
    wait_for_rows(store, "shop.example.org", 3)
    by_ua = store.query(
        "SELECT browser, groupUniqArray(visitor_id) AS ids FROM events "
        "WHERE site_id = 'shop.example.org' GROUP BY browser ORDER BY browser"
    ).dicts()
    assert [(r["browser"], len(r["ids"])) for r in by_ua] == [("Chrome", 1), ("Firefox", 1)]
    assert by_ua[0]["ids"] != by_ua[1]["ids"]
    # One salt per day exists, whichever collector created it.
    salts = store.query("SELECT day, uniqExact(salt) AS n FROM salts GROUP BY day").dicts()
    assert salts and all(r["n"] == 1 for r in salts)
