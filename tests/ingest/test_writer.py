"""The writer against the real engine: batching, exactly-once replays, faults, settings check."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from pathlib import Path
from typing import Any, cast

import pyarrow as pa
import pytest

from ingest.batch import to_arrow
from ingest.event import COLUMNS, Event
from ingest.sessions import LOOKUP_SESSIONS_SQL, Sessionizer
from ingest.spool import (
    HEADER,
    QUARANTINE,
    SEALED,
    SpoolWriter,
    decode,
    encode,
    sealed_segments,
)
from ingest.writer import (
    FAULT_FILE,
    DedupSettingsMissing,
    Writer,
    batch_token,
    check_dedup_settings,
    decode_batch,
    insert_events,
)
from store.base import Store, StoreUnavailable

# Recent: events older than the retention TTL would be dropped on insert.
T0 = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)


def event(i: int, visitor: int | None = None) -> Event:
    return Event(
        site_id="example.com",
        timestamp=T0 + dt.timedelta(seconds=i),
        name="pageview",
        visitor_id=visitor if visitor is not None else 5000 + i,
        pathname=f"/p/{i}",
    )


def spool_events(spool_dir: Path, start: int, count: int, worker: str = "w0") -> None:
    spool = SpoolWriter(spool_dir, worker)
    for i in range(start, start + count):
        spool.append([encode(event(i))])
    spool.close()


def counts(store: Store) -> tuple[int, int, int]:
    events = int(store.query("SELECT count() FROM events").scalar())
    distinct = int(store.query("SELECT uniqExact(pathname) FROM events").scalar())
    session_events = int(store.query("SELECT sum(events) FROM sessions").scalar() or 0)
    return events, distinct, session_events


def make_writer(store: Store, spool_dir: Path, **kwargs: object) -> Writer:
    return Writer(
        store,
        spool_dir,
        collector_id="test",
        fault_file=spool_dir.parent / FAULT_FILE,
        clock=lambda: T0,
        **kwargs,  # type: ignore[arg-type]
    )


def test_segments_are_combined_into_large_batches(store: Store, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    for w in range(3):
        spool_events(spool_dir, w * 100, 100, worker=f"w{w}")
    writer = make_writer(store, spool_dir, max_rows=250)
    assert writer.drain_once() == 300
    assert writer.stats.batch_rows == [200, 100]  # whole segments, at most max_rows each
    assert counts(store) == (300, 300, 300)
    assert not list(spool_dir.glob("*"))


def test_a_batch_replayed_after_a_crash_is_stored_once_also_in_views(
    store: Store, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    spool_events(spool_dir, 0, 50)
    spool_events(spool_dir, 50, 50, worker="w1")
    saved = tmp_path / "saved"
    shutil.copytree(spool_dir, saved)
    writer = make_writer(store, spool_dir)
    assert writer.drain_once() == 100
    assert counts(store) == (100, 100, 100)

    # The state a kill -9 leaves between the insert and the deletions: manifest + segments.
    for path in saved.glob(f"*{SEALED}"):
        shutil.copy(path, spool_dir / path.name)
    names = sorted(p.name for p in sealed_segments(spool_dir))
    manifest = {"segments": names, "token": batch_token("test", names)}
    (spool_dir / "batch-00000000000000000001-000001.json").write_text(json.dumps(manifest))
    restarted = make_writer(store, spool_dir)
    restarted.drain_once()
    assert counts(store) == (100, 100, 100)
    assert not list(spool_dir.glob("*"))


def test_a_manifest_written_before_a_crash_is_inserted_on_replay(
    store: Store, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    spool_events(spool_dir, 0, 30)
    names = sorted(p.name for p in sealed_segments(spool_dir))
    manifest = {"segments": names, "token": batch_token("test", names)}
    (spool_dir / "batch-00000000000000000001-000001.json").write_text(json.dumps(manifest))
    writer = make_writer(store, spool_dir)
    assert writer.drain_once() == 30
    assert counts(store) == (30, 30, 30)


def test_a_manifest_with_segments_already_deleted_is_finished_without_insert(
    store: Store, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    spool_events(spool_dir, 0, 10)
    spool_events(spool_dir, 10, 10, worker="w1")
    names = sorted(p.name for p in sealed_segments(spool_dir))
    manifest = {"segments": names, "token": batch_token("test", names)}
    (spool_dir / "batch-00000000000000000001-000001.json").write_text(json.dumps(manifest))
    (spool_dir / names[0]).unlink()  # the crash came during the deletions
    writer = make_writer(store, spool_dir)
    assert writer.drain_once() == 0
    assert counts(store) == (0, 0, 0)
    assert not list(spool_dir.glob("*"))


class Recording:
    """The real store, keeping the SQL of the queries it was asked (to see the lookups)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.url = store.url
        self.exclusive = store.exclusive
        self.queries: list[str] = []

    def query(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        self.queries.append(sql)
        return self.store.query(sql, *args, **kwargs)

    def command(self, *args: Any, **kwargs: Any) -> None:
        self.store.command(*args, **kwargs)

    def insert(self, *args: Any, **kwargs: Any) -> None:
        self.store.insert(*args, **kwargs)

    def close(self) -> None:
        pass

    def lookups(self) -> int:
        return sum(1 for q in self.queries if q == LOOKUP_SESSIONS_SQL)


def session_of(store: Store, visitor: int) -> list[int]:
    rows = store.query(
        "SELECT DISTINCT session_id FROM events WHERE visitor_id = {v:UInt64}", {"v": visitor}
    )
    return [int(v) for v in rows.column("session_id")]


def test_a_sole_writer_looks_up_only_sessions_stored_before_it_started(
    store: Store, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    spool_events(spool_dir, 0, 40)  # 40 new visitors
    seen = Recording(store)
    writer = make_writer(cast(Store, seen), spool_dir, sole=True)
    assert writer.drain_once() == 40
    assert seen.lookups() == 0  # nothing stored before: the cache knows every session

    # A restart: the stored visitor 5003 comes back 10 minutes later, the new 9999 too.
    spool = SpoolWriter(spool_dir, "w0")
    spool.append([encode(event(600, visitor=5003)), encode(event(601, visitor=9999))])
    spool.close()
    again = Recording(store)
    assert make_writer(cast(Store, again), spool_dir, sole=True).drain_once() == 2
    assert again.lookups() == 1
    assert len(session_of(store, 5003)) == 1


def test_events_stored_past_a_sole_writer_are_looked_up(store: Store, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    first = event(0, visitor=42)
    first.referrer_source = "Google"
    spool = SpoolWriter(spool_dir, "w0")
    spool.append([encode(first)])
    spool.close()
    writer = make_writer(store, spool_dir, sole=True)
    writer.drain_once()
    # Another collector continues the visit 20 minutes later, through the admin socket.
    other = event(20 * 60, visitor=42)
    insert_events(store, [other], Sessionizer(), token="other")
    writer.foreign_insert("events", to_arrow([other]))
    # 40 minutes after this writer last saw the visitor, 20 after the other collector did.
    spool = SpoolWriter(spool_dir, "w1")
    spool.append([encode(event(40 * 60, visitor=42))])
    spool.close()
    writer.drain_once()
    assert len(session_of(store, 42)) == 1
    sources = store.query("SELECT DISTINCT referrer_source FROM events").column("referrer_source")
    assert sources == ["Google"]


def test_store_down_keeps_the_spool_and_recovery_drains_it(store: Store, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    spool_events(spool_dir, 0, 40)
    fault = tmp_path / FAULT_FILE
    fault.touch()
    writer = make_writer(store, spool_dir)
    with pytest.raises(StoreUnavailable):
        writer.drain_once()
    with pytest.raises(StoreUnavailable):
        writer.drain_once()
    assert counts(store) == (0, 0, 0)
    assert len(list(spool_dir.glob("batch-*.json"))) == 1  # the same batch is retried
    spool_events(spool_dir, 40, 10, worker="w1")
    fault.unlink()
    assert writer.drain_once() == 50
    assert counts(store) == (50, 50, 50)


class LostResponse:
    """The real store, whose `fail_at`-th insert stores its rows and then reports an error
    (a response lost on the way back, as a timeout does)."""

    def __init__(self, store: Store, fail_at: int) -> None:
        self.store = store
        self.fail_at = fail_at
        self.inserts = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def insert(self, table: str, data: Any, dedup_token: str | None = None) -> None:
        self.inserts += 1
        self.store.insert(table, data, dedup_token=dedup_token)
        if self.inserts == self.fail_at:
            raise StoreUnavailable("connection reset after the insert")


def test_an_insert_failing_while_the_next_batch_is_prepared_loses_and_doubles_nothing(
    store: Store, tmp_path: Path
) -> None:
    # The writer prepares batch N+1 (manifest, decode, sessions) while batch N is inserted,
    # and finishes each batch only after its own insert, in order.
    spool_dir = tmp_path / "spool"
    for w in range(4):
        spool_events(spool_dir, w * 50, 50, worker=f"w{w}")
    flaky = LostResponse(store, fail_at=3)
    writer = make_writer(cast(Store, flaky), spool_dir, max_rows=50)
    with pytest.raises(StoreUnavailable):
        writer.drain_once()
    # batches 1 and 2 finished; 3 stored but unfinished; 4 prepared, never inserted
    assert writer.stats.batch_rows == [50, 50]
    assert len(list(spool_dir.glob("batch-*.json"))) == 2
    assert counts(store) == (150, 150, 150)
    restarted = make_writer(store, spool_dir, max_rows=50)
    assert restarted.drain_once() == 100  # batch 3 again (stored once), then 4
    assert counts(store) == (200, 200, 200)
    assert not list(spool_dir.glob("*"))


def test_the_loop_backs_off_while_failing_and_reports_it(store: Store, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    spool_events(spool_dir, 0, 5)
    (tmp_path / FAULT_FILE).touch()
    writer = make_writer(store, spool_dir, max_wait=0.0)
    writer.start(interval=0.01)
    try:
        deadline = time.monotonic() + 10
        while writer.stats.errors < 2:
            assert time.monotonic() < deadline, "the writer did not retry"
            time.sleep(0.01)
        assert writer.state == "failing"
        (tmp_path / FAULT_FILE).unlink()
    finally:
        assert writer.stop(budget=10)
    assert writer.state == "ok"
    assert counts(store) == (5, 5, 5)


def test_corrupt_segments_keep_good_records(store: Store, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    spool_events(spool_dir, 0, 10)
    (path,) = sealed_segments(spool_dir)
    data = bytearray(path.read_bytes())
    data[len(encode(event(0))) + HEADER.size + 3] ^= 0x01  # flip a bit in record 1
    path.write_bytes(bytes(data[:-5]))  # and tear the last record
    writer = make_writer(store, spool_dir)
    assert writer.drain_once() == 8
    stored = set(store.query("SELECT pathname FROM events").column("pathname"))
    assert stored == {f"/p/{i}" for i in (0, 2, 3, 4, 5, 6, 7, 8)}
    assert (spool_dir / QUARANTINE / (path.name + ".bad")).exists()
    assert writer.stats.quarantined_bytes > 0


def test_a_segment_that_cannot_be_read_is_set_aside_and_the_rest_stored(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool_dir = tmp_path / "spool"
    spool_events(spool_dir, 0, 5)
    # Named like the first sealed segment, but reading it fails (as a disk error would).
    unreadable = spool_dir / f"00000000000000000001-w9-000001{SEALED}"
    unreadable.mkdir()
    spool_events(spool_dir, 5, 5, worker="w1")
    writer = make_writer(store, spool_dir)
    assert writer.drain_once() == 10
    assert counts(store) == (10, 10, 10)
    assert not unreadable.exists()
    assert (spool_dir / QUARANTINE / (unreadable.name + ".unreadable")).is_dir()
    assert "cannot be read" in caplog.text and "move it back" in caplog.text
    assert not list(sealed_segments(spool_dir))


def test_flush_waits_for_size_or_age(store: Store, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    spool_events(spool_dir, 0, 10)
    writer = make_writer(store, spool_dir, max_wait=3600.0)
    assert writer.drain_once(force=False) == 0  # young and small: wait for more
    writer.max_wait = 0.0
    assert writer.drain_once(force=False) == 10


def test_dedup_settings_are_checked_on_events_and_view_targets(store: Store) -> None:
    assert {"events", "sessions"} <= set(check_dedup_settings(store))
    store.command(
        "CREATE TABLE IF NOT EXISTS rollup_test (site_id String, n UInt64) "
        "ENGINE = SummingMergeTree ORDER BY site_id"
    )
    store.command(
        "CREATE MATERIALIZED VIEW IF NOT EXISTS rollup_test_mv TO rollup_test AS "
        "SELECT site_id, count() AS n FROM events GROUP BY site_id"
    )
    with pytest.raises(DedupSettingsMissing, match="rollup_test"):
        check_dedup_settings(store)
    store.command("DROP VIEW rollup_test_mv")
    store.command("DROP TABLE rollup_test")


def test_the_columnar_decoder_reads_what_the_spool_wrote() -> None:
    events = [
        Event(
            site_id="example.com",
            timestamp=T0 + dt.timedelta(milliseconds=i * 1500),
            name="Signup" if i % 2 else "pageview",
            visitor_id=(1 << 64) - 1 - i,  # the whole UInt64 range survives
            pathname=f"/caf\u00e9/{i}",
            referrer='https://example.org/"quoted"\n',
            props={"plan": "pro", "\u00e9t\u00e9": "oui"} if i % 2 else {},
            scroll_depth=i,
        )
        for i in range(5)
    ]
    records = [
        encode(e, prev_visitor_id=7 if i == 3 else 0)[HEADER.size :] for i, e in enumerate(events)
    ]
    table, prevs = decode_batch(records)
    assert prevs == [0, 0, 0, 7, 0]
    expected = to_arrow(events)
    assert table.equals(expected), (table.to_pylist()[1], expected.to_pylist()[1])


def test_records_leave_defaults_out_and_full_records_still_decode() -> None:
    # A record names only the columns away from their defaults; a spool written before that
    # (every column named) is still read the same way after an upgrade, by both decoders.
    bare = event(1)
    record = encode(bare)[HEADER.size :]
    assert set(json.loads(record)) == {"site_id", "timestamp", "name", "visitor_id", "pathname"}
    full = {name: getattr(bare, name) for name in COLUMNS if name != "props"}
    full["timestamp"] = int(bare.timestamp.timestamp() * 1000)
    full |= {"props_kv": {"k": [], "v": []}, "_prev": 0}
    old = json.dumps(full).encode()
    table, prevs = decode_batch([old, record])
    assert prevs == [0, 0]
    assert table.equals(to_arrow([bare, bare]))
    assert decode(old) == decode(record) == (bare, 0)


def test_a_record_without_a_required_column_is_not_decoded_as_a_batch() -> None:
    record = json.loads(encode(event(1))[HEADER.size :])
    del record["visitor_id"]
    with pytest.raises(pa.ArrowInvalid, match="visitor_id"):
        decode_batch([json.dumps(record).encode()])


def test_table_and_event_sessionizing_agree() -> None:
    rows = [event(i * 60, visitor=1 + i % 3) for i in range(12)]
    for i, e in enumerate(rows):
        e.referrer_source = f"source-{i}"
    by_events = [Event(**{k: getattr(e, k) for k in COLUMNS}) for e in rows]
    sessionizer = Sessionizer()
    for e in sorted(by_events, key=lambda e: e.timestamp):
        sessionizer.assign(e)
    table = Sessionizer().assign_table(to_arrow(rows), [0] * len(rows))
    assert table.to_pylist() == to_arrow(by_events).to_pylist()
    assert len(set(table.column("session_id").to_pylist())) == 3
