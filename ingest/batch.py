"""Events as one Arrow batch: the `events` table's columnar types, for the writer's inserts.

Apart from `ingest/event.py` so that the HTTP workers, which only build `Event`s and spool
them, never load pyarrow (about 40 MB of each worker's memory).
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any

import pyarrow as pa

from ingest.event import COLUMNS, Event

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
