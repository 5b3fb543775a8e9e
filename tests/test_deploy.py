"""docker-compose.yml and the Dockerfile are wired to each other and to the CLI and config.

No Docker engine runs here, so these tests read the files the way compose and Docker would
(YAML, `${VAR:?}` interpolation, the Dockerfile's JSON-form instructions) and check every
connection: image pinned, healthchecks, volumes, the store URL pointing at the ClickHouse
service, start order, published port, and a CMD that the real `firstparty` parser accepts.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from firstparty.cli import parser as cli_parser
from firstparty.config import parse as parse_config
from firstparty.priority import NICENESS
from store.url import parse_store_url
from tests.conftest import Server

ROOT = Path(__file__).resolve().parent.parent
SECRETS = {"CLICKHOUSE_PASSWORD": "s3cret0hex", "CLICKHOUSE_CLUSTER_SECRET": "c1uster5ecret"}
PINNED = re.compile(r"^clickhouse/clickhouse-(server|keeper):\d+\.\d+\.\d+\.\d+$")


class MissingVariable(LookupError):
    pass


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable substitution: ${VAR}, ${VAR:-default}, ${VAR:?error}."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        if op == ":?":
            raise MissingVariable(f"{name}: {arg}")
        return arg if op == ":-" else ""

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", replace, value)


def compose(name: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    raw = yaml.safe_load((ROOT / name).read_text())
    assert isinstance(raw, dict)
    return dict(interpolate(raw, SECRETS if env is None else env))


def dockerfile() -> dict[str, list[str]]:
    """Each instruction's arguments (continuation lines joined), by instruction name."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.setdefault(word.upper(), []).append(rest.strip())
    return found


def exec_form(text: str) -> list[str]:
    value = json.loads(text)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for line in dockerfile()["ENV"]:
        for part in shlex.split(line):
            key, _, value = part.partition("=")
            env[key] = value
    return env


def serve_command() -> list[str]:
    return exec_form(dockerfile()["CMD"][-1])


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def volume_targets(service: dict[str, Any]) -> dict[str, str]:
    """container path -> source (a named volume or a host path)."""
    targets = {}
    for entry in service.get("volumes", []):
        source, target = entry.split(":")[:2]
        targets[target] = source
    return targets


def test_the_clickhouse_service_is_pinned_healthchecked_and_keeps_its_data() -> None:
    spec = compose("docker-compose.yml")
    clickhouse = spec["services"]["clickhouse"]
    assert PINNED.match(clickhouse["image"]), clickhouse["image"]
    check = clickhouse["healthcheck"]["test"]
    assert "http://127.0.0.1:8123/ping" in check
    data = volume_targets(clickhouse)["/var/lib/clickhouse"]
    assert data in spec["volumes"], "the data directory must be a named volume"
    mounted = {}
    for target, source in volume_targets(clickhouse).items():
        if source.startswith("./"):
            assert (ROOT / source).is_file(), source
            mounted[target.rsplit("/", 2)[-2]] = ET.parse(ROOT / source).getroot()
    # The server log stays below the level that prints request URIs (bound parameters), and
    # the collectors' profile keeps query texts out of system.query_log.
    assert mounted["config.d"].findtext("logger/level") == "warning"
    assert mounted["users.d"].findtext("profiles/default/log_queries") == "0"


def test_the_collector_reaches_the_clickhouse_service_through_firstparty_store() -> None:
    spec = compose("docker-compose.yml")
    clickhouse, collector = spec["services"]["clickhouse"], spec["services"]["collector"]
    target = parse_store_url(environment(collector)["FIRSTPARTY_STORE"])
    ch_env = environment(clickhouse)
    assert target.kind == "clickhouse"
    assert target.host == "clickhouse" and target.host in spec["services"]
    assert target.port == 8123  # the server's HTTP port, the one the healthcheck probes
    assert target.database == ch_env["CLICKHOUSE_DB"]
    assert (target.username, target.password) == (
        ch_env["CLICKHOUSE_USER"],
        ch_env["CLICKHOUSE_PASSWORD"],
    )
    assert collector["depends_on"]["clickhouse"]["condition"] == "service_healthy"
    assert collector["build"] == "." and (ROOT / "Dockerfile").is_file()


def test_no_secret_is_committed_and_compose_refuses_to_start_without_one() -> None:
    with pytest.raises(MissingVariable, match="CLICKHOUSE_PASSWORD"):
        compose("docker-compose.yml", env={})
    text = (ROOT / "docker-compose.yml").read_text()
    for line in text.splitlines():
        if "PASSWORD" in line and ":" in line and not line.strip().startswith("#"):
            assert "${CLICKHOUSE_PASSWORD:?" in line, line
    assert ".env" in (ROOT / ".gitignore").read_text().split()
    assert ".env" in (ROOT / ".dockerignore").read_text().split()
    example = (ROOT / "deploy" / "env.example").read_text()
    assert re.search(r"^CLICKHOUSE_PASSWORD=$", example, re.M), "the example holds no password"


def test_the_collectors_environment_is_valid_configuration() -> None:
    spec = compose(
        "docker-compose.yml", {**SECRETS, "FIRSTPARTY_TRUSTED_PROXIES": "10.1.0.0/16,::1"}
    )
    env = environment(spec["services"]["collector"])
    overrides = {k: v for k, v in env.items() if k.startswith("FIRSTPARTY_") and v}
    config = parse_config("", "(compose)", overrides)
    assert config.server.trusted_proxies == ("10.1.0.0/16", "::1")
    # Unset, the proxy trusted is the network's gateway: where a proxy on the host connects from.
    default = environment(compose("docker-compose.yml")["services"]["collector"])
    (network,) = spec["networks"]["default"]["ipam"]["config"]
    assert default["FIRSTPARTY_SERVER_TRUSTED_PROXIES"] == network["gateway"]
    assert ipaddress.ip_address(network["gateway"]) in ipaddress.ip_network(network["subnet"])
    assert config.server.workers == int(env["FIRSTPARTY_SERVER_WORKERS"])
    # The mounted config file is the one FIRSTPARTY_CONFIG names; the spool is on a volume
    # at the data directory the image uses.
    targets = volume_targets(spec["services"]["collector"])
    assert targets[env["FIRSTPARTY_CONFIG"]] == "./firstparty.toml"
    data_dir = dockerfile_env()["FIRSTPARTY_SERVER_DATA_DIR"]
    assert targets[data_dir] in spec["volumes"]


def test_the_collector_port_is_published_where_the_image_listens() -> None:
    spec = compose("docker-compose.yml")
    (published,) = spec["services"]["collector"]["ports"]
    host_ip, host_port, container_port = published.split(":")
    assert host_ip == "127.0.0.1", "by default only the host's reverse proxy reaches it"
    assert host_port == "8000"
    args = cli_parser().parse_args(serve_command()[1:])
    assert container_port == str(args.port) == dockerfile()["EXPOSE"][0]


def test_the_dockerfile_runs_the_cli_as_a_non_root_user() -> None:
    instructions = dockerfile()
    assert instructions["FROM"][0].startswith("python:3.11-slim")
    command = serve_command()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert command[0] in pyproject["project"]["scripts"]
    import firstparty.commands  # noqa: F401 - registers every command, as main() does

    args = cli_parser().parse_args(command[1:])
    assert (args.command, args.host) == ("serve", "0.0.0.0")
    user = instructions["USER"][-1].split(":")[0]
    assert user not in ("root", "0")
    assert "--uid 10001" in instructions["RUN"][-1] and user in instructions["RUN"][-1]
    assert exec_form(instructions["VOLUME"][0]) == [dockerfile_env()["FIRSTPARTY_SERVER_DATA_DIR"]]
    # Every package the distribution ships is copied into the build.
    copied = " ".join(instructions["COPY"])
    for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        package = pattern.rstrip("*")
        assert (ROOT / package).is_dir() and f" ./{package}" in copied, package


@pytest.mark.parametrize("name", ["docker-compose.yml", "docker-compose.cluster.yml"])
def test_every_collector_may_leave_the_idle_cpu_class(name: str) -> None:
    # A non-root container has no CAP_SYS_NICE: without this limit the engine priority `auto`
    # falls back to `nice` (firstparty/priority.py).
    services = compose(name)["services"].values()
    collectors = [s for s in services if s.get("build") == "." and "command" not in s]
    assert collectors
    for service in collectors:
        assert int(service["ulimits"]["nice"]) >= 20 - NICENESS


def healthcheck_url() -> str:
    check = dockerfile()["HEALTHCHECK"][0]
    url = re.search(r"http://127\.0\.0\.1:(\d+)(/\S*?)'", check)
    assert url is not None, check
    assert url.group(1) == dockerfile()["EXPOSE"][0]
    return url.group(2)


def test_the_image_healthcheck_probes_a_path_the_server_answers(server: Server) -> None:
    path = healthcheck_url()
    assert path == "/healthz"
    response = httpx.get(server.url + path, timeout=10)
    assert response.status_code == 200
