"""The query layer: a `QuerySpec` in, Plausible-shaped results out, from rollups or raw events.

`run_query(store, config, spec)` is the one entry point for the Stats API (v2 and v1), the web
dashboard's pages and their JSON twins. Plan:

- event metrics (visitors, visits, pageviews, events) come from `rollup_hourly` when the query
  allows it (at most one non-time dimension that the rollup holds, filters on that same
  dimension only, hour-aligned range), else from raw `events`;
- visit metrics (bounce rate, visit duration; any metric broken down by entry or exit page)
  come, for closed days, from `visits_daily` (by one attribute, filtered on that one),
  `visit_pairs_daily` (by one attribute, filtered on another) or `visit_facts` (one row per
  visit), and for today from its events folded per visit (dashboards/rollups.py);
- time on page and scroll depth come from raw events (engagement pings).

Every value is a bound parameter; every identifier comes from `dashboards.metrics`.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from dashboards import filters as flt
from dashboards.batch import Batch
from dashboards.filters import Filter, Leaf, Params
from dashboards.metrics import (
    ABSOLUTE_CHANGE,
    DIMENSIONS,
    METRICS,
    PROP_PREFIX,
    ROLLUP_METRICS,
    VISITORS_NOTE,
    Dimension,
    dimension,
)
from dashboards.periods import BUCKETS, Period, RangeError, auto_bucket, bucket_label, parse_range
from dashboards.periods import time_labels as make_time_labels
from dashboards.rollups import (
    cutoff,
    facts_where,
    finalize,
    live_sessions_sql,
    merged_sessions_sql,
    paired,
    visits_key,
)
from dashboards.suppression import OTHER, Row, fold, withhold_small
from firstparty.config import Config
from store.base import Store, StoreError

log = logging.getLogger("firstparty.query")

# Every dashboard query is capped so that no request can stall the engine or exhaust memory.
QUERY_SETTINGS: dict[str, Any] = {
    "max_execution_time": 10,
    "max_memory_usage": 2_000_000_000,
    "timeout_overflow_mode": "throw",
    # a large GROUP BY spills to disk instead of failing at the memory cap
    "max_bytes_before_external_group_by": 1_000_000_000,
}
# A page's reads of small inputs (the rollups, the last day or two of events): one thread each.
# The page runs its queries side by side on few cores, and for these a second thread costs
# more than it saves (10M events: 115-121 -> 106-108 ms, filtered 179-184 -> 167-170 ms; 100M:
# no change; bench/dashboard.py, 2026-11-25). A query asked alone keeps the engine's default.
SMALL_READ: dict[str, Any] = {"max_threads": 1}
SMALL_LIVE_SPAN = dt.timedelta(days=2)
# Side queries of one answer (the previous period, the totals), run beside its main query.
_SIDE = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="query")
MAX_ROWS = 100_000  # breakdown rows read back per query (the top ones by visitors)
MAX_LIMIT = 10_000
EVENT_METRICS = ("visitors", "visits", "pageviews", "events", "time_on_page")
SESSION_METRICS = ("bounce_rate", "visit_duration")
SOURCES = ("auto", "rollup", "raw")
HOUR_TYPE = "DateTime('UTC')"
DIRECT = "Direct / None"


class QueryError(ValueError):
    """The query is invalid; `field` names the request field, the message says why."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"`{field_name}`: {message}")
        self.field = field_name


@dataclass(frozen=True)
class Include:
    comparisons: bool = False
    totals: bool = False
    total_rows: bool = False
    time_labels: bool = False


@dataclass(frozen=True)
class QuerySpec:
    site_id: str
    metrics: tuple[str, ...]
    period: Period
    dimensions: tuple[str, ...] = ()
    filters: tuple[Filter, ...] = ()
    order_by: tuple[tuple[str, str], ...] = ()
    include: Include = field(default_factory=Include)
    limit: int = MAX_LIMIT
    offset: int = 0
    source: str = "auto"  # "raw" / "rollup" force a path (tests and benchmarks compare them)
    echo: dict[str, Any] = field(default_factory=dict)  # the request as given, for `query`


# -- parsing --------------------------------------------------------------------------------


def _bool(include: dict[str, Any], name: str) -> bool:
    value = include.get(name, False)
    if not isinstance(value, bool):
        raise QueryError(f"include.{name}", "must be true or false")
    return value


def parse_query(body: Any, config: Config, now: dt.datetime | None = None) -> QuerySpec:
    """Validate a Stats API v2 request body; errors name the field and say why."""
    now = now or dt.datetime.now(dt.UTC)
    if not isinstance(body, dict):
        raise QueryError("body", "must be a JSON object")
    known = {
        "site_id",
        "metrics",
        "date_range",
        "dimensions",
        "filters",
        "order_by",
        "include",
        "pagination",
        "source",
    }
    unknown = sorted(set(body) - known)
    if unknown:
        raise QueryError(unknown[0], "is not a known field; allowed: " + ", ".join(sorted(known)))
    site = body.get("site_id")
    if not isinstance(site, str) or not site:
        raise QueryError("site_id", "is required: the site's domain, as a string")
    if config.site(site) is None:
        raise QueryError("site_id", f"{site!r} is not a configured site")
    metrics = body.get("metrics")
    if not isinstance(metrics, list) or not metrics:
        raise QueryError("metrics", "must be a non-empty list of metric names")
    for m in metrics:
        if not isinstance(m, str) or m not in METRICS:
            raise QueryError("metrics", f"unknown metric {m!r}; known: " + ", ".join(METRICS))
    if len(set(metrics)) != len(metrics):
        raise QueryError("metrics", "lists a metric twice")
    if "date_range" not in body:
        raise QueryError("date_range", 'is required, e.g. "7d" or ["2024-01-01", "2024-01-31"]')
    try:
        period = parse_range(body["date_range"], now)
    except RangeError as exc:
        raise QueryError("date_range", str(exc)) from None
    dims = body.get("dimensions", [])
    if not isinstance(dims, list) or not all(isinstance(d, str) for d in dims):
        raise QueryError("dimensions", "must be a list of dimension names")
    for d in dims:
        if dimension(d) is None:
            raise QueryError(
                "dimensions",
                f"unknown dimension {d!r}; known: "
                + ", ".join([*DIMENSIONS, PROP_PREFIX + "<key>"]),
            )
    if len(set(dims)) != len(dims):
        raise QueryError("dimensions", "lists a dimension twice")
    if sum(1 for d in dims if d.startswith("time")) > 1:
        raise QueryError("dimensions", "may hold only one time dimension")
    raw_filters = body.get("filters", [])
    if not isinstance(raw_filters, list):
        raise QueryError("filters", "must be a list of filters")
    try:
        parsed = tuple(flt.parse(f, config.goals, f"[{i}]") for i, f in enumerate(raw_filters))
    except flt.FilterError as exc:
        raise QueryError("filters", str(exc)) from None
    order = body.get("order_by", [])
    if not isinstance(order, list):
        raise QueryError("order_by", 'must be a list of [metric or dimension, "asc"|"desc"]')
    order_by: list[tuple[str, str]] = []
    for entry in order:
        if (
            not isinstance(entry, list)
            or len(entry) != 2
            or entry[1] not in ("asc", "desc")
            or not isinstance(entry[0], str)
        ):
            raise QueryError("order_by", f'{entry!r} must be [name, "asc" or "desc"]')
        if entry[0] not in metrics and entry[0] not in dims:
            raise QueryError(
                "order_by", f"{entry[0]!r} must be one of the query's metrics or dimensions"
            )
        order_by.append((entry[0], entry[1]))
    include_raw = body.get("include", {})
    if not isinstance(include_raw, dict):
        raise QueryError("include", "must be an object")
    unknown = sorted(
        set(include_raw) - {"comparisons", "totals", "total_rows", "time_labels", "imports"}
    )
    if unknown:
        raise QueryError(f"include.{unknown[0]}", "is not supported")
    comparisons = include_raw.get("comparisons")
    if comparisons not in (None, False):
        if (
            not (isinstance(comparisons, dict) and comparisons.get("mode") == "previous_period")
            and comparisons is not True
        ):
            raise QueryError("include.comparisons", 'supports {"mode": "previous_period"}')
    include = Include(
        comparisons=comparisons not in (None, False),
        totals=_bool(include_raw, "totals"),
        total_rows=_bool(include_raw, "total_rows"),
        time_labels=_bool(include_raw, "time_labels"),
    )
    if include.time_labels and not any(d.startswith("time") for d in dims):
        raise QueryError("include.time_labels", "needs a time dimension")
    pagination = body.get("pagination", {})
    if not isinstance(pagination, dict):
        raise QueryError("pagination", "must be an object with limit and offset")
    limit = pagination.get("limit", MAX_LIMIT)
    offset = pagination.get("offset", 0)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise QueryError("pagination.limit", f"must be a whole number from 1 to {MAX_LIMIT}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise QueryError("pagination.offset", "must be a whole number, 0 or more")
    source = body.get("source", "auto")
    if source not in SOURCES:
        raise QueryError("source", "must be auto, rollup or raw")
    spec = QuerySpec(
        site_id=site,
        metrics=tuple(metrics),
        period=period,
        dimensions=tuple(dims),
        filters=parsed,
        order_by=tuple(order_by),
        include=include,
        limit=limit,
        offset=offset,
        source=source,
        echo={"date_range": body["date_range"], "filters": raw_filters},
    )
    check(spec)
    return spec


def check(spec: QuerySpec) -> None:
    """Combinations the metrics need (shared by v1 and v2)."""
    dims = [dimension(d) for d in spec.dimensions]
    kinds = {d.kind for d in dims if d is not None}
    has_goal = "goal" in kinds or any(
        leaf.dim.kind == "goal" for f in spec.filters for leaf in flt.leaves(f)
    )
    if "conversion_rate" in spec.metrics and not has_goal:
        raise QueryError("metrics", "conversion_rate needs an event:goal filter or dimension")
    if "exit_rate" in spec.metrics and [d for d in spec.dimensions if not d.startswith("time")] != [
        "event:page"
    ]:
        raise QueryError("metrics", "exit_rate needs the event:page dimension (and no other)")
    if "percentage" in spec.metrics and not [
        d for d in spec.dimensions if not d.startswith("time")
    ]:
        raise QueryError("metrics", "percentage needs a non-time dimension")
    if "session" in kinds and ({"time_on_page", "scroll_depth"} & set(spec.metrics)):
        raise QueryError(
            "metrics", "time_on_page and scroll_depth cannot be broken down by entry or exit page"
        )
    if "session" in kinds and "events" in spec.metrics:
        raise QueryError("metrics", "events cannot be broken down by entry or exit page")
    if "session" in kinds and ({"event", "goal", "prop"} & kinds):
        raise QueryError("dimensions", "entry/exit pages cannot be combined with event dimensions")


# -- SQL building ---------------------------------------------------------------------------


def _wrap(dim: Dimension, expr: str) -> str:
    if dim.name == "visit:source":
        return f"if({expr} = '', '{DIRECT}', {expr})"
    return expr


def _prop_expr(dim: Dimension, params: Params) -> str:
    key = params.add(dim.name[len(PROP_PREFIX) :], "String")
    return f"if(mapContains(props, {key}), props[{key}], '(none)')"


def _goal_expr(config: Config, params: Params) -> str:
    items = [
        f"if({flt.goal_condition(g, params)}, {params.add(g.name, 'String')}, '')"
        for g in config.goals
    ]
    return (
        f"arrayJoin(arrayFilter(x -> x != '', [{', '.join(items)}]))"
        if items
        else "arrayJoin(CAST([], 'Array(String)'))"
    )


@dataclass
class _Plan:
    store: Store
    config: Config
    spec: QuerySpec
    grains: dict[str, str]  # time dimension name -> resolved grain
    now: dt.datetime
    notes: list[str] = field(default_factory=list)
    sources: set[str] = field(default_factory=set)
    batch: Batch[Any] | None = None  # the queries asked with this one (a dashboard page)

    @property
    def dims(self) -> list[Dimension]:
        return [d for d in (dimension(n) for n in self.spec.dimensions) if d is not None]

    def grain(self, dim: Dimension) -> str:
        return self.grains[dim.name]

    def query(
        self, sql: str, params: Params, settings: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        return self.store.query(sql, params.values, {**QUERY_SETTINGS, **(settings or {})}).dicts()


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def _time(plan: _Plan, period: Period, params: Params) -> tuple[str, str]:
    return params.add(period.start, "DateTime64(3, 'UTC')"), params.add(
        period.end, "DateTime64(3, 'UTC')"
    )


def _events_leaf(plan: _Plan, params: Params, site: str) -> Any:
    def leaf_fn(leaf: Leaf) -> str:
        d = leaf.dim
        if d.kind in ("event", "visit"):
            return flt.leaf_sql(leaf, _wrap(d, d.column), params)
        if d.kind == "prop":
            return flt.leaf_sql(leaf, _prop_expr(d, params), params)
        if d.kind == "goal":
            goals = flt.goals_matching(leaf, plan.config.goals)
            if not goals:
                return "0"
            return "(" + " OR ".join(flt.goal_condition(g, params) for g in goals) + ")"
        merge = (
            "argMinMerge(entry_page)" if d.name == "visit:entry_page" else "argMaxMerge(exit_page)"
        )
        return (
            f"session_id IN (SELECT session_id FROM (SELECT session_id, {merge} AS v FROM sessions "
            f"WHERE site_id = {site} GROUP BY session_id) WHERE {flt.leaf_sql(leaf, 'v', params)})"
        )

    return leaf_fn


def _events_where(plan: _Plan, period: Period, params: Params) -> str:
    site = params.add(plan.spec.site_id, "String")
    if period.day_aligned():
        # the same rows (periods are UTC days), from a 2-byte column, not the 8-byte timestamp
        first, last = params.add(period.start.date(), "Date"), params.add(period.end.date(), "Date")
        where = f"site_id = {site} AND day >= {first} AND day < {last}"
    else:
        start, end = _time(plan, period, params)
        where = f"site_id = {site} AND timestamp >= {start} AND timestamp < {end}"
    leaf_fn = _events_leaf(plan, params, site)
    for tree in plan.spec.filters:
        where += " AND " + flt.compile_tree(tree, leaf_fn)
    return where


def _event_dim_expr(plan: _Plan, dim: Dimension, params: Params, ts: str = "timestamp") -> str:
    if dim.kind == "time":
        return BUCKETS[plan.grain(dim)].format(ts)
    if dim.kind == "prop":
        return _prop_expr(dim, params)
    if dim.kind == "goal":
        return _goal_expr(plan.config, params)
    return _wrap(dim, dim.column)


def _rollup_source(plan: _Plan, period: Period, metrics: set[str]) -> tuple[str, str] | None:
    """(table, dimension key) of the event rollup that can answer, or None for raw events."""
    spec = plan.spec
    if spec.source == "raw" or not metrics <= ROLLUP_METRICS:
        return None
    nontime = [d for d in plan.dims if d.kind != "time"]
    if len(nontime) > 1 or (nontime and not nontime[0].rollup):
        return None
    filtered = {leaf.dim.name: leaf.dim for f in spec.filters for leaf in flt.leaves(f)}
    if len(filtered) > 1:
        return None
    for d in filtered.values():
        if not d.rollup or (nontime and d.name != nontime[0].name):
            return None
    hourly = any(g == "time:hour" for g in plan.grains.values()) or not period.day_aligned()
    if hourly:
        if nontime or filtered or not period.hour_aligned():
            return None
        return "rollup_hourly", ""
    key = nontime[0].rollup if nontime else next((d.rollup for d in filtered.values()), "")
    return "rollup_daily", key


def _event_rows(
    plan: _Plan, period: Period, metrics: set[str]
) -> dict[tuple[Any, ...], dict[str, Any]]:
    params = Params()
    dims = plan.dims
    names = [f"d{i}" for i in range(len(dims))]
    wanted = sorted(metrics | {"visitors"})
    rollup = _rollup_source(plan, period, set(wanted))
    if rollup is not None:
        table, key = rollup
        plan.sources.add("rollup")
        column = "hour" if table == "rollup_hourly" else "day"
        kind = "DateTime('UTC')" if table == "rollup_hourly" else "Date"
        start = period.start if table == "rollup_hourly" else period.start.date()
        end = period.end if table == "rollup_hourly" else period.end.date()
        cols = [
            (BUCKETS[plan.grain(d)].format(column) if d.kind == "time" else _wrap(d, "value"))
            + f" AS {n}"
            for d, n in zip(dims, names, strict=True)
        ]
        site = params.add(plan.spec.site_id, "String")
        where = (
            f"site_id = {site} AND dimension = {params.add(key, 'String')} "
            f"AND {column} >= {params.add(start, kind)} AND {column} < {params.add(end, kind)}"
        )
        for tree in plan.spec.filters:
            where += " AND " + flt.compile_tree(
                tree, lambda leaf: flt.leaf_sql(leaf, _wrap(leaf.dim, "value"), params)
            )
        # `m_` aliases: a column and an aggregate of it must not share a name
        aggs = [f"{METRICS[m].rollup_sql} AS m_{m}" for m in wanted]
    else:
        if plan.spec.source == "rollup":
            raise QueryError("source", "this query cannot be answered from the rollups")
        plan.sources.add("raw")
        cols = [
            f"{_event_dim_expr(plan, d, params)} AS {n}" for d, n in zip(dims, names, strict=True)
        ]
        where = _events_where(plan, period, params)
        aggs = [f"{METRICS[m].sql} AS m_{m}" for m in wanted]
        table = "events"
    group = (
        f" GROUP BY {', '.join(names)} ORDER BY m_visitors DESC LIMIT {MAX_ROWS}" if names else ""
    )
    sql = f"SELECT {', '.join([*cols, *aggs])} FROM {table} WHERE {where}{group}"
    rows = plan.query(sql, params, _small(plan, table != "events"))
    return {_key(plan, r, names): {m: r["m_" + m] for m in wanted} for r in rows}


def _key(plan: _Plan, row: dict[str, Any], names: list[str]) -> tuple[Any, ...]:
    return _key_dims(plan, plan.dims, row, names)


def _session_filters_only(plan: _Plan) -> bool:
    return all(
        leaf.dim.kind in ("visit", "session") for f in plan.spec.filters for leaf in flt.leaves(f)
    )


def _visit_filters_only(plan: _Plan) -> bool:
    """Filters on visit attributes alone (no entry or exit page), which events also carry."""
    return all(leaf.dim.kind == "visit" for f in plan.spec.filters for leaf in flt.leaves(f))


def _session_where(plan: _Plan, params: Params) -> str:
    """The query's filters (visit and session dimensions only) over merged-visit columns."""

    def leaf_fn(leaf: Leaf) -> str:
        return flt.leaf_sql(leaf, _wrap(leaf.dim, leaf.dim.session_column), params)

    return " AND ".join(flt.compile_tree(t, leaf_fn) for t in plan.spec.filters)


# Additive parts of the visit metrics: summed across days, sources and folded rows.
_PARTS = {
    "_visits": "count()",
    "_bounces": "countIf(s_pageviews = 1 AND s_interactive = 0)",
    "_duration": "sum(s_duration_ms)",
}
_PARTS_ROLLUP = {
    "_visits": "sum(visits)",
    "_bounces": "sum(bounces)",
    "_duration": "sum(duration_ms)",
}
_SESSION_AS_EVENT = {
    "visitors": ("uniqCombined64(12)(s_visitor_id)", "uniqCombined64Merge(12)(visitors)"),
    "visits": ("count()", "sum(visits)"),
    "pageviews": ("sum(s_pageviews)", "sum(pageviews)"),
    "events": ("sum(s_events)", "sum(events)"),
}
# Today's visits read once for a page's breakdowns and its top stats: what both ask of them.
_LIVE_SHARED = {"visitors": _SESSION_AS_EVENT["visitors"][0], **_PARTS}


def _session_rows(
    plan: _Plan,
    period: Period,
    aggs: dict[str, str],
    dims: list[Dimension] | None = None,
    facts: bool = False,
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Visit aggregates over the visits starting in `period`, merged live: from `sessions`,
    or for a period still running from its recent `events` (which the primary key finds)."""
    dims = plan.dims if dims is None else dims
    if plan.batch is not None:
        shared = _shared_visits(plan, plan.batch, period, aggs, dims, facts)
        if shared is not None:
            return shared
    sql, params, names = _session_sql(plan, period, aggs, dims, facts)
    if names:
        sql += f" GROUP BY {', '.join(names)}"
    rows = plan.query(sql, params, _small(plan, _small_live(plan, period, facts)))
    return {_key_dims(plan, dims, r, names): {m: r[m] for m in aggs} for r in rows}


def _shared_visits(
    plan: _Plan,
    batch: Batch[Any],
    period: Period,
    aggs: dict[str, str],
    dims: list[Dimension],
    facts: bool,
) -> dict[tuple[Any, ...], dict[str, Any]] | None:
    """This query's part of the batch's one read of the visits, or None to read alone (a
    grouping the batch does not hold, or nobody to share with).

    The visits are grouped by each breakdown of the batch; closed days only for those that
    read them (the others have a rollup). With a filter, today's visits are read by the
    breakdowns anyway, and the top stats (no dimension) take their totals from the same read.
    Each asker gets exactly the aggregates it asked for."""
    sets: list[tuple[Dimension, ...]] = [
        (d,) for d in batch.dims if not facts or not _closed_rollup(plan, period, [d])
    ]
    together = aggs
    if batch.totals and not facts and plan.spec.filters:
        sets.append(())
        together = _LIVE_SHARED
    if tuple(dims) not in sets or len(sets) < 2 or not aggs.items() <= together.items():
        return None
    key = (plan.spec.site_id, repr(plan.spec.filters), period.start, period.end, facts)
    # keyed by the aggregates too: a breakdown asking other metrics reads apart (every extra
    # column costs the read at 100M events; the page's panels all ask the same)
    shared: dict[tuple[str, ...], dict[tuple[Any, ...], dict[str, Any]]] = batch.once(
        (*key, tuple(together.items()), tuple(tuple(d.name for d in ds) for ds in sets)),
        lambda: _session_sets(plan, period, together, sets, facts),
    )
    mine = shared[tuple(d.name for d in dims)]
    return {k: {m: v[m] for m in aggs} for k, v in mine.items()}


def _session_sets(
    plan: _Plan,
    period: Period,
    aggs: dict[str, str],
    sets: list[tuple[Dimension, ...]],
    facts: bool,
) -> dict[tuple[str, ...], dict[tuple[Any, ...], dict[str, Any]]]:
    """`_session_rows` for each of `sets` (one visit dimension, or none: the totals), in one
    read, keyed by the set's dimension names."""
    dims = [ds[0] for ds in sets if ds]
    sql, params, names = _session_sql(plan, period, aggs, dims, facts, flags=True)
    groups = [f"({n})" for n in names] + ["()" for ds in sets if not ds]
    sql += f" GROUP BY GROUPING SETS ({', '.join(groups)})"
    out: dict[tuple[str, ...], dict[tuple[Any, ...], dict[str, Any]]] = {
        tuple(d.name for d in ds): {} for ds in sets
    }
    # grouping(x) is 0 for the rows grouped by x (standard SQL; pinned for older servers)
    settings = {
        "force_grouping_standard_compatibility": 1,
        **_small(plan, _small_live(plan, period, facts)),
    }
    for r in plan.query(sql, params, settings):
        by = [(d, n) for d, n in zip(dims, names, strict=True) if r[f"g_{n}"] == 0]
        if by:
            d, n = by[0]
            out[(d.name,)][_key_dims(plan, [d], r, [n])] = {m: r[m] for m in aggs}
        else:
            out[()][()] = {m: r[m] for m in aggs}
    return out


def _live(plan: _Plan, period: Period, facts: bool) -> bool:
    """Whether a visit read folds the period's recent events (a period still running), not
    stored visits: `_session_sql`'s choice."""
    return not facts and period.end > plan.now


def _small(plan: _Plan, small: bool) -> dict[str, Any]:
    """The settings of a read: SMALL_READ for a small one asked with a page's other queries."""
    return SMALL_READ if small and plan.batch is not None else {}


def _small_live(plan: _Plan, period: Period, facts: bool) -> bool:
    """A live read of at most the last two days: the live part of an answer whose closed days
    come from the rollups (not a whole period folded from raw events)."""
    return _live(plan, period, facts) and period.end - period.start <= SMALL_LIVE_SPAN


def _session_sql(
    plan: _Plan,
    period: Period,
    aggs: dict[str, str],
    dims: list[Dimension],
    facts: bool,
    flags: bool = False,
) -> tuple[str, Params, list[str]]:
    """The SELECT of `_session_rows` up to its GROUP BY, and its dimension column names
    (with `flags`, also `g_<name>`: which grouping set a row belongs to)."""
    params = Params()
    names = [f"d{i}" for i in range(len(dims))]
    site = params.add(plan.spec.site_id, "String")
    start, end = _time(plan, period, params)
    extra = ""
    if plan.spec.filters and not _session_filters_only(plan):
        matching = _events_where(plan, period, params)
        extra = f" AND session_id IN (SELECT session_id FROM events WHERE {matching})"
    where = []
    if facts:
        # one row per visit already: read the table itself, so the filter below is applied
        # while its rows are read
        first, last = params.add(period.start.date(), "Date"), params.add(period.end.date(), "Date")
        source = "visit_facts AS s"
        where.append(facts_where(site, first, last) + extra)
    elif _live(plan, period, facts):
        timeout = dt.timedelta(minutes=plan.config.privacy.session_timeout_minutes)
        since = params.add(period.start - timeout, "DateTime64(3, 'UTC')")
        if plan.spec.filters and _visit_filters_only(plan):
            # A visit's attributes are on each of its events (the writer copies them), so the
            # events of the other visits are dropped before the per-visit fold; whole visits
            # go, so the start of each kept visit is still its true start.
            extra = " AND " + " AND ".join(
                flt.compile_tree(t, _events_leaf(plan, params, site)) for t in plan.spec.filters
            )
        source = f"({live_sessions_sql(site, since, start, end).replace('{extra}', extra)}) AS s"
    else:
        source = f"({merged_sessions_sql(site, start, end).replace('{extra}', extra)}) AS s"
    event_dims = [
        (d, n) for d, n in zip(dims, names, strict=True) if d.kind in ("event", "prop", "goal")
    ]
    cols = []
    for d, n in zip(dims, names, strict=True):
        if d.kind == "time":
            cols.append(f"{BUCKETS[plan.grain(d)].format('s_start')} AS {n}")
        elif d.kind in ("visit", "session"):
            cols.append(f"{_wrap(d, d.session_column)} AS {n}")
        else:
            cols.append(f"e.{n} AS {n}")
    if flags:
        cols += [f"grouping({n}) AS g_{n}" for n in names]
    selected = ", ".join([*cols, *(f"{a} AS {m}" for m, a in aggs.items())])
    sql = f"SELECT {selected} FROM {source}"
    if event_dims:
        picks = ", ".join(f"{_event_dim_expr(plan, d, params)} AS {n}" for d, n in event_dims)
        sql += (
            f" INNER JOIN (SELECT DISTINCT session_id AS e_session, {picks} FROM events "
            f"WHERE {_events_where(plan, period, params)}) AS e ON s.session_id = e.e_session"
        )
    if plan.spec.filters and _session_filters_only(plan):
        where.append(_session_where(plan, params))
    if where:
        sql += " WHERE " + " AND ".join(where)
    return sql, params, names


def _visits_key(plan: _Plan, period: Period, dims: list[Dimension]) -> str | None:
    """The visits_daily dimension that can answer, or None to compute visits live."""
    if not _closed_days_ok(plan, period, dims):
        return None
    nontime = [d for d in dims if d.kind != "time"]
    filtered = {leaf.dim.name for f in plan.spec.filters for leaf in flt.leaves(f)}
    if len(nontime) > 1 or len(filtered) > 1:
        return None
    names = {d.name for d in nontime} | filtered
    if len(names) > 1:
        return None
    name = next(iter(names), "")
    return "" if not name else visits_key(name)


def _pair(plan: _Plan, period: Period, dims: list[Dimension]) -> tuple[str, str] | None:
    """(filtered, breakdown) rollup keys when `visit_pairs_daily` can answer (a breakdown by one
    visit attribute, filtered on another), else None."""
    if not _closed_days_ok(plan, period, dims):
        return None
    nontime = [d for d in dims if d.kind != "time"]
    filtered = {leaf.dim.name: leaf.dim for f in plan.spec.filters for leaf in flt.leaves(f)}
    if len(nontime) != 1 or len(filtered) != 1:
        return None
    (by,), (on,) = nontime, filtered.values()
    if by.kind != "visit" or on.kind != "visit" or not paired(on.rollup, by.rollup):
        return None
    return on.rollup, by.rollup


def _closed_rollup(plan: _Plan, period: Period, dims: list[Dimension]) -> bool:
    """Whether a visit rollup answers the closed days (else `visit_facts` or live visits)."""
    return _visits_key(plan, period, dims) is not None or _pair(plan, period, dims) is not None


def _closed_days_ok(plan: _Plan, period: Period, dims: list[Dimension]) -> bool:
    """Whether closed days may come from what was folded per day (`visit_facts` and the visit
    rollups): day-aligned, no hourly buckets, not forced to raw."""
    if plan.spec.source == "raw" or not period.day_aligned():
        return False
    return not any(plan.grain(d) == "time:hour" for d in dims if d.kind == "time")


def _visit_only(plan: _Plan, needed: set[str]) -> bool:
    """A query about visits alone: answered from visits (closed ones from `visit_facts`)."""
    if any(d.kind not in ("visit", "session", "time") for d in plan.dims):
        return False
    if not _session_filters_only(plan):
        return False
    allowed = {"visitors", "visits", "pageviews", "views_per_visit", "percentage"}
    return needed <= allowed | set(SESSION_METRICS)


def _finalize(plan: _Plan, period: Period, timeout: dt.timedelta) -> None:
    """Fold the period's closed days not yet folded; asked once per batch (a page's panels
    all cover the same period, and each ask is a read of the markers under a lock)."""
    site, first, last = plan.spec.site_id, period.start.date(), period.end.date()

    def fold() -> list[dt.date]:
        retention = plan.config.privacy.raw_retention_days
        return finalize(plan.store, site, first, last, plan.now, retention, timeout)

    if plan.batch is None:
        fold()
    else:
        plan.batch.once(("finalize", site, first, last), fold)


def _visit_rows(
    plan: _Plan, period: Period, aggs: dict[str, tuple[str, str]], dims: list[Dimension]
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Visit aggregates: closed days from `visits_daily` (or, filtered on another attribute,
    `visit_pairs_daily` or `visit_facts`), today and yesterday live."""
    key = _visits_key(plan, period, dims)
    pairs = _pair(plan, period, dims) if key is None else None
    live_aggs = {m: a[0] for m, a in aggs.items()}
    timeout = dt.timedelta(minutes=plan.config.privacy.session_timeout_minutes)
    use_facts = key is None and pairs is None and _closed_days_ok(plan, period, dims)
    if key is None and pairs is None and not use_facts:
        plan.sources.add("sessions")
        return _session_rows(plan, period, live_aggs, dims)
    try:
        _finalize(plan, period, timeout)
    except StoreError as exc:
        # Folding failed (e.g. its cap under load): answer live now, fold on a later query.
        log.warning("folding closed days into visits_daily failed: %s", type(exc).__name__)
        plan.sources.add("sessions")
        return _session_rows(plan, period, live_aggs, dims)
    split = max(period.start, min(period.end, _midnight(cutoff(plan.now, timeout))))
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    if split > period.start and use_facts:
        plan.sources.add("visit_facts")
        closed = Period(period.start, split, "closed")
        out = _session_rows(plan, closed, live_aggs, dims, facts=True)
    elif split > period.start:
        plan.sources.add("rollup")
        params = Params()
        names = [f"d{i}" for i in range(len(dims))]
        site = params.add(plan.spec.site_id, "String")
        days = (
            f"day >= {params.add(period.start.date(), 'Date')} "
            f"AND day < {params.add(split.date(), 'Date')}"
        )
        if pairs is not None:
            table, value = "visit_pairs_daily", "filter_value"
            where = (
                f"site_id = {site} AND filter = {params.add(pairs[0], 'String')} "
                f"AND dimension = {params.add(pairs[1], 'String')} AND {days}"
            )
        else:
            assert key is not None
            table, value = "visits_daily", "value"
            where = f"site_id = {site} AND dimension = {params.add(key, 'String')} AND {days}"
        cols = [
            (BUCKETS[plan.grain(d)].format("day") if d.kind == "time" else _wrap(d, "value"))
            + f" AS {n}"
            for d, n in zip(dims, names, strict=True)
        ]
        for tree in plan.spec.filters:
            where += " AND " + flt.compile_tree(
                tree, lambda leaf: flt.leaf_sql(leaf, _wrap(leaf.dim, value), params)
            )
        selected = ", ".join([*cols, *(f"{a[1]} AS m{m}" for m, a in aggs.items())])
        group = f" GROUP BY {', '.join(names)}" if names else ""
        sql = f"SELECT {selected} FROM {table} FINAL WHERE {where}{group}"
        for r in plan.query(sql, params, _small(plan, True)):
            out[_key_dims(plan, dims, r, names)] = {m: r["m" + m] for m in aggs}
    if split < period.end:
        plan.sources.add("sessions")
        live = Period(split, period.end, "live")
        for k, values in _session_rows(plan, live, live_aggs, dims).items():
            into = out.setdefault(k, {m: 0 for m in aggs})
            for m, v in values.items():
                # visitors add up too: visitor hashes rotate daily, so a multi-day total is a
                # sum of daily uniques whichever way it is computed
                into[m] = (into.get(m) or 0) + (v or 0)
    return out


def _key_dims(
    plan: _Plan, dims: list[Dimension], row: dict[str, Any], names: list[str]
) -> tuple[Any, ...]:
    return tuple(
        bucket_label(plan.grain(d), row[n]) if d.kind == "time" else row[n]
        for d, n in zip(dims, names, strict=True)
    )


def _scroll_rows(plan: _Plan, period: Period) -> dict[tuple[Any, ...], dict[str, Any]]:
    params = Params()
    dims = plan.dims
    names = [f"d{i}" for i in range(len(dims))]
    cols = [f"{_event_dim_expr(plan, d, params)} AS {n}" for d, n in zip(dims, names, strict=True)]
    inner = (
        f"SELECT {', '.join([*cols, 'max(scroll_depth) AS m'])} FROM events "
        f"WHERE {_events_where(plan, period, params)} AND scroll_depth <= 100 "
        f"GROUP BY {', '.join([*names, 'session_id', 'pathname'])}"
    )
    outer = ", ".join([*names, "round(avg(m)) AS scroll_depth"])
    group = f" GROUP BY {', '.join(names)}" if names else ""
    rows = plan.query(f"SELECT {outer} FROM ({inner}){group}", params)
    return {_key(plan, r, names): {"scroll_depth": r["scroll_depth"]} for r in rows}


def _compute(plan: _Plan, period: Period) -> list[Row]:
    spec = plan.spec
    needed = set(spec.metrics)
    for m in spec.metrics:
        needed.update(METRICS[m].needs)
    needed.add("visitors")
    by_session_dim = any(d.kind == "session" for d in plan.dims)
    event_metrics = {m for m in needed if m in EVENT_METRICS}
    parts = {m: (sql, _PARTS_ROLLUP[m]) for m, sql in _PARTS.items()}
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    use_visits = by_session_dim or (
        _visit_only(plan, needed)
        and _rollup_source(plan, period, event_metrics | {"visitors"}) is None
        and _closed_days_ok(plan, period, plan.dims)
    )
    if use_visits:
        aggs = {m: _SESSION_AS_EVENT[m] for m in event_metrics}
        if needed & set(SESSION_METRICS):
            aggs.update(parts)
        merged = _visit_rows(plan, period, aggs, plan.dims)
    else:
        merged = _event_rows(plan, period, event_metrics)
        if needed & set(SESSION_METRICS):
            for key, values in _visit_rows(plan, period, parts, plan.dims).items():
                if key in merged:
                    merged[key].update(values)
        if "scroll_depth" in needed:
            plan.sources.add("raw")
            for key, values in _scroll_rows(plan, period).items():
                if key in merged:
                    merged[key].update(values)
    if "exit_rate" in needed:
        page = DIMENSIONS["visit:exit_page"]
        dims = [page if d.name == "event:page" else d for d in plan.dims]
        exits = _visit_rows(plan, period, {"_exits": ("count()", "sum(visits)")}, dims)
        for key, values in merged.items():
            values["_exits"] = exits.get(key, {}).get("_exits", 0)
    rows = []
    for key, values in merged.items():
        for m in (*needed, *(_PARTS if needed & set(SESSION_METRICS) else ())):
            if m in EVENT_METRICS or m in _PARTS or m == "scroll_depth":
                values.setdefault(m, 0)
        rows.append(Row(list(key), values))
    return rows


def _derive(
    rows: list[Row],
    metrics: tuple[str, ...],
    total_visitors: int | None,
    converting_base: int | None,
) -> None:
    for row in rows:
        m = row.metrics
        if m.get("visitors") is None:
            for name in metrics:
                m[name] = None
            continue
        visits = m.get("_visits") or 0
        if "bounce_rate" in metrics:
            m["bounce_rate"] = round(100 * m["_bounces"] / visits) if visits else 0
        if "visit_duration" in metrics:
            m["visit_duration"] = round(m["_duration"] / visits / 1000) if visits else 0
        if "views_per_visit" in metrics:
            m["views_per_visit"] = (
                round(m["pageviews"] / m["visits"], 2) if m.get("visits") else 0.0
            )
        if "exit_rate" in metrics:
            m["exit_rate"] = (
                round(100 * m.get("_exits", 0) / m["pageviews"], 1) if m.get("pageviews") else 0.0
            )
        if "percentage" in metrics:
            m["percentage"] = (
                round(100 * m["visitors"] / total_visitors, 1) if total_visitors else 0.0
            )
        if "conversion_rate" in metrics:
            m["conversion_rate"] = (
                round(100 * m["visitors"] / converting_base, 2) if converting_base else 0.0
            )
        for name in ("time_on_page", "scroll_depth"):
            if name in m and m[name] is not None:
                # an average over no page views is NaN: report 0, as Plausible does
                m[name] = int(m[name]) if m[name] == m[name] else 0


def _totals(plan: _Plan, period: Period, drop_goal_filters: bool) -> int:
    """Visitors in the period with the query's filters (optionally without goal filters)."""
    filters = plan.spec.filters
    if drop_goal_filters:
        filters = tuple(
            f for f in filters if not any(leaf.dim.kind == "goal" for leaf in flt.leaves(f))
        )
    sub = replace(plan.spec, dimensions=(), filters=filters, metrics=("visitors",))
    sub_plan = _Plan(plan.store, plan.config, sub, {}, plan.now, plan.notes, plan.sources)
    rows = _event_rows(sub_plan, period, {"visitors"})
    return int(next(iter(rows.values()), {}).get("visitors") or 0)


def _grains(spec: QuerySpec, period: Period) -> dict[str, str]:
    out = {}
    for name in spec.dimensions:
        if name == "time":
            out[name] = auto_bucket(period)
        elif name.startswith("time:"):
            out[name] = name
    return out


def _run_period(plan: _Plan, period: Period) -> tuple[list[Row], int]:
    spec = plan.spec
    rows = _compute(plan, period)
    k = plan.config.privacy.min_visitors
    nontime = [i for i, d in enumerate(plan.dims) if d.kind != "time"]
    suppressed = 0
    if nontime:
        rows, suppressed = fold(rows, k, nontime)
    elif spec.filters:
        suppressed = withhold_small(rows, k)
    total = None
    if "percentage" in spec.metrics:
        total = _totals(plan, period, drop_goal_filters=False)
    base = None
    if "conversion_rate" in spec.metrics:
        base = _totals(plan, period, drop_goal_filters=True)
    _derive(rows, spec.metrics, total, base)
    return rows, suppressed


def _dim_key(i: int) -> Callable[[Row], str]:
    return lambda row: str(row.dims[i])


def _metric_key(name: str) -> Callable[[Row], Any]:
    return lambda row: row.metrics[name]


def _sort(plan: _Plan, rows: list[Row]) -> list[Row]:
    spec = plan.spec
    order = list(spec.order_by)
    if not order:
        time_dims = [d for d in spec.dimensions if d.startswith("time")]
        if time_dims and len(spec.dimensions) == 1:
            order = [(time_dims[0], "asc")]
        else:
            order = [(spec.metrics[0], "desc"), *((d, "asc") for d in spec.dimensions)]
    dim_index = {name: i for i, name in enumerate(spec.dimensions)}
    for name, direction in reversed(order):
        if name in dim_index:
            rows.sort(key=_dim_key(dim_index[name]), reverse=direction == "desc")
        else:
            present = [r for r in rows if r.metrics.get(name) is not None]
            absent = [r for r in rows if r.metrics.get(name) is None]
            present.sort(key=_metric_key(name), reverse=direction == "desc")
            rows = present + absent
    return [r for r in rows if OTHER not in r.dims] + [r for r in rows if OTHER in r.dims]


def _change(name: str, current: Any, previous: Any) -> Any:
    if current is None or previous is None:
        return None
    if name in ABSOLUTE_CHANGE or name == "bounce_rate":
        return round(current - previous, 1)
    if previous == 0:
        return 100 if current > 0 else 0
    return round(100 * (current - previous) / previous)


def first_day(store: Store, site: str) -> dt.date | None:
    """The first day with data for `site` (the start of `all`), from the rollups."""
    value = store.query(
        "SELECT toString(toDate(min(hour))) FROM rollup_hourly "
        "WHERE site_id = {s:String} AND dimension = ''",
        {"s": site},
        QUERY_SETTINGS,
    ).scalar()
    day = dt.date.fromisoformat(str(value)) if value else None
    return day if day is not None and day.year > 1970 else None


def _warnings(plan: _Plan, period: Period, now: dt.datetime) -> list[str]:
    out = []
    p = plan.config.privacy
    raw_since = now - dt.timedelta(days=p.raw_retention_days)
    if period.start < raw_since and ({"raw", "sessions", "visit_facts"} & plan.sources):
        out.append(
            f"this query needs raw events or visits, which are kept {p.raw_retention_days} days: "
            f"data before {raw_since.date().isoformat()} is missing from it; "
            "visitors, visits, pageviews, events, bounce rate and visit duration without "
            f"cross-dimension filters come from the {p.aggregate_retention_months}-month rollups"
        )
    agg_since = now - dt.timedelta(days=31 * p.aggregate_retention_months)
    if period.start < agg_since:
        out.append(
            f"aggregates are kept {p.aggregate_retention_months} months: "
            f"data before {agg_since.date().isoformat()} has been deleted"
        )
    return out


def run_query(
    store: Store,
    config: Config,
    spec: QuerySpec,
    now: dt.datetime | None = None,
    batch: Batch[Any] | None = None,
) -> dict[str, Any]:
    """Answer `spec` as Plausible's Stats API v2 does: `results`, `meta` and `query`.

    With `batch`, reads shared with the other queries of that batch are made once."""
    now = now or dt.datetime.now(dt.UTC)
    period = spec.period
    if period.label == "all":
        start = first_day(store, spec.site_id)
        period = parse_range("all", now, start)
        spec = replace(spec, period=period)
    plan = _Plan(store, config, spec, _grains(spec, period), now, batch=batch)
    # The previous period and the totals are independent queries: asked beside the main one.
    prev_period = period.previous()
    prev_job = total_job = None
    if spec.include.comparisons:
        prev_plan = _Plan(store, config, spec, _grains(spec, prev_period), now)
        prev_job = _SIDE.submit(_run_period, prev_plan, prev_period)
    if spec.include.totals:
        total_spec = replace(spec, dimensions=(), order_by=())
        total_job = _SIDE.submit(_run_period, _Plan(store, config, total_spec, {}, now), period)
    rows, suppressed = _run_period(plan, period)
    rows = _sort(plan, rows)
    total_rows = len(rows)
    page = rows[spec.offset : spec.offset + spec.limit]
    results: list[dict[str, Any]] = [
        {
            "metrics": [r.metrics.get(m) for m in spec.metrics],
            "dimensions": [_out(v) for v in r.dims],
        }
        for r in page
    ]
    meta: dict[str, Any] = {
        "imports_included": False,
        "timezone": "UTC",
        "min_visitors": config.privacy.min_visitors,
    }
    if prev_job is not None:
        prev_rows, _ = prev_job.result()
        shift = _time_shift(plan, period, prev_period)
        prev_by_key = {tuple(shift(i, v) for i, v in enumerate(r.dims)): r for r in prev_rows}
        for result, row in zip(results, page, strict=True):
            prev = prev_by_key.get(tuple(row.dims))
            prev_metrics = [prev.metrics.get(m) if prev else 0 for m in spec.metrics]
            prev_dims = [
                _out(v) for v in (prev.dims if prev else _back(plan, period, prev_period, row.dims))
            ]
            result["comparison"] = {
                "dimensions": prev_dims,
                "metrics": prev_metrics,
                "change": [
                    _change(m, c, p)
                    for m, c, p in zip(spec.metrics, result["metrics"], prev_metrics, strict=True)
                ],
            }
        meta["comparison_date_range"] = prev_period.iso()
    if total_job is not None:
        total_rows_list, _ = total_job.result()
        first = total_rows_list[0] if total_rows_list else Row([], {m: 0 for m in spec.metrics})
        meta["totals"] = {m: first.metrics.get(m) for m in spec.metrics if m != "percentage"}
    if spec.include.total_rows:
        meta["total_rows"] = total_rows
    if spec.include.time_labels:
        grains = [plan.grains[d] for d in spec.dimensions if d in plan.grains]
        meta["time_labels"] = make_time_labels(grains[0], period)
    if suppressed:
        meta["suppressed_rows"] = suppressed
        meta["suppression"] = (
            f"rows with fewer than {config.privacy.min_visitors} visitors are folded into "
            f"{OTHER!r} (visitors summed) or withheld, so that none can be recovered by subtraction"
        )
    if "visitors" in spec.metrics and period.days > 1:
        meta["visitors_note"] = VISITORS_NOTE
    meta["source"] = "+".join(sorted(plan.sources))
    warnings = _warnings(plan, period, now)
    if warnings:
        meta["warning"] = " ".join(warnings)
    query = {
        "site_id": spec.site_id,
        "metrics": list(spec.metrics),
        "date_range": period.iso(),
        "dimensions": list(spec.dimensions),
        "filters": spec.echo.get("filters", []),
        "order_by": [list(o) for o in spec.order_by],
        "include": {
            "comparisons": {"mode": "previous_period"} if spec.include.comparisons else None,
            "totals": spec.include.totals,
            "total_rows": spec.include.total_rows,
            "time_labels": spec.include.time_labels,
            "imports": False,
        },
        "pagination": {"limit": spec.limit, "offset": spec.offset},
    }
    return {"results": results, "meta": meta, "query": query}


def nontime_dims(spec: QuerySpec) -> list[str]:
    return [d for d in spec.dimensions if not d.startswith("time")]


def _out(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.date) else value


def _time_shift(plan: _Plan, period: Period, prev: Period) -> Any:
    """Map a previous-period time bucket to the current bucket at the same offset."""
    maps: dict[int, dict[str, str]] = {}
    for i, name in enumerate(plan.spec.dimensions):
        if name in plan.grains:
            grain = plan.grains[name]
            maps[i] = dict(
                zip(make_time_labels(grain, prev), make_time_labels(grain, period), strict=False)
            )

    def shift(i: int, value: Any) -> Any:
        return maps[i].get(str(value), value) if i in maps else value

    return shift


def _back(plan: _Plan, period: Period, prev: Period, dims: list[Any]) -> list[Any]:
    out = list(dims)
    for i, name in enumerate(plan.spec.dimensions):
        if name in plan.grains:
            grain = plan.grains[name]
            back = dict(
                zip(make_time_labels(grain, period), make_time_labels(grain, prev), strict=False)
            )
            out[i] = back.get(str(dims[i]), dims[i])
    return out


def current_visitors(store: Store, site: str, now: dt.datetime | None = None) -> int:
    """Visitors with an event in the last five minutes (realtime)."""
    now = now or dt.datetime.now(dt.UTC)
    return int(
        store.query(
            "SELECT uniqExact(visitor_id) FROM events WHERE site_id = {s:String} "
            "AND timestamp >= {since:DateTime64(3, 'UTC')} "
            "AND timestamp <= {now:DateTime64(3, 'UTC')}",
            {"s": site, "since": now - dt.timedelta(minutes=5), "now": now},
            QUERY_SETTINGS,
        ).scalar()
        or 0
    )
