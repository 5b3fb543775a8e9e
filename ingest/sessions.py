"""Sessions: the single writer assigns each event a session id (30 minutes of inactivity).

Visit attributes (entry referrer, source, channel, UTM, geo, device) are those of the session's
first event and are copied onto its later events, so `visit:*` filters work on events alone.
Just after midnight a visitor's hash changes with the salt; the collector sends the hash under
the previous salt too (`prev_visitor_id`, never stored) so a session spanning midnight goes on.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from ingest.event import Event

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

    def expire(self, now: dt.datetime) -> None:
        """Forget sessions idle past the timeout, so memory stays bounded."""
        cutoff = now - self.timeout
        self._open = {k: s for k, s in self._open.items() if s.last_seen >= cutoff}

    def restore(self, rows: list[dict[str, object]]) -> None:
        """Reload open sessions after a restart (rows from RECENT_SESSIONS_SQL)."""
        for row in rows:
            last = row["last_seen"]
            assert isinstance(last, dt.datetime)
            attrs = tuple(str(row[a]) for a in VISIT_ATTRIBUTES)
            session = OpenSession(
                int(str(row["session_id"])), int(str(row["visitor_id"])), last, attrs
            )
            self._open[(str(row["site_id"]), session.visitor_id)] = session


def _recent_sessions_sql() -> str:
    # Column names come from VISIT_ATTRIBUTES, never from input.
    attributes = ", ".join(f"any({a}) AS {a}" for a in VISIT_ATTRIBUTES)
    return (
        "SELECT site_id, session_id, any(visitor_id) AS visitor_id, max(end) AS last_seen, "
        f"{attributes} FROM sessions GROUP BY site_id, session_id "
        "HAVING last_seen >= {since:DateTime64(3, 'UTC')}"
    )


RECENT_SESSIONS_SQL = _recent_sessions_sql()
