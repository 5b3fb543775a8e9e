"""Sessions: the single writer assigns each event a session id (30 minutes of inactivity).

Visit attributes (entry referrer, source, channel, UTM, geo, device) are those of the session's
first event and are copied onto its later events, so `visit:*` filters work on events alone.
Just after midnight a visitor's hash changes with the salt; the collector sends the hash under
the previous salt too (`prev_visitor_id`, never stored) so a session spanning midnight goes on.

The in-memory table is a cache, not the truth: for every visitor of a batch it has no live
session for, `prefetch` looks the visitor up in the store's `sessions` (the last timeout
window). So a restart, or several collectors writing one store without sticky routing, still
continue sessions instead of splitting them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ingest.event import Event
from store.base import Store

# Visitor ids per lookup query; bounds the size of one bound parameter.
LOOKUP_CHUNK = 20_000

VISIT_ATTRIBUTES = (
    "referrer",
    "referrer_source",
    "channel",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_content",
    "utm_term",
    "country_code",
    "region",
    "browser",
    "browser_version",
    "os",
    "os_version",
    "device",
)


@dataclass(slots=True)
class OpenSession:
    session_id: int
    visitor_id: int
    last_seen: dt.datetime
    attributes: tuple[str, ...]


def new_session_id(site: str, visitor_id: int, start: dt.datetime) -> int:
    digest = hashlib.blake2b(f"{site}|{visitor_id}|{start.isoformat()}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big") >> 1


class Sessionizer:
    def __init__(self, timeout: dt.timedelta = dt.timedelta(minutes=30)) -> None:
        self.timeout = timeout
        self._open: dict[tuple[str, int], OpenSession] = {}

    def __len__(self) -> int:
        return len(self._open)

    def assign(self, event: Event, prev_visitor_id: int = 0) -> None:
        key = (event.site_id, event.visitor_id)
        session = self._open.get(key)
        if session is None and prev_visitor_id:
            carried = self._open.get((event.site_id, prev_visitor_id))
            if carried is not None and event.timestamp - carried.last_seen <= self.timeout:
                session = carried
                self._open[key] = carried
        if session is None or event.timestamp - session.last_seen > self.timeout:
            session = OpenSession(
                session_id=new_session_id(event.site_id, event.visitor_id, event.timestamp),
                visitor_id=event.visitor_id,
                last_seen=event.timestamp,
                attributes=tuple(getattr(event, a) for a in VISIT_ATTRIBUTES),
            )
            self._open[key] = session
        else:
            session.last_seen = max(session.last_seen, event.timestamp)
            for name, value in zip(VISIT_ATTRIBUTES, session.attributes, strict=True):
                setattr(event, name, value)
        event.session_id = session.session_id
        event.visitor_id = session.visitor_id

    def _live(self, key: tuple[str, int], at: dt.datetime) -> bool:
        session = self._open.get(key)
        return session is not None and at - session.last_seen <= self.timeout

    def prefetch(self, store: Store, events: Sequence[Event], prev_ids: Sequence[int]) -> int:
        """Load from the store the sessions of visitors this cache has no live session for.

        Returns how many sessions were loaded. Call before `assign` for a batch.
        """
        wanted: set[int] = set()
        earliest: dt.datetime | None = None
        for event, prev in zip(events, prev_ids, strict=True):
            for vid in (event.visitor_id, prev):
                if vid and not self._live((event.site_id, vid), event.timestamp):
                    wanted.add(vid)
                    if earliest is None or event.timestamp < earliest:
                        earliest = event.timestamp
        if not wanted or earliest is None:
            return 0
        since = earliest - self.timeout
        ids = sorted(wanted)
        rows: list[dict[str, Any]] = []
        for start in range(0, len(ids), LOOKUP_CHUNK):
            rows += store.query(
                LOOKUP_SESSIONS_SQL, {"ids": ids[start : start + LOOKUP_CHUNK], "since": since}
            ).dicts()
        return self.restore(rows)

    def expire(self, now: dt.datetime) -> None:
        """Forget sessions idle past the timeout, so memory stays bounded."""
        cutoff = now - self.timeout
        self._open = {k: s for k, s in self._open.items() if s.last_seen >= cutoff}

    def restore(self, rows: list[dict[str, Any]]) -> int:
        """Merge sessions from the store (rows of LOOKUP_SESSIONS_SQL or RECENT_SESSIONS_SQL).

        The latest session of a visitor wins, whether it was known here or read from the store.
        """
        loaded = 0
        for row in rows:
            last = row["last_seen"]
            assert isinstance(last, dt.datetime)
            if last.tzinfo is None:
                last = last.replace(tzinfo=dt.UTC)
            attrs = tuple(str(row[a]) for a in VISIT_ATTRIBUTES)
            vid = row["vid"] if "vid" in row else row["visitor_id"]
            session = OpenSession(int(str(row["session_id"])), int(str(vid)), last, attrs)
            key = (str(row["site_id"]), session.visitor_id)
            known = self._open.get(key)
            if known is None or known.last_seen < last:
                self._open[key] = session
                loaded += 1
        return loaded


def _recent_sessions_sql() -> str:
    # Column names come from VISIT_ATTRIBUTES, never from input.
    attributes = ", ".join(f"any({a}) AS {a}" for a in VISIT_ATTRIBUTES)
    return (
        "SELECT site_id, session_id, any(visitor_id) AS visitor_id, max(end) AS last_seen, "
        f"{attributes} FROM sessions GROUP BY site_id, session_id "
        "HAVING last_seen >= {since:DateTime64(3, 'UTC')}"
    )


RECENT_SESSIONS_SQL = _recent_sessions_sql()


def _lookup_sessions_sql() -> str:
    attributes = ", ".join(f"any({a}) AS {a}" for a in VISIT_ATTRIBUTES)
    # `end` filters rows before grouping: max(end) over the kept rows is still the session's.
    return (
        "SELECT site_id, session_id, any(visitor_id) AS vid, max(end) AS last_seen, "
        f"{attributes} FROM sessions "
        "WHERE visitor_id IN {ids:Array(UInt64)} AND end >= {since:DateTime64(3, 'UTC')} "
        "GROUP BY site_id, session_id"
    )


LOOKUP_SESSIONS_SQL = _lookup_sessions_sql()
