"""Store URLs: `chdb://PATH` (embedded engine) and `clickhouse://user:pass@host:port/db`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_DATABASE = "firstparty"


@dataclass(frozen=True)
class StoreURL:
    kind: str  # "chdb" or "clickhouse"
    database: str
    path: Path | None = None  # chdb only: the engine's directory
    host: str = ""
    port: int = 8123
    username: str = "default"
    password: str = ""
    secure: bool = False

    def redacted(self) -> str:
        """The URL with the password hidden, for logs and error messages."""
        if self.kind == "chdb":
            return f"chdb://{self.path}?database={self.database}"
        scheme = "clickhouses" if self.secure else "clickhouse"
        return f"{scheme}://{self.username}:***@{self.host}:{self.port}/{self.database}"


def parse_store_url(url: str) -> StoreURL:
    if url.startswith("chdb://"):
        rest = url[len("chdb://") :]
        location, _, query = rest.partition("?")
        if not location:
            raise ValueError(f"store URL {url!r} needs a path, like chdb://./data/clickhouse")
        database = parse_qs(query).get("database", [DEFAULT_DATABASE])[0]
        return StoreURL(
            kind="chdb", path=Path(unquote(location)).absolute(), database=_database(database, url)
        )
    parts = urlsplit(url)
    if parts.scheme in ("clickhouse", "clickhouses", "http", "https"):
        secure = parts.scheme in ("clickhouses", "https")
        if not parts.hostname:
            raise ValueError(
                f"store URL {url!r} needs a host, like clickhouse://user:pass@host:8123/db"
            )
        database = parts.path.strip("/") or DEFAULT_DATABASE
        return StoreURL(
            kind="clickhouse",
            host=parts.hostname,
            port=parts.port or (8443 if secure else 8123),
            username=unquote(parts.username or "default"),
            password=unquote(parts.password or ""),
            database=_database(database, url),
            secure=secure,
        )
    raise ValueError(
        f"store URL {url!r} is not supported; use chdb://PATH (embedded) or "
        "clickhouse://user:password@host:8123/database (a ClickHouse server)"
    )


def _database(name: str, url: str) -> str:
    if not name.replace("_", "").isalnum():
        raise ValueError(f"store URL {url!r}: database name {name!r} must be letters, digits and _")
    return name
