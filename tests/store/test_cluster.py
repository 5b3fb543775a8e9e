"""The cluster DDL is schema.sql transformed: every table, column, TTL and view has its counterpart.

The single-node side of each comparison is the live schema on the real engine (system.tables,
system.columns), so a table another change adds to schema.sql is checked without editing here.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from firstparty.config import parse
from firstparty.server import schema_values
from store import schema as schema_mod
from store.base import Store
from store.cluster import ClusterSchemaError, cluster_statements, split_top_level
from tests.conftest import firstparty

CLUSTER = "analytics"
DATABASE = "firstparty"
VALUES = schema_values(parse("", env={}))


@dataclass(frozen=True)
class ClusterTable:
    name: str
    columns: list[tuple[str, str]]  # (name, type without spaces)
    engine: str
    engine_args: list[str]
    sql: str


def normal_type(text: str) -> str:
    return re.sub(r"\s+", "", text)


def column(definition: str) -> tuple[str, str]:
    name, rest = definition.split(None, 1)
    stop = re.search(r"\s(DEFAULT|MATERIALIZED|ALIAS|CODEC|COMMENT|TTL|EPHEMERAL)\b", rest)
    return name, normal_type(rest[: stop.start()] if stop else rest)


def parse_cluster(statements: list[str]) -> tuple[dict[str, ClusterTable], dict[str, str]]:
    """Tables and materialized views of the cluster DDL, read from the text."""
    tables: dict[str, ClusterTable] = {}
    views: dict[str, str] = {}
    for sql in statements:
        head = re.match(
            rf"CREATE (TABLE|MATERIALIZED VIEW|VIEW|DATABASE) IF NOT EXISTS "
            rf"(?:{DATABASE}\.)?(\w+) ON CLUSTER {CLUSTER}\b",
            sql,
        )
        assert head, f"not an ON CLUSTER statement: {sql[:100]}"
        kind, name = head.group(1), head.group(2)
        if kind == "TABLE":
            body = sql[sql.index("(\n") + 2 : sql.index("\n)\nENGINE")]
            engine = re.search(r"^ENGINE = (\w+)(?:\((.*)\))?$", sql, re.M)
            assert engine, sql
            elements = [e for e in split_top_level(body) if not re.match(r"INDEX|PROJECTION", e)]
            tables[name] = ClusterTable(
                name,
                [column(e) for e in elements],
                engine.group(1),
                split_top_level(engine.group(2) or ""),
                sql,
            )
        elif kind != "DATABASE":
            views[name] = sql
    return tables, views


@pytest.fixture(scope="module")
def ddl() -> list[str]:
    return cluster_statements(schema_mod.statements(VALUES), CLUSTER, DATABASE)


def live_tables(store: Store) -> dict[str, str]:
    rows = store.query(
        "SELECT name, engine FROM system.tables WHERE database = currentDatabase()"
    ).tuples()
    return {str(name): str(engine) for name, engine in rows}


def live_columns(store: Store, table: str) -> list[tuple[str, str]]:
    rows = store.query(
        "SELECT name, type FROM system.columns WHERE database = currentDatabase() "
        "AND table = {t:String} ORDER BY position",
        {"t": table},
    ).tuples()
    return [(str(n), normal_type(str(t))) for n, t in rows]


def test_every_table_has_its_cluster_counterpart_with_the_same_columns(
    store: Store, ddl: list[str]
) -> None:
    tables, _ = parse_cluster(ddl)
    checked = 0
    for name, engine in live_tables(store).items():
        if engine in ("MaterializedView", "View"):
            continue
        columns = live_columns(store, name)
        if f"{name}_local" in tables:
            local, distributed = tables[f"{name}_local"], tables[name]
            assert local.engine == f"Replicated{engine}", name
            assert local.columns == columns, name
            assert distributed.engine == "Distributed", name
            assert distributed.columns == columns, name
            assert distributed.engine_args[:3] == [
                f"'{CLUSTER}'",
                f"'{DATABASE}'",
                f"'{name}_local'",
            ]
        else:
            assert name in tables, f"{name} has no cluster counterpart"
            expected = f"Replicated{engine}" if engine.endswith("MergeTree") else engine
            assert tables[name].engine == expected, name
            assert tables[name].columns == columns, name
        checked += 1
    assert checked >= 5


def test_visitor_data_is_sharded_so_one_sites_visitor_stays_on_one_shard(
    store: Store, ddl: list[str]
) -> None:
    tables, _ = parse_cluster(ddl)
    with_visitors = [
        name
        for name, engine in live_tables(store).items()
        if engine.endswith("MergeTree")
        and {"site_id", "visitor_id"} <= {c for c, _ in live_columns(store, name)}
    ]
    assert {"events", "sessions"} <= set(with_visitors)
    for name in with_visitors:
        assert tables[name].engine_args[3] == "cityHash64(site_id, visitor_id)", name
    # Small shared tables are whole on every node, so a salt read or destroyed is the same
    # everywhere: one Keeper path for the cluster, not one per shard.
    for name in ("salts", "device_keys", "schema_version", "api_keys"):
        assert tables[name].engine.startswith("Replicated"), name
        assert tables[name].engine_args[0].startswith("'/clickhouse/tables/all/"), name


def test_replicated_engines_use_the_macros_and_a_keeper_path_per_table(ddl: list[str]) -> None:
    tables, _ = parse_cluster(ddl)
    replicated = [t for t in tables.values() if t.engine.startswith("Replicated")]
    paths = [t.engine_args[0] for t in replicated]
    assert len(paths) == len(set(paths)), "two tables share a Keeper path"
    for table in replicated:
        assert table.engine_args[1] == "'{replica}'"
        assert table.engine_args[0].endswith(f"/{{database}}/{table.name}'")
        if table.name.endswith("_local"):
            assert table.engine_args[0].startswith("'/clickhouse/tables/{shard}/")
    # Engine parameters of the single-node table (a version column) are kept after the two.
    users = tables.get("users")
    if users is not None and "ReplacingMergeTree" in users.engine:
        assert len(users.engine_args) >= 2


def test_materialized_views_read_and_fill_the_local_tables(store: Store, ddl: list[str]) -> None:
    tables, views = parse_cluster(ddl)
    live = live_tables(store)
    mvs = [name for name, engine in live.items() if engine == "MaterializedView"]
    assert "sessions_mv" in mvs
    for name in mvs:
        single = store.query(
            "SELECT as_select, create_table_query FROM system.tables "
            "WHERE database = currentDatabase() AND name = {n:String}",
            {"n": name},
        ).dicts()[0]
        target = re.search(r"\bTO\s+\S+?\.`?(\w+)`?", str(single["create_table_query"]))
        assert target is not None
        sql = views[name]
        local_target = (
            f"{target.group(1)}_local" if f"{target.group(1)}_local" in tables else target.group(1)
        )
        assert f" TO {DATABASE}.{local_target} AS" in sql
        for source in re.findall(r"\b(?:FROM|JOIN)\s+([\w.]+)", sql):
            table = source.split(".")[-1]
            assert f"{table}_local" not in tables, f"{name} reads the Distributed table {table}"


def test_ttls_and_dedup_settings_carry_over(ddl: list[str]) -> None:
    single = {
        m.group(1): s
        for s in schema_mod.statements(VALUES)
        if (m := re.match(r"CREATE TABLE IF NOT EXISTS (\w+)", s))
    }
    tables, _ = parse_cluster(ddl)
    for name, sql in single.items():
        cluster_sql = tables.get(f"{name}_local", tables.get(name))
        assert cluster_sql is not None
        for clause in re.findall(r"^(TTL .*|PARTITION BY .*|ORDER BY .*)$", sql, re.M):
            assert clause.rstrip(";") in cluster_sql.sql.splitlines(), (name, clause)
        window = re.search(r"non_replicated_deduplication_window = (\d+)", sql)
        if window:
            assert f"replicated_deduplication_window = {window.group(1)}" in cluster_sql.sql
    assert not any("non_replicated_deduplication_window" in s for s in ddl)
    assert ddl[0] == f"CREATE DATABASE IF NOT EXISTS {DATABASE} ON CLUSTER {CLUSTER}"


SYNTHETIC = """
CREATE TABLE IF NOT EXISTS events (
    site_id LowCardinality(String),
    timestamp DateTime64(3, 'UTC'),
    visitor_id UInt64,
    pathname String CODEC(ZSTD(3)),
    INDEX path_idx pathname TYPE bloom_filter GRANULARITY 4
) ENGINE = MergeTree ORDER BY (site_id, timestamp)
TTL toDateTime(timestamp) + INTERVAL {{raw_retention_days}} DAY;

CREATE TABLE IF NOT EXISTS daily (
    site_id LowCardinality(String),
    day Date,
    events UInt64,
    visitors AggregateFunction(uniqCombined64(12), UInt64)
) ENGINE = AggregatingMergeTree ORDER BY (site_id, day);

CREATE MATERIALIZED VIEW IF NOT EXISTS daily_mv TO daily AS
SELECT site_id, toDate(timestamp) AS day, count() AS events,
    uniqCombined64State(12)(visitor_id) AS visitors
FROM events GROUP BY site_id, day;

CREATE TABLE IF NOT EXISTS owners (email String, version UInt64)
ENGINE = ReplacingMergeTree(version) ORDER BY email;

CREATE TABLE IF NOT EXISTS inbox (site_id String) ENGINE = Null;

CREATE VIEW IF NOT EXISTS recent AS SELECT * FROM events WHERE timestamp > now() - 60;
"""


def test_the_transformation_follows_whatever_schema_sql_holds() -> None:
    statements = schema_mod.statements({"raw_retention_days": 7}, SYNTHETIC)
    tables, views = parse_cluster(cluster_statements(statements, CLUSTER, DATABASE))
    # A rollup without visitor_id, filled from sharded events, is sharded with them.
    assert tables["daily_local"].engine == "ReplicatedAggregatingMergeTree"
    assert tables["daily"].engine_args[3] == "cityHash64(site_id)"
    assert "TO firstparty.daily_local AS" in views["daily_mv"]
    assert "FROM firstparty.events_local GROUP BY" in views["daily_mv"]
    # The column called `events` is not mistaken for the table.
    assert "count() AS events" in views["daily_mv"]
    # Indexes and codecs stay on the local table; the Distributed one stores nothing.
    assert "INDEX path_idx" in tables["events_local"].sql
    assert "CODEC(ZSTD(3))" in tables["events_local"].sql
    assert "INDEX" not in tables["events"].sql and "CODEC" not in tables["events"].sql
    assert "TTL toDateTime(timestamp) + INTERVAL 7 DAY" in tables["events_local"].sql
    assert tables["owners"].engine_args == [
        "'/clickhouse/tables/all/{database}/owners'",
        "'{replica}'",
        "version",
    ]
    assert tables["inbox"].engine == "Null"
    # A plain view reads the Distributed table: the whole cluster.
    assert "FROM firstparty.events WHERE" in views["recent"]


def test_functions_are_created_on_every_node() -> None:
    ddl = cluster_statements(["CREATE FUNCTION IF NOT EXISTS f AS (x) -> x + 1"], CLUSTER, DATABASE)
    assert ddl[1] == f"CREATE FUNCTION IF NOT EXISTS f ON CLUSTER {CLUSTER} AS (x) -> x + 1"


def test_statements_without_a_cluster_form_are_refused() -> None:
    with pytest.raises(ClusterSchemaError, match="cannot give a cluster form"):
        cluster_statements(["INSERT INTO salts VALUES (1)"], CLUSTER, DATABASE)
    with pytest.raises(ClusterSchemaError, match="without `TO table`"):
        cluster_statements(
            ["CREATE MATERIALIZED VIEW v ENGINE = MergeTree ORDER BY x AS SELECT 1 AS x"],
            CLUSTER,
            DATABASE,
        )
    with pytest.raises(ClusterSchemaError, match="cluster name"):
        cluster_statements([], "a-b; DROP", DATABASE)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return firstparty(*args, cwd=cwd, env={"PATH": "/usr/bin:/bin", "HOME": str(cwd)})


def test_the_cli_prints_the_cluster_ddl(tmp_path: Path) -> None:
    out = run_cli(
        "--store", "clickhouse://u:p@ch:8123/stats", "schema", "--cluster", CLUSTER, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"CREATE DATABASE IF NOT EXISTS stats ON CLUSTER {CLUSTER};")
    assert f"CREATE TABLE IF NOT EXISTS stats.events_local ON CLUSTER {CLUSTER}" in out.stdout
    assert f"Distributed('{CLUSTER}', 'stats', 'events_local'" in out.stdout
    bad = run_cli("schema", "--cluster", "no such", cwd=tmp_path)
    assert bad.returncode == 2
    assert "cluster name" in bad.stderr and "Traceback" not in bad.stderr
    embedded = run_cli("schema", "--cluster", CLUSTER, "--apply", cwd=tmp_path)
    assert embedded.returncode == 2
    assert "clickhouse:// store" in embedded.stderr
