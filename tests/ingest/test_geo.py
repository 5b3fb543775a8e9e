"""Geolocation: MaxMind's official test database, a database built here with mmdb-writer, the
bundled country database; missing or corrupt databases never stop ingestion."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from firstparty.config import parse
from ingest.hit import Hit
from ingest.pipeline import Accepted
from ingest.salts import SaltKeeper
from ingest.steps import build_pipeline
from ingest.steps.geo import Geo, bundled_database
from store.base import Store

DATA = Path(__file__).parent / "data"
MAXMIND_TEST = DATA / "GeoIP2-City-Test.mmdb"


def test_maxmind_test_database_country_and_region_never_city() -> None:
    assert Geo(MAXMIND_TEST).lookup("81.2.69.142") == ("GB", "")
    with_region = Geo(MAXMIND_TEST, store_region=True)
    assert with_region.lookup("81.2.69.142") == ("GB", "GB-ENG")
    assert with_region.lookup("216.160.83.56") == ("US", "US-WA")
    assert with_region.lookup("2001:218::1") == ("JP", "")
    # IPv4-mapped IPv6 is treated as IPv4.
    assert with_region.lookup("::ffff:81.2.69.142") == ("GB", "GB-ENG")
    assert with_region.lookup("10.0.0.1") == ("", "")


def test_database_built_with_mmdb_writer(tmp_path: Path) -> None:
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-City")
    writer.insert_network(
        IPSet(["203.0.113.0/24"]),
        {
            "country": {"iso_code": "BE"},
            "subdivisions": [{"iso_code": "VLG"}],
            "city": {"names": {"en": "Gent"}},
        },
    )
    writer.insert_network(IPSet(["2001:db8:1::/48"]), {"country_code": "nl"})
    path = tmp_path / "built.mmdb"
    writer.to_db_file(str(path))
    geo = Geo(path, store_region=True)
    assert geo.lookup("203.0.113.77") == ("BE", "BE-VLG")
    assert geo.lookup("::ffff:203.0.113.77") == ("BE", "BE-VLG")
    assert geo.lookup("2001:db8:1:ffff::1") == ("NL", "")  # flat ip-location-db record
    assert geo.lookup("198.51.100.1") == ("", "")


def test_bundled_country_database() -> None:
    geo = Geo()
    assert geo.path == bundled_database() and geo.available
    country, region = geo.lookup("8.8.8.8")
    assert len(country) == 2 and region == ""
    assert geo.lookup("::ffff:8.8.8.8") == (country, "")


@pytest.mark.parametrize("content", [None, b"not a database at all" * 100])
def test_missing_or_corrupt_database_warns_and_events_flow(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes | None
) -> None:
    path = tmp_path / "GeoLite2-City.mmdb"
    if content is not None:
        path.write_bytes(content)
    config = parse(
        f'[[site]]\ndomain = "example.com"\n[privacy]\ngeoip_database = "{path}"\n', env={}
    )
    with caplog.at_level(logging.WARNING, logger="firstparty.geo"):
        pipeline = build_pipeline(config, SaltKeeper(store))
    assert f"GeoIP database {path}" in caplog.text
    assert "unknown country" in caplog.text
    result = pipeline.process(
        Hit(
            domain="example.com",
            name="pageview",
            url="https://example.com/",
            referrer="",
            received_at=dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC),
            ip="81.2.69.142",
            user_agent="Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0",
        )
    )
    assert isinstance(result, Accepted)
    assert result.event.country_code == ""
    assert "81.2.69.142" not in caplog.text


def test_server_warns_at_start_up_about_a_missing_database_and_still_stores(
    tmp_path: Path,
) -> None:
    import time

    import httpx

    from store import connect
    from tests.conftest import start_server

    missing = tmp_path / "nowhere" / "GeoIP2-City.mmdb"
    server = start_server(
        tmp_path / "srv",
        f'[[site]]\ndomain = "example.com"\n[privacy]\ngeoip_database = "{missing}"\n',
    )
    try:
        response = httpx.post(
            server.url + "/api/event",
            headers={
                "user-agent": "Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 "
                "Firefox/131.0"
            },
            json={"n": "pageview", "u": "https://example.com/", "d": "example.com"},
        )
        assert response.status_code == 202 and "x-dropped" not in response.headers
        store = connect(f"chdb://{server.root / 'data' / 'clickhouse'}")
        deadline = time.monotonic() + 20
        while store.query("SELECT count() FROM events").scalar() == 0:
            assert time.monotonic() < deadline, "the event was not stored"
            time.sleep(0.1)
        assert store.query("SELECT country_code FROM events").scalar() == ""
        store.close()
    finally:
        output = server.stop()
    assert f"GeoIP database {missing} does not exist" in output
