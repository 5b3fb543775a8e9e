"""Every route the dashboards package serves, for the app to mount."""

from __future__ import annotations

from starlette.routing import BaseRoute

from dashboards.api import Clock, query_routes
from dashboards.api_v1 import v1_routes
from dashboards.privacy.pages import privacy_routes
from dashboards.security import secured
from dashboards.web.pages import web_routes
from firstparty.config import Config
from store.aio import AsyncStore


def routes(config: Config, store: AsyncStore, clock: Clock | None = None) -> list[BaseRoute]:
    # Security headers (CSP, nosniff, no framing, no-store) on every dashboard response.
    return secured(
        [
            *query_routes(config, store, clock),
            *v1_routes(config, store, clock),
            *privacy_routes(config, store),
            *web_routes(config, store, clock),
        ]
    )
