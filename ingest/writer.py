"""The single writer: drains sealed spool segments into ClickHouse in large columnar batches."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from pathlib import Path

from ingest.event import Event, to_arrow
from ingest.sessions import RECENT_SESSIONS_SQL, Sessionizer
from ingest.spool import decode, read_segment, seal_orphans, sealed_segments
from store.base import Store, StoreError

log = logging.getLogger("firstparty.writer")


def insert_events(
    store: Store,
    events: list[Event],
    sessions: Sessionizer,
    token: str | None = None,
    prev_ids: list[int] | None = None,
) -> None:
    """Assign sessions (in time order) and insert one columnar batch with a dedup token."""
    order = sorted(range(len(events)), key=lambda i: events[i].timestamp)
    for i in order:
        sessions.assign(events[i], prev_ids[i] if prev_ids else 0)
    if events:
        store.insert("events", to_arrow([events[i] for i in order]), dedup_token=token)


class Writer:
    def __init__(
        self,
        store: Store,
        spool_dir: Path,
        session_timeout: dt.timedelta = dt.timedelta(minutes=30),
    ) -> None:
        self.store = store
        self.spool_dir = spool_dir
        self.sessions = Sessionizer(session_timeout)
        self.inserted = 0
        self.errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def restore(self, now: dt.datetime) -> None:
        rows = self.store.query(RECENT_SESSIONS_SQL, {"since": now - self.sessions.timeout})
        self.sessions.restore(rows.dicts())

    def drain_once(self) -> int:
        """Insert every sealed segment; returns the number of events inserted."""
        total = 0
        for path in sealed_segments(self.spool_dir):
            result = read_segment(path)
            if result.bad_bytes:
                log.warning(
                    "spool segment %s: %d bad bytes after %d good records skipped",
                    path.name,
                    result.bad_bytes,
                    len(result.records),
                )
            decoded = [decode(r) for r in result.records]
            events = [event for event, _ in decoded]
            insert_events(self.store, events, self.sessions, path.name, [p for _, p in decoded])
            path.unlink()
            total += len(events)
        self.inserted += total
        return total

    def start(self, interval: float = 0.5) -> None:
        seal_orphans(self.spool_dir)
        self._thread = threading.Thread(
            target=self._run, args=(interval,), name="writer", daemon=True
        )
        self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stop.is_set():
            try:
                self.drain_once()
                self.sessions.expire(dt.datetime.now(dt.UTC))
            except StoreError as exc:
                self.errors += 1
                log.warning("writer: insert failed, will retry: %s", exc)
            self._stop.wait(interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        try:
            self.drain_once()
        except StoreError as exc:
            log.warning("writer: final drain failed; the spool keeps the events: %s", exc)
