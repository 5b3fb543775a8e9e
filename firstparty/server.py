"""`firstparty serve`: one process owns the store and the writer; N workers serve HTTP.

The embedded engine admits one process, so the parent opens it, applies the schema, drains the
spool into it, and answers store calls on the admin socket; the HTTP workers (spawned fresh, so
they never load the engine) validate, anonymise and spool beacons, and reach the store through
that socket. With a ClickHouse server the topology is the same: one writer per collector host.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import multiprocessing
import os
import signal
import socket
from collections.abc import Iterator
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette

from firstparty.config import Config
from ingest.writer import Writer
from store import connect, open_owner
from store import schema as schema_mod
from store.base import Store
from store.remote import admin_routes, socket_path
from store.url import parse_store_url

log = logging.getLogger("firstparty.server")


def schema_values(config: Config) -> dict[str, int]:
    return {
        "raw_retention_days": config.privacy.raw_retention_days,
        "aggregate_retention_months": config.privacy.aggregate_retention_months,
    }


def admin_socket(config: Config) -> Path:
    target = parse_store_url(config.store)
    if target.path is not None:
        return socket_path(target.path)
    return config.data_dir / "admin.sock"


def _worker_main(config: Config, sock: socket.socket, index: int) -> None:
    from firstparty.app import build_app

    store = connect(config.store)
    app = build_app(config, store, worker=f"w{index}-{os.getpid()}")
    uv = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=20,
        server_header=False,
        # The collector decides from `[server] trusted_proxies` (collector/clientip.py); uvicorn
        # would otherwise trust X-Forwarded-For from 127.0.0.1 and hide the real peer.
        proxy_headers=False,
    )
    uvicorn.Server(uv).run(sockets=[sock])
    store.close()


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def worker_count(config: Config) -> int:
    return config.server.workers or (os.cpu_count() or 1)


class _AdminServer(uvicorn.Server):
    """The admin socket server; signals are ours, so shutdown can flush before exiting."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _serve(config: Config, store: Store, writer: Writer) -> None:
    sock_path = admin_socket(config)
    sock_path.unlink(missing_ok=True)
    admin = _AdminServer(
        uvicorn.Config(
            Starlette(routes=admin_routes(store)),
            uds=str(sock_path),
            log_level="warning",
            access_log=False,
        )
    )
    admin_task = asyncio.create_task(admin.serve())
    while not admin.started:
        if admin_task.done():
            admin_task.result()
        await asyncio.sleep(0.02)
    os.chmod(sock_path, 0o600)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: setattr(admin, "should_exit", True))

    listener = bind(config.server.host, config.server.port)
    host, port = listener.getsockname()[:2]
    ctx: Any = multiprocessing.get_context("spawn")
    workers: list[BaseProcess] = []
    for index in range(worker_count(config)):
        proc = ctx.Process(
            target=_worker_main, args=(config, listener, index), name=f"firstparty-worker-{index}"
        )
        proc.start()
        workers.append(proc)
    shown = f"[{host}]" if ":" in host else host
    print(
        f"firstparty is serving on http://{shown}:{port}/ "
        f"({len(workers)} HTTP workers, store {store.url})",
        flush=True,
    )
    print(
        f"Dashboard: http://{shown}:{port}/   Tracker: http://{shown}:{port}/js/script.js",
        flush=True,
    )
    try:
        while not admin_task.done():
            for i, proc in enumerate(workers):
                if not proc.is_alive() and not admin.should_exit:
                    log.warning(
                        "HTTP worker %d exited (code %s); starting a new one", i, proc.exitcode
                    )
                    workers[i] = ctx.Process(
                        target=_worker_main,
                        args=(config, listener, i),
                        name=f"firstparty-worker-{i}",
                    )
                    workers[i].start()
            await asyncio.sleep(0.2)
    finally:
        print("firstparty: stopping; flushing the spool into the store...", flush=True)
        for proc in workers:
            if proc.is_alive() and proc.pid is not None:
                proc.terminate()
        for proc in workers:
            proc.join(timeout=25)
        listener.close()
        writer.stop()
        sock_path.unlink(missing_ok=True)


def serve(config: Config) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config.data_dir.mkdir(parents=True, exist_ok=True)
    store = open_owner(config.store)
    before = schema_mod.apply(
        store, schema_values(config), progress=lambda msg: print(msg, flush=True)
    )
    if before == 0:
        print(
            f"Created the schema (version {schema_mod.SCHEMA_VERSION}) in {store.url}", flush=True
        )
    from firstparty.app import spool_dir

    writer = Writer(
        store, spool_dir(config), dt.timedelta(minutes=config.privacy.session_timeout_minutes)
    )
    writer.restore(dt.datetime.now(dt.UTC))
    writer.start()
    try:
        asyncio.run(_serve(config, store, writer))
    except KeyboardInterrupt:
        pass
    finally:
        store.close()
    print("firstparty: stopped.", flush=True)
    return 0
