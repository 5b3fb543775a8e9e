"""The single writer: drains sealed spool segments into ClickHouse in large columnar batches.

Exactly-once in effect: a batch is a list of sealed segments. Before inserting it, the writer
persists a manifest (`batch-*.json`: the segment names and the dedup token derived from them),
and it deletes the segments and then the manifest only after the insert succeeded. After a
crash the manifest is replayed first: the same segments give the same rows and the same token,
so ClickHouse (with `non_replicated_deduplication_window` on the events table and on every
materialized view's target, checked by `check_dedup_settings`) stores the batch once. If some of
a manifest's segments are already gone, the insert had succeeded: the rest are deleted.

Store down or failing: the batch stays on disk, the writer retries with capped exponential
backoff, and the spool keeps growing up to its quota. Memory is bounded by `max_rows`: at most
two batches are held, one being inserted while the next is prepared.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import hashlib
import io
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from ingest.batch import ARROW_SCHEMA, to_arrow
from ingest.event import DEFAULTS, REQUIRED, Event
from ingest.sessions import Sessionizer, to_ms
from ingest.spool import (
    QUARANTINE,
    decode,
    fsync_dir,
    quarantined,
    repair_segment,
    seal_orphans,
    sealed_segments,
    segment_created,
    usage,
    write_atomic,
)
from store.base import Store, StoreError, StoreUnavailable

log = logging.getLogger("firstparty.writer")

MANIFEST_GLOB = "batch-*.json"
EXPIRE_EVERY = 10.0  # seconds between passes that forget idle sessions
# A file that makes every insert fail as if the store were down. For tests of outages with the
# embedded engine (which cannot be stopped separately), and for an operator who must hold
# writes back during store maintenance: events keep being accepted into the spool meanwhile.
FAULT_FILE = "fault-store-down"


class DedupSettingsMissing(RuntimeError):
    """A table the writer inserts into would not honour dedup tokens: replays could double."""


def insert_events(
    store: Store,
    events: list[Event],
    sessions: Sessionizer,
    token: str | None = None,
    prev_ids: list[int] | None = None,
) -> None:
    """Assign sessions (in time order) and insert one columnar batch with a dedup token."""
    order = sorted(range(len(events)), key=lambda i: events[i].timestamp)
    prevs = prev_ids or [0] * len(events)
    sessions.prefetch(store, events, prevs)
    for i in order:
        sessions.assign(events[i], prevs[i])
    if events:
        store.insert("events", to_arrow([events[i] for i in order]), dedup_token=token)


_STRINGS = pa.list_(pa.string())
# The spool's JSON records, as the columnar reader should type them.
SPOOL_SCHEMA = pa.schema(
    [
        pa.field("timestamp", pa.int64()) if f.name == "timestamp" else f
        for f in ARROW_SCHEMA
        if f.name != "props"
    ]
    + [
        pa.field(
            "props_kv", pa.struct([("k", pa.list_(pa.string())), ("v", pa.list_(pa.string()))])
        ),
        pa.field("_prev", pa.uint64()),
    ]
)


def decode_batch(records: list[bytes]) -> tuple[pa.Table, list[int]]:
    """Spool records -> an `events` batch and the previous-salt visitor ids, in C++.

    Raises pyarrow.ArrowInvalid if a record does not fit (the caller falls back to `decode`).
    """
    data = b"\n".join(records)
    raw = pa_json.read_json(
        io.BytesIO(data),
        parse_options=pa_json.ParseOptions(
            explicit_schema=SPOOL_SCHEMA, unexpected_field_behavior="error"
        ),
    )
    if raw.num_rows != len(records):
        raise pa.ArrowInvalid("record count mismatch")
    kv = raw.column("props_kv").combine_chunks()
    # A record without props leaves `props_kv` out: no pairs. `if_else`, not `fill_null`:
    # on list columns fill_null took 0.23 s per 100,000 rows, if_else 5 ms (2026-12-04).
    no_pairs = pa.scalar([], _STRINGS)
    keys, values = (pc.if_else(pc.is_null(c), no_pairs, c) for c in (kv.field("k"), kv.field("v")))
    if keys.null_count or values.null_count or keys.offsets != values.offsets:
        raise pa.ArrowInvalid("props keys and values do not pair up")
    props = pa.MapArray.from_arrays(keys.offsets, keys.values, values.values)
    columns: dict[str, Any] = {}
    for target in ARROW_SCHEMA:
        if target.name == "props":
            columns["props"] = props
        elif target.name == "timestamp":
            columns["timestamp"] = raw.column("timestamp").cast(target.type)
        else:
            column = raw.column(target.name)
            if column.null_count:
                if target.name in REQUIRED:
                    raise pa.ArrowInvalid(f"{target.name} missing in a record")
                # left out of the record at its default (ingest/spool.py)
                column = column.fill_null(pa.scalar(DEFAULTS[target.name], target.type))
            columns[target.name] = column
    prevs = raw.column("_prev").fill_null(0).to_pylist()
    return pa.table(columns, schema=ARROW_SCHEMA), prevs


_TO_TABLE = re.compile(r"\bTO\s+(?:`?(\w+)`?\.)?`?(\w+)`?", re.IGNORECASE)
_WINDOW = re.compile(r"non_replicated_deduplication_window\s*=\s*(\d+)")
# On a cluster `events` is Distributed over `events_local` (store/cluster.py): check that one.
_DISTRIBUTED = re.compile(r"^Distributed\('[^']*',\s*'[^']*',\s*'(\w+)'")


def check_dedup_settings(store: Store) -> list[str]:
    """Fail unless `events` and every materialized view target dedupe repeated tokens.

    Returns the checked table names. A Replicated* engine dedupes by itself.
    """
    rows = store.query(
        "SELECT name, engine, engine_full, create_table_query FROM system.tables "
        "WHERE database = currentDatabase()"
    ).dicts()
    tables = {str(r["name"]): r for r in rows}
    targets = ["events"]
    for row in rows:
        if row["engine"] == "MaterializedView":
            match = _TO_TABLE.search(str(row["create_table_query"]).split(" AS ", 1)[0])
            if match and match.group(2) not in targets:
                targets.append(match.group(2))
    missing = []
    for name in targets:
        found = tables.get(name)
        if found is None:
            missing.append(f"{name} (table not found)")
            continue
        engine_full = str(found["engine_full"])
        local = _DISTRIBUTED.match(engine_full) if found["engine"] == "Distributed" else None
        if local is not None and local.group(1) in tables:
            found = tables[local.group(1)]
            engine_full = str(found["engine_full"])
        if str(found["engine"]).startswith("Replicated"):
            continue
        window = _WINDOW.search(engine_full)
        if window is None or int(window.group(1)) == 0:
            missing.append(name)
    if missing:
        raise DedupSettingsMissing(
            "these tables do not deduplicate repeated inserts, so a batch replayed after a crash "
            f"could be stored twice: {', '.join(missing)}. Add "
            "`SETTINGS non_replicated_deduplication_window = 10000` to them in store/schema.sql "
            "(and a migration for existing stores), or use a Replicated engine."
        )
    return targets


def batch_token(collector: str, segments: list[str]) -> str:
    digest = hashlib.sha256("\n".join(segments).encode()).hexdigest()[:32]
    return f"fp-{collector}-{digest}"


@dataclass
class WriterStats:
    rows: int = 0
    batches: int = 0
    errors: int = 0
    consecutive_errors: int = 0
    quarantined_bytes: int = 0
    last_error: str = ""
    last_error_at: float = 0.0
    last_success_at: float = 0.0
    batch_rows: list[int] = field(default_factory=list)  # since the last `take_observations`
    flush_seconds: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class _InFlight:
    """A batch whose insert is running."""

    future: concurrent.futures.Future[None]
    manifest: Path
    segments: list[Path]
    rows: int
    started: float

    @property
    def names(self) -> frozenset[str]:
        return frozenset(p.name for p in self.segments)


class Writer:
    def __init__(
        self,
        store: Store,
        spool_dir: Path,
        session_timeout: dt.timedelta = dt.timedelta(minutes=30),
        collector_id: str = "local",
        fault_file: Path | None = None,
        max_rows: int = 100_000,
        flush_bytes: int = 16 << 20,
        max_wait: float = 0.5,
        clock: Callable[[], dt.datetime] | None = None,
        sole: bool = False,
    ) -> None:
        """`sole`: no events reach `store` but through this writer or `foreign_insert` (the
        writer of an embedded store's owner), so its session cache needs no store lookups."""
        self.store = store
        self.sole = sole
        self.spool_dir = spool_dir
        self.sessions = Sessionizer(session_timeout)
        self.collector_id = collector_id
        self.fault_file = fault_file
        self.max_rows = max_rows
        self.flush_bytes = flush_bytes
        self.max_wait = max_wait
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.stats = WriterStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one drain at a time (thread and final drain)
        self._seq = 0
        self._inserter = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="insert")
        spool_dir.mkdir(parents=True, exist_ok=True)

    @property
    def state(self) -> str:
        if self.stats.consecutive_errors:
            return "failing"
        return "ok" if self.stats.batches else "idle"

    # -- the session cache ------------------------------------------------------------------

    def _trust_cache(self) -> None:
        """A sole writer's cache knows every session that ends after the newest stored event."""
        if not self.sole or self.sessions.trusting:
            return
        # Answered from the parts' min-max index of the partition key: ~8 ms at 20M events.
        newest = self.store.query("SELECT max(timestamp) FROM events").scalar()
        self.sessions.trust_cache(to_ms(newest) + 1 if isinstance(newest, dt.datetime) else 0)

    def foreign_insert(self, table: str, data: pa.Table) -> None:
        """Events are being stored past this writer (`admin_routes`' `on_insert`): their
        sessions must be looked up from now on, up to the newest of them."""
        if table != "events":
            return
        until = to_ms(self.clock())
        if data.num_rows and "timestamp" in data.column_names:
            newest = pc.max(data.column("timestamp")).as_py()
            if isinstance(newest, dt.datetime):
                until = max(until, to_ms(newest))
        self.sessions.distrust_until(until)

    # -- one batch ---------------------------------------------------------------------------

    def _repair(self, path: Path) -> list[bytes]:
        if not path.exists():
            return []
        result = repair_segment(path)
        self.stats.quarantined_bytes += result.bad_bytes
        return result.records

    def _insert(self, token: str, records: list[bytes]) -> int:
        started = time.monotonic()
        return self._insert_now(token, records, self._assigned(records), started)

    def _insert_now(
        self, token: str, records: list[bytes], table: pa.Table | None, started: float
    ) -> int:
        """Insert an assigned batch in this thread (the slow path when it did not decode)."""
        if table is None:
            return self._insert_slowly(token, records)
        if table.num_rows:
            self.store.insert("events", table, dedup_token=token)
        return self._inserted(table.num_rows, started)

    def _assigned(self, records: list[bytes]) -> pa.Table | None:
        """The batch's rows with their sessions, ready to insert; None when some record does
        not decode as a batch (one from another version: the slow path takes them one by one)."""
        if self.fault_file is not None and self.fault_file.exists():
            raise StoreUnavailable(f"fault injected: {self.fault_file.name} exists")
        try:
            table, prev_ids = decode_batch(records)
        except (pa.ArrowInvalid, ValueError):
            return None
        if table.num_rows == 0:
            return table
        return self.sessions.assign_table(table, prev_ids, self.store)

    def _inserted(self, rows: int, started: float) -> int:
        self.stats.flush_seconds.append(time.monotonic() - started)
        self.stats.batch_rows.append(rows)
        return rows

    def _insert_slowly(self, token: str, records: list[bytes]) -> int:
        events: list[Event] = []
        prevs: list[int] = []
        undecodable = []
        for payload in records:
            try:
                event, prev = decode(payload)
            except (ValueError, TypeError, KeyError):
                undecodable.append(payload)
                continue
            events.append(event)
            prevs.append(prev)
        if undecodable:
            self._quarantine_records(token, undecodable)
        started = time.monotonic()
        insert_events(self.store, events, self.sessions, token, prevs)
        self.stats.flush_seconds.append(time.monotonic() - started)
        self.stats.batch_rows.append(len(events))
        return len(events)

    def _quarantine_records(self, token: str, records: list[bytes]) -> None:
        # Checksums held but the records do not decode (e.g. written by an incompatible
        # version): set them aside rather than retry a batch that can never succeed.
        write_atomic(quarantined(self.spool_dir, f"{token}.undecodable"), b"\n".join(records))
        self.stats.quarantined_bytes += sum(len(r) for r in records)
        log.warning(
            "spool: %d record(s) of batch %s do not decode; moved to %s/",
            len(records),
            token,
            QUARANTINE,
        )

    def _set_aside(self, path: Path, exc: OSError) -> None:
        """A sealed segment that cannot be read (a disk error, not a file) would stop every
        batch after it for good: move it to quarantine and go on with the others. No manifest
        names it yet, so no replay expects it."""
        try:
            path.rename(quarantined(self.spool_dir, path.name + ".unreadable"))
            fsync_dir(self.spool_dir)
        except OSError:
            log.warning("spool: segment %s cannot be read nor moved aside: %s", path.name, exc)
            return
        log.warning(
            "spool: segment %s cannot be read (%s); moved to %s/ so the segments after it "
            "are not held up; move it back once the cause is fixed to have it inserted",
            path.name,
            exc.strerror or type(exc).__name__,
            QUARANTINE,
        )

    def _finish(self, manifest: Path, segments: list[Path], rows: int | None) -> None:
        for path in segments:
            path.unlink(missing_ok=True)
        # The segments must be gone for good before the manifest: a manifest lost while its
        # segments came back would let them be batched again under a new token.
        fsync_dir(self.spool_dir)
        manifest.unlink(missing_ok=True)
        if rows is None:  # a replay that found the batch already stored
            return
        self.stats.rows += rows
        self.stats.batches += 1
        self.stats.consecutive_errors = 0
        self.stats.last_success_at = time.time()

    def _replay(self, manifest: Path) -> int:
        try:
            data = json.loads(manifest.read_text())
            names = [str(n) for n in data["segments"]]
            token = str(data["token"])
        except (OSError, ValueError, KeyError, TypeError):
            # Written atomically, so unreadable means foreign; its segments are still sealed
            # and will be batched again under a new token (they were never inserted with it).
            log.warning("spool: ignoring unreadable batch manifest %s", manifest.name)
            manifest.unlink(missing_ok=True)
            return 0
        segments = [self.spool_dir / n for n in names]
        present = [p for p in segments if p.exists()]
        if len(present) < len(segments):
            # Deletion starts only after a successful insert: the batch is stored.
            self._finish(manifest, present, None)
            return 0
        records = [r for path in segments for r in self._repair(path)]
        rows = self._insert(token, records)
        self._finish(manifest, segments, rows)
        return rows

    def _next_batch(
        self, force: bool, busy: frozenset[str] = frozenset()
    ) -> tuple[list[Path], list[bytes]] | None:
        sealed = [p for p in sealed_segments(self.spool_dir) if p.name not in busy]
        if not sealed:
            return None
        total = sum(p.stat().st_size for p in sealed if p.exists())
        waited = time.time() - segment_created(sealed[0])
        if not force and total < self.flush_bytes and waited < self.max_wait:
            return None
        chosen: list[Path] = []
        records: list[bytes] = []
        for path in sealed:
            # Repair before the manifest names the segment, so a replay reads the same records.
            try:
                got = self._repair(path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                self._set_aside(path, exc)
                continue
            if not got:
                continue
            if chosen and len(records) + len(got) > self.max_rows:
                break
            chosen.append(path)
            records.extend(got)
        return (chosen, records) if chosen else None

    def drain_once(self, force: bool = True, deadline: float | None = None) -> int:
        """Insert what is ready (everything when `force`); returns the rows inserted.

        Raises StoreError when an insert fails; the batch stays on disk for the next try.
        """
        with self._lock:
            total = 0
            self._trust_cache()
            seal_orphans(self.spool_dir)
            for manifest in sorted(self.spool_dir.glob(MANIFEST_GLOB)):
                total += self._replay(manifest)
            # Pipelined: while one batch is inserted (the engine runs without the GIL), the
            # next is read, decoded and given its sessions. Each batch still has its manifest
            # before its insert starts, and is finished only after its insert succeeded.
            flight: _InFlight | None = None
            try:
                while deadline is None or time.monotonic() < deadline:
                    batch = self._next_batch(force, flight.names if flight else frozenset())
                    if batch is None:
                        break
                    segments, records = batch
                    names = [p.name for p in segments]
                    token = batch_token(self.collector_id, names)
                    self._seq += 1
                    manifest = self.spool_dir / f"batch-{time.time_ns():020d}-{self._seq:06d}.json"
                    write_atomic(manifest, json.dumps({"segments": names, "token": token}).encode())
                    started = time.monotonic()
                    table = self._assigned(records)
                    if flight is not None:
                        landing, flight = flight, None
                        total += self._land(landing)
                    if table is None or table.num_rows == 0:
                        rows = self._insert_now(token, records, table, started)
                        self._finish(manifest, segments, rows)
                        total += rows
                        continue
                    future = self._inserter.submit(
                        self.store.insert, "events", table, dedup_token=token
                    )
                    flight = _InFlight(future, manifest, segments, table.num_rows, started)
                if flight is not None:
                    landing, flight = flight, None
                    total += self._land(landing)
            finally:
                if flight is not None:
                    # Preparing the next batch failed while this insert ran: let it end, and
                    # finish it if it stored its batch (else its manifest replays it).
                    try:
                        self._land(flight)
                    except Exception:  # the first error is the one raised
                        log.debug("writer: the insert in flight failed too", exc_info=True)
            return total

    def _land(self, flight: _InFlight) -> int:
        """Wait for the insert in flight; finish its batch once it is stored."""
        flight.future.result()
        rows = self._inserted(flight.rows, flight.started)
        self._finish(flight.manifest, flight.segments, rows)
        return rows

    # -- the loop ----------------------------------------------------------------------------

    def start(self, interval: float = 0.1) -> None:
        self._thread = threading.Thread(
            target=self._run, args=(interval,), name="writer", daemon=True
        )
        self._thread.start()

    def _failed(self, exc: Exception) -> float:
        self.stats.errors += 1
        self.stats.consecutive_errors += 1
        self.stats.last_error = str(exc)[:300]
        self.stats.last_error_at = time.time()
        backoff = min(5.0, 0.25 * 2.0 ** min(self.stats.consecutive_errors - 1, 5))
        log.warning(
            "writer: insert failed (%d in a row), the spool keeps the events; retrying in "
            "%.1fs: %s",
            self.stats.consecutive_errors,
            backoff,
            self.stats.last_error,
        )
        return backoff

    def _run(self, interval: float) -> None:
        expired = time.monotonic()
        while not self._stop.is_set():
            wait = interval
            try:
                self.drain_once(force=False)
                # A pass over the session cache costs ~85 ms per million sessions: every few
                # seconds, not on every turn of this loop (it had been ten times a second).
                if time.monotonic() - expired >= EXPIRE_EVERY:
                    expired = time.monotonic()
                    self.sessions.expire(self.clock())
            except StoreError as exc:
                wait = self._failed(exc)
            except Exception as exc:  # a bug must not kill the writer silently
                log.exception("writer: unexpected error")
                wait = self._failed(exc)
            self._stop.wait(wait)

    def stop(self, budget: float = 10.0) -> bool:
        """Stop the loop, then insert what is left within `budget` seconds.

        Returns True when the spool was emptied; otherwise the events stay spooled for the
        next start.
        """
        deadline = time.monotonic() + budget
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=budget)
        if self.busy:
            log.warning("writer: an insert is still running at the deadline; the spool keeps it")
            return False
        try:
            self.drain_once(force=True, deadline=deadline)
        except StoreError as exc:
            log.warning("writer: final drain failed; the spool keeps the events: %s", exc)
            return False
        left = usage(self.spool_dir).segments
        return left == 0

    @property
    def busy(self) -> bool:
        """Whether the loop is still inside a drain (e.g. an insert into a hung store)."""
        return self._thread is not None and self._thread.is_alive()

    def spool_usage(self) -> dict[str, float]:
        spooled = usage(self.spool_dir)
        oldest = 0.0 if spooled.oldest is None else max(0.0, time.time() - spooled.oldest)
        return {
            "firstparty_spool_bytes": spooled.bytes,
            "firstparty_spool_segments": spooled.segments,
            "firstparty_oldest_unflushed_event_age_seconds": round(oldest, 3),
        }
