"""Every metric and every dimension the dashboards and APIs show, defined once (DESIGN.md 5).

The names are Plausible's (Stats API v2), so its clients work unchanged. Each metric says where
it is computed:

- ``event`` metrics aggregate the `events` table (raw path) or the `rollup_hourly` table;
- ``session`` metrics aggregate whole visits, merged from the `sessions` table;
- ``derived`` metrics are computed in Python from other metrics of the same row.

Unique counts use one estimator everywhere, `uniqCombined64(12)` (exact below ~200 distinct ids,
~2 % above): the rollups hold its states, and raw events and visits compute it directly, so a
merge of daily states equals the count over the same raw rows and the paths agree at any size,
not only on small fixtures. On raw rows it is also cheaper than `uniq` (about a quarter faster
on 10M events). Tests compare the paths exactly.

SQL in this module is written by us, never from input: values are always bound parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

# Names of the hidden columns the query layer computes for derived metrics and suppression.
VISITORS = "visitors"


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str  # "event", "session" or "derived"
    description: str
    # `events` aggregate (raw path); for session metrics, an aggregate over merged sessions.
    sql: str = ""
    # `rollup_hourly` aggregate, or "" when the rollups cannot answer it.
    rollup_sql: str = ""
    # derived metrics: the metrics they are computed from
    needs: tuple[str, ...] = ()


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric(
            "visitors",
            "event",
            "unique visitor hashes; with daily salts a person counts once per day, so a "
            "multi-day total is a sum of daily uniques",
            "uniqCombined64(12)(visitor_id)",
            "uniqCombined64Merge(12)(visitors)",
        ),
        Metric(
            "visits",
            "event",
            "visits (sessions: 30 minutes of inactivity ends one)",
            "uniqCombined64(12)(session_id)",
            "uniqCombined64Merge(12)(visits)",
        ),
        Metric(
            "pageviews",
            "event",
            "pageview events",
            "countIf(name = 'pageview')",
            "sum(pageviews)",
        ),
        Metric(
            "events",
            "event",
            "pageviews and custom events (engagement pings are not counted)",
            "countIf(name != 'engagement')",
            "sum(events)",
        ),
        Metric(
            "views_per_visit",
            "derived",
            "pageviews divided by visits",
            needs=("pageviews", "visits"),
        ),
        Metric(
            "bounce_rate",
            "session",
            "percentage of visits with one pageview and no interactive event",
            "round(100 * countIf(s_pageviews = 1 AND s_interactive = 0) / greatest(count(), 1))",
        ),
        Metric(
            "visit_duration",
            "session",
            "mean visit length in seconds, first to last event, 0 s bounces included",
            "round(avg(s_duration_ms) / 1000)",
        ),
        Metric(
            "time_on_page",
            "event",
            "mean visible seconds per pageview, from the tracker's engagement events",
            "round(sumIf(engagement_ms, name = 'engagement') / 1000 "
            "/ greatest(countIf(name = 'pageview'), 1))",
        ),
        Metric(
            "scroll_depth",
            "event",
            "mean of each page visit's maximum scroll depth, percent",
            # computed by query.py from per-(visit, page) maxima; see SCROLL_SQL
        ),
        Metric(
            "conversion_rate",
            "derived",
            "converting visitors divided by all visitors in the range, percent "
            "(needs an event:goal filter or dimension)",
            needs=("visitors",),
        ),
        Metric(
            "exit_rate",
            "derived",
            "visits that ended on the page divided by its pageviews, percent "
            "(needs the event:page dimension)",
            needs=("pageviews",),
        ),
        Metric(
            "percentage",
            "derived",
            "share of all visitors in the range, percent (needs a dimension)",
            needs=("visitors",),
        ),
    )
}

ROLLUP_METRICS = frozenset(m.name for m in METRICS.values() if m.rollup_sql)

# Bounce rate and visit duration change by an absolute difference in comparisons, as Plausible.
ABSOLUTE_CHANGE = frozenset({"bounce_rate", "conversion_rate", "exit_rate", "percentage"})


@dataclass(frozen=True)
class Dimension:
    name: str
    kind: str  # "event", "visit", "session", "goal", "prop", "time"
    description: str
    # column expression over `events` (kind event/visit); "" when not an events column
    column: str = ""
    # column over merged sessions (see query.SESSION_COLUMNS), "" when not a visit attribute
    session_column: str = ""
    # key in `rollup_hourly.dimension`, or "" when rollups do not hold it
    rollup: str = ""


def _visit(name: str, column: str, description: str, rollup: bool = True) -> Dimension:
    return Dimension(
        "visit:" + name,
        "visit",
        description,
        column,
        "s_" + column,
        name if rollup else "",
    )


DIMENSIONS: dict[str, Dimension] = {
    d.name: d
    for d in (
        Dimension("event:page", "event", "page path", "pathname", "", "page"),
        Dimension("event:hostname", "event", "hostname", "hostname", "", "hostname"),
        Dimension(
            "event:name", "event", "event name (pageview or a custom event)", "name", "", "name"
        ),
        Dimension("event:goal", "goal", "goal from the [[goal]] config"),
        Dimension("visit:entry_page", "session", "first page of the visit", "", "s_entry_page"),
        Dimension("visit:exit_page", "session", "last page of the visit", "", "s_exit_page"),
        _visit("source", "referrer_source", "referrer source (e.g. google.com, or direct)"),
        _visit("channel", "channel", "acquisition channel"),
        _visit("referrer", "referrer", "full referrer URL without query string"),
        _visit("utm_source", "utm_source", "utm_source"),
        _visit("utm_medium", "utm_medium", "utm_medium"),
        _visit("utm_campaign", "utm_campaign", "utm_campaign"),
        _visit("utm_content", "utm_content", "utm_content"),
        _visit("utm_term", "utm_term", "utm_term"),
        _visit("country", "country_code", "ISO 3166-1 country code"),
        _visit("region", "region", "ISO 3166-2 region code"),
        _visit("device", "device", "device class"),
        _visit("browser", "browser", "browser"),
        _visit("browser_version", "browser_version", "browser major version"),
        _visit("os", "os", "operating system"),
        _visit("os_version", "os_version", "operating system version"),
        Dimension("time", "time", "time bucket chosen from the range length"),
        Dimension("time:hour", "time", "hour (UTC)"),
        Dimension("time:day", "time", "day (UTC)"),
        Dimension("time:week", "time", "week starting Monday (UTC)"),
        Dimension("time:month", "time", "calendar month (UTC)"),
    )
}

PROP_PREFIX = "event:props:"

# The (dimension, events column) pairs the hourly rollup holds; "" is the site total.
ROLLUP_DIMENSIONS: tuple[tuple[str, str], ...] = tuple(
    (d.rollup, d.column) for d in DIMENSIONS.values() if d.rollup
)

# Shown in `meta` so no one mistakes a sum of daily uniques for unique people.
VISITORS_NOTE = (
    "visitors: visitor hashes rotate daily (cookieless mode), so a multi-day total counts a "
    "person once per day they visited (a sum of daily uniques), not unique people"
)


def dimension(name: str) -> Dimension | None:
    """The dimension called `name`, including `event:props:<key>` custom properties."""
    if name.startswith(PROP_PREFIX) and len(name) > len(PROP_PREFIX):
        return Dimension(name, "prop", "custom property " + name[len(PROP_PREFIX) :])
    return DIMENSIONS.get(name)
