"""Daily salts: random, shared through the store, restart-safe, destroyed on schedule (also
physically), never logged; the rotation log holds times only."""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from ingest.salts import SALT_BYTES, SaltKeeper, lingering_parts
from store.base import Store, StoreUnavailable

DAY = dt.date(2026, 3, 14)
NOON = dt.datetime(2026, 3, 14, 12, 0, tzinfo=dt.UTC)
GRACE = dt.timedelta(minutes=30)


def salts_in_store(store: Store) -> list[tuple[dt.date, str]]:
    return [(r["day"], r["salt"]) for r in store.query("SELECT day, salt FROM salts").dicts()]


def test_salt_is_random_128_bits_and_created_once_per_day(store: Store) -> None:
    keeper = SaltKeeper(store)
    first = keeper.key(NOON)
    assert len(first) == SALT_BYTES == 16
    assert keeper.key(NOON + dt.timedelta(hours=5)) == first
    other_day = keeper.key(NOON + dt.timedelta(days=1))
    assert other_day != first
    assert len(salts_in_store(store)) == 2
    # Not derived from the date: a second store gets different salts for the same day.
    values = {value for _, value in salts_in_store(store)}
    assert all(len(v) == 2 * SALT_BYTES and int(v, 16) >= 0 for v in values)


def test_new_keeper_on_the_same_store_gets_the_same_salt(store: Store) -> None:
    before = SaltKeeper(store).key(NOON)
    assert SaltKeeper(store).key(NOON + dt.timedelta(hours=1)) == before


def test_racing_collectors_settle_on_the_smallest_salt_and_losers_are_deleted(
    store: Store,
) -> None:
    a = SaltKeeper(store)
    salt_a = a.key(NOON)
    # Another collector inserted its own candidate in the same instant (before reading).
    other = secrets.token_bytes(SALT_BYTES)
    store.insert(
        "salts", pa.table({"day": pa.array([DAY], pa.date32()), "salt": pa.array([other.hex()])})
    )
    b = SaltKeeper(store)
    chosen = b.key(NOON)
    assert chosen == min(salt_a, other, key=bytes.hex)
    assert a.key(NOON + dt.timedelta(seconds=11)) == chosen  # a re-checks and agrees
    assert [d for d, _ in salts_in_store(store)] == [DAY]  # the loser is gone
    deadline = time.monotonic() + 20  # ... also from the parts the mutation replaced
    while lingering_parts(store, "salts") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert lingering_parts(store, "salts") == 0


def test_a_creator_rechecks_the_choice_after_a_while(store: Store) -> None:
    a = SaltKeeper(store)
    mine = a.key(NOON)
    # Another collector's smaller salt lands after our read (simulated directly in the store).
    store.insert(
        "salts",
        pa.table({"day": pa.array([DAY], pa.date32()), "salt": pa.array(["00" * SALT_BYTES])}),
    )
    assert a.key(NOON + dt.timedelta(seconds=1)) == mine  # still cached
    assert a.key(NOON + dt.timedelta(seconds=11)) == bytes(SALT_BYTES)  # re-read: the min


def test_previous_salt_only_within_the_session_timeout_after_midnight(store: Store) -> None:
    keeper = SaltKeeper(store, grace=GRACE)
    yesterday = keeper.key(NOON)
    midnight = dt.datetime(2026, 3, 15, tzinfo=dt.UTC)
    assert keeper.previous(midnight + dt.timedelta(minutes=5)) == yesterday
    assert keeper.previous(midnight + dt.timedelta(minutes=31)) is None
    assert keeper.previous(NOON) is None
    # A fresh keeper (another worker) finds it in the store too.
    assert SaltKeeper(store, grace=GRACE).previous(midnight + dt.timedelta(minutes=1)) == yesterday


def test_previous_salt_destroyed_after_grace_and_at_most_two_exist(store: Store) -> None:
    keeper = SaltKeeper(store, grace=GRACE)
    for offset in range(4):
        now = NOON + dt.timedelta(days=offset)
        keeper.key(now)
        keeper.destroy_expired(now)
        assert len(salts_in_store(store)) <= 2
    last_day = (NOON + dt.timedelta(days=3)).date()
    midnight = dt.datetime.combine(last_day + dt.timedelta(days=1), dt.time(), dt.UTC)
    keeper.key(midnight + dt.timedelta(minutes=1))
    # Sessions spanning midnight may still be open: both salts exist.
    assert keeper.destroy_expired(midnight + dt.timedelta(minutes=29)) == []
    assert {d for d, _ in salts_in_store(store)} == {last_day, last_day + dt.timedelta(days=1)}
    assert keeper.destroy_expired(midnight + GRACE) == [last_day]
    assert {d for d, _ in salts_in_store(store)} == {last_day + dt.timedelta(days=1)}
    assert keeper.previous(midnight + GRACE) is None


def test_destroyed_salts_do_not_linger_in_inactive_parts(store: Store) -> None:
    keeper = SaltKeeper(store, grace=GRACE)
    keeper.key(NOON)
    keeper.key(NOON + dt.timedelta(days=1))
    keeper.destroy_expired(NOON + dt.timedelta(days=2))
    deadline = time.monotonic() + 20  # the engine's cleanup thread runs every second
    while lingering_parts(store, "salts") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert lingering_parts(store, "salts") == 0
    assert salts_in_store(store) == []


def test_rotation_log_has_times_only(store: Store) -> None:
    keeper = SaltKeeper(store, grace=GRACE)
    salt = keeper.key(NOON).hex()
    keeper.destroy_expired(NOON + dt.timedelta(days=2))
    rows = store.query("SELECT * FROM salt_log ORDER BY at").dicts()
    assert [(r["kind"], r["period"], r["action"]) for r in rows] == [
        ("visitor_salt", DAY, "created"),
        ("visitor_salt", DAY, "destroyed"),
    ]
    assert rows[0]["at"] == NOON
    assert salt not in repr(rows)
    assert set(rows[0]) == {"kind", "rotation", "period", "action", "at"}


def test_salts_never_logged(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    keeper = SaltKeeper(store, grace=GRACE)
    values = [keeper.key(NOON).hex(), keeper.key(NOON + dt.timedelta(days=1)).hex()]
    keeper.destroy_expired(NOON + dt.timedelta(days=3))
    for value in values:
        assert value not in caplog.text
        assert value.upper() not in caplog.text


def test_salts_command_shows_times_never_values_and_destroys_expired(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse
    import json

    from firstparty.config import parse
    from ingest.salts_command import cmd_salts

    keeper = SaltKeeper(store, grace=GRACE)
    old = keeper.key(dt.datetime.now(dt.UTC) - dt.timedelta(days=3)).hex()
    current = keeper.key(dt.datetime.now(dt.UTC)).hex()
    config = parse(f'store = "{store.url}"\n', env={})
    args = argparse.Namespace(destroy_expired=True, json=True)
    assert cmd_salts(args, config) == 0
    out = capsys.readouterr().out
    report = json.loads(out)
    assert len(report["destroyed_now"]) == 1
    assert [row["kind"] for row in report["existing"]] == ["visitor_salt"]
    assert old not in out and current not in out


def test_migration_to_partitioned_salts_keeps_the_current_salt(engine_dir: Path) -> None:
    """A store created by schema version 1 (salts without partitions) is migrated in place."""
    from firstparty.config import parse
    from firstparty.server import schema_values
    from store import open_owner
    from store import schema as schema_mod
    from tests.conftest import store_urls

    v1_salts = (
        "CREATE TABLE salts (day Date, salt String, created_at DateTime64(3, 'UTC') "
        "DEFAULT now64(3)) ENGINE = MergeTree ORDER BY day SETTINGS old_parts_lifetime = 1"
    )
    url = store_urls(engine_dir)[0]
    s = open_owner(url)
    try:
        s.command(
            "CREATE TABLE schema_version (version UInt32, applied_at DateTime64(3, 'UTC') "
            "DEFAULT now64(3)) ENGINE = MergeTree ORDER BY version"
        )
        s.command("INSERT INTO schema_version (version) VALUES (1)")
        s.command(v1_salts)
        value = secrets.token_bytes(SALT_BYTES).hex()
        s.insert("salts", pa.table({"day": pa.array([DAY], pa.date32()), "salt": [value]}))
        schema_mod.apply(s, schema_values(parse("", env={})))
        assert salts_in_store(s) == [(DAY, value)]
        key = s.query(
            "SELECT partition_key FROM system.tables WHERE database = currentDatabase() "
            "AND name = 'salts'"
        ).scalar()
        assert key == "day"
        tables = s.query(
            "SELECT name FROM system.tables WHERE database = currentDatabase()"
        ).column("name")
        assert "salts_v2" not in tables
        assert SaltKeeper(s).key(NOON).hex() == value
    finally:
        s.command(f"DROP DATABASE IF EXISTS {url.rsplit('=', 1)[-1]}")
        s.close()


class OutageStore:
    """The real store, made unreachable on demand (as when ClickHouse is down)."""

    def __init__(self, store: Store) -> None:
        self.inner = store
        self.url = store.url
        self.down = False
        self.calls = 0

    def _check(self) -> None:
        self.calls += 1
        if self.down:
            raise StoreUnavailable("the store is down (test)")

    def query(self, sql: str, params: Any = None, settings: Any = None) -> Any:
        self._check()
        return self.inner.query(sql, params, settings)

    def command(self, sql: str, params: Any = None, settings: Any = None) -> None:
        self._check()
        self.inner.command(sql, params, settings)

    def insert(self, table: str, data: Any, dedup_token: str | None = None) -> None:
        self._check()
        self.inner.insert(table, data, dedup_token)

    def close(self) -> None:
        self.inner.close()


def test_store_outage_gives_a_provisional_salt_that_becomes_the_days_salt(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    flaky = OutageStore(store)
    keeper = SaltKeeper(flaky, grace=GRACE)  # type: ignore[arg-type]
    flaky.down = True
    with caplog.at_level(logging.WARNING, logger="firstparty.salts"):
        provisional = keeper.key(NOON)
        keeper.maintain(NOON)  # cannot destroy now: retried later, no exception
    assert "provisional" in caplog.text and provisional.hex() not in caplog.text
    assert keeper.key(NOON + dt.timedelta(seconds=30)) == provisional  # still down
    flaky.down = False
    # Back up: the provisional salt is offered to the store and, being the only one, chosen.
    assert keeper.key(NOON + dt.timedelta(seconds=45)) == provisional
    assert salts_in_store(store) == [(DAY, provisional.hex())]
    assert SaltKeeper(store).key(NOON) == provisional  # other collectors agree


def test_store_outage_defers_to_a_salt_another_collector_made(store: Store) -> None:
    existing = SaltKeeper(store).key(NOON)
    flaky = OutageStore(store)
    keeper = SaltKeeper(flaky, grace=GRACE)  # type: ignore[arg-type]
    flaky.down = True
    assert keeper.key(NOON) != existing
    flaky.down = False
    assert keeper.key(NOON + dt.timedelta(seconds=11)) == existing


def test_keeper_says_when_it_answers_without_the_store(store: Store) -> None:
    """The collector runs the pipeline on its event loop only when `in_memory` is true: then
    `maintain`, `key` and `previous` must make no store call at all."""
    counting = OutageStore(store)
    keeper = SaltKeeper(counting, grace=GRACE)  # type: ignore[arg-type]
    midnight = dt.datetime(2026, 3, 15, tzinfo=dt.UTC)
    seconds = dt.timedelta(seconds=1)
    times = [NOON, NOON + 5 * seconds, NOON + 11 * seconds, NOON + 12 * seconds]
    times += [midnight - seconds, midnight, midnight + 5 * seconds, midnight + 20 * seconds]
    times += [midnight + GRACE - seconds, midnight + GRACE, midnight + GRACE + seconds]
    answered_from_memory = 0
    for at in times:
        expected = keeper.in_memory(at, at)
        before = counting.calls
        keeper.maintain(at)
        keeper.key(at)
        keeper.previous(at)
        if expected:
            answered_from_memory += 1
            assert counting.calls == before, f"in_memory at {at} but the store was called"
        assert keeper.in_memory(at, at), f"still not in memory after a pass at {at}"
    # the first use, the recheck 10 s after creating, midnight, the destruction after the grace
    assert 0 < answered_from_memory < len(times)
    # Another worker, started just after midnight, has the day's salt but has not yet looked up
    # yesterday's, which `previous` needs during the grace period.
    fresh = SaltKeeper(store, grace=GRACE)
    fresh.maintain(midnight + seconds)
    fresh.key(midnight + seconds)
    assert not fresh.in_memory(midnight + seconds, midnight + seconds)
    fresh.previous(midnight + seconds)
    assert fresh.in_memory(midnight + seconds, midnight + seconds)
    # A span that crosses midnight needs both days' keys.
    assert not fresh.in_memory(midnight - seconds, midnight + seconds)
