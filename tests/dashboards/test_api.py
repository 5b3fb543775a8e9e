"""The Stats API over HTTP: auth, v2 JSON and CSV, v1 endpoints, errors as JSON."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from dashboards.keys import create_key
from dashboards.routes import routes
from store.aio import AsyncStore
from store.base import Store
from tests.dashboards import query_fixture as fx
from tests.dashboards.web_fixtures import serving


@pytest.fixture
def api(
    store: Store, tmp_path: Path
) -> Iterator[tuple[httpx.Client, dict[str, str], dict[str, str]]]:
    fx.load(store)
    config = fx.config(data_dir=str(tmp_path))
    app = Starlette(routes=routes(config, AsyncStore(store)))
    site_key = create_key(store, [fx.SITE])
    other_key = create_key(store, ["shop.example.org"])
    with serving(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield (
            client,
            {"authorization": f"Bearer {site_key}"},
            {"authorization": f"Bearer {other_key}"},
        )


def body(**extra: Any) -> dict[str, Any]:
    return {"site_id": fx.SITE, "metrics": ["visitors"], "date_range": fx.RANGE, **extra}


def test_v2_query_answers_like_plausible(api: Any) -> None:
    client, key, _ = api
    response = client.post(
        "/api/v2/query",
        headers=key,
        json=body(metrics=["visitors", "pageviews", "bounce_rate"], dimensions=["visit:country"]),
    )
    assert response.status_code == 200, response.text
    data = response.json()
    assert set(data) == {"results", "meta", "query"}
    assert {tuple(r["dimensions"]): r["metrics"] for r in data["results"]} == {
        ("BE",): [1, 2, 0],
        ("DE",): [1, 3, 50],
        ("FR",): [1, 1, 100],
    }
    assert data["query"]["metrics"] == ["visitors", "pageviews", "bounce_rate"]
    assert response.headers["cache-control"] == "no-store"


def test_auth_is_required_and_scoped_to_sites(api: Any) -> None:
    client, _key, other = api
    assert client.post("/api/v2/query", json=body()).status_code == 401
    bad = client.post("/api/v2/query", headers={"authorization": "Bearer fp_nope"}, json=body())
    assert bad.status_code == 401 and "error" in bad.json()
    denied = client.post("/api/v2/query", headers=other, json=body())
    assert denied.status_code == 403
    assert "example.com" in denied.json()["error"]
    # the other key reads its own site
    ok = client.post("/api/v2/query", headers=other, json=body(site_id="shop.example.org"))
    assert ok.json()["results"][0]["metrics"] == [1]
    assert client.get("/api/v1/stats/aggregate", params={"site_id": fx.SITE}).status_code == 401
    v1 = client.get("/api/v1/stats/aggregate", headers=other, params={"site_id": fx.SITE})
    assert v1.status_code == 403
    csv_denied = client.get(
        "/api/v2/query.csv", headers=other, params={"query": json.dumps(body())}
    )
    assert csv_denied.status_code == 403


def test_validation_errors_are_400_json_naming_the_field(api: Any) -> None:
    client, key, _ = api
    cases = [
        (body(metrics=["nope"]), "`metrics`"),
        (body(date_range="yesterday"), "`date_range`"),
        (body(filters=[["is", "visit:country"]]), "`filters`"),
        (body(dimensions=["visit:planet"]), "`dimensions`"),
    ]
    for payload, field in cases:
        response = client.post("/api/v2/query", headers=key, json=payload)
        assert response.status_code == 400, payload
        assert response.json()["error"].startswith(field)
    broken = client.post("/api/v2/query", headers=key, content=b"{not json")
    assert broken.status_code == 400 and broken.json()["error"].startswith("`body`")
    assert client.post("/api/v2/query", headers=key, content=b"[1,2]").status_code == 400


def test_injection_strings_are_literals_over_http(api: Any) -> None:
    client, key, _ = api
    for value in ("' OR 1=1 --", '") OR 1=1 --', "{p0:String}"):
        response = client.post(
            "/api/v2/query", headers=key, json=body(filters=[["is", "visit:country", [value]]])
        )
        assert response.status_code == 200
        assert response.json()["results"][0]["metrics"] == [0]


def test_csv_export_of_a_breakdown(api: Any) -> None:
    client, key, _ = api
    query = body(metrics=["visitors", "pageviews"], dimensions=["event:page"])
    by_accept = client.post("/api/v2/query", headers={**key, "accept": "text/csv"}, json=query)
    by_path = client.get("/api/v2/query.csv", headers=key, params={"query": json.dumps(query)})
    posted = client.post("/api/v2/query.csv", headers=key, json=query)
    for response in (by_accept, by_path, posted):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(response.text)))
        assert rows[0] == ["event:page", "visitors", "pageviews"]
        assert rows[1:] == [["/", "3", "3"], ["/pricing", "2", "2"], ["/blog/post-1", "1", "1"]]
    assert "attachment" in by_path.headers["content-disposition"]


def test_v1_endpoints(api: Any) -> None:
    client, key, _ = api
    custom = {"site_id": fx.SITE, "period": "custom", "date": ",".join(fx.RANGE)}
    aggregate = client.get(
        "/api/v1/stats/aggregate",
        headers=key,
        params={**custom, "metrics": "visitors,pageviews,bounce_rate,visit_duration"},
    )
    assert aggregate.status_code == 200, aggregate.text
    assert aggregate.json()["results"] == {
        "visitors": {"value": 3},
        "pageviews": {"value": 6},
        "bounce_rate": {"value": 50},
        "visit_duration": {"value": 113},
    }
    series = client.get(
        "/api/v1/stats/timeseries", headers=key, params={**custom, "metrics": "pageviews"}
    )
    assert series.json()["results"] == [
        {"date": fx.DAY1.isoformat(), "pageviews": 3},
        {"date": fx.DAY2.isoformat(), "pageviews": 3},
    ]
    breakdown = client.get(
        "/api/v1/stats/breakdown",
        headers=key,
        params={**custom, "property": "visit:browser", "metrics": "visitors,pageviews", "limit": 2},
    )
    assert breakdown.json()["results"] == [
        # ties on visitors are ordered by name
        {"browser": "Chrome", "visitors": 1, "pageviews": 1},
        {"browser": "Firefox", "visitors": 1, "pageviews": 2},
    ]
    page2 = client.get(
        "/api/v1/stats/breakdown",
        headers=key,
        params={
            **custom,
            "property": "visit:browser",
            "metrics": "visitors",
            "limit": 2,
            "page": 2,
        },
    )
    assert page2.json()["results"] == [{"browser": "Safari", "visitors": 1}]
    filtered = client.get(
        "/api/v1/stats/aggregate",
        headers=key,
        params={**custom, "filters": "event:page==/blog/**|/pricing;visit:country!=BE"},
    )
    assert filtered.json()["results"] == {"visitors": {"value": 1}}
    day2 = client.get(
        "/api/v1/stats/aggregate",
        headers=key,
        params={
            "site_id": fx.SITE,
            "period": "day",
            "date": fx.DAY2.isoformat(),
            "compare": "previous_period",
            "metrics": "visitors",
        },
    )
    assert day2.json()["results"] == {
        "visitors": {"value": 1, "comparison_value": 2, "change": -50}
    }
    realtime = client.get(
        "/api/v1/stats/realtime/visitors", headers=key, params={"site_id": fx.SITE}
    )
    assert realtime.status_code == 200 and realtime.json() == 0
    bad = client.get(
        "/api/v1/stats/breakdown", headers=key, params={**custom, "property": "visit:planet"}
    )
    assert bad.status_code == 400 and bad.json()["error"].startswith("`property`")


def test_realtime_counts_the_last_five_minutes(api: Any, store: Store) -> None:
    import datetime as dt

    from ingest.sessions import Sessionizer
    from ingest.writer import insert_events

    client, key, _ = api
    now = dt.datetime.now(dt.UTC)
    recent = [
        fx.event(501, now - dt.timedelta(minutes=1), "pageview", "/", fx.GOOGLE),
        fx.event(502, now - dt.timedelta(minutes=2), "pageview", "/pricing", fx.HN),
        fx.event(503, now - dt.timedelta(minutes=20), "pageview", "/", fx.HN),  # too old
    ]
    insert_events(store, recent, Sessionizer(), token="realtime")
    realtime = client.get(
        "/api/v1/stats/realtime/visitors", headers=key, params={"site_id": fx.SITE}
    )
    assert realtime.json() == 2
