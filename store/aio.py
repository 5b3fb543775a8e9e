"""Store calls from async code: every blocking call runs in a worker thread."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.concurrency import run_in_threadpool

from store.base import Params, Rows, Store

if TYPE_CHECKING:
    import pyarrow as pa

T = TypeVar("T")


class AsyncStore:
    def __init__(self, store: Store) -> None:
        self.sync = store

    async def query(
        self, sql: str, params: Params | None = None, settings: Mapping[str, Any] | None = None
    ) -> Rows:
        return await run_in_threadpool(self.sync.query, sql, params, settings)

    async def command(
        self, sql: str, params: Params | None = None, settings: Mapping[str, Any] | None = None
    ) -> None:
        await run_in_threadpool(self.sync.command, sql, params, settings)

    async def insert(self, table: str, data: pa.Table, dedup_token: str | None = None) -> None:
        await run_in_threadpool(self.sync.insert, table, data, dedup_token)

    async def sync_call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(store, *args)` in a worker thread, for helpers written against `Store`."""
        return await run_in_threadpool(fn, self.sync, *args)
