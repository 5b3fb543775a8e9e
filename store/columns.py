"""Column names of `schema.sql` that ingest and the dashboards both rely on."""

from __future__ import annotations

# A visit's attributes: those of its first event. The writer copies them onto every later event
# of the session; the sessions table and the visit rollups keep one value per visit.
VISIT_ATTRIBUTES: tuple[str, ...] = (
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
