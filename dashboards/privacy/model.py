"""The audit's vocabulary: a check result, and what every check reads (the live store and config).

Statuses: `pass` (verified), `fail` (a violation: the audit exits 1), `review` (the system cannot
decide; a person must, e.g. whether the purpose is limited to audience measurement).
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from firstparty.config import Config
from store import retention
from store.base import Store

Status = Literal["pass", "fail", "review"]

# Tables that hold the system's own configuration, credentials and keys, not usage data.
CONFIG_TABLES = {
    "schema_version": "schema migrations applied (version, time)",
    "api_keys": "Stats API keys, stored as SHA-256 hashes",
    "users": "dashboard users (staff), passwords hashed",
    "dashboard_sessions": "dashboard login sessions, stored as hashes",
    "share_links": "shareable read-only dashboard links, stored as hashes",
    "salt_rotations": "times of salt creation and destruction (no salt values)",
    "salt_log": "times of salt creation and destruction (no salt values)",
}
# Tables whose values are secrets: kept out of every scan result, checked by the salts check.
SECRET_TABLES = {
    "salts": "daily visitor-hash salts (128-bit random), current and previous day only",
    "device_keys": "rotating keys for hashing app device IDs",
}
# Usage tables holding per-visit rows with a visitor hash (kept `raw_retention_days`).
RAW_TABLES = {"events", "sessions", "visit_facts"}


@dataclass
class Check:
    id: str
    title: str
    status: Status
    verified: str  # what the check establishes
    method: str  # how it did so, so a reader can repeat it by hand
    evidence: dict[str, Any] = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)  # each violation or open question

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "status": self.status,
            "verified": self.verified,
            "method": self.method,
            "evidence": self.evidence,
            "findings": self.findings,
        }


@dataclass(frozen=True)
class Column:
    name: str
    type: str

    @property
    def base_type(self) -> str:
        """The stored type without LowCardinality/Nullable/SimpleAggregateFunction wrappers."""
        t = self.type
        for wrapper in ("LowCardinality(", "Nullable("):
            while t.startswith(wrapper):
                t = t[len(wrapper) : -1]
        if t.startswith("SimpleAggregateFunction("):
            t = t[len("SimpleAggregateFunction(") : -1].split(",", 1)[1].strip()
            return Column(self.name, t).base_type
        return t

    @property
    def is_aggregate_state(self) -> bool:
        return self.type.startswith("AggregateFunction(")

    @property
    def is_low_cardinality(self) -> bool:
        return "LowCardinality(" in self.type

    @property
    def is_text(self) -> bool:
        """Holds text a scan must read (strings, maps and arrays of them, aggregate states)."""
        t = self.base_type
        return (
            t.startswith(("String", "FixedString", "Map(", "Array(", "Tuple("))
            # States that carry a value (argMin of a path), not sketches (uniq of hashes).
            or (self.is_aggregate_state and "String" in self.type)
            or t.startswith("Enum")
        )

    @property
    def is_time(self) -> bool:
        return self.base_type.startswith(("Date", "DateTime"))

    def text_sql(self) -> str:
        """An expression giving the column's content as text."""
        if self.is_aggregate_state:
            return f"toString(finalizeAggregation(`{self.name}`))"
        return f"toString(`{self.name}`)"


@dataclass
class Table:
    name: str
    engine: str
    columns: list[Column]
    rows: int
    ttl: retention.LiveTTL | None

    @property
    def base_name(self) -> str:
        """The schema's name: on a cluster, `events_local` holds the rows of `events`."""
        return self.name.removesuffix("_local")

    @property
    def stores_rows(self) -> bool:
        """False for a cluster's Distributed tables, which only route to the local tables."""
        return self.engine != "Distributed"

    @property
    def kind(self) -> str:
        if self.base_name in SECRET_TABLES:
            return "secret"
        if self.base_name in CONFIG_TABLES:
            return "config"
        if self.base_name in RAW_TABLES:
            return "raw"
        return "aggregate"

    @property
    def usage(self) -> bool:
        """Holds data about visits (raw or aggregated), so retention and hygiene rules apply."""
        return self.kind in ("raw", "aggregate")


def config_text(config: Config) -> str:
    """The config file's text (searched for leaked salts); empty without a file."""
    path = Path(config.source)
    try:
        return path.read_text(encoding="utf-8") if path.is_file() else ""
    except OSError:
        return ""


@dataclass
class Context:
    store: Store
    config: Config
    now: dt.datetime
    log_files: list[Path] = field(default_factory=list)
    config_text: str = ""

    @property
    def today(self) -> dt.date:
        return self.now.astimezone(dt.UTC).date()

    @functools.cached_property
    def database(self) -> str:
        return str(self.store.query("SELECT currentDatabase()").scalar())

    @functools.cached_property
    def tables(self) -> list[Table]:
        ttls = retention.live(self.store)
        rows = self.store.query(
            "SELECT name, engine, total_rows FROM system.tables "
            "WHERE database = currentDatabase() AND engine NOT IN ('View', 'MaterializedView') "
            "AND NOT is_temporary ORDER BY name"
        ).tuples()
        columns = self.store.query(
            "SELECT table, name, type FROM system.columns WHERE database = currentDatabase() "
            "ORDER BY table, position"
        ).tuples()
        by_table: dict[str, list[Column]] = {}
        for table, name, type_ in columns:
            by_table.setdefault(table, []).append(Column(name, type_))
        return [
            Table(name, engine, by_table.get(name, []), int(total or 0), ttls.get(name))
            for name, engine, total in rows
        ]

    def table(self, name: str) -> Table | None:
        return next((t for t in self.tables if t.name == name), None)

    @property
    def spool_dir(self) -> Path:
        return self.config.data_dir / "spool"
