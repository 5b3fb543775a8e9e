"""`Event`: one row of the `events` table, holding only what may be stored.

This type mirrors the table's columns one to one; a test compares it with the live table.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, fields
from operator import attrgetter
from typing import Any

import pyarrow as pa

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

ARROW_SCHEMA = pa.schema(
    [
        ("site_id", pa.string()),
        ("timestamp", pa.timestamp("ms", tz="UTC")),
        ("name", pa.string()),
        ("visitor_id", pa.uint64()),
        ("visitor_kind", pa.string()),
        ("session_id", pa.uint64()),
        ("hostname", pa.string()),
        ("pathname", pa.string()),
        ("referrer", pa.string()),
        ("referrer_source", pa.string()),
        ("channel", pa.string()),
        ("utm_source", pa.string()),
        ("utm_medium", pa.string()),
        ("utm_campaign", pa.string()),
        ("utm_content", pa.string()),
        ("utm_term", pa.string()),
        ("click_id", pa.string()),
        ("country_code", pa.string()),
        ("region", pa.string()),
        ("ip_prefix", pa.string()),
        ("browser", pa.string()),
        ("browser_version", pa.string()),
        ("os", pa.string()),
        ("os_version", pa.string()),
        ("device", pa.string()),
        ("interactive", pa.uint8()),
        ("engagement_ms", pa.uint32()),
        ("scroll_depth", pa.uint8()),
        ("props", pa.map_(pa.string(), pa.string())),
    ]
)


def to_arrow(events: list[Event]) -> pa.Table:
    """A columnar batch for `store.insert("events", ...)`."""
    # Column by column with C-level attribute access: the writer builds 100k-row batches.
    columns: dict[str, list[Any]] = {}
    for name in COLUMNS:
        values = list(map(attrgetter(name), events))
        columns[name] = [list(v.items()) for v in values] if name == "props" else values
    return pa.table({f.name: pa.array(columns[f.name], type=f.type) for f in ARROW_SCHEMA})
