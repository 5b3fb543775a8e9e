"""Dashboard latency: the full dashboard payload over 30 days on 10M (or 100M) events.

    python -m bench.dashboard --events 10000000 [--path /tmp/fp-bench-dashboard] [--runs 15]

1. Generates events fast: numpy columns built into Arrow batches of `--batch` rows, inserted
   through the store (`Store.insert`), so the materialized views fill `sessions` and
   `rollup_hourly` exactly as in production. Whole visits are generated in one batch.
2. Times the payload the site page loads: top stats with the previous-period comparison, the
   daily visitors chart, and six breakdowns (pages, sources, countries, browsers, OS, devices),
   each through `dashboards.query.run_query`, for the last 30 days; without a filter and with
   one (`visit:country is BE`), on the planner's choice (rollups where they can answer) and
   forced to raw events, in the same run. The queries run at once, each in a thread, as the
   site page runs them; "one at a time" times the same payload serially, for comparison.
   Reports p50/p90 per payload and the raw/rollup ratio.

The store holds `--days` days of traffic up to 12:00 UTC of the day it was generated, and is
measured as of that moment: a mid-day look, with the morning's visits still live (folded from
raw events) and nothing in the future.

Reuses an existing store at `--path` with the same event count and generator (`--reuse`),
because generating 100M events takes a while; it is then measured as of its own noon.
At 100M the raw payload's queries outlast the product's 10 s cap; `--raw-cap SECONDS` lifts
it for the raw cases of the run, so the raw/rollup ratio can be recorded there too.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from dashboards.batch import Batch
from dashboards.query import QUERY_SETTINGS, parse_query, run_query
from firstparty.config import Config, parse
from firstparty.server import schema_values
from ingest.batch import ARROW_SCHEMA
from store import open_owner
from store import schema as schema_mod
from store.base import Store, StoreError

SITE = "bench.example"

COUNTRIES = ["BE", "FR", "NL", "DE", "US", "GB", "ES", "IT", "CA", "IN", "BR", "JP", "PL", "SE"]
BROWSERS = ["Chrome", "Safari", "Firefox", "Edge", "Samsung Internet", "Opera"]
OSES = ["Windows", "iOS", "Android", "macOS", "GNU/Linux", "ChromeOS"]
DEVICES = ["desktop", "mobile", "tablet"]
SOURCES = [
    ("", "Direct"),
    ("Google", "Organic Search"),
    ("Bing", "Organic Search"),
    ("DuckDuckGo", "Organic Search"),
    ("Hacker News", "Organic Social"),
    ("Reddit", "Organic Social"),
    ("Twitter", "Organic Social"),
    ("newsletter", "Email"),
    ("GitHub", "Referral"),
    ("LinkedIn", "Organic Social"),
]
PAGES = ["/"] + [f"/blog/post-{i}" for i in range(300)] + [f"/docs/page-{i}" for i in range(150)]
PAGES += ["/pricing", "/features", "/about", "/contact", "/signup"]


def _zipf(rng: np.random.Generator, n: int, size: int, a: float = 1.2) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1) ** a
    return rng.choice(n, size=size, p=weights / weights.sum())


def _dict_array(values: list[str], idx: np.ndarray) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(idx.astype(np.int32)), pa.array(values)).cast(
        pa.string()
    )


def make_batch(
    rng: np.random.Generator, rows: int, start: dt.datetime, end: dt.datetime, first_session: int
) -> pa.Table:
    """About `rows` events in whole visits spread over [start, end): none in the future."""
    mean_len = 4.0
    sessions = max(1, int(rows / mean_len))
    lengths = np.minimum(rng.geometric(1 / mean_len, sessions), 40)
    n = int(lengths.sum())
    sid = np.arange(first_session, first_session + sessions, dtype=np.uint64)
    # ~1.3 visits per visitor per day: the visitor id is a hash of (person, day)
    span_s = int((end - start).total_seconds())
    session_start = rng.integers(0, span_s, sessions) * 1000 + rng.integers(0, 1000, sessions)
    person = rng.integers(0, max(1, sessions // 3), sessions)
    day = session_start // 86_400_000
    visitor = (
        (person.astype(np.uint64) * np.uint64(1_000_003) + day.astype(np.uint64))
        * np.uint64(2654435761)
        % np.uint64(2**63)
    )
    ev_session = np.repeat(np.arange(sessions), lengths)
    position = np.arange(n) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    ts = np.repeat(session_start, lengths) + position * rng.integers(5_000, 90_000, n)
    base_ms = int(start.timestamp() * 1000)
    kind = rng.random(n)
    name_idx = np.where(position == 0, 0, np.where(kind < 0.68, 0, np.where(kind < 0.95, 1, 2)))
    names = ["pageview", "engagement", "Signup"]
    country = _zipf(rng, len(COUNTRIES), sessions, 1.0)[ev_session]
    browser = _zipf(rng, len(BROWSERS), sessions)[ev_session]
    os_ = _zipf(rng, len(OSES), sessions)[ev_session]
    device = _zipf(rng, len(DEVICES), sessions)[ev_session]
    source = _zipf(rng, len(SOURCES), sessions, 0.9)[ev_session]
    page = _zipf(rng, len(PAGES), n, 1.05)
    engagement = np.where(name_idx == 1, rng.integers(1_000, 120_000, n), 0).astype(np.uint32)
    scroll = np.where(name_idx == 1, rng.integers(10, 101, n), 255).astype(np.uint8)
    empty = pa.array([""] * n, pa.string())
    columns: dict[str, pa.Array] = {
        "site_id": pa.array(np.full(n, SITE)),
        "timestamp": pa.array(base_ms + ts, pa.timestamp("ms", tz="UTC")),
        "name": _dict_array(names, name_idx),
        "visitor_id": pa.array(visitor[ev_session], pa.uint64()),
        "visitor_kind": pa.array(np.full(n, "cookieless")),
        "session_id": pa.array(sid[ev_session], pa.uint64()),
        "hostname": pa.array(np.full(n, SITE)),
        "pathname": _dict_array(PAGES, page),
        "referrer": _dict_array([f"https://{s.lower()}/" if s else "" for s, _ in SOURCES], source),
        "referrer_source": _dict_array([s for s, _ in SOURCES], source),
        "channel": _dict_array([c for _, c in SOURCES], source),
        "utm_source": _dict_array(["", "", "", "", "", "", "", "newsletter", "", ""], source),
        "utm_medium": _dict_array(["", "", "", "", "", "", "", "email", "", ""], source),
        "utm_campaign": _dict_array(["", "", "", "", "", "", "", "november", "", ""], source),
        "utm_content": empty,
        "utm_term": empty,
        "click_id": empty,
        "country_code": _dict_array(COUNTRIES, country),
        "region": empty,
        "ip_prefix": empty,
        "browser": _dict_array(BROWSERS, browser),
        "browser_version": _dict_array(["131", "18", "133", "131", "26", "114"], browser),
        "os": _dict_array(OSES, os_),
        "os_version": _dict_array(["10", "18.1", "14", "15", "", "131"], os_),
        "device": _dict_array(DEVICES, device),
        "interactive": pa.array((name_idx != 1).astype(np.uint8)),
        "engagement_ms": pa.array(engagement),
        "scroll_depth": pa.array(scroll),
        "props": pa.MapArray.from_arrays(
            pa.array(np.zeros(n + 1, dtype=np.int32)),
            pa.array([], pa.string()),
            pa.array([], pa.string()),
        ),
    }
    table = pa.table({f.name: columns[f.name].cast(f.type) for f in ARROW_SCHEMA})
    # a visit still going on at `end` has only its events so far
    return table.filter(pa.array(ts < span_s * 1000))


def generate(store: Store, events: int, days: int, batch: int, now: dt.datetime) -> float:
    """Insert about `events` events over the `days` days up to `now`; returns events/s."""
    rng = np.random.default_rng(42)
    start = dt.datetime(now.year, now.month, now.day, tzinfo=dt.UTC) - dt.timedelta(days=days - 1)
    done = 0
    session = 1
    began = time.monotonic()
    while done < events:
        table = make_batch(rng, min(batch, events - done), start, now, session)
        session += table.num_rows
        store.insert("events", table)
        done += table.num_rows
        rate = done / (time.monotonic() - began)
        sys.stderr.write(f"\r  generated {done:,}/{events:,} events, {rate:,.0f}/s")
        sys.stderr.flush()
    sys.stderr.write("\n")
    return done / (time.monotonic() - began)


# The tables the query layer folds from events (dashboards/rollups.py), with their markers.
FOLDED = (
    "visits_daily",
    "visits_daily_done",
    "visit_facts",
    "visit_pairs_daily",
    "visit_pairs_done",
)
# Bumped when the generated data changes, so `--reuse` regenerates an older store.
GENERATOR = 2
BREAKDOWNS = [
    "event:page",
    "visit:source",
    "visit:country",
    "visit:browser",
    "visit:os",
    "visit:device",
]
TOP = ["visitors", "visits", "pageviews", "views_per_visit", "bounce_rate", "visit_duration"]


def payload(
    store: Store,
    config: Config,
    filters: list[Any],
    source: str,
    now: dt.datetime,
    serial: bool = False,
) -> float:
    """Seconds to compute everything the site page shows."""
    base: dict[str, Any] = {
        "site_id": SITE,
        "date_range": "30d",
        "filters": filters,
        "source": source,
    }
    queries: list[dict[str, Any]] = [
        {**base, "metrics": TOP, "include": {"comparisons": {"mode": "previous_period"}}},
        {**base, "metrics": ["visitors"], "dimensions": ["time:day"]},
        *(
            {**base, "metrics": ["visitors"], "dimensions": [d], "pagination": {"limit": 10}}
            for d in BREAKDOWNS
        ),
    ]

    # As the site page does: the breakdowns (and with a filter the top stats) share one read of
    # the visits (dashboards/batch.py).
    batch: Batch[Any] = Batch(BREAKDOWNS, totals=True)

    def one(body: dict[str, Any]) -> None:
        run_query(store, config, parse_query(body, config, now), now, batch)

    began = time.perf_counter()
    if serial:
        for body in queries:
            one(body)
    else:
        # As the site page asks them: all at once, each in a thread (the store pools clients).
        with ThreadPoolExecutor(max_workers=len(queries)) as pool:
            list(pool.map(one, queries))
    return time.perf_counter() - began


def measure(
    store: Store,
    config: Config,
    runs: int,
    now: dt.datetime,
    raw_runs: int | None = None,
    raw_cap: float | None = None,
) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    be = [["is", "visit:country", ["BE"]]]
    cases: dict[str, tuple[list[Any], str, bool]] = {
        "no filter, auto (rollups)": ([], "auto", False),
        "no filter, auto, one at a time": ([], "auto", True),
        "no filter, raw events": ([], "raw", False),
        "country filter, auto": (be, "auto", False),
        "country filter, raw events": (be, "raw", False),
    }
    for label, (filters, source, serial) in cases.items():
        # The product stops every query at its cap; to time the raw path where it takes
        # longer (100M events), `--raw-cap` lifts the cap for the raw cases of this run only.
        cap = QUERY_SETTINGS["max_execution_time"]
        if source == "raw" and raw_cap is not None:
            QUERY_SETTINGS["max_execution_time"] = raw_cap
        try:
            began = time.perf_counter()
            payload(store, config, filters, source, now, serial)  # warm up; the first folds days
            print(f"  {label:32s} first payload {1000 * (time.perf_counter() - began):8.1f} ms")
            count = runs if source != "raw" or raw_runs is None else raw_runs
            times = sorted(
                payload(store, config, filters, source, now, serial) for _ in range(count)
            )
        except StoreError as exc:
            # a query hit its time or memory cap: the API would answer 503
            print(f"  {label:32s} failed: {str(exc)[:120]}")
            out[label] = {"p50_ms": float("nan"), "p90_ms": float("nan")}
            continue
        finally:
            QUERY_SETTINGS["max_execution_time"] = cap
        out[label] = {
            "p50_ms": round(1000 * statistics.median(times), 1),
            "p90_ms": round(1000 * times[int(0.9 * (len(times) - 1))], 1),
        }
        print(
            f"  {label:32s} p50 {out[label]['p50_ms']:8.1f} ms  p90 {out[label]['p90_ms']:8.1f} ms"
        )
    return out


def _wait_for_mutations(store: Store) -> None:
    """A reused store may have just migrated (its parts rewritten in the background): measure
    the steady state, after the rewrite."""
    began = time.monotonic()
    while True:
        left = int(
            store.query(
                "SELECT count() FROM system.mutations WHERE database = currentDatabase() "
                "AND NOT is_done"
            ).scalar()
            or 0
        )
        if not left:
            break
        sys.stderr.write(
            f"\r  waiting for {left} schema migration(s) to rewrite the stored parts, "
            f"{time.monotonic() - began:.0f} s"
        )
        sys.stderr.flush()
        time.sleep(1)
    if time.monotonic() - began > 1:
        sys.stderr.write("\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--events", type=int, default=10_000_000)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--batch", type=int, default=500_000)
    p.add_argument("--runs", type=int, default=15)
    p.add_argument(
        "--raw-runs", type=int, default=None, help="runs of the raw cases (default --runs)"
    )
    p.add_argument(
        "--raw-cap",
        type=float,
        default=None,
        help="seconds a query of the raw cases may run (default: the product's cap)",
    )
    p.add_argument("--path", default="/tmp/fp-bench-dashboard")
    p.add_argument(
        "--reuse", action="store_true", help="reuse the store at --path if it has the events"
    )
    p.add_argument(
        "--keep-folded",
        action="store_true",
        help="with --reuse, keep the visit tables a previous run folded (no first fold)",
    )
    args = p.parse_args(argv)
    config = parse(f'[[site]]\ndomain = "{SITE}"\n', env={})
    path = Path(args.path) / f"{args.events}"
    marker = Path(args.path) / f"{args.events}.json"
    made = json.loads(marker.read_text()) if marker.exists() else {}
    store = open_owner(f"chdb://{path}")
    schema_mod.apply(store, schema_values(config))
    _wait_for_mutations(store)
    have = int(store.query("SELECT count() FROM events").scalar() or 0)
    rate = None
    reusable = args.reuse and have >= args.events * 0.99 and made.get("generator") == GENERATOR
    if reusable:
        now = dt.datetime.fromisoformat(made["now"])
    else:
        # The dashboard is looked at mid-day: today holds the morning's visits, and no event
        # lies after "now" (a store never holds the future).
        today = dt.datetime.now(dt.UTC).date()
        now = dt.datetime(today.year, today.month, today.day, 12, tzinfo=dt.UTC)
        if have:
            for table in ("events", "sessions", "rollup_hourly", "rollup_daily", *FOLDED):
                store.command(f"TRUNCATE TABLE {table}")
        print(
            f"generating {args.events:,} events over the {args.days} days up to "
            f"{now:%Y-%m-%d %H:%M} UTC, in batches of {args.batch:,}"
        )
        rate = generate(store, args.events, args.days, args.batch, now)
        marker.write_text(json.dumps({"generator": GENERATOR, "now": now.isoformat()}))
        # steady state: background merges would have folded the parts of a 30-day store
        began = time.monotonic()
        for table in ("sessions", "rollup_hourly", "rollup_daily"):
            store.command(f"OPTIMIZE TABLE {table} FINAL")
        print(f"  merged sessions and rollups in {time.monotonic() - began:.1f} s")
    # the folded visit tables are part of what the first (warm-up) payload does: start empty,
    # unless asked to keep them (the first fold of a 100M store takes 8-11 minutes)
    if not args.keep_folded:
        for table in FOLDED:
            store.command(f"TRUNCATE TABLE {table}")
    sizes = store.query(
        "SELECT table, sum(rows) AS rows, sum(data_compressed_bytes) AS bytes FROM system.parts "
        "WHERE active AND database = currentDatabase() AND table IN "
        "('events', 'sessions', 'rollup_hourly', 'rollup_daily', 'visits_daily', "
        "'visit_pairs_daily') "
        "GROUP BY table ORDER BY table"
    ).dicts()
    for row in sizes:
        print(
            f"  {row['table']:14s} {row['rows']:>12,} rows {row['bytes'] / 1e6:9.1f} MB compressed"
        )
    print(
        "dashboard payload (top stats + comparison, chart, 6 breakdowns; 30 days; "
        f"{args.runs} runs):"
    )
    results = measure(store, config, args.runs, now, args.raw_runs, args.raw_cap)
    ratio = results["no filter, raw events"]["p50_ms"] / max(
        results["no filter, auto (rollups)"]["p50_ms"], 0.1
    )
    print(f"  raw / rollup p50 ratio (no filter): {ratio:.1f}x")
    summary = {
        "date": now.isoformat(timespec="seconds"),
        "events": have if rate is None else args.events,
        "insert_events_per_s": None if rate is None else round(rate),
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 1),
        "results": results,
        "raw_over_rollup_p50": round(ratio, 1),
    }
    print(json.dumps(summary))
    store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
