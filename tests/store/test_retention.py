"""Retention: TTLs follow the config when it changes, and forcing them drops old rows."""

from __future__ import annotations

import datetime as dt

from ingest.batch import to_arrow
from ingest.event import Event
from store import retention
from store import schema as schema_mod
from store.base import Store

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def _events(ages_days: list[int]) -> list[Event]:
    return [
        Event(
            site_id="example.com",
            timestamp=NOW - dt.timedelta(days=age),
            name="pageview",
            visitor_id=1000 + i,
            session_id=5000 + i,
            pathname=f"/age-{age}",
        )
        for i, age in enumerate(ages_days)
    ]


def _values(raw: int = 30, months: int = 25) -> dict[str, int]:
    return {"raw_retention_days": raw, "aggregate_retention_months": months}


def test_schema_declares_a_config_bound_ttl_for_raw_tables() -> None:
    found = retention.policies()
    assert found["events"].setting == "raw_retention_days"
    assert found["events"].unit == "DAY"
    assert found["sessions"].setting == "raw_retention_days"
    for policy in found.values():
        assert policy.setting in ("raw_retention_days", "aggregate_retention_months")


def test_live_ttl_follows_a_config_change(store: Store) -> None:
    before = retention.live(store)
    assert (before["events"].unit, before["events"].amount) == ("DAY", 30)
    assert (before["sessions"].unit, before["sessions"].amount) == ("DAY", 30)

    said: list[str] = []
    schema_mod.apply(store, _values(raw=7, months=13), progress=said.append)
    after = retention.live(store)
    assert (after["events"].unit, after["events"].amount) == ("DAY", 7)
    assert (after["sessions"].unit, after["sessions"].amount) == ("DAY", 7)
    assert any("events: retention 30 days -> 7 days" in s for s in said), said
    for table, policy in retention.policies().items():
        if policy.setting == "aggregate_retention_months" and table in after:
            assert (after[table].unit, after[table].amount) == ("MONTH", 13)

    # Applying the same config again changes nothing.
    assert retention.sync(store, _values(raw=7, months=13)) == []


def test_forced_ttl_drops_raw_events_and_sessions_past_the_window(store: Store) -> None:
    store.insert("events", to_arrow(_events([1, 5, 20, 40, 400])))
    retention.force(store, "events")
    retention.force(store, "sessions")
    kept = sorted(store.query("SELECT pathname FROM events").column("pathname"))
    assert kept == ["/age-1", "/age-20", "/age-5"]
    assert store.query("SELECT count() FROM sessions").scalar() == 3

    # Shorten the retention in the config: the migrated TTL removes what is now too old.
    schema_mod.apply(store, _values(raw=3))
    retention.force(store, "events")
    retention.force(store, "sessions")
    assert store.query("SELECT pathname FROM events").column("pathname") == ["/age-1"]
    assert store.query("SELECT count() FROM sessions").scalar() == 1


ROLLUP_SCHEMA = """
CREATE TABLE IF NOT EXISTS test_rollup (
    site_id LowCardinality(String),
    day Date,
    pageviews UInt64
) ENGINE = SummingMergeTree ORDER BY (site_id, day)
TTL day + INTERVAL {{aggregate_retention_months}} MONTH;
"""


def test_aggregate_retention_in_months_follows_the_config(store: Store) -> None:
    for sql in schema_mod.statements(_values(), ROLLUP_SCHEMA):
        store.command(sql.rstrip(";"))
    assert retention.live(store)["test_rollup"].describe() == "25 months"
    today = NOW.date()
    days = [today - dt.timedelta(days=d) for d in (10, 200, 27 * 31)]
    store.command(
        "INSERT INTO test_rollup SELECT 'example.com', arrayJoin({days:Array(Date)}), 1",
        {"days": days},
    )
    retention.force(store, "test_rollup")
    assert store.query("SELECT count() FROM test_rollup").scalar() == 2

    changed = retention.sync(store, _values(months=6), ROLLUP_SCHEMA)
    assert changed == ["test_rollup: retention 25 months -> 6 months"]
    retention.force(store, "test_rollup")
    assert store.query("SELECT day FROM test_rollup").column("day") == [days[0]]


def test_cluster_local_tables_follow_the_config_too(store: Store) -> None:
    # On a cluster, store/cluster.py puts the rows of `test_rollup` in `test_rollup_local`.
    local = ROLLUP_SCHEMA.replace("test_rollup", "test_rollup_local")
    for sql in schema_mod.statements(_values(), local):
        store.command(sql.rstrip(";"))
    changed = retention.sync(store, _values(months=3), ROLLUP_SCHEMA)
    assert changed == ["test_rollup_local: retention 25 months -> 3 months"]
    assert retention.live(store)["test_rollup_local"].describe() == "3 months"
