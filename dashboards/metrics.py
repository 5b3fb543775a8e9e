"""Every metric the dashboards and APIs show, defined once (DESIGN.md section 5)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    name: str
    sql: str  # an aggregate over `events`
    description: str


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric(
            "visitors",
            "uniqExact(visitor_id)",
            "unique visitor hashes in the range (with daily salts, a sum of days)",
        ),
        Metric("visits", "uniqExact(session_id)", "sessions"),
        Metric("pageviews", "countIf(name = 'pageview')", "pageview events"),
        Metric("events", "countIf(name != 'engagement')", "events of any kind but engagement"),
    )
}
