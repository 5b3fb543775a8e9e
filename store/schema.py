"""Apply `schema.sql` idempotently, and migrate existing data between schema versions.

`schema.sql` always describes the current schema (every statement `IF NOT EXISTS`), so a new
store gets it whole. An existing store at an older version first runs the migrations above its
version, in order; then `schema.sql` adds whatever is new. Retention TTLs follow the config.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from importlib import resources

from store.base import Store

# version -> statements that bring a store at version-1 up to version. Append, never edit.
MIGRATIONS: dict[int, list[str]] = {
    # 2: salts get a partition per day (destroyed by DROP PARTITION) and fast part cleanup.
    # Re-runnable: a crash between EXCHANGE and the last DROP leaves the old copy in salts_v2.
    2: [
        "DROP TABLE IF EXISTS salts_v2 SYNC",
        "CREATE TABLE salts_v2 (day Date, salt String, "
        "created_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = MergeTree PARTITION BY day ORDER BY day "
        "SETTINGS old_parts_lifetime = 1, cleanup_delay_period = 1, "
        "max_cleanup_delay_period = 1, cleanup_delay_period_random_add = 0",
        "INSERT INTO salts_v2 SELECT day, salt, created_at FROM salts",
        "EXCHANGE TABLES salts AND salts_v2",
        "DROP TABLE salts_v2 SYNC",
    ],
    # 3: events get `day` (whole-day ranges filter 2 bytes a row, not 8) and a dictionary-coded
    # `pathname`; existing parts are rewritten in the background, read correctly meanwhile.
    3: [
        "ALTER TABLE events ADD COLUMN IF NOT EXISTS day Date MATERIALIZED toDate(timestamp)",
        "ALTER TABLE events MODIFY COLUMN pathname LowCardinality(String)",
        "ALTER TABLE events MATERIALIZE COLUMN day",
    ],
}
SCHEMA_VERSION = 3

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
_ALTER = re.compile(r"^ALTER TABLE (\w+) ")


def schema_text() -> str:
    return resources.files("store").joinpath("schema.sql").read_text(encoding="utf-8")


def statements(values: Mapping[str, int], text: str | None = None) -> list[str]:
    """The schema's statements with `{{name}}` placeholders filled from validated integers."""
    text = schema_text() if text is None else text
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    body = "\n".join(line.split(" --", 1)[0].rstrip() for line in lines)

    def fill(match: re.Match[str]) -> str:
        value = values[match.group(1)]
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"schema placeholder {match.group(1)} must be an integer")
        return str(value)

    return [_PLACEHOLDER.sub(fill, s).strip() for s in body.split(";\n") if s.strip(" ;\n")]


def _exists(store: Store, table: str) -> bool:
    # `table` is one of our own names (\w+), written as a literal: the start-up queries also
    # run on stand-ins without parameter binding (tests/test_deploy_cluster.py)
    if not re.fullmatch(r"\w+", table):
        raise ValueError(f"not a table name: {table!r}")
    return bool(
        store.query(
            "SELECT count() FROM system.tables WHERE database = currentDatabase() "
            f"AND name = '{table}'"
        ).scalar()
    )


def current_version(store: Store) -> int:
    if not _exists(store, "schema_version"):
        return 0
    return int(store.query("SELECT max(version) FROM schema_version").scalar() or 0)


def _is_cluster(store: Store) -> bool:
    """The cluster form of the schema (store/cluster.py): `events` is a Distributed table."""
    engine = store.query(
        "SELECT any(engine) FROM system.tables WHERE database = currentDatabase() "
        "AND name = 'events'"
    ).scalar()
    return str(engine) == "Distributed"


def apply(
    store: Store, values: Mapping[str, int], progress: Callable[[str], None] | None = None
) -> int:
    """Bring the store to SCHEMA_VERSION; returns the version it was at before."""
    say = progress or (lambda _msg: None)
    before = current_version(store)
    if before > SCHEMA_VERSION:
        raise RuntimeError(
            f"the store is at schema version {before}, newer than this firstparty "
            f"({SCHEMA_VERSION}); upgrade firstparty instead of downgrading the store"
        )
    pending = [m for v in range(before + 1, SCHEMA_VERSION + 1) for m in MIGRATIONS.get(v, [])]
    if before and pending and _is_cluster(store):
        raise RuntimeError(
            f"the store is a ClickHouse cluster at schema version {before} and this firstparty "
            f"needs {SCHEMA_VERSION}; migrations are single-node statements, so apply them "
            "ON CLUSTER first (docs/scaling.md, Upgrades), then start the collectors"
        )
    if before:
        for version in range(before + 1, SCHEMA_VERSION + 1):
            say(f"migrating the store to schema version {version}")
            for sql in MIGRATIONS.get(version, []):
                altered = _ALTER.match(sql)
                if altered and not _exists(store, altered.group(1)):
                    continue  # schema.sql below creates it in its current form
                store.command(sql)
    for sql in statements(values):
        store.command(sql.rstrip(";"))
    from store import retention  # TTLs of existing tables follow the config

    for change in retention.sync(store, values):
        say(change)
    if before != SCHEMA_VERSION:
        store.command(
            "INSERT INTO schema_version (version) VALUES ({v:UInt32})", {"v": SCHEMA_VERSION}
        )
    return before
