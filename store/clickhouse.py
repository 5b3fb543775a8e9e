"""The one ClickHouse backend: a clickhouse-connect client, embedded (chDB) or over HTTP.

Both targets use the same client class and the same calls, so the code production runs
against a server is the code the tests run against the embedded engine.
"""

from __future__ import annotations

import contextlib
import fcntl
import queue
import re
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from clickhouse_connect.driver.exceptions import ClickHouseError

from store.base import Params, Rows, StoreBusy, StoreError, StoreUnavailable
from store.url import StoreURL

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

# Clients per store, so that many calls from the threads of one process (the dashboard's
# queries, the writer's inserts, the admin socket's callers) run side by side.
POOL_SIZE = 4

# Queries from the dashboards must never stall the engine; writers get longer.
DEFAULT_QUERY_SETTINGS: dict[str, Any] = {"max_execution_time": 30}

# Every insert: the views of `events` (sessions, rollups) run side by side, and their
# aggregating targets skip the merge of the new part's rows at insert time (each view already
# groups a block by its table's key, so there is nothing to merge; reads aggregate anyway).
# 100,000 new visitors: 740-1,050 -> 450-770 ms per insert (docs/benchmarks.md, 2026-12-04).
INSERT_SETTINGS: dict[str, Any] = {"parallel_view_processing": 1, "optimize_on_insert": 0}

_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# What the driver raises: its own errors, socket errors, the engine's RuntimeErrors, and
# Arrow's errors when a result cannot be read ("Message metadata too long", from a chDB handle
# whose previous query failed), which must reach callers as a failed query (the API's 503).
DRIVER_ERRORS = (ClickHouseError, OSError, RuntimeError, pa.ArrowException)

# Engine paths this process has open: chDB shares one engine per path inside a process.
_OPEN_HERE: set[Path] = set()


def _embedded_holder(path: Path) -> str | None:
    """Who holds the engine lock on `path` (ClickHouse's `status` file), or None if nobody."""
    status = path / "status"
    if not status.exists():
        return None
    try:
        with open(status, "rb") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                text = status.read_text(errors="replace")
                pid = next(
                    (
                        line.split(":", 1)[1].strip()
                        for line in text.splitlines()
                        if line.startswith("PID:")
                    ),
                    "unknown",
                )
                return pid
            fcntl.flock(handle, fcntl.LOCK_UN)
    except OSError:
        return None
    return None


class ClickHouseStore:
    """A small pool of clients: concurrent calls (a dashboard page's dozen queries, the writer's
    inserts) each get a client of their own instead of queueing behind one. A client is never
    used by two threads at once: a server client's HTTP session admits one query at a time, and
    a chDB handle keeps per-handle state (its USE database, session settings)."""

    def __init__(self, target: StoreURL, pool_size: int = POOL_SIZE) -> None:
        self.url = target.redacted()
        self.target = target
        self.exclusive = target.kind == "chdb"
        self._pool_size = pool_size
        self._idle: queue.SimpleQueue[Client] = queue.SimpleQueue()
        self._opened = 0  # clients made, idle or in use
        self._grow = threading.Lock()
        self._closed = False
        try:
            if target.kind == "chdb":
                assert target.path is not None
                holder = None if target.path in _OPEN_HERE else _embedded_holder(target.path)
                if holder is not None:
                    raise StoreBusy(
                        f"the embedded store at {target.path} is in use by another process "
                        f"(pid {holder}). Only one process may open it: stop that process, or run "
                        "this command while `firstparty serve` is running so it goes through the "
                        "server's admin socket."
                    )
                target.path.mkdir(parents=True, exist_ok=True)
            bootstrap = self._connect(None)
            bootstrap.command(f"CREATE DATABASE IF NOT EXISTS {target.database}")
            # The pool's first client opens before the bootstrap one closes, so an embedded
            # engine stays open throughout.
            self._idle.put(self._new_client())
            bootstrap.close()
            if target.path is not None:
                _OPEN_HERE.add(target.path)
        except StoreError:
            raise
        except DRIVER_ERRORS as exc:
            raise _translate(exc, self.url) from None

    def _connect(self, database: str | None) -> Client:
        import clickhouse_connect  # imported here: HTTP workers that never open a store skip it

        t = self.target
        if t.kind == "chdb":
            return clickhouse_connect.get_client(
                interface="chdb", path=str(t.path), database=database
            )
        return clickhouse_connect.get_client(
            host=t.host,
            port=t.port,
            username=t.username,
            password=t.password,
            secure=t.secure,
            database=database,
        )

    def _new_client(self) -> Client:
        client = self._connect(self.target.database)
        self._opened += 1
        return client

    @contextlib.contextmanager
    def _client(self) -> Iterator[Client]:
        client = self._take()
        try:
            yield client
        except DRIVER_ERRORS:
            # A chDB handle whose query failed (e.g. at its time cap) hands the next query on it
            # an unreadable result ("Invalid flatbuffers message"): replace it. The replacement
            # opens first, so an embedded engine never loses its last handle.
            client = self._replace(client)
            raise
        finally:
            with self._grow:
                closed = self._closed
            if closed:
                client.close()  # `close()` ran while this call was in flight
            else:
                self._idle.put(client)

    def _replace(self, client: Client) -> Client:
        with self._grow:  # handles open one at a time, as in `_take`
            try:
                fresh = self._connect(self.target.database)
            except DRIVER_ERRORS:
                return client  # keep the old handle rather than shrink the pool
        with contextlib.suppress(*DRIVER_ERRORS):
            client.close()
        return fresh

    def _take(self) -> Client:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._grow:
            if self._closed:
                raise StoreError(f"the store at {self.url} is closed")
            if self._opened < self._pool_size:
                return self._new_client()
        return self._idle.get()  # every client is busy: wait for one to come back

    def query(
        self, sql: str, params: Params | None = None, settings: Mapping[str, Any] | None = None
    ) -> Rows:
        # A SETTINGS clause in the query itself: the chDB backend applies `settings=` with a
        # SET, a read of system.settings and a restore around every call (~2 ms each).
        sql = f"{sql}\nSETTINGS {settings_clause({**DEFAULT_QUERY_SETTINGS, **(settings or {})})}"
        try:
            with self._client() as client:
                table = client.query_arrow(sql, parameters=dict(params or {}), use_strings=True)
        except DRIVER_ERRORS as exc:
            raise _translate(exc, self.url) from None
        return Rows.from_arrow(table)

    def command(
        self, sql: str, params: Params | None = None, settings: Mapping[str, Any] | None = None
    ) -> None:
        try:
            with self._client() as client:
                client.command(sql, parameters=dict(params or {}), settings=dict(settings or {}))
        except DRIVER_ERRORS as exc:
            raise _translate(exc, self.url) from None

    def insert(self, table: str, data: pa.Table, dedup_token: str | None = None) -> None:
        settings: dict[str, Any] = dict(INSERT_SETTINGS)
        if dedup_token is not None:
            settings["insert_deduplication_token"] = dedup_token
            settings["insert_deduplicate"] = 1
            settings["deduplicate_blocks_in_dependent_materialized_views"] = 1
        try:
            with self._client() as client:
                client.insert_arrow(table, data, settings=settings)
        except DRIVER_ERRORS as exc:
            raise _translate(exc, self.url) from None

    def close(self) -> None:
        with self._grow:
            self._closed = True
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


def settings_clause(settings: Mapping[str, Any]) -> str:
    """`name = value, ...` for a SETTINGS clause, from settings written in our own code."""
    out = []
    for name, value in settings.items():
        if not _SETTING_NAME.fullmatch(name):
            raise ValueError(f"not a ClickHouse setting name: {name!r}")
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(f"setting {name}: give an int, a float or a string")
        if isinstance(value, str):
            value = "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
        out.append(f"{name} = {value}")
    return ", ".join(out)


def _translate(exc: Exception, url: str) -> StoreError:
    """Turn a driver exception into our own, with a message an operator can act on."""
    from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

    text = str(exc)
    if isinstance(exc, OperationalError) or "Connection refused" in text:
        return StoreUnavailable(f"cannot reach the store at {url}: {_first_line(text)}")
    if "EmbeddedServer" in text:
        return StoreBusy(
            f"cannot open the embedded store ({url}): another process probably holds it. "
            "Stop it, or run this command while `firstparty serve` is running."
        )
    if isinstance(exc, DatabaseError):
        return StoreError(_first_line(text))
    return StoreError(f"{type(exc).__name__}: {_first_line(text)}")


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "unknown error"
    return line[:500]
