"""Every route the dashboards package serves, for the app to mount."""

from __future__ import annotations

from starlette.routing import BaseRoute

from dashboards.api import query_routes
from firstparty.config import Config
from store.aio import AsyncStore


def routes(config: Config, store: AsyncStore) -> list[BaseRoute]:
    return [*query_routes(store)]
