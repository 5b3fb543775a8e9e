"""Compose the HTTP app a worker serves: collector, ingestion, dashboards, health, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from collector.app import EVENT_PATH, EventEndpoint, event_endpoint, event_routes
from dashboards.routes import routes as dashboard_routes
from firstparty import metrics
from firstparty.config import Config
from ingest.ingestor import Ingestor
from ingest.salts import SaltKeeper
from ingest.spool import SpoolWriter
from ingest.steps import build_pipeline
from store.aio import AsyncStore
from store.base import Store

TICK = 0.1  # seconds between spool ticks (sealing by age, quota scan)
REPORT_EVERY = 5  # ticks between metrics snapshots

log = logging.getLogger("firstparty.app")


def spool_dir(config: Config) -> Path:
    return config.data_dir / "spool"


def worker_snapshot(ingestor: Ingestor, alive: bool = True) -> dict[str, Any]:
    spool = ingestor.spool
    return {
        "alive": alive,
        "counters": {
            "firstparty_events_accepted_total": [metrics.counter(spool.appends)],
            # dict() copies in one step under the GIL; the ingest thread may be adding a reason.
            "firstparty_events_dropped_total": metrics.labelled(
                "reason", sorted(dict(ingestor.pipeline.dropped).items())
            ),
            "firstparty_redactions_total": metrics.labelled(
                "kind", sorted(dict(ingestor.pipeline.redactions).items())
            ),
            "firstparty_spool_rejected_total": [metrics.counter(spool.rejected)],
            "firstparty_requests_unavailable_total": [metrics.counter(ingestor.unavailable)],
            "firstparty_spool_fsyncs_total": [metrics.counter(spool.fsyncs)],
        },
    }


class App(Starlette):
    """The worker's app: beacons go straight to their endpoint, everything else to the router.

    A beacon needs none of the router's matching or the error and exception middlewares (the
    endpoint answers every failure itself); skipping them is ~15 % more beacons per second per
    worker (bench/ingest.py, 2026-11-25).
    """

    def __init__(self, events: EventEndpoint, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.events = events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == EVENT_PATH:
            await self.events(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def build_app(
    config: Config,
    store: Store,
    worker: str | None = None,
    clock: Callable[[], dt.datetime] | None = None,
) -> App:
    name = worker or f"w{os.getpid()}"
    spool = SpoolWriter(
        spool_dir(config), name, quota_bytes=config.server.spool_quota_mb * 1024 * 1024
    )
    ingestor = Ingestor(build_pipeline(config, SaltKeeper(store)), spool)
    astore = AsyncStore(store)
    report_dir = metrics.metrics_dir(config.data_dir)

    def report(alive: bool = True) -> None:
        try:
            metrics.write_snapshot(report_dir, name, worker_snapshot(ingestor, alive))
        except OSError:
            pass  # a full disk must not fail requests; the scrape shows stale numbers

    async def healthz(request: Request) -> Response:
        snapshots = await run_in_threadpool(metrics.read_snapshots, report_dir)
        healthy, writer = metrics.writer_health(snapshots)
        body = {"status": "ok" if healthy else "failing", "writer": writer}
        return JSONResponse(body, status_code=200 if healthy else 503)

    async def metrics_endpoint(request: Request) -> Response:
        # This worker's own numbers are fresh; the others' are at most a report period old.
        await run_in_threadpool(report)
        snapshots = await run_in_threadpool(metrics.read_snapshots, report_dir)
        return Response(
            metrics.render(snapshots), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async def tick_periodically() -> None:
            ticks = 0
            while True:
                await asyncio.sleep(TICK)
                ticks += 1
                try:
                    await ingestor.tick()
                except OSError as exc:
                    # One failed tick (a full disk refusing the rename that seals a segment)
                    # must not end them all: segments would then seal only when full, and
                    # events wait in them until they do.
                    log.warning("spool: sealing by age failed, retrying: %s", exc)
                if ticks % REPORT_EVERY == 0:
                    await run_in_threadpool(report)

        task = asyncio.create_task(tick_periodically())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await ingestor.close()
            report(alive=False)

    events = event_endpoint(config, ingestor, clock)
    routes = [
        *event_routes(events),
        *dashboard_routes(config, astore, clock),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
    app = App(events, routes=routes, lifespan=lifespan)
    app.state.ingestor = ingestor
    app.state.spool = spool
    return app
