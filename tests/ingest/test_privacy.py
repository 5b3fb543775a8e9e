"""Privacy properties: IP truncation, visitor unlinkability across sites and days, stability
across a restart; and an end-to-end scan that finds no raw address anywhere after real traffic."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import random
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firstparty.config import parse
from firstparty.server import schema_values
from ingest.hit import Hit
from ingest.pipeline import Accepted, Pipeline
from ingest.salts import SaltKeeper
from ingest.steps import build_pipeline, truncate_ip
from store import connect, open_owner
from store import schema as schema_mod
from store.base import Store
from tests.conftest import start_server, store_urls

CONFIG = """
[[site]]
domain = "example.com"

[[site]]
domain = "other.example.org"
"""
# Each example creates salts in the store (a few milliseconds a query), so keep them few.
PROPERTY = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

ipv4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
ipv6 = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address).filter(lambda a: a.ipv4_mapped is None)
user_agents = st.text(min_size=1, max_size=200).filter(lambda s: s.strip() != "")


# -- the hit ----------------------------------------------------------------------------------


@given(
    ip=st.one_of(ipv4.map(str), ipv6.map(str)),
    ua=user_agents.map(lambda s: f"UA<{s}>"),
    device=st.text(min_size=1, max_size=50).map(lambda s: f"DID<{s}>"),
)
def test_a_hit_never_shows_its_raw_identifiers(ip: str, ua: str, device: str) -> None:
    hit = Hit(
        domain="example.com",
        name="pageview",
        url="https://example.com/",
        referrer="",
        received_at=dt.datetime(2026, 6, 1, tzinfo=dt.UTC),
        ip=ip,
        user_agent=ua,
        device_id=device,
    )
    for shown in (repr(hit), str(hit), f"{hit}"):
        assert ip not in shown and repr(ip) not in shown
        assert "UA<" not in shown and "DID<" not in shown
    assert "url='https://example.com/'" in repr(hit)  # the rest is there for debugging


# -- truncation -------------------------------------------------------------------------------


@given(ipv4, st.integers(8, 24))
def test_ipv4_truncation_is_correct_and_idempotent(
    addr: ipaddress.IPv4Address, prefix: int
) -> None:
    truncated = truncate_ip(str(addr), prefix, 48)
    assert truncated == str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))
    network = ipaddress.ip_network(truncated)
    assert addr in network and network.prefixlen == prefix
    assert truncate_ip(str(network.network_address), prefix, 48) == truncated
    # IPv4-mapped IPv6 is the same address, in any spelling (Python 3.11 prints ::ffff:5102:458e).
    mapped = ipaddress.IPv6Address(f"::ffff:{addr}")
    for spelling in (f"::ffff:{addr}", str(mapped), mapped.exploded):
        assert truncate_ip(spelling, prefix, 48) == truncated


@given(ipv6, st.integers(16, 56))
def test_ipv6_truncation_is_correct_and_idempotent(
    addr: ipaddress.IPv6Address, prefix: int
) -> None:
    truncated = truncate_ip(str(addr), 24, prefix)
    assert truncated == str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))
    assert truncate_ip(truncated.split("/")[0], 24, prefix) == truncated
    assert truncate_ip(addr.exploded, 24, prefix) == truncated


@given(ipv4, st.integers(8, 24), st.data())
def test_every_address_of_a_v4_prefix_maps_to_one_value(
    addr: ipaddress.IPv4Address, prefix: int, data: st.DataObject
) -> None:
    network = ipaddress.ip_network(f"{addr}/{prefix}", strict=False)
    offset = data.draw(st.integers(0, network.num_addresses - 1))
    other = network.network_address + offset
    assert truncate_ip(str(other), prefix, 48) == truncate_ip(str(addr), prefix, 48)


@given(ipv6, st.integers(16, 56), st.data())
def test_every_address_of_a_v6_prefix_maps_to_one_value(
    addr: ipaddress.IPv6Address, prefix: int, data: st.DataObject
) -> None:
    network = ipaddress.ip_network(f"{addr}/{prefix}", strict=False)
    other = network.network_address + data.draw(st.integers(0, network.num_addresses - 1))
    if other.ipv4_mapped is None:
        assert truncate_ip(str(other), 24, prefix) == truncate_ip(str(addr), 24, prefix)


# -- visitor identity -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_store(engine_dir: Path) -> Iterator[Store]:
    url = store_urls(engine_dir)[0]
    s = open_owner(url)
    schema_mod.apply(s, schema_values(parse(CONFIG, env={})))
    yield s
    s.command(f"DROP DATABASE IF EXISTS {url.rsplit('=', 1)[-1]}")
    s.close()


@pytest.fixture(scope="module")
def pipeline(shared_store: Store) -> Pipeline:
    return build_pipeline(parse(CONFIG, env={}), SaltKeeper(shared_store))


def visitor(pipeline: Pipeline, ip: str, ua: str, site: str, when: dt.datetime) -> int:
    result = pipeline.process(
        Hit(
            domain=site,
            name="pageview",
            url=f"https://{site}/",
            referrer="",
            received_at=when,
            ip=ip,
            user_agent=ua,
        )
    )
    assert isinstance(result, Accepted), result
    return result.event.visitor_id


CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
browser_uas = st.integers(100, 140).map(lambda v: CHROME.replace("131", str(v)))
any_ip = st.one_of(ipv4.map(str), ipv6.map(str), ipv4.map(lambda a: f"::ffff:{a}"))
days = st.dates(dt.date(2025, 1, 1), dt.date(2027, 12, 31))
times = st.times().map(lambda t: t.replace(tzinfo=None))


def moment(day: dt.date, at: dt.time) -> dt.datetime:
    return dt.datetime.combine(day, at, dt.UTC)


@PROPERTY
@given(any_ip, browser_uas, days, times)
def test_same_ip_and_ua_on_two_sites_are_different_visitors(
    pipeline: Pipeline, ip: str, ua: str, day: dt.date, at: dt.time
) -> None:
    when = moment(day, at)
    assert visitor(pipeline, ip, ua, "example.com", when) != visitor(
        pipeline, ip, ua, "other.example.org", when
    )


@PROPERTY
@given(any_ip, browser_uas, days, st.integers(1, 30))
def test_same_ip_and_ua_on_two_days_are_different_visitors(
    pipeline: Pipeline, ip: str, ua: str, day: dt.date, later: int
) -> None:
    first = moment(day, dt.time(12))
    second = first + dt.timedelta(days=later)
    assert visitor(pipeline, ip, ua, "example.com", first) != visitor(
        pipeline, ip, ua, "example.com", second
    )


@PROPERTY
@given(any_ip, browser_uas, days, times, times)
def test_a_restart_on_the_same_day_keeps_the_visitor(
    shared_store: Store, ip: str, ua: str, day: dt.date, t1: dt.time, t2: dt.time
) -> None:
    config = parse(CONFIG, env={})
    before = visitor(
        build_pipeline(config, SaltKeeper(shared_store)), ip, ua, "example.com", moment(day, t1)
    )
    # A new process: new SaltKeeper, same store.
    after = visitor(
        build_pipeline(config, SaltKeeper(shared_store)), ip, ua, "example.com", moment(day, t2)
    )
    assert before == after


def test_ipv4_mapped_and_plain_ipv4_are_the_same_visitor(pipeline: Pipeline) -> None:
    when = dt.datetime(2026, 1, 5, 9, tzinfo=dt.UTC)
    assert visitor(pipeline, "203.0.113.9", CHROME, "example.com", when) == visitor(
        pipeline, "::ffff:203.0.113.9", CHROME, "example.com", when
    )


# -- end to end: no raw address anywhere --------------------------------------------------------

E2E_CONFIG = """
[[site]]
domain = "example.com"

[privacy]
keep_ip_prefix = true

[server]
trusted_proxies = ["127.0.0.1", "::1"]
"""
VISITORS = 3000


def random_v4(rng: random.Random) -> str:
    octets = (rng.randint(11, 223), rng.randint(0, 255), rng.randint(0, 255), rng.randint(1, 254))
    return ".".join(map(str, octets))


def synthetic_addresses(count: int, seed: int = 20260401) -> list[str]:
    rng = random.Random(seed)
    out: list[str] = []
    for i in range(count):
        kind = i % 3
        if kind == 0:  # public-looking IPv4, never a network address
            out.append(random_v4(rng))
        elif kind == 1:
            out.append(str(ipaddress.IPv6Address((0x2A00 << 112) | rng.getrandbits(112))))
        else:
            out.append(f"::ffff:{random_v4(rng)}")
    return out


def forms(address: str) -> tuple[set[str], set[int], set[str]]:
    """Every way the address could be written: text forms, integers, hex of the bytes."""
    addr = ipaddress.ip_address(address)
    texts = {address, str(addr), addr.exploded}
    ints = {int(addr)}
    hexes = {addr.packed.hex()}
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        v4 = addr.ipv4_mapped
        texts |= {str(v4), f"::ffff:{v4}"}
        ints.add(int(v4))
        hexes.add(v4.packed.hex())
    else:
        texts.add(addr.compressed)
    return texts, ints, hexes


def scan_store(store: Store, addresses: list[str]) -> list[str]:
    """Every column of every table, cast to String and to hex, searched for every form."""
    tables = store.query(
        "SELECT name FROM system.tables WHERE database = currentDatabase() "
        "AND engine NOT IN ('MaterializedView', 'View')"
    ).column("name")
    text_blob: list[str] = []
    hex_blob: list[str] = []
    int_values: set[str] = set()
    for table in tables:
        columns = store.query(
            "SELECT name FROM system.columns WHERE database = currentDatabase() "
            "AND table = {t:String}",
            {"t": table},
        ).column("name")
        for column in columns:
            # hex() in the server: some columns (aggregate states) are not valid UTF-8.
            values = store.query(
                f"SELECT DISTINCT hex(toString(`{column}`)) AS h FROM `{table}` LIMIT 100000"
            ).column("h")
            for value in values:
                as_text = bytes.fromhex(value).decode("utf-8", "replace")
                text_blob.append(as_text)
                hex_blob.append(value.lower())
                int_values.add(as_text)
    text = "\n".join(text_blob)
    hexed = "--".join(hex_blob)  # an even-length separator keeps every value byte-aligned
    found: list[str] = []
    for address in addresses:
        texts, ints, hexes = forms(address)
        for form in texts:
            for match in re.finditer(re.escape(form), text):
                after = text[match.end() : match.end() + 1]
                before = text[match.start() - 1 : match.start()] if match.start() else ""
                if not (after.isalnum() or after == "." or before.isalnum() or before == "."):
                    found.append(f"{address} as text {form!r}")
        for value in ints:
            if str(value) in int_values:
                found.append(f"{address} as integer")
        for form in hexes:
            index = hexed.find(form)
            while index != -1:
                if index % 2 == 0:  # byte-aligned
                    found.append(f"{address} as bytes")
                    break
                index = hexed.find(form, index + 1)
    return found


def scan_files(root: Path, addresses: list[str]) -> list[str]:
    found = []
    needles: list[tuple[str, bytes]] = []
    for address in addresses:
        texts, _, hexes = forms(address)
        needles += [(address, t.encode()) for t in texts if len(t) >= 7]
        needles += [(address, bytes.fromhex(h)) for h in hexes if len(h) >= 32]
    # os.walk, not rglob: spool files come and go while we look (errors are skipped).
    paths = [Path(d) / f for d, _, files in os.walk(root) for f in files]
    for path in paths:
        if "clickhouse" in path.parts:
            continue
        try:
            if not path.is_file():  # sockets (the admin socket) are not files to read
                continue
            data = path.read_bytes()
        except FileNotFoundError:  # a spool segment the writer just drained
            continue
        for address, needle in needles:
            if needle in data:
                found.append(f"{address} in {path}")
    return found


@pytest.mark.parametrize(
    "visitors",
    [pytest.param(1200, id="1200"), pytest.param(VISITORS, id="3000", marks=pytest.mark.slow)],
)
def test_no_raw_address_anywhere_after_thousands_of_visitors(tmp_path: Path, visitors: int) -> None:
    server = start_server(tmp_path / "srv", E2E_CONFIG)
    addresses = synthetic_addresses(visitors)
    spool_seen: list[str] = []
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for i, address in enumerate(addresses):
                response = client.post(
                    "/api/event",
                    headers={
                        "user-agent": CHROME.replace("131", str(100 + i % 40)),
                        "x-forwarded-for": f"{address}, 127.0.0.1",
                        "content-type": "text/plain",
                    },
                    content=(
                        '{"n":"pageview","d":"example.com","u":"https://example.com/p/'
                        + str(i % 50)
                        + '","r":"https://www.google.com/"}'
                    ).encode(),
                )
                assert response.status_code == 202, response.text
                assert "x-dropped" not in response.headers
                if i % 500 == 0:  # spool files exist only briefly: scan them while they do
                    spool_seen += scan_files(server.root / "data", addresses)
            dropped = {
                "bot": {"user-agent": "curl/8.5.0"},
                "headless": {"user-agent": CHROME.replace("Chrome/", "HeadlessChrome/")},
                "referrer_spam": {"referer-body": "https://sub.0-0.fr/"},
                "hostname_not_allowed": {"url": "https://evil.example.net/"},
                "unknown_site": {"domain": "unknown.example"},
                "dnt": {"dnt": "1"},
                "gpc": {"sec-gpc": "1"},
            }
            for reason, change in dropped.items():
                body = {
                    "n": "pageview",
                    "d": change.get("domain", "example.com"),
                    "u": change.get("url", "https://example.com/dropped-" + reason),
                    "r": change.get("referer-body", ""),
                }
                headers = {
                    "user-agent": change.get("user-agent", CHROME),
                    "x-forwarded-for": "198.51.100.77",
                    **{k: v for k, v in change.items() if k in ("dnt", "sec-gpc")},
                }
                response = client.post("/api/event", headers=headers, json=body)
                assert response.status_code == 202
                assert response.headers.get("x-dropped") == reason
            store = connect(f"chdb://{server.root / 'data' / 'clickhouse'}")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if store.query("SELECT count() FROM events").scalar() >= visitors:
                    break
                time.sleep(0.2)
            assert store.query("SELECT count() FROM events").scalar() == visitors
            assert store.query("SELECT uniqExact(visitor_id) FROM events").scalar() == visitors
            assert (
                store.query(
                    "SELECT count() FROM events WHERE pathname LIKE '/dropped-%' "
                    "OR site_id != 'example.com' OR hostname != 'example.com'"
                ).scalar()
                == 0
            )
            prefixes = store.query("SELECT DISTINCT ip_prefix FROM events").column("ip_prefix")
            assert all(p.endswith(("/24", "/48")) for p in prefixes)
            # The drop counters reach /metrics through the workers' periodic snapshots.
            deadline = time.monotonic() + 10
            while True:
                metrics = client.get("/metrics")
                assert metrics.status_code == 200
                missing = [r for r in dropped if f'reason="{r}"' not in metrics.text]
                if not missing or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert missing == [], metrics.text
            found = scan_store(store, [*addresses, "198.51.100.77"])
            store.close()
    finally:
        output = server.stop()
    assert found == []
    assert spool_seen == []
    assert scan_files(server.root, [*addresses, "198.51.100.77"]) == []
    for address in [*addresses, "198.51.100.77"]:
        texts, _, _ = forms(address)
        assert not any(form in output for form in texts), "a raw address is in the server log"


def test_the_scan_finds_planted_addresses(shared_store: Store) -> None:
    """The scan above must be able to fail: plant each form and see it found."""
    from ingest.batch import to_arrow
    from ingest.event import Event

    v4, v6, mapped = "203.0.113.77", "2a00:1450:4001:82a::200e", "::ffff:198.51.100.99"
    event = Event(
        site_id="planted.example",
        timestamp=dt.datetime.now(dt.UTC),  # inside the retention TTL
        name="pageview",
        visitor_id=0,
        pathname=f"/from/{v6}",
        props={"ip": "198.51.100.99"},
    )
    shared_store.insert("events", to_arrow([event]))
    shared_store.command(
        "CREATE TABLE planted (n UInt32, b FixedString(16)) ENGINE = MergeTree ORDER BY n"
    )
    try:
        shared_store.command(
            "INSERT INTO planted VALUES ({n:UInt32}, {b:String})",
            {"n": int(ipaddress.ip_address(v4)), "b": "x" * 16},
        )
        shared_store.command(
            "INSERT INTO planted SELECT 1, toFixedString(unhex({h:String}), 16)",
            {"h": ipaddress.ip_address("2a00:1450:4001:82a::1").packed.hex()},
        )
        found = scan_store(shared_store, [v4, v6, mapped, "2a00:1450:4001:82a::1", "192.0.2.1"])
    finally:
        shared_store.command("DROP TABLE planted SYNC")
        shared_store.command("DELETE FROM events WHERE site_id = 'planted.example'")
    assert f"{v4} as integer" in found
    assert any(f.startswith(f"{v6} as text") for f in found)
    assert any(f.startswith(f"{mapped} as text") for f in found), found
    assert "2a00:1450:4001:82a::1 as bytes" in found
    assert not any(f.startswith("192.0.2.1") for f in found)
