"""`Hit`: a validated beacon as the collector hands it to ingestion.

It is the only object that ever holds the raw IP, the raw user agent and a raw device ID. It is
never stored, spooled or logged; its repr hides those fields so a stray log line cannot leak them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Hit:
    domain: str  # one site (a comma-separated `d` was already fanned out)
    name: str
    url: str
    referrer: str
    received_at: dt.datetime  # UTC, from the collector's clock
    ip: str = field(repr=False)
    user_agent: str = field(repr=False)
    device_id: str | None = field(default=None, repr=False)
    props: dict[str, str] = field(default_factory=dict)
    hash_mode: bool = False
    interactive: bool = True
    engagement_ms: int | None = None
    scroll_depth: int | None = None
    tracker_version: str = ""
    dnt: bool = False
    gpc: bool = False
