"""`firstparty demo-data`: synthetic traffic through the real pipeline, visible in the API."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from dashboards.query import parse_query, run_query
from firstparty.config import parse
from ingest.demo import generate
from store.base import Store
from tests.conftest import firstparty

CONFIG = '[[site]]\ndomain = "example.com"\n'


def test_demo_traffic_goes_through_the_pipeline(store: Store) -> None:
    config = parse(CONFIG, env={})
    now = dt.datetime.now(dt.UTC)
    stored, dropped = generate(
        store, config, "example.com", 3, 1500, now=now, seed=7, progress=None
    )
    assert stored >= 1500 and not dropped
    rows = store.query(
        "SELECT count() AS n, uniqExact(country_code) AS countries, "
        "uniqExact(browser) AS browsers, "
        "uniqExact(channel) AS channels, countIf(name = 'engagement') AS pings, "
        "countIf(name NOT IN ('pageview', 'engagement')) AS custom, "
        "countIf(ip_prefix != '') AS prefixes, min(toDate(timestamp)) AS first "
        "FROM events WHERE site_id = 'example.com'"
    ).dicts()[0]
    assert rows["n"] == stored
    assert rows["countries"] >= 5 and rows["browsers"] >= 4 and rows["channels"] >= 4
    assert rows["pings"] > 0 and rows["custom"] > 0
    assert rows["prefixes"] == 0  # the default policy keeps no IP-derived value
    assert rows["first"] == (now - dt.timedelta(days=2)).date()
    # the dashboards see it, from rollups and from raw events alike
    body = {"site_id": "example.com", "metrics": ["visitors", "pageviews"], "date_range": "7d"}
    rollup = run_query(store, config, parse_query({**body, "source": "rollup"}, config, now), now)
    raw = run_query(store, config, parse_query({**body, "source": "raw"}, config, now), now)
    visitors_raw, pageviews_raw = raw["results"][0]["metrics"]
    visitors_rollup, pageviews_rollup = rollup["results"][0]["metrics"]
    assert pageviews_rollup == pageviews_raw > 0
    assert abs(visitors_rollup - visitors_raw) <= 0.03 * visitors_raw  # HLL, documented ~2 %
    bounce = run_query(
        store,
        config,
        parse_query({**body, "metrics": ["bounce_rate", "visit_duration"]}, config, now),
        now,
    )["results"][0]["metrics"]
    assert 10 < bounce[0] < 90 and bounce[1] > 0


def test_demo_data_command_prints_progress_and_works_without_a_server(tmp_path: Path) -> None:
    (tmp_path / "firstparty.toml").write_text(CONFIG + f'[server]\ndata_dir = "{tmp_path}/data"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIRSTPARTY_")}
    env["FIRSTPARTY_STORE"] = f"chdb://{tmp_path}/data/clickhouse"
    run = firstparty(
        *("demo-data", "--site", "example.com", "--days", "2", "--events", "300"),
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "300/300 events" in run.stderr
    assert "Stored" in run.stdout
    unknown = firstparty("demo-data", "--site", "nope.example", cwd=tmp_path, env=env)
    assert unknown.returncode == 2 and "not a configured site" in unknown.stderr
