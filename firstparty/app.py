"""Compose the HTTP app a worker serves: collector, ingestion, dashboards, health."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from collector.app import event_routes
from dashboards.routes import routes as dashboard_routes
from firstparty.config import Config
from ingest.ingestor import Ingestor
from ingest.salts import SaltKeeper
from ingest.spool import SpoolWriter
from ingest.steps import build_pipeline
from store.aio import AsyncStore
from store.base import Store


def spool_dir(config: Config) -> Path:
    return config.data_dir / "spool"


def build_app(
    config: Config,
    store: Store,
    worker: str | None = None,
    clock: Callable[[], dt.datetime] | None = None,
) -> Starlette:
    spool = SpoolWriter(spool_dir(config), worker or f"w{os.getpid()}")
    ingestor = Ingestor(build_pipeline(config, SaltKeeper(store)), spool)
    astore = AsyncStore(store)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async def seal_periodically() -> None:
            while True:
                await asyncio.sleep(0.1)
                await run_in_threadpool(spool.tick)

        task = asyncio.create_task(seal_periodically())
        try:
            yield
        finally:
            task.cancel()
            spool.close()

    routes = [
        *event_routes(config, ingestor, clock),
        *dashboard_routes(config, astore),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.ingestor = ingestor
    app.state.spool = spool
    return app
