"""schema.sql is applied idempotently, versioned, and matches the Python types that write it."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from firstparty.config import parse
from firstparty.server import schema_values
from ingest.batch import ARROW_SCHEMA
from ingest.event import COLUMNS, Event
from ingest.sessions import Sessionizer
from ingest.writer import insert_events
from store import schema as schema_mod
from store.base import Store


def tables(store: Store) -> set[str]:
    return set(
        store.query("SELECT name FROM system.tables WHERE database = currentDatabase()").column(
            "name"
        )
    )


def test_applying_twice_changes_nothing(store: Store) -> None:
    before = tables(store)
    assert schema_mod.apply(store, schema_values(parse("", env={}))) == schema_mod.SCHEMA_VERSION
    assert tables(store) == before
    assert store.query("SELECT count() FROM schema_version").scalar() == 1
    assert {"events", "sessions", "salts", "schema_version"} <= before


def test_migrations_run_in_order_on_an_older_store(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    version = schema_mod.SCHEMA_VERSION
    store.command(
        "CREATE TABLE IF NOT EXISTS migration_probe (step UInt32) ENGINE = MergeTree ORDER BY step"
    )
    monkeypatch.setattr(schema_mod, "SCHEMA_VERSION", version + 2)
    monkeypatch.setattr(
        schema_mod,
        "MIGRATIONS",
        {
            version + 1: ["INSERT INTO migration_probe VALUES (1)"],
            version + 2: ["INSERT INTO migration_probe VALUES (2)"],
        },
    )
    assert schema_mod.apply(store, schema_values(parse("", env={}))) == version
    assert store.query(
        "SELECT groupArray(step) FROM (SELECT step FROM migration_probe ORDER BY step)"
    ).scalar() == [1, 2]
    assert schema_mod.current_version(store) == version + 2


def test_a_newer_store_is_refused_with_a_clear_message(store: Store) -> None:
    store.command("INSERT INTO schema_version (version) VALUES (999)")
    with pytest.raises(RuntimeError, match="newer than this firstparty"):
        schema_mod.apply(store, schema_values(parse("", env={})))


def test_retention_placeholders_follow_the_config(store: Store) -> None:
    config = parse("[privacy]\nraw_retention_days = 7\n", env={})
    ddl = "\n".join(schema_mod.statements(schema_values(config)))
    assert "INTERVAL 7 DAY" in ddl
    assert "{{" not in ddl


def test_the_event_type_mirrors_the_live_events_table(store: Store) -> None:
    # what an insert carries: the engine computes MATERIALIZED columns (`day`) itself
    live = store.query(
        "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = 'events' "
        "AND default_kind != 'MATERIALIZED' ORDER BY position"
    ).column("name")
    assert list(COLUMNS) == live
    assert [f.name for f in ARROW_SCHEMA] == live
    assert [f.name for f in dataclasses.fields(Event)] == live


def test_version_3_gives_events_a_day_column_and_a_dictionary_coded_pathname(
    store: Store,
) -> None:
    # A store as version 2 left it: events without `day`, pathname a plain String.
    store.command("ALTER TABLE events DROP COLUMN day", settings={"mutations_sync": 2})
    store.command(
        "ALTER TABLE events MODIFY COLUMN pathname String", settings={"mutations_sync": 2}
    )
    store.command("TRUNCATE TABLE schema_version")
    store.command("INSERT INTO schema_version (version) VALUES (2)")
    day = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    when = dt.datetime(day.year, day.month, day.day, 23, 59, 59, 999000, tzinfo=dt.UTC)
    insert_events(store, [_event(1, when, "/before")], Sessionizer(), token="v2")

    assert schema_mod.apply(store, schema_values(parse("", env={}))) == 2
    assert schema_mod.current_version(store) == 3
    types = dict(
        store.query(
            "SELECT name, type FROM system.columns WHERE database = currentDatabase() "
            "AND table = 'events' AND name IN ('day', 'pathname')"
        ).tuples()
    )
    assert types == {"day": "Date", "pathname": "LowCardinality(String)"}
    # old rows read back whole, with their day; new rows (and their sessions) still insert
    insert_events(store, [_event(2, when + dt.timedelta(seconds=1), "/after")], Sessionizer())
    rows = store.query("SELECT pathname, day FROM events ORDER BY timestamp").tuples()
    assert rows == [("/before", day), ("/after", day + dt.timedelta(days=1))]
    pages = store.query(
        "SELECT argMinMerge(entry_page) AS p FROM sessions GROUP BY session_id ORDER BY p"
    ).column("p")
    assert sorted(pages) == ["/after", "/before"]


def _event(visitor: int, when: dt.datetime, path: str) -> Event:
    return Event(
        site_id="example.com",
        timestamp=when,
        name="pageview",
        visitor_id=visitor,
        hostname="example.com",
        pathname=path,
    )
