"""End to end: an app sends beacons with a device ID; the DPO exports and deletes its data with
`firstparty dsr` while the server runs (through the admin socket)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from store import connect
from tests.conftest import start_server

APP_UA = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) " + (
    "Chrome/131.0.0.0 Mobile Safari/537.36"
)


def _send(url: str, device: str | None, path: str) -> bool:
    body: dict[str, str] = {"n": "pageview", "u": f"https://example.com{path}", "d": "example.com"}
    if device:
        body["did"] = device
    response = httpx.post(
        url + "/api/event",
        headers={"content-type": "application/json", "user-agent": APP_UA},
        content=json.dumps(body),
    )
    assert response.status_code == 202, response.text
    return "x-dropped" not in response.headers


@pytest.mark.slow  # the same DSR code is covered in-process by test_dsr.py
def test_dsr_export_and_delete_against_a_running_server(tmp_path: Path) -> None:
    server = start_server(tmp_path / "srv")
    try:
        stored = sum(_send(server.url, "device-A-1234", p) for p in ("/a", "/b", "/c"))
        stored += _send(server.url, "device-B-9999", "/other")
        stored += _send(server.url, None, "/web")
        assert stored == 5
        store = connect(server.env["FIRSTPARTY_STORE"])
        try:
            deadline = time.monotonic() + 30
            while store.query("SELECT count() FROM events").scalar() < stored:
                assert time.monotonic() < deadline, "events were not written"
                time.sleep(0.2)
        finally:
            store.close()

        who = ["--site", "example.com", "--device-id", "device-A-1234"]
        run = server.cli("dsr", "export", *who)
        assert run.returncode == 0, run.stderr
        exported = json.loads(run.stdout)
        assert sorted(r["pathname"] for r in exported["tables"]["events"]) == ["/a", "/b", "/c"]
        assert exported["tables"]["sessions"]

        run = server.cli("dsr", "delete", *who)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "events: 3 row(s) found, 0 remaining after deletion" in run.stdout
        assert "rollup_hourly" in run.stdout

        store = connect(server.env["FIRSTPARTY_STORE"])
        try:
            paths = sorted(store.query("SELECT pathname FROM events").column("pathname"))
            assert paths == ["/other", "/web"]
            pageviews = store.query(
                "SELECT sum(pageviews) FROM rollup_hourly WHERE dimension = ''"
            ).scalar()
            assert pageviews == 2
        finally:
            store.close()
        run = server.cli("dsr", "explain")
        assert run.returncode == 0 and "cannot be linked" not in run.stderr
        assert "Why it cannot be linked to you" in run.stdout
    finally:
        server.stop()
