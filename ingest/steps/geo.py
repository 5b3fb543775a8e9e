"""Geolocation in memory, from the full IP, before truncation: country, and region when the
policy allows and the database has it; never city.

The bundled database (ingest/data/geo-whois-asn-country.mmdb, CC BY 4.0, NRO) has countries
only; an operator's MaxMind file (`privacy.geoip_database`) adds regions. A missing or corrupt
database logs one clear warning when the pipeline is built, and events flow with an unknown
country: geolocation never stops ingestion.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import Any

import maxminddb

from firstparty.config import Config
from ingest.event import Event
from ingest.hit import Hit
from ingest.pipeline import Step
from ingest.steps.ip import normalise_text

log = logging.getLogger("firstparty.geo")


def bundled_database() -> Path:
    return Path(str(resources.files("ingest.data").joinpath("geo-whois-asn-country.mmdb")))


class Geo:
    """A MaxMind-format reader; `lookup` returns (country ISO code, region ISO 3166-2 code)."""

    def __init__(self, path: str | Path | None = None, store_region: bool = False) -> None:
        self.path = Path(path) if path else bundled_database()
        self.store_region = store_region
        self.warning: str | None = None
        self._reader: Any = None
        try:
            self._reader = maxminddb.open_database(str(self.path))
            self._reader.get("1.1.1.1")  # a corrupt tree can fail only on first lookup
        except FileNotFoundError:
            self._fail("does not exist")
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            self._fail(f"cannot be read ({type(exc).__name__}: {exc})")

    def _fail(self, why: str) -> None:
        self._reader = None
        self.warning = (
            f"GeoIP database {self.path} {why}; events are stored with an unknown country. "
            "Set privacy.geoip_database to a MaxMind .mmdb file, or run `make data-update`."
        )

    @property
    def available(self) -> bool:
        return self._reader is not None

    def lookup(self, ip: str) -> tuple[str, str]:
        if self._reader is None:
            return "", ""
        try:
            record = self._reader.get(normalise_text(ip))
        except (ValueError, maxminddb.InvalidDatabaseError):
            return "", ""
        if not isinstance(record, dict):
            return "", ""
        country = ""
        found = record.get("country")
        if isinstance(found, dict):
            country = str(found.get("iso_code") or "")
        elif isinstance(record.get("country_code"), str):  # ip-location-db's flat records
            country = record["country_code"]
        country = country.upper() if len(country) == 2 and country.isalpha() else ""
        region = ""
        if self.store_region and country:
            subdivisions = record.get("subdivisions")
            if isinstance(subdivisions, list) and subdivisions:
                code = subdivisions[0].get("iso_code") if isinstance(subdivisions[0], dict) else ""
                if isinstance(code, str) and code.isalnum() and len(code) <= 3:
                    region = f"{country}-{code.upper()}"
        return country, region

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()


def open_geo(config: Config) -> Geo:
    geo = Geo(config.privacy.geoip_database or None, config.privacy.store_region)
    if geo.warning:
        log.warning("%s", geo.warning)
    return geo


def geolocate(geo: Geo) -> Step:
    def step(hit: Hit, event: Event) -> str | None:
        event.country_code, event.region = geo.lookup(hit.ip)
        return None

    return step
