"""The configuration: a TOML file the privacy team can review, overridable by environment.

Every key has a default, so an empty file is a valid configuration. Errors name the file, the
key and what is allowed, because an operator reads them at start-up with nothing else to go on.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

DEFAULT_CONFIG_PATH = "./firstparty.toml"
DEFAULT_STORE_URL = "chdb://./data/clickhouse"

ROTATIONS = ("daily", "weekly", "monthly", "13months")


class ConfigError(ValueError):
    """A configuration value is invalid; the message says where and what is allowed."""


@dataclass(frozen=True)
class Site:
    domain: str
    # Hostnames the site's pages may report; empty means the domain and its subdomains.
    hostnames: tuple[str, ...] = ()
    name: str = ""


@dataclass(frozen=True)
class Goal:
    name: str
    # Either a custom event name, or a pageview path pattern (`*` wildcards).
    event: str = ""
    page: str = ""


@dataclass(frozen=True)
class Privacy:
    ipv4_prefix: int = 24
    ipv6_prefix: int = 48
    raw_retention_days: int = 30
    aggregate_retention_months: int = 25
    honour_dnt: bool = True
    honour_gpc: bool = True
    min_visitors: int = 1
    visitor_id_rotation: str = "daily"
    store_region: bool = False
    keep_ip_prefix: bool = False
    geoip_database: str = ""
    session_timeout_minutes: int = 30


@dataclass(frozen=True)
class Server:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 0  # 0: one per core
    trusted_proxies: tuple[str, ...] = ()
    max_body_bytes: int = 65536
    data_dir: str = "./data"
    spool_quota_mb: int = 1024
    public_url: str = ""


@dataclass(frozen=True)
class Config:
    sites: tuple[Site, ...] = ()
    goals: tuple[Goal, ...] = ()
    privacy: Privacy = field(default_factory=Privacy)
    server: Server = field(default_factory=Server)
    store: str = DEFAULT_STORE_URL
    source: str = "(defaults)"

    def site(self, domain: str) -> Site | None:
        for site in self.sites:
            if site.domain == domain:
                return site
        return None

    @property
    def data_dir(self) -> Path:
        return Path(self.server.data_dir)


def _fail(source: str, key: str, message: str) -> ConfigError:
    return ConfigError(f"{source}: `{key}` {message}")


def _coerce(source: str, key: str, value: Any, default: Any) -> Any:
    """Check `value` against the type of `default`; strings from the environment are parsed."""
    if isinstance(default, bool):
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
        if isinstance(value, bool):
            return value
        raise _fail(source, key, f"must be true or false, got {value!r}")
    if isinstance(default, int):
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise _fail(source, key, f"must be a whole number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(source, key, f"must be a whole number, got {value!r}")
        return value
    if isinstance(default, tuple):
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _fail(source, key, f"must be a list of strings, got {value!r}")
        return tuple(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise _fail(source, key, f"must be a string, got {value!r}")
        return value
    raise _fail(source, key, "has an unsupported type")  # pragma: no cover - programming error


def _section(source: str, name: str, cls: type[Any], raw: Any, env: Mapping[str, str]) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise _fail(source, name, "must be a table, like [" + name + "]")
    defaults = cls()
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise _fail(
            source,
            f"{name}.{unknown[0]}",
            f"is not a known key; allowed: {', '.join(sorted(known))}",
        )
    values: dict[str, Any] = {}
    for f in fields(cls):
        key = f"{name}.{f.name}"
        value = raw.get(f.name, getattr(defaults, f.name))
        env_name = f"FIRSTPARTY_{name.upper()}_{f.name.upper()}"
        if env_name in env:
            value = env[env_name]
            key = env_name
        values[f.name] = _coerce(
            source if key != env_name else "environment", key, value, getattr(defaults, f.name)
        )
    return replace(defaults, **values)


def _check(config: Config) -> None:
    src = config.source
    from store.url import parse_store_url

    try:
        parse_store_url(config.store)
    except ValueError as exc:
        raise _fail(src, "store", str(exc)) from None
    p = config.privacy
    if not 8 <= p.ipv4_prefix <= 24:
        raise _fail(src, "privacy.ipv4_prefix", f"must be between 8 and 24, got {p.ipv4_prefix}")
    if not 16 <= p.ipv6_prefix <= 56:
        raise _fail(src, "privacy.ipv6_prefix", f"must be between 16 and 56, got {p.ipv6_prefix}")
    if not 1 <= p.raw_retention_days <= 400:
        raise _fail(
            src,
            "privacy.raw_retention_days",
            f"must be between 1 and 400 days, got {p.raw_retention_days}",
        )
    if not 1 <= p.aggregate_retention_months <= 25:
        raise _fail(
            src,
            "privacy.aggregate_retention_months",
            "must be between 1 and 25 (the CNIL maximum for audience measurement), "
            f"got {p.aggregate_retention_months}",
        )
    if p.min_visitors < 1:
        raise _fail(src, "privacy.min_visitors", f"must be at least 1, got {p.min_visitors}")
    if p.visitor_id_rotation not in ROTATIONS:
        raise _fail(
            src,
            "privacy.visitor_id_rotation",
            f"must be one of {', '.join(ROTATIONS)}, got {p.visitor_id_rotation!r}",
        )
    if not 1 <= p.session_timeout_minutes <= 240:
        raise _fail(
            src,
            "privacy.session_timeout_minutes",
            f"must be between 1 and 240, got {p.session_timeout_minutes}",
        )
    s = config.server
    if not 0 <= s.port <= 65535:
        raise _fail(src, "server.port", f"must be between 0 and 65535, got {s.port}")
    if not 0 <= s.workers <= 64:
        raise _fail(src, "server.workers", f"must be between 0 and 64, got {s.workers}")
    if not 1024 <= s.max_body_bytes <= 16 * 1024 * 1024:
        raise _fail(
            src,
            "server.max_body_bytes",
            f"must be between 1024 and 16777216, got {s.max_body_bytes}",
        )
    for proxy in s.trusted_proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise _fail(
                src,
                "server.trusted_proxies",
                f"must hold IP addresses or CIDR networks, got {proxy!r}",
            ) from None
    seen: set[str] = set()
    for site in config.sites:
        if site.domain in seen:
            raise _fail(src, "site.domain", f"{site.domain!r} is listed twice")
        seen.add(site.domain)


def _sites(source: str, raw: Any) -> tuple[Site, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _fail(source, "site", "must be an array of tables, written [[site]]")
    sites = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("domain"), str):
            raise _fail(source, "site.domain", "is required in every [[site]], as a string")
        unknown = sorted(set(item) - {"domain", "hostnames", "name"})
        if unknown:
            raise _fail(
                source, f"site.{unknown[0]}", "is not a known key; allowed: domain, hostnames, name"
            )
        domain = item["domain"].strip().lower()
        if not domain or "," in domain or "/" in domain or " " in domain:
            raise _fail(
                source, "site.domain", f"must be a bare domain like example.com, got {domain!r}"
            )
        hostnames = _coerce(source, "site.hostnames", item.get("hostnames", []), ())
        name = _coerce(source, "site.name", item.get("name", ""), "")
        sites.append(Site(domain=domain, hostnames=tuple(h.lower() for h in hostnames), name=name))
    return tuple(sites)


def _goals(source: str, raw: Any) -> tuple[Goal, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _fail(source, "goal", "must be an array of tables, written [[goal]]")
    goals = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise _fail(source, "goal.name", "is required in every [[goal]], as a string")
        event = _coerce(source, "goal.event", item.get("event", ""), "")
        page = _coerce(source, "goal.page", item.get("page", ""), "")
        if bool(event) == bool(page):
            raise _fail(source, "goal", f"{item['name']!r} needs exactly one of `event` or `page`")
        goals.append(Goal(name=item["name"], event=event, page=page))
    return tuple(goals)


def parse(text: str, source: str = "(text)", env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    allowed = {"site", "goal", "privacy", "server", "store"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise _fail(
            source, unknown[0], f"is not a known section; allowed: {', '.join(sorted(allowed))}"
        )
    server = _section(source, "server", Server, raw.get("server"), env)
    if "FIRSTPARTY_TRUSTED_PROXIES" in env:
        proxies = _coerce(
            "environment", "FIRSTPARTY_TRUSTED_PROXIES", env["FIRSTPARTY_TRUSTED_PROXIES"], ()
        )
        server = replace(server, trusted_proxies=proxies)
    store = raw.get("store", DEFAULT_STORE_URL)
    if not isinstance(store, str):
        raise _fail(source, "store", f"must be a store URL string, got {store!r}")
    store = env.get("FIRSTPARTY_STORE", store)
    config = Config(
        sites=_sites(source, raw.get("site")),
        goals=_goals(source, raw.get("goal")),
        privacy=_section(source, "privacy", Privacy, raw.get("privacy"), env),
        server=server,
        store=store,
        source=source,
    )
    _check(config)
    return config


def load(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Config:
    """Load the config file (`--config`, `FIRSTPARTY_CONFIG`, or ./firstparty.toml if present)."""
    env = os.environ if env is None else env
    chosen = path or env.get("FIRSTPARTY_CONFIG")
    if chosen is None:
        if not Path(DEFAULT_CONFIG_PATH).exists():
            return parse("", "(defaults)", env)
        chosen = DEFAULT_CONFIG_PATH
    file = Path(chosen)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{file}: config file not found; run `firstparty init` to create one"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read the config file: {exc}") from None
    return parse(text, str(file), env)


DEFAULT_CONFIG_TEXT = """\
# firstparty configuration. Every key is optional; these are the defaults.
# Environment variables override keys: FIRSTPARTY_<SECTION>_<KEY>, e.g. FIRSTPARTY_SERVER_PORT.

# The store: embedded ClickHouse (chDB) by default, or a ClickHouse server:
#   store = "clickhouse://user:password@clickhouse:8123/firstparty"
store = "chdb://./data/clickhouse"

[[site]]
domain = "example.com"          # the data-domain the tracker sends
# hostnames = ["example.com", "www.example.com"]   # default: the domain and its subdomains

# [[goal]]
# name = "Signup"
# event = "Signup"               # a custom event name, or:
# page = "/thank-you*"           # a pageview path pattern

[privacy]
ipv4_prefix = 24                # keep only the /24 of IPv4 addresses
ipv6_prefix = 48                # and the /48 of IPv6 addresses
raw_retention_days = 30         # raw (anonymised) events
aggregate_retention_months = 25 # rollups; 25 is the CNIL maximum
honour_dnt = true               # DNT: 1 opts out
honour_gpc = true               # Sec-GPC: 1 opts out
min_visitors = 1                # k: suppress breakdown rows below this many visitors
visitor_id_rotation = "daily"   # device-ID key rotation: daily, weekly, monthly, 13months
store_region = false            # store the region as well as the country
keep_ip_prefix = false          # store the truncated IP prefix (off: no IP-derived value stored)
geoip_database = ""             # your own MaxMind .mmdb; empty: the bundled country database
session_timeout_minutes = 30

[server]
host = "127.0.0.1"
port = 8000
workers = 0                     # HTTP worker processes; 0 means one per core
# Proxies whose X-Forwarded-For is believed, e.g. ["127.0.0.1", "10.0.0.0/8"]
trusted_proxies = []
max_body_bytes = 65536
data_dir = "./data"
spool_quota_mb = 1024
"""
