"""End to end: real beacons through a running server, then `firstparty audit` as an operator
runs it (through the admin socket), clean first, then with a planted raw IP."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from store import connect
from tests.conftest import SITE_CONFIG, start_server

UAS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
]
PAGES = [
    "https://example.com/",
    "https://example.com/pricing?utm_source=newsletter&utm_campaign=spring",
    "https://example.com/account/jane.doe@example.org/orders/123456?session=abcdef",
    "https://example.com/blog/2024/launch?gclid=Cj0KCQiA",
]


def test_audit_of_a_live_server_with_real_beacons(tmp_path: Path) -> None:
    config = SITE_CONFIG + '[server]\ntrusted_proxies = ["127.0.0.1"]\n'
    server = start_server(tmp_path / "srv", config)
    try:
        sent = 0
        for i in range(12):
            response = httpx.post(
                server.url + "/api/event",
                headers={
                    "content-type": "text/plain",
                    "user-agent": UAS[i % len(UAS)],
                    "x-forwarded-for": f"198.51.100.{20 + i % 5}",
                },
                content=json.dumps(
                    {
                        "n": "pageview",
                        "u": PAGES[i % len(PAGES)],
                        "d": "example.com",
                        "r": "https://news.ycombinator.com/item?id=4242",
                    }
                ),
            )
            assert response.status_code == 202, response.text
            sent += "x-dropped" not in response.headers
        assert sent >= 8
        store = connect(server.env["FIRSTPARTY_STORE"])
        try:
            deadline = time.monotonic() + 30
            while store.query("SELECT count() FROM events").scalar() < sent:
                assert time.monotonic() < deadline, "events were not written"
                time.sleep(0.2)
        finally:
            store.close()

        html = tmp_path / "audit.html"
        run = server.cli("audit", "--json", "--log", str(server.log), "--html", str(html))
        report = json.loads(run.stdout)
        assert run.returncode == 0, json.dumps(
            {c["id"]: c["findings"] for c in report["checks"]}, indent=1
        )
        assert report["failed"] == []
        inventory = next(c for c in report["checks"] if c["id"] == "inventory")
        events = next(t for t in inventory["evidence"]["tables"] if t["table"] == "events")
        assert events["rows"] == sent and events["ttl_in_force"] == "30 days"
        assert "198.51.100" not in run.stdout
        assert "<h1>Privacy audit</h1>" in html.read_text()

        store = connect(server.env["FIRSTPARTY_STORE"])
        try:
            store.command(
                "INSERT INTO events (site_id, timestamp, name, utm_campaign) VALUES "
                "('example.com', now64(3), 'pageview', 'from 198.51.100.77')"
            )
        finally:
            store.close()
        run = server.cli("audit", "--log", str(server.log))
        assert run.returncode == 1
        assert "raw IP address in events.utm_campaign" in run.stdout
        assert "198.51.x.x" in run.stdout and "198.51.100.77" not in run.stdout
        assert "Since the previous audit" in run.stdout
    finally:
        server.stop()
