"""The dashboard's one door to the numbers: a Stats API v2 query, answered by the query layer.

Pages, their JSON twins and CSV exports all ask here, with the same query a Stats API client
would send, so the page and the API cannot disagree.
"""

from __future__ import annotations

from typing import Any

from firstparty.config import Config
from store.aio import AsyncStore
from store.base import Store

try:
    from dashboards import query as query_layer
except ImportError:  # pragma: no cover - the first-cut API, before the query layer landed
    query_layer = None  # type: ignore[assignment]

Query = dict[str, Any]
Response = dict[str, Any]

# Until the query layer lands: the events columns the first-cut API can group and filter by.
_COLUMNS = {
    "event:page": "pathname",
    "event:hostname": "hostname",
    "event:name": "name",
    "visit:entry_page": "pathname",
    "visit:exit_page": "pathname",
    "visit:source": "referrer_source",
    "visit:channel": "channel",
    "visit:referrer": "referrer",
    "visit:utm_source": "utm_source",
    "visit:utm_medium": "utm_medium",
    "visit:utm_campaign": "utm_campaign",
    "visit:utm_content": "utm_content",
    "visit:utm_term": "utm_term",
    "visit:country": "country_code",
    "visit:region": "region",
    "visit:browser": "browser",
    "visit:browser_version": "browser_version",
    "visit:os": "os",
    "visit:os_version": "os_version",
    "visit:device": "device",
}
_TIME = {
    "time:hour": "formatDateTime(toStartOfHour(timestamp), '%Y-%m-%d %H:%i:%S')",
    "time:day": "toString(toDate(timestamp))",
    "time:week": "toString(toMonday(timestamp))",
    "time:month": "toString(toStartOfMonth(timestamp))",
}
_EVENT_METRICS = {
    "visitors": "uniqExact(visitor_id)",
    "visits": "uniqExact(session_id)",
    "pageviews": "countIf(name = 'pageview')",
    "events": "countIf(name != 'engagement')",
}
_SESSION_METRICS = {
    "bounce_rate": "round(100 * countIf(pv = 1 AND inter = 0) / greatest(count(), 1))",
    "visit_duration": "round(avg(dur) / 1000)",
    "views_per_visit": "round(sum(pv) / greatest(count(), 1), 2)",
}


def _fallback(store: Store, config: Config, query: Query) -> Response:
    params: dict[str, Any] = {
        "site": query["site_id"],
        "start": query["date_range"][0],
        "end": query["date_range"][1],
    }
    where = [
        "site_id = {site:String}",
        "toDate(timestamp) BETWEEN {start:Date} AND {end:Date}",
        "name != 'engagement'",
    ]
    for i, (_op, dim, values) in enumerate(query.get("filters", [])):
        column = _COLUMNS.get(dim)
        if column is None:
            continue
        where.append(f"{column} IN {{f{i}:Array(String)}}")
        params[f"f{i}"] = [str(v) for v in values]
    dims = [_TIME.get(d) or _COLUMNS.get(d, "''") for d in query.get("dimensions", [])]
    metrics: list[str] = query["metrics"]
    if not dims:
        session = (
            "SELECT session_id, countIf(name = 'pageview') AS pv, "
            "countIf(interactive = 1 AND name != 'pageview') AS inter, "
            "dateDiff('millisecond', min(timestamp), max(timestamp)) AS dur FROM events "
            f"WHERE {' AND '.join(where)} GROUP BY session_id"
        )
        row = store.query(
            "SELECT "
            + ", ".join(f"{sql} AS {name}" for name, sql in _SESSION_METRICS.items())
            + f" FROM ({session})",
            params,
        ).dicts()[0]
        row.update(
            store.query(
                "SELECT "
                + ", ".join(f"{sql} AS {name}" for name, sql in _EVENT_METRICS.items())
                + f" FROM events WHERE {' AND '.join(where)}",
                params,
            ).dicts()[0]
        )
        return {"results": [{"metrics": [row.get(m, 0) for m in metrics], "dimensions": []}]}
    select = ", ".join(
        [f"{d} AS d{i}" for i, d in enumerate(dims)]
        + [f"{_EVENT_METRICS.get(m, '0')} AS m_{m}" for m in metrics]
    )
    group = ", ".join(f"d{i}" for i in range(len(dims)))
    limit = int(query.get("pagination", {}).get("limit", 10000))
    time_dim = any(d.startswith("time") for d in query.get("dimensions", []))
    order = group if time_dim else f"m_{metrics[0]} DESC, {group}"
    rows = store.query(
        f"SELECT {select} FROM events WHERE {' AND '.join(where)} GROUP BY {group} "
        f"ORDER BY {order} LIMIT {limit}",
        params,
    ).dicts()
    results = []
    for row in rows:
        values = [row[f"d{i}"] for i in range(len(dims))]
        dimensions = [v.isoformat() if hasattr(v, "isoformat") else str(v) for v in values]
        results.append({"dimensions": dimensions, "metrics": [row[f"m_{m}"] for m in metrics]})
    return {"results": results}


def _answer(store: Store, config: Config, body: Query) -> Response:
    if query_layer is None:
        return _fallback(store, config, body)
    spec = query_layer.parse_query(body, config)
    return query_layer.run_query(store, config, spec)


async def run(store: AsyncStore, config: Config, query: Query) -> Response:
    """Answer a Stats API v2 query (its `site_id` already checked against the caller's sites)."""
    return await store.sync_call(_answer, config, query)


def _current_visitors(store: Store, site: str) -> int:
    if query_layer is not None:
        return query_layer.current_visitors(store, site)
    return int(
        store.query(
            "SELECT uniqExact(visitor_id) FROM events WHERE site_id = {site:String} "
            "AND timestamp >= now64(3) - INTERVAL 5 MINUTE AND name != 'engagement'",
            {"site": site},
        ).scalar()
        or 0
    )


async def current_visitors(store: AsyncStore, config: Config, site: str) -> int:
    """Unique visitors in the last five minutes."""
    return await store.sync_call(_current_visitors, site)
