"""Storage per million events: bytes on disk per table after inserting synthetic traffic.

Inserts N synthetic events (realistic cardinalities: Zipf-distributed pages, sources and
countries; sessions of a few pageviews with engagement events) into a fresh embedded store with
the real schema, so the materialized views fill `sessions` and the rollups as in production.
Then merges every table (OPTIMIZE FINAL, the long-run state) and reads `system.parts`.

    .venv/bin/python deploy/measure_storage.py --events 1000000

docs/scaling.md quotes its output. A ClickHouse server stores the same parts (same engine), and
each replica of a cluster holds a full copy of its shard.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import tempfile
import time
from pathlib import Path

import pyarrow as pa

from firstparty.config import Config
from firstparty.server import schema_values
from ingest.batch import ARROW_SCHEMA
from ingest.event import COLUMNS
from store import open_owner
from store import schema as schema_mod
from store.base import Store

SITES = ("example.com", "shop.example.org", "blog.example.net")
BROWSERS = (("Chrome", "131"), ("Safari", "18"), ("Firefox", "133"), ("Edge", "131"))
SYSTEMS = (("Windows", "10"), ("Mac OS X", "14"), ("iOS", "18"), ("Android", "14"))
DEVICES = ("desktop", "mobile", "tablet")
COUNTRIES = tuple(
    "BE FR NL DE US GB ES IT PL SE DK NO FI IE PT AT CH CZ RO HU CA BR IN JP AU".split()
)
SOURCES = (
    ("", "", "Direct"),
    ("https://www.google.com/", "Google", "Organic Search"),
    ("https://duckduckgo.com/", "DuckDuckGo", "Organic Search"),
    ("https://www.bing.com/", "Bing", "Organic Search"),
    ("https://news.ycombinator.com/", "Hacker News", "Organic Social"),
    ("https://www.linkedin.com/", "LinkedIn", "Organic Social"),
    ("https://t.co/", "Twitter", "Organic Social"),
)


def zipf(rng: random.Random, n: int) -> int:
    """An index in [0, n) with a Zipf-like (1/rank) distribution."""
    return min(n - 1, int(n ** rng.random()) - 1)


def synthetic(rng: random.Random, count: int, days: int, end: dt.datetime) -> pa.Table:
    columns: dict[str, list[object]] = {name: [] for name in COLUMNS}
    pages = [f"/{section}/{slug}" for section in ("blog", "docs", "shop") for slug in range(700)]
    while len(columns["site_id"]) < count:
        site = SITES[zipf(rng, len(SITES))]
        visitor = rng.getrandbits(64)
        start = end - dt.timedelta(seconds=rng.randrange(days * 86400))
        referrer, source, channel = SOURCES[zipf(rng, len(SOURCES))]
        browser, browser_version = BROWSERS[zipf(rng, len(BROWSERS))]
        system, system_version = SYSTEMS[zipf(rng, len(SYSTEMS))]
        country = COUNTRIES[zipf(rng, len(COUNTRIES))]
        device = DEVICES[zipf(rng, len(DEVICES))]
        session = rng.getrandbits(63)
        campaign = "spring" if rng.random() < 0.05 else ""
        at = start
        for _ in range(1 + int(rng.expovariate(0.5))):  # about 3 pageviews per visit
            path = pages[zipf(rng, len(pages))]
            for name in ("pageview", "engagement"):
                values: dict[str, object] = {
                    "site_id": site,
                    "timestamp": at,
                    "name": name,
                    "visitor_id": visitor,
                    "visitor_kind": "cookieless",
                    "session_id": session,
                    "hostname": site,
                    "pathname": path,
                    "referrer": referrer,
                    "referrer_source": source,
                    "channel": channel,
                    "utm_source": "newsletter" if campaign else "",
                    "utm_medium": "email" if campaign else "",
                    "utm_campaign": campaign,
                    "utm_content": "",
                    "utm_term": "",
                    "click_id": "",
                    "country_code": country,
                    "region": "",
                    "ip_prefix": "",
                    "browser": browser,
                    "browser_version": browser_version,
                    "os": system,
                    "os_version": system_version,
                    "device": device,
                    "interactive": 1 if name == "pageview" else 0,
                    "engagement_ms": rng.randrange(1000, 120000) if name == "engagement" else 0,
                    "scroll_depth": rng.randrange(0, 101) if name == "engagement" else 255,
                    "props": [],
                }
                for key, value in values.items():
                    columns[key].append(value)
                at += dt.timedelta(seconds=rng.randrange(5, 90))
    return pa.table({f.name: pa.array(columns[f.name][:count], type=f.type) for f in ARROW_SCHEMA})


def sizes(store: Store) -> dict[str, tuple[int, int, int]]:
    """table -> (rows, bytes on disk, uncompressed bytes) of the active parts."""
    rows = store.query(
        "SELECT table, sum(rows), sum(bytes_on_disk), sum(data_uncompressed_bytes) "
        "FROM system.parts WHERE database = currentDatabase() AND active GROUP BY table "
        "ORDER BY table"
    ).tuples()
    return {str(t): (int(r), int(b), int(u)) for t, r, b, u in rows}


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--events", type=int, default=1_000_000)
    args.add_argument("--days", type=int, default=30)
    args.add_argument("--batch", type=int, default=100_000)
    options = args.parse_args()
    rng = random.Random(20261124)
    end = dt.datetime.now(dt.UTC)  # inside the raw retention window: nothing expires
    with tempfile.TemporaryDirectory() as tmp:
        store = open_owner(f"chdb://{Path(tmp) / 'clickhouse'}")
        schema_mod.apply(store, schema_values(Config()))
        batches = []
        made = 0
        while made < options.events:
            batches.append(
                synthetic(rng, min(options.batch, options.events - made), options.days, end)
            )
            made += batches[-1].num_rows
        # Only the inserts are timed (the writer's job), not making up the rows.
        started = time.monotonic()
        for number, batch in enumerate(batches):
            store.insert("events", batch, dedup_token=f"measure-{number}")
        took = time.monotonic() - started
        for table in sizes(store):
            store.command(f"OPTIMIZE TABLE `{table}` FINAL")
        measured = sizes(store)
        store.close()
    per_million = 1_000_000 / options.events
    print(
        f"{options.events} events over {options.days} days, inserted in {took:.1f} s "
        f"({options.events / took:,.0f} rows/s in {options.batch}-row batches, all views)"
    )
    print(f"{'table':<20}{'rows':>12}{'MB on disk':>12}{'MB / 1M events':>16}{'bytes/row':>11}")
    raw = ("events", "sessions")
    total_raw = total_rollups = 0
    for table, (rows, on_disk, _) in measured.items():
        if not rows:
            continue
        if table in raw:
            total_raw += on_disk
        else:
            total_rollups += on_disk
        print(
            f"{table:<20}{rows:>12}{on_disk / 1e6:>12.1f}"
            f"{on_disk * per_million / 1e6:>16.1f}{on_disk / rows:>11.1f}"
        )
    print(f"raw (events + sessions): {total_raw * per_million / 1e6:.1f} MB per 1M events")
    print(f"everything else (rollups, keys): {total_rollups * per_million / 1e6:.1f} MB per 1M")


if __name__ == "__main__":
    main()
