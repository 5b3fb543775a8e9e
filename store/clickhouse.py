"""The one ClickHouse backend: a clickhouse-connect client, embedded (chDB) or over HTTP.

Both targets use the same client class and the same calls, so the code production runs
against a server is the code the tests run against the embedded engine.
"""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
from clickhouse_connect.driver.exceptions import ClickHouseError

from store.base import Params, Rows, StoreBusy, StoreError, StoreUnavailable
from store.url import StoreURL

# Queries from the dashboards must never stall the engine; writers get longer.
DEFAULT_QUERY_SETTINGS: dict[str, Any] = {"max_execution_time": 30}

# What the driver raises: its own errors, socket errors, and the engine's RuntimeErrors.
DRIVER_ERRORS = (ClickHouseError, OSError, RuntimeError)

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
    def __init__(self, target: StoreURL) -> None:
        import clickhouse_connect  # imported here: HTTP workers that never open a store skip it

        self.url = target.redacted()
        self.target = target
        # chDB's engine is not safe for concurrent calls from several threads of one process.
        self._lock = threading.Lock()
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
                bootstrap = clickhouse_connect.get_client(interface="chdb", path=str(target.path))
                bootstrap.command(f"CREATE DATABASE IF NOT EXISTS {target.database}")
                self._client = clickhouse_connect.get_client(
                    interface="chdb", path=str(target.path), database=target.database
                )
                bootstrap.close()
                _OPEN_HERE.add(target.path)
            else:
                bootstrap = clickhouse_connect.get_client(
                    host=target.host,
                    port=target.port,
                    username=target.username,
                    password=target.password,
                    secure=target.secure,
                )
                bootstrap.command(f"CREATE DATABASE IF NOT EXISTS {target.database}")
                bootstrap.close()
                self._client = clickhouse_connect.get_client(
                    host=target.host,
                    port=target.port,
                    username=target.username,
                    password=target.password,
                    secure=target.secure,
                    database=target.database,
                )
        except StoreError:
            raise
        except DRIVER_ERRORS as exc:
            raise _translate(exc, self.url) from None

    def query(
        self, sql: str, params: Params | None = None, settings: Mapping[str, Any] | None = None
    ) -> Rows:
        merged = {**DEFAULT_QUERY_SETTINGS, **(settings or {})}
        try:
            with self._lock:
                table = self._client.query_arrow(
                    sql, parameters=dict(params or {}), settings=merged, use_strings=True
                )
        except DRIVER_ERRORS as exc:
            raise _translate(exc, self.url) from None
        return Rows(table)

    def command(
        self, sql: str, params: Params | None = None, settings: Mapping[str, Any] | None = None
    ) -> None:
        try:
            with self._lock:
                self._client.command(
                    sql, parameters=dict(params or {}), settings=dict(settings or {})
                )
        except DRIVER_ERRORS as exc:
            raise _translate(exc, self.url) from None

    def insert(self, table: str, data: pa.Table, dedup_token: str | None = None) -> None:
        settings: dict[str, Any] = {}
        if dedup_token is not None:
            settings["insert_deduplication_token"] = dedup_token
            settings["insert_deduplicate"] = 1
            settings["deduplicate_blocks_in_dependent_materialized_views"] = 1
        try:
            with self._lock:
                self._client.insert_arrow(table, data, settings=settings)
        except DRIVER_ERRORS as exc:
            raise _translate(exc, self.url) from None

    def close(self) -> None:
        with self._lock:
            self._client.close()


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
