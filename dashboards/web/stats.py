"""The dashboard's one door to the numbers: a Stats API v2 query, answered by the query layer.

Pages, their JSON twins and CSV exports all ask here, with the same query a Stats API client
would send, so the page and the API cannot disagree.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from dashboards import query as query_layer
from dashboards.batch import Batch
from firstparty.config import Config
from store.aio import AsyncStore
from store.base import Store

Query = dict[str, Any]
Response = dict[str, Any]


def _answer(
    store: Store, config: Config, body: Query, now: dt.datetime, batch: Batch[Any] | None = None
) -> Response:
    spec = query_layer.parse_query(body, config, now)
    return query_layer.run_query(store, config, spec, now, batch)


async def run(
    store: AsyncStore,
    config: Config,
    query: Query,
    now: dt.datetime,
    batch: Batch[Any] | None = None,
) -> Response:
    """Answer a Stats API v2 query (its `site_id` already checked against the caller's sites),
    as of `now` (the page's one clock reading, so its parts agree on what "today" is). Queries
    of one page pass the page's `batch`, so the reads they share are made once."""
    return await store.sync_call(_answer, config, query, now, batch)


async def current_visitors(store: AsyncStore, site: str, now: dt.datetime) -> int:
    """Unique visitors in the five minutes before `now`."""
    return await store.sync_call(query_layer.current_visitors, site, now)
