"""`Event`: one row of the `events` table, holding only what may be stored.

This type mirrors the table's columns one to one; a test compares it with the live table.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, fields
from typing import Any

SCROLL_UNKNOWN = 255


@dataclass(slots=True)
class Event:
    site_id: str
    timestamp: dt.datetime
    name: str
    visitor_id: int
    visitor_kind: str = "cookieless"
    session_id: int = 0
    hostname: str = ""
    pathname: str = "/"
    referrer: str = ""
    referrer_source: str = ""
    channel: str = ""
    utm_source: str = ""
    utm_medium: str = ""
    utm_campaign: str = ""
    utm_content: str = ""
    utm_term: str = ""
    click_id: str = ""
    country_code: str = ""
    region: str = ""
    ip_prefix: str = ""
    browser: str = ""
    browser_version: str = ""
    os: str = ""
    os_version: str = ""
    device: str = ""
    interactive: int = 1
    engagement_ms: int = 0
    scroll_depth: int = SCROLL_UNKNOWN
    props: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: its recursive deepcopy was the largest cost per beacon.
        row = {name: getattr(self, name) for name in COLUMNS}
        row["props"] = dict(self.props)
        return row


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Event))
# The columns every event sets; the others have a default (DEFAULTS), which a spool record
# leaves out (ingest/spool.py).
REQUIRED: tuple[str, ...] = ("site_id", "timestamp", "name", "visitor_id")
DEFAULTS: dict[str, Any] = {
    f.name: f.default for f in fields(Event) if f.name not in REQUIRED and f.name != "props"
}
