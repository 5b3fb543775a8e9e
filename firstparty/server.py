"""`firstparty serve`: one process owns the store and the writer; N workers serve HTTP.

The embedded engine admits one process, so the parent opens it, applies the schema, drains the
spool into it, and answers store calls on the admin socket; the HTTP workers (spawned fresh, so
they never load the engine) validate, anonymise and spool beacons, and reach the store through
that socket. With a ClickHouse server the topology is the same: one writer per collector host.

A second `serve` on the same embedded engine (another data dir) joins as an extra collector:
its own workers and writer, which inserts through the owner's admin socket. Each data dir is
held by one `serve` at a time (a lock file), since its spool has one writer.

Shutdown (SIGTERM or SIGINT): workers stop accepting and finish their requests (everything
acknowledged is already fsynced), then the writer inserts what is left, within 30 s in all;
whatever cannot be inserted in time stays in the spool for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fcntl
import logging
import multiprocessing
import os
import secrets
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import IO, Any

import uvicorn
from starlette.applications import Starlette

from dashboards.rollups import finalize
from firstparty import metrics
from firstparty.catchup import CatchUp, allowed_cpus
from firstparty.config import Config
from firstparty.priority import NICENESS, PRIORITIES, idle_is_reversible, set_helper_threads
from firstparty.starvation import Starvation
from firstparty.worker import WORKER_STOP_BUDGET, bind, run_worker
from ingest.devices import DeviceKeys
from ingest.salts import SaltKeeper
from ingest.steps.identity import Identity
from ingest.writer import FAULT_FILE, DedupSettingsMissing, Writer, check_dedup_settings
from store import open_owner
from store import schema as schema_mod
from store.base import Store, StoreError
from store.remote import RemoteStore, admin_routes, alive, socket_path
from store.url import parse_store_url

log = logging.getLogger("firstparty.server")

WRITER_STOP_BUDGET = 10.0  # then seconds for the final insert; the total stays under 30 s
REPORT_INTERVAL = 0.5
# How long sealed spool segments wait to grow a batch, counted from the oldest segment's
# creation: events are visible about this long after they arrive, plus one insert (the 2 s
# promise holds). Measured at 4,000 events/s: 1.0 s costs the writer ~25 % less CPU per event
# than 0.5 s (fewer, larger inserts and fewer parts to merge).
WRITER_MAX_WAIT = 1.0
# Expired salts and device keys are destroyed on schedule even when no traffic arrives (the
# pipeline also destroys them on the first hit after a boundary).
KEY_MAINTENANCE_INTERVAL = 60.0
# Closed days are folded into the visit rollups in the background, so the first dashboard
# request of a day does not pay for it (the query layer still folds on demand if needed).
FOLD_INTERVAL = 300.0


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


def worker_count(config: Config) -> int:
    return config.server.workers or (os.cpu_count() or 1)


class _AdminServer(uvicorn.Server):
    """The admin socket server; signals are ours, so shutdown can flush before exiting."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def writer_snapshot(writer: Writer) -> dict[str, Any]:
    stats = writer.stats
    rows, stats.batch_rows = stats.batch_rows, []
    seconds, stats.flush_seconds = stats.flush_seconds, []
    hist_rows = _WRITER_HISTOGRAMS["firstparty_writer_batch_rows"]
    hist_secs = _WRITER_HISTOGRAMS["firstparty_writer_flush_seconds"]
    for value in rows:
        hist_rows.observe(value)
    for second in seconds:
        hist_secs.observe(second)
    gauges: dict[str, float] = {
        **writer.spool_usage(),
        "firstparty_writer_healthy": 0.0 if stats.consecutive_errors else 1.0,
        "firstparty_writer_consecutive_errors": stats.consecutive_errors,
        "firstparty_writer_catching_up": 0.0,
    }
    return {
        "state": writer.state,
        "health": {
            "rows_inserted": stats.rows,
            "insert_errors": stats.errors,
            "consecutive_errors": stats.consecutive_errors,
            "last_error": stats.last_error,
            "spool_bytes": gauges["firstparty_spool_bytes"],
            "spool_segments": gauges["firstparty_spool_segments"],
            "oldest_unflushed_event_age_seconds": gauges[
                "firstparty_oldest_unflushed_event_age_seconds"
            ],
        },
        "counters": {
            "firstparty_writer_rows_total": [metrics.counter(stats.rows)],
            "firstparty_writer_batches_total": [metrics.counter(stats.batches)],
            "firstparty_writer_insert_errors_total": [metrics.counter(stats.errors)],
            "firstparty_spool_quarantined_bytes_total": [metrics.counter(stats.quarantined_bytes)],
        },
        "gauges": gauges,
        "histograms": {name: h.to_json() for name, h in _WRITER_HISTOGRAMS.items()},
    }


_WRITER_HISTOGRAMS = {
    name: metrics.Histogram(buckets) for name, (_help, buckets) in metrics.HISTOGRAMS.items()
}


def report_writer(
    config: Config,
    writer: Writer,
    catch_up: CatchUp | None = None,
    workers: Sequence[int] = (),
    starved: float = 0.0,
) -> None:
    """Write the writer's metrics snapshot; with `catch_up`, decide on help for the writer by
    its backlog and `starved` (seconds a helper thread has waited for a CPU)."""
    snapshot = writer_snapshot(writer)
    gauges = snapshot["gauges"]
    if catch_up is not None:
        change = catch_up.update(
            gauges["firstparty_oldest_unflushed_event_age_seconds"],
            healthy=gauges["firstparty_writer_healthy"] == 1.0,
            workers=workers,
            starved=starved,
        )
        if change is not None:
            log.log(logging.WARNING if catch_up.active else logging.INFO, "%s", change)
        gauges["firstparty_writer_catching_up"] = 1.0 if catch_up.active else 0.0
    try:
        metrics.write_snapshot(metrics.metrics_dir(config.data_dir), metrics.WRITER, snapshot)
    except OSError as exc:  # a full disk must not stop the server; /healthz turns stale
        log.warning("cannot write the writer's metrics: %s", exc)


async def _start_admin(
    config: Config, store: Store, writer: Writer
) -> tuple[_AdminServer, asyncio.Task[None]]:
    sock_path = admin_socket(config)
    sock_path.unlink(missing_ok=True)
    admin = _AdminServer(
        uvicorn.Config(
            Starlette(routes=admin_routes(store, on_insert=writer.foreign_insert)),
            uds=str(sock_path),
            log_level="warning",
            access_log=False,
        )
    )
    task = asyncio.create_task(admin.serve())
    while not admin.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    os.chmod(sock_path, 0o600)
    return admin, task


async def _serve(
    config: Config,
    store: Store,
    writer: Writer,
    owner: bool,
    priority: EnginePriority | None = None,
) -> None:
    priority = priority or EnginePriority(idle=False, reversible=False)
    admin: _AdminServer | None = None
    admin_task: asyncio.Task[None] | None = None
    if owner:
        admin, admin_task = await _start_admin(config, store, writer)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)

    listener = bind(config.server.host, config.server.port)
    host, port = listener.getsockname()[:2]
    ctx: Any = multiprocessing.get_context("spawn")
    parent = os.getpid()

    def spawn(index: int) -> BaseProcess:
        proc: BaseProcess = ctx.Process(
            target=run_worker,
            args=(config, listener, index, parent),
            name=f"firstparty-worker-{index}",
        )
        proc.start()
        return proc

    keys = key_maintenance(config, store) if owner else None
    last_maintenance = 0.0
    if keys is not None:
        # Today's salt exists before the first beacon, so no worker makes it (and loads pyarrow
        # to insert it) in a race with the others.
        await asyncio.to_thread(keys.maintain, dt.datetime.now(dt.UTC))
        last_maintenance = time.monotonic()
    workers = [spawn(i) for i in range(worker_count(config))]
    started_at = [time.monotonic()] * len(workers)
    # A worker that dies right after starting (a bad deploy, a broken config) is restarted
    # with growing delays instead of in a tight loop.
    failures = [0] * len(workers)
    not_before = [0.0] * len(workers)
    shown = f"[{host}]" if ":" in host else host
    role = "" if owner else ", joined as an extra collector of the running server"
    print(
        f"firstparty is serving on http://{shown}:{port}/ "
        f"({len(workers)} HTTP workers, store {store.url}{role})",
        flush=True,
    )
    print(
        f"Dashboard: http://{shown}:{port}/   Tracker: http://{shown}:{port}/js/script.js",
        flush=True,
    )
    last_report = 0.0
    # In the idle class the writer gets no CPU time while others keep every CPU busy: it is
    # helped when it falls behind (firstparty/catchup.py). Its own batching wait is not falling
    # behind; leaving the idle class costs less than a CPU left idle, so it starts sooner.
    catch_up = None
    if priority.idle:
        start_after = writer.max_wait + (1.0 if priority.reversible else 2.0)
        catch_up = CatchUp(start_after, max(1.0, writer.max_wait), lift=priority.reversible)
    starvation = Starvation() if catch_up is not None and catch_up.lift else None
    folding = asyncio.create_task(fold_closed_days(config, store, stopping)) if owner else None
    try:
        while not stopping.is_set():
            if admin_task is not None and admin_task.done():
                admin_task.result()
                break
            now = time.monotonic()
            for i, proc in enumerate(workers):
                if proc.is_alive() or now < not_before[i]:
                    continue
                if not_before[i] == 0.0:
                    failures[i] = failures[i] + 1 if now - started_at[i] < 10 else 0
                    delay = 0.0 if failures[i] <= 1 else min(30.0, 0.5 * 2.0 ** failures[i])
                    log.warning(
                        "HTTP worker %d exited (code %s); starting a new one%s",
                        i,
                        proc.exitcode,
                        f" in {delay:.0f}s" if delay else "",
                    )
                    not_before[i] = now + delay
                    if delay:
                        continue
                not_before[i] = 0.0
                workers[i] = spawn(i)
                started_at[i] = time.monotonic()
            if time.monotonic() - last_report >= REPORT_INTERVAL:
                last_report = time.monotonic()
                # On this thread, which keeps the default priority (a directory scan and a
                # small file): in the idle class a helper thread may get no CPU at all until
                # the workers leave it one.
                pids = [proc.pid for proc in workers if proc.pid is not None]
                starved = starvation.check() if starvation is not None else 0.0
                report_writer(config, writer, catch_up, pids, starved)
                set_helper_threads(idle=priority.idle and not (catch_up and catch_up.lifting))
            if keys is not None and time.monotonic() - last_maintenance >= KEY_MAINTENANCE_INTERVAL:
                last_maintenance = time.monotonic()
                await asyncio.to_thread(keys.maintain, dt.datetime.now(dt.UTC))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), 0.2)
    finally:
        print("firstparty: stopping; flushing the spool into the store...", flush=True)
        if folding is not None:
            folding.cancel()
        # Off the event loop: the admin socket it serves must keep answering the workers'
        # store calls while they finish their last requests.
        await asyncio.to_thread(_stop_workers, workers)
        listener.close()
        emptied = await asyncio.to_thread(writer.stop, WRITER_STOP_BUDGET)
        await asyncio.to_thread(report_writer, config, writer)
        if not emptied:
            print(
                "firstparty: the store did not take every event in time; they stay in the "
                "spool and are inserted at the next start.",
                flush=True,
            )
        if admin is not None and admin_task is not None:
            admin.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(admin_task, 5)
            admin_socket(config).unlink(missing_ok=True)


async def fold_closed_days(config: Config, store: Store, stopping: asyncio.Event) -> None:
    """Fold every site's closed days into the visit rollups, now and every FOLD_INTERVAL."""
    timeout = dt.timedelta(minutes=config.privacy.session_timeout_minutes)
    retention = config.privacy.raw_retention_days
    while not stopping.is_set():
        now = dt.datetime.now(dt.UTC)
        for site in config.sites:
            try:
                await asyncio.to_thread(
                    finalize,
                    store,
                    site.domain,
                    now.date() - dt.timedelta(days=retention),
                    now.date() + dt.timedelta(days=1),
                    now,
                    retention,
                    timeout,
                )
            except StoreError as exc:
                log.warning("folding closed days of %s failed: %s", site.domain, exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), FOLD_INTERVAL)


def key_maintenance(config: Config, store: Store) -> Identity:
    """The salts and device keys of this store, for their scheduled destruction."""
    grace = dt.timedelta(minutes=config.privacy.session_timeout_minutes)
    return Identity(
        SaltKeeper(store, grace), DeviceKeys(store, config.privacy.visitor_id_rotation, grace)
    )


def _stop_workers(workers: list[BaseProcess]) -> None:
    started = time.monotonic()
    for proc in workers:
        if proc.is_alive() and proc.pid is not None:
            proc.terminate()
    for proc in workers:
        proc.join(timeout=max(0.1, WORKER_STOP_BUDGET - (time.monotonic() - started)))
    for proc in workers:
        if proc.is_alive():
            log.warning("HTTP worker %s did not stop in time; killing it", proc.name)
            proc.kill()
            proc.join(timeout=2)


@contextlib.contextmanager
def hold_data_dir(data_dir: Path) -> Iterator[IO[str]]:
    """One `serve` per data dir: its spool must have exactly one writer."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = open(data_dir / "serve.lock", "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise SystemExit(
                f"firstparty: another `firstparty serve` is using the data dir {data_dir}. "
                "Stop it, or give this one its own data dir (FIRSTPARTY_SERVER_DATA_DIR) to run "
                "it as an extra collector."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield handle
    finally:
        handle.close()


def collector_id(data_dir: Path) -> str:
    """A stable random id for this data dir; part of every dedup token it produces."""
    path = data_dir / "collector-id"
    if path.exists():
        text = path.read_text().strip()
        if text.isalnum():
            return text
    value = secrets.token_hex(8)
    path.write_text(value + "\n")
    return value


def _seconds_from_env(name: str, default: float) -> float:
    """A tuning knob outside the reviewed config file (see docs/operations.md)."""
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        raise SystemExit(f"firstparty: {name} must be a number of seconds") from None
    if not 0 <= value <= 60:
        raise SystemExit(f"firstparty: {name} must be between 0 and 60 seconds")
    return value


@dataclass(frozen=True)
class EnginePriority:
    """How the server's helper threads run (see docs/operations.md)."""

    idle: bool  # in the SCHED_IDLE class, else at niceness 10
    reversible: bool  # they may leave that class again when the writer falls behind

    def describe(self) -> str:
        if not self.idle:
            return f"the writer and the engine run at niceness {NICENESS}"
        if self.reversible:
            return "the writer and the engine run in the idle class while they keep up"
        return "the writer and the engine run in the idle class; workers leave them a CPU"


def _engine_priority_from_env() -> EnginePriority:
    """FIRSTPARTY_ENGINE_PRIORITY: `auto` (the default) is `idle` where the server can take its
    threads out of the idle class again, else `nice`."""
    name = "FIRSTPARTY_ENGINE_PRIORITY"
    value = os.environ.get(name, "auto").strip().lower()
    if value not in PRIORITIES:
        raise SystemExit(
            f"firstparty: {name} must be one of {', '.join(PRIORITIES)}, not {value!r}"
        )
    reversible = value != "nice" and idle_is_reversible()
    if value == "auto":
        return EnginePriority(idle=reversible, reversible=reversible)
    if value == "idle" and not reversible and len(allowed_cpus()) < 2:
        # With one CPU there is none to leave to a writer that falls behind (catchup.py).
        print(
            f"firstparty: {name}=idle needs 2 CPUs or more, or the right to leave the idle "
            "class (CAP_SYS_NICE or RLIMIT_NICE 10, docs/operations.md), and this server has "
            f"neither; running the engine at niceness {NICENESS} instead (`nice`)",
            file=sys.stderr,
            flush=True,
        )
        return EnginePriority(idle=False, reversible=False)
    return EnginePriority(idle=value == "idle", reversible=reversible)


def _open_store(config: Config) -> tuple[Store, bool]:
    """The store and whether this process owns it (else it joins the server that does)."""
    target = parse_store_url(config.store)
    if target.kind == "chdb" and target.path is not None and alive(socket_path(target.path)):
        return RemoteStore(socket_path(target.path), target.redacted()), False
    return open_owner(config.store), True


def serve(config: Config) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    priority = _engine_priority_from_env()
    log.info("engine priority: %s (FIRSTPARTY_ENGINE_PRIORITY)", priority.describe())
    with hold_data_dir(config.data_dir):
        store, owner = _open_store(config)
        try:
            if owner:
                before = schema_mod.apply(
                    store, schema_values(config), progress=lambda msg: print(msg, flush=True)
                )
                if before == 0:
                    print(
                        f"Created the schema (version {schema_mod.SCHEMA_VERSION}) in {store.url}",
                        flush=True,
                    )
            check_dedup_settings(store)
        except DedupSettingsMissing as exc:
            store.close()
            print(f"firstparty: cannot start: {exc}", file=sys.stderr, flush=True)
            return 2
        except StoreError as exc:
            store.close()
            print(f"firstparty: cannot start: {exc}", file=sys.stderr, flush=True)
            return 2
        from firstparty.app import spool_dir

        metrics.clear(metrics.metrics_dir(config.data_dir))
        writer = Writer(
            store,
            spool_dir(config),
            dt.timedelta(minutes=config.privacy.session_timeout_minutes),
            collector_id=collector_id(config.data_dir),
            fault_file=config.data_dir / FAULT_FILE,
            max_wait=_seconds_from_env("FIRSTPARTY_WRITER_MAX_WAIT", WRITER_MAX_WAIT),
            # Owning an embedded engine (a joined collector's store is not exclusive): others
            # insert through our admin socket, which tells the writer (`foreign_insert`).
            sole=store.exclusive,
        )
        report_writer(config, writer)
        writer.start()
        try:
            asyncio.run(_serve(config, store, writer, owner, priority))
        except KeyboardInterrupt:
            pass
        finally:
            if writer.busy:
                # An insert hangs in a store that does not answer: exiting now is as safe as
                # a crash (the batch's manifest is replayed at the next start), and keeps the
                # 30-second promise of SIGTERM.
                print("firstparty: stopped (an insert was still running).", flush=True)
                os._exit(0)
            store.close()
    print("firstparty: stopped.", flush=True)
    return 0
