"""Expired salts are destroyed on schedule by the server itself, even with no traffic at all."""

from __future__ import annotations

import datetime as dt
import secrets
import time
from pathlib import Path

from firstparty.config import parse
from firstparty.server import schema_values
from store import connect, open_owner
from store import schema as schema_mod
from tests.conftest import SITE_CONFIG, start_server


def test_a_quiet_server_destroys_an_expired_salt(tmp_path: Path) -> None:
    root = tmp_path / "srv"
    url = f"chdb://{root / 'data' / 'clickhouse'}"
    old_day = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=3)
    planted = open_owner(url)
    schema_mod.apply(planted, schema_values(parse(SITE_CONFIG, env={})))
    planted.command(
        "INSERT INTO salts (day, salt) VALUES ({d:Date}, {s:String})",
        {"d": old_day, "s": secrets.token_bytes(16).hex()},
    )
    planted.close()

    server = start_server(root)
    try:
        store = connect(server.env["FIRSTPARTY_STORE"])
        deadline = time.monotonic() + 30
        while store.query(
            "SELECT count() FROM salts WHERE day = {d:Date}", {"d": old_day}
        ).scalar():
            assert time.monotonic() < deadline, "the expired salt is still in the store"
            time.sleep(0.2)
        logged = store.query(
            "SELECT count() FROM salt_log WHERE period = {d:Date} AND action = 'destroyed'",
            {"d": old_day},
        ).scalar()
        assert logged >= 1
        store.close()
    finally:
        server.stop()
