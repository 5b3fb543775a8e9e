"""ClickHouse access for firstparty, one small interface chosen by URL."""

from __future__ import annotations

from store.aio import AsyncStore
from store.base import Rows, Store, StoreBusy, StoreError, StoreUnavailable, batch
from store.connect import connect, open_owner

__all__ = [
    "AsyncStore",
    "Rows",
    "Store",
    "StoreBusy",
    "StoreError",
    "StoreUnavailable",
    "batch",
    "connect",
    "open_owner",
]
