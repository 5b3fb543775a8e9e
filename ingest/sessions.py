"""Sessions: the single writer assigns each event a session id (30 minutes of inactivity).

Visit attributes (entry referrer, source, channel, UTM, geo, device) are those of the session's
first event and are copied onto its later events, so `visit:*` filters work on events alone.
Just after midnight a visitor's hash changes with the salt; the collector sends the hash under
the previous salt too (`prev_visitor_id`, never stored) so a session spanning midnight goes on.

The in-memory table is a cache, not the truth: for every visitor of a batch it has no live
session for, `prefetch` looks the visitor up in the store's events (the last timeout window).
So a restart, or several collectors writing one store without sticky routing, still continue
sessions instead of splitting them.

Except where the cache is known to be complete: the writer of an embedded store, which no other
process can write to unseen, calls `trust_cache` with the moment after the newest stored event;
every session that ends later passed through this cache, so events whose timeout window starts
after that moment need no lookup (at 100,000 new visitors a batch, the lookup was ~0.3 s of
~1 s). Events that others store meanwhile (`distrust_until`) and the cache's own expiry move
that moment forward.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ingest.event import Event
from store.base import Store
from store.columns import VISIT_ATTRIBUTES

# Visitor ids per lookup query; bounds the size of one bound parameter.
LOOKUP_CHUNK = 20_000
# A trusted cache keeps sessions this long past their timeout, so that events reaching the writer
# up to this late (a spool backlog) still find every session they may continue in it.
KEEP_PAST_TIMEOUT_MS = 5 * 60 * 1000


@dataclass(slots=True)
class OpenSession:
    session_id: int
    visitor_id: int
    last_ms: int  # milliseconds since the epoch, UTC
    attributes: tuple[str, ...]
    first_row: int = -1  # while a batch is assigned: the row that started the session


def to_ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


def new_session_id(site: str, visitor_id: int, start_ms: int) -> int:
    digest = hashlib.blake2b(f"{site}|{visitor_id}|{start_ms}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big") >> 1


class Sessionizer:
    def __init__(self, timeout: dt.timedelta = dt.timedelta(minutes=30)) -> None:
        self.timeout = timeout
        self._timeout_ms = int(timeout.total_seconds() * 1000)
        self._open: dict[tuple[str, int], OpenSession] = {}
        # Every session that ended at or after this moment (ms) is in the cache; None: unknown.
        self._complete_from: int | None = None

    def trust_cache(self, since_ms: int) -> None:
        """Declare every session that ends at or after `since_ms` to pass through this cache."""
        self._complete_from = since_ms

    def distrust_until(self, until_ms: int) -> None:
        """Events up to `until_ms` were stored by someone else: look their sessions up."""
        if self._complete_from is not None:
            self._complete_from = max(self._complete_from, until_ms + 1)

    def _covers(self, ts: int) -> bool:
        """Whether any session an event at `ts` could continue is in the cache, if it exists."""
        return self._complete_from is not None and ts - self._timeout_ms >= self._complete_from

    def __len__(self) -> int:
        return len(self._open)

    def _decide(self, site: str, vid: int, ts: int, prev: int) -> tuple[OpenSession, bool]:
        """The session of an event at `ts` (ms), and whether the event starts it."""
        key = (site, vid)
        session = self._open.get(key)
        if session is None and prev:
            carried = self._open.get((site, prev))
            if carried is not None and ts - carried.last_ms <= self._timeout_ms:
                session = carried
                self._open[key] = carried
        if session is None or ts - session.last_ms > self._timeout_ms:
            session = OpenSession(new_session_id(site, vid, ts), vid, ts, ())
            self._open[key] = session
            return session, True
        if ts > session.last_ms:
            session.last_ms = ts
        return session, False

    def assign(self, event: Event, prev_visitor_id: int = 0) -> None:
        """Assign one event (events of a batch in time order); see `assign_table` for batches."""
        session, started = self._decide(
            event.site_id, event.visitor_id, to_ms(event.timestamp), prev_visitor_id
        )
        if started:
            session.attributes = tuple(getattr(event, a) for a in VISIT_ATTRIBUTES)
        else:
            for name, value in zip(VISIT_ATTRIBUTES, session.attributes, strict=True):
                setattr(event, name, value)
        event.session_id = session.session_id
        event.visitor_id = session.visitor_id

    def assign_table(
        self, table: pa.Table, prev_ids: Sequence[int], store: Store | None = None
    ) -> pa.Table:
        """Assign sessions to a batch of `events` rows; returns it sorted by time.

        The same decisions as `assign`, without a Python object per event: the visit
        attributes of continued sessions are gathered with one `take`. With `store`, the
        sessions this cache lacks are looked up first (`prefetch_keys`).
        """
        order = pc.sort_indices(table, sort_keys=[("timestamp", "ascending")])
        table = table.take(order)
        prevs = [prev_ids[i] for i in order.to_pylist()]
        sites = table.column("site_id").to_pylist()
        vids = table.column("visitor_id").to_pylist()
        stamps = table.column("timestamp").cast(pa.int64()).to_pylist()
        if store is not None:
            self.prefetch_keys(store, sites, vids, stamps, prevs)
        count = len(vids)
        session_ids = [0] * count
        source = list(range(count))  # the row (or extra row) whose attributes a row takes
        extra: list[tuple[str, ...]] = []
        extra_row: dict[int, int] = {}
        started: list[OpenSession] = []
        moved = False
        for i in range(count):
            session, new = self._decide(sites[i], vids[i], stamps[i], prevs[i])
            if new:
                session.first_row = i
                started.append(session)
            elif session.first_row >= 0:
                source[i] = session.first_row
                moved = True
            else:
                row = extra_row.get(id(session))
                if row is None:
                    row = extra_row[id(session)] = count + len(extra)
                    extra.append(session.attributes)
                source[i] = row
                moved = True
            session_ids[i] = session.session_id
            vids[i] = session.visitor_id
        attrs = table.select(list(VISIT_ATTRIBUTES))
        if started:
            rows = attrs.take(pa.array([s.first_row for s in started])).to_pydict()
            # One tuple per session, built by zip in C (the columns are all strings).
            for session, values in zip(
                started, zip(*(rows[a] for a in VISIT_ATTRIBUTES), strict=True), strict=True
            ):
                session.attributes = values
                session.first_row = -1
        if moved:
            if extra:
                more = pa.table(
                    {
                        a: pa.array(
                            [values[j] for values in extra], type=attrs.schema.field(a).type
                        )
                        for j, a in enumerate(VISIT_ATTRIBUTES)
                    }
                )
                attrs = pa.concat_tables([attrs, more])
            gathered = attrs.take(pa.array(source))
            for name in VISIT_ATTRIBUTES:
                table = table.set_column(
                    table.schema.get_field_index(name), name, gathered.column(name)
                )
        table = table.set_column(
            table.schema.get_field_index("session_id"),
            "session_id",
            pa.array(session_ids, pa.uint64()),
        )
        return table.set_column(
            table.schema.get_field_index("visitor_id"), "visitor_id", pa.array(vids, pa.uint64())
        )

    def _live(self, key: tuple[str, int], at_ms: int) -> bool:
        session = self._open.get(key)
        return session is not None and at_ms - session.last_ms <= self._timeout_ms

    def prefetch(self, store: Store, events: Sequence[Event], prev_ids: Sequence[int]) -> int:
        """`prefetch_keys` for Event objects."""
        return self.prefetch_keys(
            store,
            [e.site_id for e in events],
            [e.visitor_id for e in events],
            [to_ms(e.timestamp) for e in events],
            prev_ids,
        )

    def prefetch_keys(
        self,
        store: Store,
        sites: Sequence[str],
        vids: Sequence[int],
        stamps: Sequence[int],
        prev_ids: Sequence[int],
    ) -> int:
        """Load from the store the sessions of visitors this cache has no live session for.

        Returns how many sessions were loaded. Call before assigning a batch.
        """
        if not stamps or self._covers(min(stamps)):
            return 0
        wanted: set[int] = set()
        their_sites: set[str] = set()
        earliest: int | None = None
        for site, vid, ts, prev in zip(sites, vids, stamps, prev_ids, strict=True):
            if self._covers(ts):
                continue
            for candidate in (vid, prev):
                if candidate and not self._live((site, candidate), ts):
                    wanted.add(candidate)
                    their_sites.add(site)
                    if earliest is None or ts < earliest:
                        earliest = ts
        if not wanted or earliest is None:
            return 0
        since = dt.datetime.fromtimestamp((earliest - self._timeout_ms) / 1000, dt.UTC)
        ids = sorted(wanted)
        rows: list[dict[str, Any]] = []
        for start in range(0, len(ids), LOOKUP_CHUNK):
            chunk = ids[start : start + LOOKUP_CHUNK]
            params = {"sites": sorted(their_sites), "ids": chunk, "since": since}
            rows += store.query(LOOKUP_SESSIONS_SQL, params).dicts()
        return self.restore(rows)

    def expire(self, now: dt.datetime) -> None:
        """Forget sessions idle past the timeout, so memory stays bounded."""
        cutoff = to_ms(now) - self._timeout_ms
        if self._complete_from is not None:
            cutoff -= KEEP_PAST_TIMEOUT_MS
            self._complete_from = max(self._complete_from, cutoff)
        self._open = {k: s for k, s in self._open.items() if s.last_ms >= cutoff}

    def restore(self, rows: list[dict[str, Any]]) -> int:
        """Merge sessions from the store (rows of LOOKUP_SESSIONS_SQL).

        The latest session of a visitor wins, whether it was known here or read from the store.
        """
        loaded = 0
        for row in rows:
            seen = row["last_seen"]
            assert isinstance(seen, dt.datetime)
            if seen.tzinfo is None:
                seen = seen.replace(tzinfo=dt.UTC)
            last = to_ms(seen)
            attrs = tuple(str(row[a]) for a in VISIT_ATTRIBUTES)
            vid = row["vid"] if "vid" in row else row["visitor_id"]
            session = OpenSession(int(str(row["session_id"])), int(str(vid)), last, attrs)
            key = (str(row["site_id"]), session.visitor_id)
            known = self._open.get(key)
            if known is None or known.last_ms < last:
                self._open[key] = session
                loaded += 1
        return loaded


def _lookup_sessions_sql() -> str:
    # From `events`, not `sessions`: only sessions with an event since `since` matter, and the
    # events' key starts with the day, so this reads the last day or two of events instead of
    # every stored session's visitor id (`sessions` is keyed by session id): 113 instead of
    # 444 ms at 25M stored sessions (100M events). The writer copies a session's attributes
    # onto each of its events, so any event of the session has them, and the latest event is
    # the session's end.
    attributes = ", ".join(f"any({a}) AS {a}" for a in VISIT_ATTRIBUTES)
    since = "{since:DateTime64(3, 'UTC')}"
    return (
        "SELECT site_id, session_id, any(visitor_id) AS vid, max(timestamp) AS last_seen, "
        f"{attributes} FROM events PREWHERE timestamp >= {since} "
        "WHERE site_id IN {sites:Array(String)} AND visitor_id IN {ids:Array(UInt64)} "
        f"AND toDate(timestamp) >= toDate({since}) "
        "GROUP BY site_id, session_id"
    )


LOOKUP_SESSIONS_SQL = _lookup_sessions_sql()
