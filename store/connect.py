"""Choose the backend from the URL. The only place that knows which backends exist."""

from __future__ import annotations

from store.base import Store
from store.remote import RemoteStore, alive, socket_path
from store.url import parse_store_url


def connect(url: str) -> Store:
    """A store for a client: through the running server's admin socket when it owns the engine.

    `chdb://PATH` opens the embedded engine in this process unless `firstparty serve` holds it,
    in which case the calls go to that process. `clickhouse://...` always connects directly.
    """
    target = parse_store_url(url)
    if target.kind == "chdb":
        assert target.path is not None
        sock = socket_path(target.path)
        if alive(sock):
            return RemoteStore(sock, target.redacted())
    return open_owner(url)


def open_owner(url: str) -> Store:
    """Open the store in this process (the server's writer process does this)."""
    from store.clickhouse import ClickHouseStore

    return ClickHouseStore(parse_store_url(url))
