"""The thinnest user journey: a beacon over real HTTP is counted by the Stats API."""

from __future__ import annotations

import time

import httpx

from tests.conftest import Server

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)


def visitors(server: Server, key: str) -> list[int]:
    response = httpx.post(
        server.url + "/api/v2/query",
        headers={"authorization": f"Bearer {key}"},
        json={"site_id": "example.com", "metrics": ["visitors", "pageviews"], "date_range": "day"},
    )
    assert response.status_code == 200, response.text
    return list(response.json()["results"][0]["metrics"])


def test_pageview_is_counted_by_the_stats_api_within_two_seconds(server: Server) -> None:
    created = server.cli("keys", "create", "--site", "example.com")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert visitors(server, key) == [0, 0]

    response = httpx.post(
        server.url + "/api/event",
        headers={"content-type": "text/plain", "user-agent": CHROME},
        content=b'{"n":"pageview","u":"https://example.com/pricing","d":"example.com"}',
    )
    assert response.status_code == 202
    sent = time.monotonic()
    while visitors(server, key) != [1, 1]:
        assert time.monotonic() - sent < 2.0, "the pageview was not counted within 2 seconds"
        time.sleep(0.05)


def test_data_survives_a_restart(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import start_server

    first = start_server(tmp_path / "srv")
    response = httpx.post(
        first.url + "/api/event",
        headers={"user-agent": CHROME},
        json={"n": "pageview", "u": "https://example.com/", "d": "example.com"},
    )
    assert response.status_code == 202
    output = first.stop()
    assert "stopped" in output
    second = start_server(tmp_path / "srv")
    try:
        created = second.cli("keys", "create", "--site", "example.com")
        key = created.stdout.strip().splitlines()[-1]
        assert visitors(second, key) == [1, 1]
    finally:
        second.stop()
