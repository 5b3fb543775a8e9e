"""One HTTP worker process: the collector and the dashboards on the shared listening sockets.

Kept apart from `firstparty/server.py` so that a worker imports only what it serves: not the
writer, the session assigner or pyarrow, which live in the server process (DESIGN.md section 6:
each worker under 150 MB).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import signal
import socket
import sys

import uvicorn

from firstparty.config import Config
from store import connect

WORKER_STOP_BUDGET = 15.0  # seconds for workers to finish their requests


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this worker when the server dies, even by kill -9."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def run_worker(config: Config, lobby: socket.socket, index: int, parent: int) -> None:
    _die_with_parent()
    if os.getppid() != parent:
        return  # the server died while we were starting
    from firstparty.app import build_app

    # Under saturation the event loop and the spool thread pass the GIL to each other for
    # every group of beacons: a shorter switch interval than the 5 ms default keeps the loop
    # from waiting behind the spool thread (the latency tail).
    sys.setswitchinterval(0.0005)
    store = connect(config.store)
    app = build_app(config, store, worker=f"w{index}-{os.getpid()}")
    # What is built so far (parsers, the GeoIP reader, tables) lives as long as the worker:
    # kept out of the cyclic collector, whose full passes over it pause the event loop.
    gc.collect()
    gc.freeze()
    uv = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=int(WORKER_STOP_BUDGET) - 3,
        server_header=False,
        # The collector decides from `[server] trusted_proxies` (collector/clientip.py); uvicorn
        # would otherwise trust X-Forwarded-For from 127.0.0.1 and hide the real peer.
        proxy_headers=False,
    )
    host, port = lobby.getsockname()[:2]
    uvicorn.Server(uv).run(sockets=[lobby, listen(host, port)])
    store.close()


def _socket(host: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return sock


def bind(host: str, port: int) -> socket.socket:
    """The collector's shared listening socket (the lobby), inherited by every worker.

    Each worker also listens on its own SO_REUSEPORT socket (`listen`) and the kernel spreads
    new connections over all of them: on the lobby alone, the worker that wakes first takes a
    whole burst of connections, and keep-alive clients (a reverse proxy's upstream pool) stay
    unevenly spread for their whole life. The lobby belongs to the server, not to a worker, so
    while workers start or one is being replaced, connections wait in its queue instead of
    being refused. The address is first taken without SO_REUSEPORT, so that a port already in
    use, even by another firstparty, is an error.
    """
    probe = _socket(host)
    try:
        probe.bind((host, port))
        port = probe.getsockname()[1]
    finally:
        probe.close()
    return listen(host, port, inheritable=True)


def listen(host: str, port: int, inheritable: bool = False) -> socket.socket:
    """A listening socket in the address's SO_REUSEPORT group."""
    sock = _socket(host)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(inheritable)
    return sock
