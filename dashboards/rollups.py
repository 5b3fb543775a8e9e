"""Visit rollups: bounces and durations per closed day, written once, read by the query layer.

A visit is complete only once it has ended, so no insert-time materialized view can fold its
bounce or duration. Days before yesterday (whose visits have all closed: the session timeout
is at most four hours) are folded from `sessions` into `visits_daily` the first time a query
needs them; today and yesterday are always computed live. Finalizing is idempotent: a day is
recorded in `visits_daily_done`, and a day written twice collapses (ReplacingMergeTree, read
with FINAL). Then each folded day's visits are summed per pair of visit attributes into
`visit_pairs_daily` (recorded in `visit_pairs_done`), for breakdowns filtered on another
attribute.
"""

from __future__ import annotations

import datetime as dt
import threading

from dashboards.metrics import DIMENSIONS
from store.base import Store
from store.columns import VISIT_ATTRIBUTES

# visits_daily.dimension -> merged-session column; '' is the site total.
VISIT_ROLLUP: dict[str, str] = {
    "": "''",
    **{d.rollup: d.session_column for d in DIMENSIONS.values() if d.kind == "visit"},
    "entry_page": "s_entry_page",
    "exit_page": "s_exit_page",
}

# The visit attributes of the dashboard's panels (rollup keys), folded pairwise per closed day
# into `visit_pairs_daily`: clicking a row of one panel filters every other panel by it. The
# fold aggregates each unordered pair once (45 for these ten, each one more row per visit), so
# high-cardinality attributes (full referrer, utm_content, utm_term, versions) are left to
# `visit_facts`.
PAIR_KEYS: tuple[str, ...] = (
    "browser",
    "channel",
    "country",
    "device",
    "os",
    "region",
    "source",
    "utm_campaign",
    "utm_medium",
    "utm_source",
)


def paired(filtered: str, breakdown: str) -> bool:
    """Whether `visit_pairs_daily` holds a breakdown by `breakdown` filtered on `filtered`."""
    return filtered != breakdown and filtered in PAIR_KEYS and breakdown in PAIR_KEYS


_LOCK = threading.Lock()
CHUNK_DAYS = 1  # days folded per statement: each one stays well inside its caps
# Days summed into pairs per statement: reads narrow `visit_facts` columns into a few thousand
# cells a day (~1.4 s a day at 100M events), and a month's backfill makes few parts to merge.
PAIR_CHUNK_DAYS = 10
# Folding is a one-off write per closed day (a first backfill may cover a month), so it gets
# a longer cap than a dashboard read.
FINALIZE_SETTINGS: dict[str, object] = {
    "max_execution_time": 120,
    "max_memory_usage": 2_000_000_000,
    "max_bytes_before_external_group_by": 1_000_000_000,  # spill to disk rather than fail
}


# The visit rollups' metric columns (visits_daily, visit_pairs_daily), summed over merged visits.
VISIT_SUMS = (
    "uniqCombined64State(12)(s_visitor_id) AS visitors, count() AS visits, "
    "countIf(s_pageviews = 1 AND s_interactive = 0) AS bounces, "
    "sum(s_duration_ms) AS duration_ms, sum(s_pageviews) AS pageviews, sum(s_events) AS events"
)
VISIT_SUM_COLUMNS = "visitors, visits, bounces, duration_ms, pageviews, events"


def visits_key(name: str) -> str | None:
    """The visits_daily dimension key of a dimension, or None when it is not held there."""
    dim = DIMENSIONS.get(name)
    if dim is None:
        return None
    if dim.kind == "visit":
        return dim.rollup
    if dim.kind == "session":
        return name.removeprefix("visit:")
    return None


def facts_where(site: str, first: str, last: str) -> str:
    """The condition on `visit_facts` for the closed visits of days [first, last) (Date
    placeholders)."""
    return f"site_id = {site} AND day >= {first} AND day < {last}"


def merged_sessions_sql(site: str, start: str, end: str) -> str:
    """One row per visit of `site` starting in [start, end), from the `sessions` parts.

    `site`, `start` and `end` are bound-parameter placeholders (`{p0:String}`...).
    """
    visit = ", ".join(f"any({c}) AS s_{c}" for c in VISIT_ATTRIBUTES)
    return (
        (
            "SELECT session_id, any(visitor_id) AS s_visitor_id, min(start) AS s_start, "
            "max(`end`) AS s_end, sum(pageviews) AS s_pageviews, sum(events) AS s_events, "
            "sum(interactive_events) AS s_interactive, argMinMerge(entry_page) AS s_entry_page, "
            f"argMaxMerge(exit_page) AS s_exit_page, {visit}, "
            "toUnixTimestamp64Milli(s_end) - toUnixTimestamp64Milli(s_start) AS s_duration_ms "
            f"FROM sessions WHERE site_id = {site} AND `end` >= {start}"
        )
        + "{extra} GROUP BY session_id "
        + f"HAVING s_start >= {start} AND s_start < {end}"
    )


def cutoff(now: dt.datetime, timeout: dt.timedelta = dt.timedelta(minutes=30)) -> dt.date:
    """Days before this one are closed and may be finalized. Yesterday closes once its last
    visits have timed out (plus an hour for the writer's spool to drain)."""
    now = now.astimezone(dt.UTC)
    today = now.date()
    closes = dt.datetime(today.year, today.month, today.day, tzinfo=dt.UTC) + timeout
    return today if now >= closes + dt.timedelta(hours=1) else today - dt.timedelta(days=1)


def live_sessions_sql(site: str, since: str, start: str, end: str) -> str:
    """Like `merged_sessions_sql`, folded from `events` read from `since` on (the period's
    start minus the session timeout): a visit that began before the period has an event in
    that margin, since its events are never further apart than the timeout, so its true
    start is seen and it is left out. Only for periods that end in the future (no visit
    continues past them). Reads two days of events instead of every stored visit."""
    visit = ", ".join(f"argMin({c}, timestamp) AS s_{c}" for c in VISIT_ATTRIBUTES)
    return (
        (
            "SELECT session_id, any(visitor_id) AS s_visitor_id, min(timestamp) AS s_start, "
            "max(timestamp) AS s_end, countIf(name = 'pageview') AS s_pageviews, "
            "count() AS s_events, "
            "countIf(interactive = 1 AND name != 'pageview' AND name != 'engagement') "
            "AS s_interactive, argMinIf(pathname, timestamp, name = 'pageview') AS s_entry_page, "
            f"argMaxIf(pathname, timestamp, name = 'pageview') AS s_exit_page, {visit}, "
            "toUnixTimestamp64Milli(s_end) - toUnixTimestamp64Milli(s_start) AS s_duration_ms "
            f"FROM events WHERE site_id = {site} AND timestamp >= {since}"
        )
        + "{extra} GROUP BY session_id "
        + f"HAVING s_start >= {start} AND s_start < {end}"
    )


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def finalize(
    store: Store,
    site: str,
    first: dt.date,
    last: dt.date,
    now: dt.datetime,
    raw_retention_days: int,
    timeout: dt.timedelta = dt.timedelta(minutes=30),
) -> list[dt.date]:
    """Fold the closed days in [first, last) not yet in `visits_daily`; returns those days."""
    last = min(last, cutoff(now, timeout))
    # days whose sessions the TTL may already have dropped cannot be folded any more
    first = max(first, now.date() - dt.timedelta(days=raw_retention_days - 1))
    if first >= last:
        return []
    with _LOCK:
        # both markers in one read: a dashboard page asks this once
        done: dict[str, set[dt.date]] = {"visits": set(), "pairs": set()}
        for day, kind in store.query(
            "SELECT day, 'visits' FROM visits_daily_done FINAL WHERE site_id = {s:String} "
            "AND day >= {a:Date} AND day < {b:Date} UNION ALL "
            "SELECT day, 'pairs' FROM visit_pairs_done FINAL WHERE site_id = {s:String} "
            "AND day >= {a:Date} AND day < {b:Date}",
            {"s": site, "a": first, "b": last},
            FINALIZE_SETTINGS,
        ).tuples():
            done[str(kind)].add(day)
        days = [first + dt.timedelta(days=i) for i in range((last - first).days)]
        todo = [d for d in days if d not in done["visits"]]
        for chunk in _chunks(todo, CHUNK_DAYS):
            _fold(store, site, chunk, timeout)
        # after the visits: the pairs are summed from the day's `visit_facts` (a day folded
        # before the pairs existed gets them now)
        pairs = [d for d in days if d not in done["pairs"]]
        for chunk in _chunks(pairs, PAIR_CHUNK_DAYS):
            _fold_pairs(store, site, chunk)
        return sorted(set(todo) | set(pairs))


def _chunks(days: list[dt.date], size: int) -> list[list[dt.date]]:
    """Runs of consecutive days, at most `size` long."""
    out: list[list[dt.date]] = []
    for day in days:
        if out and len(out[-1]) < size and out[-1][-1] + dt.timedelta(days=1) == day:
            out[-1].append(day)
        else:
            out.append([day])
    return out


def _fold(store: Store, site: str, days: list[dt.date], timeout: dt.timedelta) -> None:
    """Fold consecutive closed `days` from their events (the primary key finds them): the
    visits starting on them, read from a timeout before the first to a day after the last
    (a visit running on for more than a day is cut there)."""
    pairs = ", ".join(f"('{k}', {c})" for k, c in VISIT_ROLLUP.items())
    inner = live_sessions_sql(
        "{s:String}",
        "{since:DateTime64(3, 'UTC')}",
        "{a:DateTime64(3, 'UTC')}",
        "{b:DateTime64(3, 'UTC')}",
    ).replace("{extra}", " AND timestamp < {c:DateTime64(3, 'UTC')}")
    a = _midnight(days[0])
    b = _midnight(days[-1] + dt.timedelta(days=1))
    params = {"s": site, "since": a - timeout, "a": a, "b": b, "c": b + dt.timedelta(days=1)}
    store.command(
        f"INSERT INTO visits_daily (site_id, day, dimension, value, {VISIT_SUM_COLUMNS}, "
        "finalized_at) "
        "SELECT {s:String}, toDate(s_start) AS d, dv.1 AS dimension, dv.2 AS value, "
        f"{VISIT_SUMS}, now64(3) "
        f"FROM ({inner}) ARRAY JOIN [{pairs}] AS dv GROUP BY d, dimension, value",
        params,
        FINALIZE_SETTINGS,
    )
    columns = ", ".join(
        [
            "session_id",
            "s_visitor_id",
            "s_start",
            "s_pageviews",
            "s_events",
            "s_interactive",
            "s_duration_ms",
            "s_entry_page",
            "s_exit_page",
            *(f"s_{c}" for c in VISIT_ATTRIBUTES),
        ]
    )
    # Ordered, with a token: two workers folding the same days at once write identical
    # blocks, which the table stores once.
    store.command(
        f"INSERT INTO visit_facts (site_id, day, {columns}, finalized_at) "
        f"SELECT {{s:String}}, toDate(s_start) AS d, {columns}, now64(3) "
        f"FROM ({inner}) ORDER BY d, session_id",
        params,
        {**FINALIZE_SETTINGS, "insert_deduplication_token": f"visit_facts:{site}:{a}:{b}"},
    )
    _mark(store, "visits_daily_done", site, days)


def _mark(store: Store, marker: str, site: str, days: list[dt.date]) -> None:
    """Record `days` as folded in `marker` (after the rows: a crash in between refolds)."""
    store.command(
        f"INSERT INTO {marker} (site_id, day, finalized_at) "
        "SELECT {s:String}, arrayJoin({days:Array(Date)}), now64(3)",
        {"s": site, "days": days},
        FINALIZE_SETTINGS,
    )


def _fold_pairs(store: Store, site: str, days: list[dt.date]) -> None:
    """Sum the closed visits of `days` (from `visit_facts`) per pair of PAIR_KEYS values,
    then store each pair both ways round (a copy of the row, not a second aggregation)."""
    pairs = ", ".join(
        f"('{a}', {VISIT_ROLLUP[a]}, '{b}', {VISIT_ROLLUP[b]})"
        for i, a in enumerate(PAIR_KEYS)
        for b in PAIR_KEYS[i + 1 :]
    )
    store.command(
        "INSERT INTO visit_pairs_daily (site_id, day, filter, filter_value, dimension, value, "
        f"{VISIT_SUM_COLUMNS}, finalized_at) "
        f"SELECT {{s:String}}, day, o.1, o.2, o.3, o.4, {VISIT_SUM_COLUMNS}, now64(3) FROM ("
        f"SELECT day, p.1 AS k1, p.2 AS v1, p.3 AS k2, p.4 AS v2, {VISIT_SUMS} "
        f"FROM visit_facts ARRAY JOIN [{pairs}] AS p "
        "WHERE site_id = {s:String} AND day IN {days:Array(Date)} "
        "GROUP BY day, k1, v1, k2, v2"
        ") ARRAY JOIN [(k1, v1, k2, v2), (k2, v2, k1, v1)] AS o",
        {"s": site, "days": days},
        FINALIZE_SETTINGS,
    )
    _mark(store, "visit_pairs_done", site, days)
