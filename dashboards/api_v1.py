"""Plausible's older Stats API v1, answered from the same query layer as v2.

`GET /api/v1/stats/realtime/visitors`, `/aggregate`, `/timeseries` and `/breakdown` with
`site_id`, `period` (day, 7d, 30d, month, 6mo, 12mo, custom), `date`, `metrics`, `property`,
`filters` (`visit:browser==Firefox;event:page==/blog/**`, `!=`, `|` between values, `~` for
contains), `interval`, `compare=previous_period`, `limit` and `page`. Many dashboard
connectors, chat-ops bots and data-source plugins still speak it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from dashboards import filters as flt
from dashboards.api import Clock, answer, error, principal_for, utc_now
from dashboards.metrics import METRICS, dimension
from dashboards.periods import Period, RangeError, parse_range, time_labels
from dashboards.query import Include, QueryError, QuerySpec, check, current_visitors
from firstparty.config import Config
from store.aio import AsyncStore
from store.base import StoreError


def _period(params: dict[str, str], now: dt.datetime) -> Period:
    period = params.get("period", "30d")
    date_text = params.get("date")
    try:
        if period == "custom":
            if not date_text or "," not in date_text:
                raise QueryError("date", "period=custom needs date=YYYY-MM-DD,YYYY-MM-DD")
            start, end = date_text.split(",", 1)
            return parse_range([start.strip(), end.strip()], now)
        if period not in ("day", "7d", "30d", "month", "6mo", "12mo"):
            raise QueryError("period", "must be day, 7d, 30d, month, 6mo, 12mo or custom")
        anchor = now
        if date_text:
            day = dt.date.fromisoformat(date_text)
            anchor = dt.datetime(day.year, day.month, day.day, 12, tzinfo=dt.UTC)
        return parse_range(period, anchor)
    except ValueError as exc:
        if isinstance(exc, QueryError):
            raise
        raise QueryError(
            "date", str(exc) if isinstance(exc, RangeError) else "must be YYYY-MM-DD"
        ) from None


_OPERATORS = (("!=", "is_not"), ("==", "is"), ("~", "contains"))


def _filters(text: str, config: Config) -> tuple[flt.Filter, ...]:
    """`visit:browser==Firefox|Safari;event:page==/blog/**;visit:country!=FR`."""
    out = []
    for i, part in enumerate(p for p in text.split(";") if p.strip()):
        found = next(((t, o) for t, o in _OPERATORS if t in part), None)
        if found is None:
            raise QueryError("filters", f"{part!r} must look like visit:browser==Firefox")
        name, value = part.split(found[0], 1)
        op = found[1]
        values = [v.replace("\\|", "|") for v in value.split("|")]
        name = name.strip()
        if (
            op != "contains"
            and name in ("event:page", "visit:entry_page", "visit:exit_page")
            and any("*" in v for v in values)
        ):
            op = "matches" if op == "is" else "matches_not"
            values = [flt.glob_regex(v) for v in values]
        try:
            out.append(flt.parse([op, name, values], config.goals, f"[{i}]"))
        except flt.FilterError as exc:
            raise QueryError("filters", str(exc)) from None
    return tuple(out)


def _metrics(params: dict[str, str], default: str = "visitors") -> tuple[str, ...]:
    names = tuple(m.strip() for m in params.get("metrics", default).split(",") if m.strip())
    for m in names:
        if m not in METRICS:
            raise QueryError("metrics", f"unknown metric {m!r}; known: " + ", ".join(METRICS))
    if not names:
        raise QueryError("metrics", "name at least one metric")
    return names


def _int(params: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    try:
        value = int(params.get(name, default))
    except ValueError:
        raise QueryError(name, "must be a whole number") from None
    if not low <= value <= high:
        raise QueryError(name, f"must be between {low} and {high}")
    return value


def _key(prop: str) -> str:
    """Plausible v1 names a breakdown's column after the property: `visit:source` -> source."""
    return prop.rsplit(":", 1)[-1]


def v1_routes(config: Config, store: AsyncStore, clock: Clock | None = None) -> list[BaseRoute]:
    now = clock or utc_now

    async def begin(request: Request) -> tuple[dict[str, str], str] | Response:
        params = dict(request.query_params)
        site = params.get("site_id", "")
        principal = await principal_for(request, config, store, site)
        if isinstance(principal, JSONResponse):
            return principal
        if not site:
            return error(400, "`site_id`: is required")
        if config.site(site) is None:
            return error(400, f"`site_id`: {site!r} is not a configured site")
        return params, site

    async def realtime(request: Request) -> Response:
        begun = await begin(request)
        if isinstance(begun, Response):
            return begun
        try:
            count = await store.sync_call(current_visitors, begun[1], now())
        except StoreError:
            return error(503, "the realtime count is not available right now")
        return JSONResponse(count, headers={"cache-control": "no-store"})

    async def run(request: Request, kind: str) -> Response:
        begun = await begin(request)
        if isinstance(begun, Response):
            return begun
        params, site = begun
        try:
            period = _period(params, now())
            metrics = _metrics(params)
            filters = _filters(params.get("filters", ""), config)
            dims: tuple[str, ...] = ()
            limit, offset = 10_000, 0
            if kind == "timeseries":
                interval = params.get("interval", "date" if period.days > 1 else "hour")
                grains = {
                    "date": "time:day",
                    "day": "time:day",
                    "month": "time:month",
                    "hour": "time:hour",
                    "week": "time:week",
                }
                if interval not in grains:
                    raise QueryError("interval", "must be hour, date, week or month")
                dims = (grains[interval],)
            if kind == "breakdown":
                prop = params.get("property", "")
                if dimension(prop) is None or prop.startswith("time"):
                    raise QueryError("property", f"unknown property {prop!r}")
                dims = (prop,)
                limit = _int(params, "limit", 100, 1, 1000)
                offset = (_int(params, "page", 1, 1, 100_000) - 1) * limit
            compare = params.get("compare", "") == "previous_period"
            spec = QuerySpec(
                site_id=site,
                metrics=metrics,
                period=period,
                dimensions=dims,
                filters=filters,
                include=Include(comparisons=compare and kind == "aggregate"),
                limit=limit,
                offset=offset,
                echo={"filters": []},
            )
            check(spec)
        except QueryError as exc:
            return error(400, str(exc))
        result = await answer(config, store, spec, now())
        if isinstance(result, JSONResponse):
            return result
        rows = result["results"]
        body: dict[str, Any]
        if kind == "aggregate":
            first: dict[str, Any] = rows[0] if rows else {"metrics": [0] * len(metrics)}
            out: dict[str, Any] = {}
            for i, m in enumerate(metrics):
                entry: dict[str, Any] = {"value": first["metrics"][i]}
                if compare and "comparison" in first:
                    entry["comparison_value"] = first["comparison"]["metrics"][i]
                    entry["change"] = first["comparison"]["change"][i]
                out[m] = entry
            body = {"results": out}
        elif kind == "timeseries":
            by_date = {r["dimensions"][0]: r["metrics"] for r in rows}
            labels = time_labels(dims[0], period)
            body = {
                "results": [
                    {
                        "date": label,
                        **dict(zip(metrics, by_date.get(label, [0] * len(metrics)), strict=True)),
                    }
                    for label in labels
                ]
            }
        else:
            key = _key(dims[0])
            body = {
                "results": [
                    {key: r["dimensions"][0], **dict(zip(metrics, r["metrics"], strict=True))}
                    for r in rows
                ]
            }
        if "warning" in result["meta"]:
            body["warning"] = result["meta"]["warning"]
        return JSONResponse(body, headers={"cache-control": "no-store"})

    async def aggregate(request: Request) -> Response:
        return await run(request, "aggregate")

    async def timeseries(request: Request) -> Response:
        return await run(request, "timeseries")

    async def breakdown(request: Request) -> Response:
        return await run(request, "breakdown")

    return [
        Route("/api/v1/stats/realtime/visitors", realtime, methods=["GET"]),
        Route("/api/v1/stats/aggregate", aggregate, methods=["GET"]),
        Route("/api/v1/stats/timeseries", timeseries, methods=["GET"]),
        Route("/api/v1/stats/breakdown", breakdown, methods=["GET"]),
    ]
