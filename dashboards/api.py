"""The Stats API v2 (`POST /api/v2/query`), modelled on Plausible's, plus its CSV form.

- `POST /api/v2/query` with a JSON body; `Accept: text/csv` answers CSV instead of JSON.
- `POST /api/v2/query.csv` (same body) and `GET /api/v2/query.csv?query=<JSON>` for CSV links.

Authentication: a Stats API key (`Authorization: Bearer KEY`) or a dashboard session cookie,
checked by `dashboards.auth`. A caller that may not read the site gets 403; bad input gets 400
naming the field; a query that exceeds its time or memory cap gets 503. Never a stack trace.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from dashboards.auth import Principal, authenticate
from dashboards.query import QueryError, QuerySpec, parse_query, run_query
from firstparty.config import Config
from store.aio import AsyncStore
from store.base import StoreError

log = logging.getLogger("firstparty.api")
MAX_BODY = 64 * 1024

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status, headers={"cache-control": "no-store"})


async def principal_for(
    request: Request, config: Config, store: AsyncStore, site: object
) -> Principal | JSONResponse:
    """The caller, or the 401/403 response to send instead."""
    principal = await authenticate(request, config, store)
    if principal is None:
        return error(
            401, "authentication required: send Authorization: Bearer <API key>, or log in"
        )
    if isinstance(site, str) and site and not principal.can_read(site):
        return error(403, f"these credentials cannot read the site {site!r}")
    return principal


def to_csv(result: dict[str, Any], dimensions: list[str], metrics: list[str]) -> str:
    """A breakdown as CSV: one column per dimension, then one per metric."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*dimensions, *metrics])
    for row in result["results"]:
        writer.writerow([*(_cell(v) for v in row["dimensions"]), *row["metrics"]])
    return out.getvalue()


def _cell(value: Any) -> Any:
    # A cell starting with = + - @ would be run as a formula by spreadsheets (CSV injection).
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


async def answer(
    config: Config,
    store: AsyncStore,
    spec: QuerySpec,
    now: dt.datetime,
) -> dict[str, Any] | JSONResponse:
    try:
        return await store.sync_call(run_query, config, spec, now)
    except QueryError as exc:
        return error(400, str(exc))
    except StoreError as exc:
        # The message can name limits but never row data; still keep it out of the response.
        log.warning("stats query failed: %s", type(exc).__name__)
        return error(
            503,
            "the query could not be answered in its time and memory limits; "
            "narrow the date range or the filters and try again",
        )


def query_routes(config: Config, store: AsyncStore, clock: Clock | None = None) -> list[BaseRoute]:
    now = clock or utc_now

    async def read_body(request: Request) -> Any:
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise QueryError("body", f"is larger than {MAX_BODY} bytes")
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise QueryError("body", "must be a JSON object") from None

    async def handle(
        request: Request, body_of: Callable[[Request], Awaitable[Any]], as_csv: bool
    ) -> Response:
        try:
            body = await body_of(request)
        except QueryError as exc:
            principal = await principal_for(request, config, store, None)
            if isinstance(principal, JSONResponse):
                return principal
            return error(400, str(exc))
        site = body.get("site_id") if isinstance(body, dict) else None
        principal = await principal_for(request, config, store, site)
        if isinstance(principal, JSONResponse):
            return principal
        try:
            spec = parse_query(body, config, now())
        except QueryError as exc:
            return error(400, str(exc))
        result = await answer(config, store, spec, now())
        if isinstance(result, JSONResponse):
            return result
        headers = {"cache-control": "no-store"}
        if as_csv:
            text = to_csv(result, list(spec.dimensions), list(spec.metrics))
            headers["content-disposition"] = f'attachment; filename="{spec.site_id}-stats.csv"'
            return Response(text, 200, headers=headers, media_type="text/csv; charset=utf-8")
        return JSONResponse(result, headers=headers)

    async def query(request: Request) -> Response:
        wants_csv = "text/csv" in request.headers.get("accept", "")
        return await handle(request, read_body, wants_csv)

    async def query_csv(request: Request) -> Response:
        if request.method == "GET":

            async def from_url(req: Request) -> Any:
                text = req.query_params.get("query")
                if text is None:
                    raise QueryError("query", "pass the query as JSON in the `query` parameter")
                try:
                    return json.loads(text)
                except ValueError:
                    raise QueryError("query", "must be JSON") from None

            return await handle(request, from_url, True)
        return await handle(request, read_body, True)

    return [
        Route("/api/v2/query", query, methods=["POST"]),
        Route("/api/v2/query.csv", query_csv, methods=["GET", "POST"]),
    ]
