"""The storage interface every part of firstparty talks to: four calls, one result type.

Backends differ only in how they reach ClickHouse; they are chosen by URL in `store.connect`,
so no other module branches on the backend.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa

Params = Mapping[str, Any]


class StoreError(RuntimeError):
    """The store failed; the message is safe to show to an operator (no row data)."""


class StoreUnavailable(StoreError):
    """The store cannot be reached right now; the caller may retry later."""


class StoreBusy(StoreError):
    """The embedded store is held by another process and no admin socket answers for it."""


@dataclass(frozen=True)
class Rows:
    """A query result, column-oriented as ClickHouse returns it (Arrow underneath)."""

    table: pa.Table

    @property
    def columns(self) -> list[str]:
        return list(self.table.column_names)

    def __len__(self) -> int:
        return int(self.table.num_rows)

    def dicts(self) -> list[dict[str, Any]]:
        return list(self.table.to_pylist())

    def tuples(self) -> list[tuple[Any, ...]]:
        cols = [self.table.column(i).to_pylist() for i in range(self.table.num_columns)]
        return list(zip(*cols, strict=True))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.dicts())

    def scalar(self) -> Any:
        """The first column of the first row (None when there is no row)."""
        if self.table.num_rows == 0:
            return None
        return self.table.column(0)[0].as_py()

    def column(self, name: str) -> list[Any]:
        return list(self.table.column(name).to_pylist())


class Store(Protocol):
    """Blocking calls; run them off the event loop (see `store.aio`)."""

    url: str

    def query(
        self, sql: str, params: Params | None = None, settings: Mapping[str, Any] | None = None
    ) -> Rows:
        """Run a SELECT with server-side bound `{name:Type}` parameters."""

    def command(
        self, sql: str, params: Params | None = None, settings: Mapping[str, Any] | None = None
    ) -> None:
        """Run DDL or another statement that returns no rows."""

    def insert(self, table: str, data: pa.Table, dedup_token: str | None = None) -> None:
        """Insert a columnar batch; a repeated `dedup_token` is stored once."""

    def close(self) -> None: ...


def batch(columns: Mapping[str, Sequence[Any]], schema: pa.Schema | None = None) -> pa.Table:
    """Build an Arrow batch from plain Python columns."""
    if schema is not None:
        return pa.table(
            {name: pa.array(columns[name], type=schema.field(name).type) for name in schema.names}
        )
    return pa.table(dict(columns))
