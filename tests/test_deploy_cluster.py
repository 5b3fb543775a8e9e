"""docker-compose.cluster.yml and deploy/ agree with each other and with the generated cluster DDL.

The cluster cannot run here (no Docker engine), so the structure is read from the files, and the
ClickHouse configs are loaded by the real engine: chDB starts with the deploy's remote_servers and
one node's macros and runs the generated DDL, as a node of the cluster would.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest

from firstparty.cli import parser as cli_parser
from firstparty.config import parse as parse_config
from firstparty.server import schema_values
from store import schema as schema_mod
from store.cluster import cluster_statements
from store.url import parse_store_url
from tests.test_deploy import PINNED, ROOT, compose, environment, volume_targets

DEPLOY = ROOT / "deploy"
BUILTIN_MACROS = {"database", "table", "uuid"}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return compose("docker-compose.cluster.yml")


def clickhouse_nodes(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in spec["services"].items()
        if service.get("image", "").startswith("clickhouse/clickhouse-server:")
    }


def cluster_name(spec: dict[str, Any]) -> str:
    args = cli_parser().parse_args(spec["services"]["schema"]["command"][1:])
    assert args.command == "schema" and args.apply
    return str(args.cluster)


def remote_servers(name: str) -> list[list[str]]:
    """The hosts of each shard of cluster `name` in deploy/clickhouse/cluster.xml."""
    root = ET.parse(DEPLOY / "clickhouse" / "cluster.xml").getroot()
    cluster = root.find(f"remote_servers/{name}")
    assert cluster is not None, f"cluster {name} is not in remote_servers"
    shards = []
    for shard in cluster.findall("shard"):
        assert shard.findtext("internal_replication") == "true"
        shards.append([str(r.findtext("host")) for r in shard.findall("replica")])
    return shards


def macros(node: dict[str, Any]) -> dict[str, str]:
    (source,) = [s for t, s in volume_targets(node).items() if t.endswith("config.d/macros.xml")]
    root = ET.parse(ROOT / source).getroot()
    return {child.tag: str(child.text) for child in root.find("macros") or []}


def generated_ddl(spec: dict[str, Any]) -> list[str]:
    store = environment(spec["services"]["schema"])["FIRSTPARTY_STORE"]
    database = parse_store_url(store).database
    values = schema_values(parse_config("", env={}))
    return cluster_statements(schema_mod.statements(values), cluster_name(spec), database)


def test_two_shards_of_two_replicas_and_a_keeper_all_pinned(spec: dict[str, Any]) -> None:
    nodes = clickhouse_nodes(spec)
    assert len(nodes) == 4
    images = {service["image"] for service in nodes.values()}
    keeper = spec["services"]["keeper"]
    assert len(images) == 1 and PINNED.match(images.pop() or "")
    assert PINNED.match(keeper["image"])
    assert keeper["image"].split(":")[1] == nodes["clickhouse-s1-r1"]["image"].split(":")[1]
    assert re.match(r"^nginx:\d+\.\d+\.\d+", spec["services"]["proxy"]["image"])
    shards = remote_servers(cluster_name(spec))
    assert [len(replicas) for replicas in shards] == [2, 2]
    for name, node in nodes.items():
        assert node["hostname"] == name
        assert "http://127.0.0.1:8123/ping" in node["healthcheck"]["test"]
        assert volume_targets(node)["/var/lib/clickhouse"] in spec["volumes"]
        mounts = volume_targets(node)
        assert mounts["/etc/clickhouse-server/config.d/cluster.xml"] == (
            "./deploy/clickhouse/cluster.xml"
        )
        assert mounts["/etc/clickhouse-server/users.d/firstparty.xml"] == (
            "./deploy/clickhouse/users.xml"
        )
    assert sorted(h for replicas in shards for h in replicas) == sorted(nodes)


def test_every_node_defines_the_macros_the_ddl_uses_for_its_own_place(spec: dict[str, Any]) -> None:
    used = set(re.findall(r"\{(\w+)\}", "\n".join(generated_ddl(spec)))) - BUILTIN_MACROS
    assert used == {"shard", "replica"}
    shards = remote_servers(cluster_name(spec))
    replica_names = []
    for index, replicas in enumerate(shards, start=1):
        shard_macros = set()
        for host in replicas:
            defined = macros(clickhouse_nodes(spec)[host])
            assert used <= set(defined), host
            shard_macros.add(defined["shard"])
            replica_names.append(defined["replica"])
            assert int(defined["shard"]) == index, f"{host} is in shard {index} of remote_servers"
        assert len(shard_macros) == 1
    # Tables replicated to every node share one Keeper path: replica names must be unique
    # across the whole cluster, not just within a shard.
    assert len(replica_names) == len(set(replica_names)) == 4


def test_keeper_is_reachable_by_name_from_every_node(spec: dict[str, Any]) -> None:
    root = ET.parse(DEPLOY / "clickhouse" / "cluster.xml").getroot()
    nodes = [(n.findtext("host"), n.findtext("port")) for n in root.findall("zookeeper/node")]
    keeper_conf = ET.parse(DEPLOY / "keeper" / "keeper.xml").getroot()
    port = keeper_conf.findtext("keeper_server/tcp_port")
    raft = [
        s.findtext("hostname")
        for s in keeper_conf.findall("keeper_server/raft_configuration/server")
    ]
    assert nodes == [("keeper", port)]
    assert raft == ["keeper"] and spec["services"]["keeper"]["hostname"] == "keeper"
    assert volume_targets(spec["services"]["keeper"])[
        "/etc/clickhouse-keeper/keeper_config.xml"
    ] == ("./deploy/keeper/keeper.xml")
    assert "/var/lib/clickhouse/coordination" in keeper_conf.findtext(
        "keeper_server/log_storage_path", ""
    )
    ready = keeper_conf.find("keeper_server/http_control")
    assert ready is not None
    probe = f"http://127.0.0.1:{ready.findtext('port')}{ready.findtext('readiness/endpoint')}"
    assert probe in spec["services"]["keeper"]["healthcheck"]["test"]
    for node in clickhouse_nodes(spec).values():
        assert node["depends_on"]["keeper"]["condition"] == "service_healthy"
        for source in volume_targets(node).values():
            if source.startswith("./"):
                assert (ROOT / source).is_file(), source


def test_the_schema_is_applied_once_before_the_collectors_start(spec: dict[str, Any]) -> None:
    services = spec["services"]
    schema = services["schema"]
    assert parse_store_url(environment(schema)["FIRSTPARTY_STORE"]).host in clickhouse_nodes(spec)
    assert set(schema["depends_on"]) == set(clickhouse_nodes(spec))
    assert {d["condition"] for d in schema["depends_on"].values()} == {"service_healthy"}
    collectors = [n for n in services if n.startswith("collector-")]
    assert len(collectors) == 2
    data_volumes = set()
    for name in collectors:
        collector = services[name]
        assert collector["depends_on"]["schema"]["condition"] == "service_completed_successfully"
        env = environment(collector)
        target = parse_store_url(env["FIRSTPARTY_STORE"])
        assert target.host in clickhouse_nodes(spec) and target.port == 8123
        assert "ports" not in collector, "collectors are reached through the proxy only"
        data_volumes.add(volume_targets(collector)["/var/lib/firstparty"])
        # Only the proxy's network may set X-Forwarded-For.
        subnet = spec["networks"]["firstparty"]["ipam"]["config"][0]["subnet"]
        assert env["FIRSTPARTY_SERVER_TRUSTED_PROXIES"] == subnet
        parse_config("", "(compose)", {k: v for k, v in env.items() if v})
    assert len(data_volumes) == 2, "each collector has its own spool"


def nginx_blocks(text: str) -> list[Any]:
    """A tiny nginx parser: a list of (directive, args, children) triples."""
    tokens = re.findall(r'"[^"]*"|[{};]|[^\s{};]+', re.sub(r"#[^\n]*", "", text))
    position = 0

    def block() -> list[Any]:
        nonlocal position
        items: list[Any] = []
        words: list[str] = []
        while position < len(tokens):
            token = tokens[position]
            position += 1
            if token == ";":
                items.append((words[0], words[1:], []))
                words = []
            elif token == "{":
                items.append((words[0], words[1:], block()))
                words = []
            elif token == "}":
                return items
            else:
                words.append(token)
        return items

    return block()


def find(items: list[Any], name: str, *args: str) -> Any:
    for directive, arguments, children in items:
        if directive == name and list(arguments[: len(args)]) == list(args):
            return arguments, children
    raise AssertionError(f"no {name} {' '.join(args)}")


def test_the_proxy_balances_the_collectors_and_serves_the_tracker_first_party(
    spec: dict[str, Any],
) -> None:
    proxy = spec["services"]["proxy"]
    targets = volume_targets(proxy)
    config = nginx_blocks((ROOT / targets["/etc/nginx/nginx.conf"]).read_text())
    _, http = find(config, "http")
    assert find(http, "access_log")[0] == ["off"], "an access log would keep full IPs"
    _, upstream = find(http, "upstream", "firstparty_collectors")
    servers = [args[0] for d, args, _ in upstream if d == "server"]
    collectors = [n for n in spec["services"] if n.startswith("collector-")]
    assert servers == [f"{name}:8000" for name in collectors]
    site = next(c for d, _, c in http if d == "server" and find(c, "listen")[0] == ["80"])
    _, script = find(site, "location", "/p/js/")
    _, event = find(site, "location", "=", "/p/api/event")
    assert find(script, "proxy_pass")[0] == ["http://firstparty_collectors/js/"]
    assert find(event, "proxy_pass")[0] == ["http://firstparty_collectors/api/event"]
    for location in (script, event):
        assert find(location, "proxy_set_header", "X-Forwarded-For")[0][1] == (
            "$proxy_add_x_forwarded_for"
        )
    # The example page loads the tracker and posts beacons through those paths.
    page = (ROOT / targets["/usr/share/nginx/html"] / "index.html").read_text()
    tag = re.search(r"<script [^>]*data-domain[^>]*>", page)
    assert tag is not None
    src = re.search(r'src="([^"]+)"', tag.group(0))
    api = re.search(r'data-api="([^"]+)"', tag.group(0))
    assert src is not None and src.group(1) == "/p/js/script.js"
    # Without data-api the tracker posts to ../api/event beside its own URL.
    endpoint = api.group(1) if api else urljoin(src.group(1), "../api/event")
    assert endpoint == "/p/api/event"
    for name in collectors:
        assert proxy["depends_on"][name]["condition"] == "service_healthy"


CHDB_NODE = textwrap.dedent(
    """
    import json, os, sys
    import chdb
    config, given = sys.argv[1], json.loads(sys.stdin.read())
    ddl, profile = given["ddl"], given["profile"]
    connection = chdb.connect(":memory:?config-file=" + config)
    cursor = connection.cursor()
    def rows(sql):
        cursor.execute(sql)
        return [list(r) for r in cursor.fetchall()]
    for sql in ddl:
        cursor.execute(sql)

    class Rows:
        def __init__(self, names, values):
            self.names, self.values = names, values
        def dicts(self):
            return [dict(zip(self.names, v)) for v in self.values]

        def scalar(self):
            return self.values[0][0] if self.values else None

    class Node:  # the collector's start-up queries, run on this engine
        def query(self, sql, params=None, settings=None):
            cursor.execute(sql.replace("currentDatabase()", "'firstparty'"))
            values = cursor.fetchall()
            return Rows([d[0] for d in cursor.description], values)

    from ingest.writer import check_dedup_settings
    from store import schema as schema_mod
    checked = check_dedup_settings(Node())
    # A cluster one schema version behind: the collector must refuse to run single-node
    # migrations on it. (schema_version is made plain here: the engine's Keeper stand-in
    # cannot take inserts into a Replicated table.)
    cursor.execute("USE firstparty")
    cursor.execute("DROP TABLE schema_version SYNC")
    cursor.execute("CREATE TABLE schema_version (version UInt32) "
                   "ENGINE = MergeTree ORDER BY version")
    behind = max(v for v, steps in schema_mod.MIGRATIONS.items() if steps) - 1
    cursor.execute(f"INSERT INTO schema_version VALUES ({behind})")
    try:
        schema_mod.apply(Node(), {"raw_retention_days": 30, "aggregate_retention_months": 25})
        refused = ""
    except RuntimeError as exc:
        refused = str(exc)
    known = {r[0] for r in rows("SELECT name FROM system.settings")}
    print(json.dumps({
        "unknown_settings": sorted(set(profile) - known),
        "migration_refused": refused,
        "dedup_checked": checked,
        "clusters": rows("SELECT cluster, shard_num, replica_num, host_name FROM system.clusters"),
        "macros": dict(rows("SELECT macro, substitution FROM system.macros")),
        "tables": dict(rows("SELECT name, engine FROM system.tables "
                            "WHERE database = 'firstparty'")),
        "replicas": rows("SELECT table, zookeeper_path, replica_name FROM system.replicas"),
        "distributed": rows("SELECT name, engine_full FROM system.tables "
                            "WHERE database = 'firstparty' AND engine = 'Distributed'"),
    }), flush=True)
    os._exit(0)  # the engine's Keeper stand-in does not shut down cleanly; nothing to flush
    """
)


def test_a_node_configured_from_deploy_runs_the_generated_ddl(
    spec: dict[str, Any], tmp_path: Path
) -> None:
    """The real engine with the deploy's cluster and macros of node s2-r1 creates every table.

    Only ON CLUSTER is taken out (it needs the other nodes) and Keeper is ClickHouse's built-in
    stand-in, so engines, macros, the cluster name and every statement's syntax are the real
    engine's verdict.
    """
    root = ET.parse(DEPLOY / "clickhouse" / "cluster.xml").getroot()
    for element in root.findall("zookeeper") + root.findall("logger"):
        root.remove(element)
    keeper = ET.SubElement(root, "zookeeper")
    ET.SubElement(keeper, "implementation").text = "testkeeper"
    node = clickhouse_nodes(spec)["clickhouse-s2-r1"]
    (source,) = [s for t, s in volume_targets(node).items() if t.endswith("macros.xml")]
    node_macros = ET.parse(ROOT / source).getroot().find("macros")
    assert node_macros is not None
    root.append(node_macros)
    config = tmp_path / "node.xml"
    ET.ElementTree(root).write(config)

    name = cluster_name(spec)
    ddl = [s.replace(f" ON CLUSTER {name}", "") for s in generated_ddl(spec)]
    users = ET.parse(DEPLOY / "clickhouse" / "users.xml").getroot()
    profile = [setting.tag for setting in users.findall("profiles/default/*")]
    result = subprocess.run(
        [sys.executable, "-c", CHDB_NODE, str(config)],
        input=json.dumps({"ddl": ddl, "profile": profile}),
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "CLICKHOUSE_CLUSTER_SECRET": "test"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert sorted(tuple(c[1:3]) for c in seen["clusters"] if c[0] == name) == [
        (1, 1),
        (1, 2),
        (2, 1),
        (2, 2),
    ]
    assert seen["macros"] == {"shard": "02", "replica": "clickhouse-s2-r1"}
    tables = seen["tables"]
    assert tables["events"] == "Distributed" and tables["events_local"] == "ReplicatedMergeTree"
    assert tables["sessions_mv"] == "MaterializedView"
    paths = {table: path for table, path, _ in seen["replicas"]}
    assert paths["events_local"] == "/clickhouse/tables/02/firstparty/events_local"
    assert paths["salts"] == "/clickhouse/tables/all/firstparty/salts"
    assert {replica for _, _, replica in seen["replicas"]} == {"clickhouse-s2-r1"}
    for table, engine_full in seen["distributed"]:
        assert engine_full.startswith(f"Distributed('{name}', 'firstparty', '{table}_local'")
    # Every setting of the collectors' profile is one the engine knows (a typo stops a server).
    assert seen["unknown_settings"] == [] and len(profile) >= 5
    # A collector starting against this node accepts its dedup guarantees (Replicated).
    assert {"events", "sessions_local"} <= set(seen["dedup_checked"])
    assert "ON CLUSTER first" in seen["migration_refused"]
    # Every statement made an object: nothing of the single-node schema went missing.
    expected = {
        m.group(1)
        for s in ddl
        if (
            m := re.match(
                r"CREATE (?:TABLE|MATERIALIZED VIEW|VIEW) IF NOT EXISTS firstparty\.(\w+)", s
            )
        )
    }
    assert expected == set(tables)
