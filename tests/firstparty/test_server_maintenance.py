"""What the server does on its own schedule, with no traffic and no dashboard request."""

from __future__ import annotations

import datetime as dt
import secrets
import time
from pathlib import Path

from firstparty.config import parse
from firstparty.server import schema_values
from ingest.event import Event
from ingest.sessions import Sessionizer
from ingest.writer import insert_events
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


def test_closed_days_are_folded_into_the_visit_rollups_in_the_background(tmp_path: Path) -> None:
    root = tmp_path / "srv"
    url = f"chdb://{root / 'data' / 'clickhouse'}"
    day = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=3)
    noon = dt.datetime(day.year, day.month, day.day, 12, tzinfo=dt.UTC)
    planted = open_owner(url)
    schema_mod.apply(planted, schema_values(parse(SITE_CONFIG, env={})))
    events = [
        Event(
            site_id="example.com",
            timestamp=noon + dt.timedelta(minutes=i),
            name="pageview",
            visitor_id=1000 + i % 3,
            hostname="example.com",
            pathname=f"/p{i}",
        )
        for i in range(6)
    ]
    insert_events(planted, events, Sessionizer())
    planted.close()

    server = start_server(root)
    try:
        store = connect(server.env["FIRSTPARTY_STORE"])
        deadline = time.monotonic() + 30
        query = (
            "SELECT count() FROM visits_daily_done FINAL "
            "WHERE site_id = 'example.com' AND day = {d:Date}"
        )
        while not store.query(query, {"d": day}).scalar():
            assert time.monotonic() < deadline, "the closed day was not folded"
            time.sleep(0.2)
        visits = store.query(
            "SELECT sum(visits) FROM visits_daily FINAL WHERE site_id = 'example.com' "
            "AND day = {d:Date} AND dimension = (SELECT any(dimension) FROM visits_daily "
            "WHERE day = {d:Date})",
            {"d": day},
        ).scalar()
        assert visits == 3
        store.close()
    finally:
        server.stop()
