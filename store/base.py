"""The storage interface every part of firstparty talks to: four calls, one result type.

Backends differ only in how they reach ClickHouse; they are chosen by URL in `store.connect`,
so no other module branches on the backend.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
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
    """A query result, column-oriented as ClickHouse returns it, as plain Python values.

    Plain lists rather than an Arrow table, so that processes that only read small results
    (the HTTP workers, through `store.remote`) never load pyarrow.
    """

    names: list[str]
    data: list[list[Any]]  # one list per column, in `names` order

    @classmethod
    def from_arrow(cls, table: pa.Table) -> Rows:
        return cls(list(table.column_names), [c.to_pylist() for c in table.columns])

    @property
    def columns(self) -> list[str]:
        return list(self.names)

    def __len__(self) -> int:
        return len(self.data[0]) if self.data else 0

    def dicts(self) -> list[dict[str, Any]]:
        names = self.names
        return [dict(zip(names, row, strict=True)) for row in zip(*self.data, strict=True)]

    def tuples(self) -> list[tuple[Any, ...]]:
        return list(zip(*self.data, strict=True))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.dicts())

    def scalar(self) -> Any:
        """The first column of the first row (None when there is no row)."""
        if not self.data or not self.data[0]:
            return None
        return self.data[0][0]

    def column(self, name: str) -> list[Any]:
        return list(self.data[self.names.index(name)])


class Store(Protocol):
    """Blocking calls; run them off the event loop (see `store.aio`)."""

    url: str
    # True when no other process can reach this store but through this process (the embedded
    # engine, held by its owner): every insert into it is then made or seen here.
    exclusive: bool

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
    import pyarrow as pa

    if schema is not None:
        return pa.table(
            {name: pa.array(columns[name], type=schema.field(name).type) for name in schema.names}
        )
    return pa.table(dict(columns))
