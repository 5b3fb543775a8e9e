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
import functools
import hashlib
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt
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


# An open session as the cache holds it: (session id, visitor id, last event in ms since the
# epoch, visit attributes). A plain tuple of ints and strings, which the cyclic garbage collector
# stops tracking: the cache holds every session of the last half hour or more, and as objects
# they made each full collection walk all of them (0.45 -> 0.25 s per batch of 100,000 new
# visitors, 2026-12-04).
Session = tuple[int, int, int, tuple[str, ...]]
SID: Final = 0
VID: Final = 1
LAST: Final = 2
ATTRS: Final = 3


def _strings(table: pa.Table) -> list[list[str]]:
    """A string table's columns as Python lists whose equal values are one object: the cache
    holds a tuple of visit attributes per session, mostly the same few countries, browsers
    and sources; and gathering shared objects is faster than making one per value."""
    out = []
    for column in table.columns:
        encoded = pc.dictionary_encode(column).combine_chunks()
        words = np.array(encoded.dictionary.to_pylist(), dtype=object)
        out.append(words[encoded.indices.to_numpy()].tolist())
    return out


def to_ms(moment: dt.datetime) -> int:
    """Milliseconds since the epoch; a naive datetime (as the store may return it) is UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


# A session id only has to be unique: it is a function of the site, the visitor's id (already
# a keyed hash) and the session's first moment, mixed by splitmix64's finaliser, which numpy can
# compute for a whole batch of new sessions at once (`new_session_ids`), to the same values.
_MASK = (1 << 64) - 1
_M1, _M2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def _mix(z: int) -> int:
    z = ((z ^ (z >> 30)) * _M1) & _MASK
    z = ((z ^ (z >> 27)) * _M2) & _MASK
    return z ^ (z >> 31)


@functools.lru_cache(maxsize=4096)
def site_key(site: str) -> int:
    return int.from_bytes(hashlib.blake2b(site.encode(), digest_size=8).digest(), "big")


def new_session_id(site: str, visitor_id: int, start_ms: int) -> int:
    return _mix(site_key(site) ^ _mix(visitor_id ^ _mix(start_ms & _MASK))) >> 1


def _mix_array(z: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_M1)  # wraps modulo 2**64, as `_MASK` does
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_M2)
    return z ^ (z >> np.uint64(31))


def new_session_ids(
    sites: npt.NDArray[np.uint64], visitors: npt.NDArray[np.uint64], starts: npt.NDArray[np.int64]
) -> npt.NDArray[np.uint64]:
    """`new_session_id` for arrays: `sites` are `site_key`s, `starts` milliseconds."""
    with np.errstate(over="ignore"):
        mixed = _mix_array(sites ^ _mix_array(visitors ^ _mix_array(starts.astype(np.uint64))))
    return mixed >> np.uint64(1)


class Sessionizer:
    def __init__(self, timeout: dt.timedelta = dt.timedelta(minutes=30)) -> None:
        self.timeout = timeout
        self._timeout_ms = int(timeout.total_seconds() * 1000)
        self._open: dict[tuple[str, int], Session] = {}
        # Every session that ended at or after this moment (ms) is in the cache; None: unknown.
        self._complete_from: int | None = None

    @property
    def trusting(self) -> bool:
        """Whether `trust_cache` was called: some sessions need no lookup."""
        return self._complete_from is not None

    def trust_cache(self, since_ms: int) -> None:
        """Declare every session that ends at or after `since_ms` to pass through this cache."""
        self._complete_from = since_ms

    def distrust_until(self, until_ms: int) -> None:
        """Events up to `until_ms` were stored by someone else: look their sessions up."""
        if self._complete_from is not None:
            self._complete_from = max(self._complete_from, until_ms + 1)

    def _goes_on(self, session: Session | None, ts: int) -> bool:
        """Whether an event at `ts` (ms) continues `session` (within the timeout of its end)."""
        return session is not None and ts - session[LAST] <= self._timeout_ms

    def _covers(self, ts: int) -> bool:
        """Whether any session an event at `ts` could continue is in the cache, if it exists."""
        return self._complete_from is not None and ts - self._timeout_ms >= self._complete_from

    def __len__(self) -> int:
        return len(self._open)

    def assign(self, event: Event, prev_visitor_id: int = 0) -> None:
        """Assign one event (events of a batch in time order); see `assign_table` for batches."""
        site, vid, ts = event.site_id, event.visitor_id, to_ms(event.timestamp)
        key = (site, vid)
        session = self._open.get(key)
        if session is None and prev_visitor_id:
            carried = self._open.get((site, prev_visitor_id))
            if self._goes_on(carried, ts):
                session = carried
        if session is None or not self._goes_on(session, ts):
            attributes = tuple(getattr(event, a) for a in VISIT_ATTRIBUTES)
            session = (new_session_id(site, vid, ts), vid, ts, attributes)
        else:
            if ts > session[LAST]:
                session = (session[SID], session[VID], ts, session[ATTRS])
            for name, value in zip(VISIT_ATTRIBUTES, session[ATTRS], strict=True):
                setattr(event, name, value)
        self._open[key] = session
        event.session_id = session[SID]
        event.visitor_id = session[VID]

    def assign_table(
        self, table: pa.Table, prev_ids: Sequence[int], store: Store | None = None
    ) -> pa.Table:
        """Assign sessions to a batch of `events` rows: the decisions `assign` makes event by
        event in time order, returned in the batch's order.

        With `store`, the sessions this cache lacks are looked up first (`prefetch_keys`).
        Vectorised: sorted by site, visitor and time, a row starts a session where the visitor
        changes or after a gap over the timeout, and Python runs once per visitor (for its
        cached session), not once per event.
        """
        stamps = table.column("timestamp").cast(pa.int64()).to_numpy()
        if store is not None and len(stamps) and not self._covers(int(stamps.min())):
            self.prefetch_keys(
                store,
                table.column("site_id").to_pylist(),
                table.column("visitor_id").to_pylist(),
                stamps.tolist(),
                prev_ids,
            )
        count = table.num_rows
        if count == 0:
            return table
        timeout = self._timeout_ms
        encoded = pc.dictionary_encode(table.column("site_id")).combine_chunks()
        site_names: list[str] = encoded.dictionary.to_pylist()
        codes = encoded.indices.to_numpy(zero_copy_only=False)
        vids = table.column("visitor_id").to_numpy()
        # Sorted by site, visitor and time (stable: equal times keep arrival order). The table
        # itself stays in its order: only the results are put back (one `take` fewer).
        order = np.lexsort((stamps, vids, codes))
        codes, vids, stamps = codes[order], vids[order], stamps[order]
        first = np.ones(count, dtype=bool)  # a visitor's first row in the batch
        first[1:] = (codes[1:] != codes[:-1]) | (vids[1:] != vids[:-1])
        starts = first.copy()  # a row that starts a session, or goes on with one from before
        starts[1:] |= (stamps[1:] - stamps[:-1]) > timeout
        heads = np.flatnonzero(first)
        last_rows = np.append(heads[1:] - 1, count - 1)
        keys = list(
            zip([site_names[c] for c in codes[heads].tolist()], vids[heads].tolist(), strict=True)
        )
        cached = list(map(self._open.get, keys))

        # Visitors whose first row goes on with their session in the cache, and those whose
        # first row carries over the session of their previous-salt id (just after midnight).
        going_on: dict[int, Session] = {}
        for j, session in enumerate(cached):
            if session is not None and self._goes_on(session, int(stamps[heads[j]])):
                going_on[j] = session
                # Rows older than the session's last event (a late batch) are measured from
                # that event, not from the row before, as `assign` does.
                for i in range(int(heads[j]) + 1, int(last_rows[j]) + 1):
                    if stamps[i - 1] >= session[LAST]:
                        break
                    starts[i] = stamps[i] - session[LAST] > timeout
                    if starts[i]:
                        break
        carrying: dict[int, int] = {}  # visitor -> its previous-salt id
        if any(prev_ids):
            prevs = np.asarray(prev_ids, dtype=np.uint64)[order]
            for j in np.flatnonzero(prevs[heads]).tolist():
                if cached[j] is None:
                    carrying[j] = int(prevs[heads[j]])

        run_first = np.flatnonzero(starts)
        run_of_row = np.cumsum(starts) - 1
        last_runs = run_of_row[last_rows]
        run_sid = np.zeros(len(run_first), dtype=np.uint64)
        run_vid = vids[run_first]
        run_src = run_first.copy()  # the row (or extra row) whose visit attributes a run takes
        run_since = np.full(len(run_first), -1, dtype=np.int64)  # the last event before it
        extra: list[tuple[str, ...]] = []

        def go_on(run: int, session: Session) -> None:
            run_sid[run], run_vid[run], run_since[run] = session[SID], session[VID], session[LAST]
            run_src[run] = count + len(extra)
            extra.append(session[ATTRS])

        for j, session in going_on.items():
            go_on(run_of_row[heads[j]], session)
        # New sessions' ids (some are replaced below by a carried-over session's).
        fresh = np.flatnonzero(run_since < 0)
        fresh_rows = run_first[fresh]
        site_keys = np.array([site_key(name) for name in site_names], dtype=np.uint64)
        run_sid[fresh] = new_session_ids(
            site_keys[codes[fresh_rows]], vids[fresh_rows], stamps[fresh_rows]
        )
        borrowed = False  # a run takes the attributes of another visitor's run
        if carrying:
            index = {key: j for j, key in enumerate(keys)}
            # In time order, so a previous-salt visitor of this batch is settled first.
            for j in sorted(carrying, key=lambda j: int(stamps[heads[j]])):
                run = run_of_row[heads[j]]
                other = index.get((keys[j][0], carrying[j]))
                if other is None:
                    carried = self._open.get((keys[j][0], carrying[j]))
                    if carried is not None and self._goes_on(carried, int(stamps[heads[j]])):
                        go_on(run, carried)
                    continue
                before = last_runs[other]
                ended = max(int(stamps[last_rows[other]]), int(run_since[before]))
                if int(stamps[heads[j]]) - ended <= timeout:
                    run_sid[run], run_vid[run] = run_sid[before], run_vid[before]
                    run_src[run], run_since[run] = run_src[before], ended
                    borrowed = True

        # The cache keeps each visitor's latest session. Its attributes: a cached session's own
        # tuple, or a tuple from the row that started it, of strings shared by all sessions
        # (`_strings`: no string object per session and attribute).
        attrs = table.select(list(VISIT_ATTRIBUTES))
        sources = run_src[last_runs]
        picked = order[np.where(sources < count, sources, 0)]
        values = list(zip(*_strings(attrs.take(pa.array(picked))), strict=True))
        for j in np.flatnonzero(sources >= count).tolist():
            values[j] = extra[int(sources[j]) - count]
        self._open.update(
            zip(
                keys,
                zip(
                    run_sid[last_runs].tolist(),
                    run_vid[last_runs].tolist(),
                    np.maximum(stamps[last_rows], run_since[last_runs]).tolist(),
                    values,
                    strict=True,
                ),
                strict=True,
            )
        )

        # Back to the batch's own order: what each row takes, where the batch has that row.
        taken = np.empty(count, dtype=np.int64)
        taken[order] = run_src[run_of_row]
        rows = taken < count
        taken[rows] = order[taken[rows]]  # a row index in sorted order -> in the batch
        session_ids = np.empty(count, dtype=np.uint64)
        session_ids[order] = run_sid[run_of_row]
        visitor_ids = np.empty(count, dtype=np.uint64)
        visitor_ids[order] = run_vid[run_of_row]
        if extra or borrowed or len(run_first) < count:
            if extra:
                more = pa.table(
                    {
                        a: pa.array([v[i] for v in extra], type=attrs.schema.field(a).type)
                        for i, a in enumerate(VISIT_ATTRIBUTES)
                    }
                )
                attrs = pa.concat_tables([attrs, more])
            gathered = attrs.take(pa.array(taken))
            for name in VISIT_ATTRIBUTES:
                table = table.set_column(
                    table.schema.get_field_index(name), name, gathered.column(name)
                )
        table = table.set_column(
            table.schema.get_field_index("session_id"), "session_id", pa.array(session_ids)
        )
        return table.set_column(
            table.schema.get_field_index("visitor_id"), "visitor_id", pa.array(visitor_ids)
        )

    def _live(self, key: tuple[str, int], at_ms: int) -> bool:
        return self._goes_on(self._open.get(key), at_ms)

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
        self._open = {k: s for k, s in self._open.items() if s[LAST] >= cutoff}

    def restore(self, rows: list[dict[str, Any]]) -> int:
        """Merge sessions from the store (rows of LOOKUP_SESSIONS_SQL).

        The latest session of a visitor wins, whether it was known here or read from the store.
        """
        loaded = 0
        for row in rows:
            seen = row["last_seen"]
            assert isinstance(seen, dt.datetime)
            last = to_ms(seen)
            attrs = tuple(str(row[a]) for a in VISIT_ATTRIBUTES)
            vid = int(str(row["vid"] if "vid" in row else row["visitor_id"]))
            session = (int(str(row["session_id"])), vid, last, attrs)
            key = (str(row["site_id"]), vid)
            known = self._open.get(key)
            if known is None or known[LAST] < last:
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
