"""`POST /api/v2/query`: the Stats API, modelled on Plausible's Stats API v2."""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dashboards.keys import sites_for_key
from dashboards.metrics import METRICS
from store.aio import AsyncStore


class QueryError(ValueError):
    pass


def _date_range(value: Any, today: dt.date) -> tuple[dt.date, dt.date]:
    presets = {"day": 0, "7d": 6, "30d": 29}
    if isinstance(value, str) and value in presets:
        return today - dt.timedelta(days=presets[value]), today
    if value == "all":
        return dt.date(2000, 1, 1), today
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value):
        try:
            return dt.date.fromisoformat(value[0][:10]), dt.date.fromisoformat(value[1][:10])
        except ValueError:
            raise QueryError("`date_range` dates must be YYYY-MM-DD") from None
    raise QueryError("`date_range` must be day, 7d, 30d, all, or [from, to]")


def query_routes(store: AsyncStore) -> list[Route]:
    async def query(request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        if not auth.lower().startswith("bearer "):
            return JSONResponse({"error": "send an API key: Authorization: Bearer KEY"}, 401)
        sites = await store.sync_call(sites_for_key, auth[7:].strip())
        if sites is None:
            return JSONResponse({"error": "the API key is unknown or revoked"}, 401)
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "the body must be a JSON object"}, 400)
        try:
            if not isinstance(body, dict):
                raise QueryError("the body must be a JSON object")
            site = body.get("site_id")
            if not isinstance(site, str):
                raise QueryError("`site_id` is required")
            if site not in sites:
                return JSONResponse({"error": f"this API key cannot read {site!r}"}, 403)
            metrics = body.get("metrics")
            if not isinstance(metrics, list) or not metrics:
                raise QueryError("`metrics` must be a non-empty list")
            for m in metrics:
                if m not in METRICS:
                    raise QueryError(
                        f"`metrics`: unknown metric {m!r}; known: " + ", ".join(METRICS)
                    )
            start, end = _date_range(body.get("date_range", "day"), dt.datetime.now(dt.UTC).date())
        except QueryError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        select = ", ".join(f"{METRICS[m].sql} AS {m}" for m in metrics)
        rows = await store.query(
            f"SELECT {select} FROM events WHERE site_id = {{site:String}} "
            "AND toDate(timestamp) BETWEEN {start:Date} AND {end:Date}",
            {"site": site, "start": start, "end": end},
        )
        row = rows.dicts()[0]
        return JSONResponse(
            {
                "results": [{"metrics": [row[m] for m in metrics], "dimensions": []}],
                "meta": {},
                "query": {
                    "site_id": site,
                    "metrics": metrics,
                    "date_range": [f"{start}T00:00:00Z", f"{end}T23:59:59Z"],
                },
            }
        )

    return [Route("/api/v2/query", query, methods=["POST"])]
