"""Filters, comparisons, ordering, pagination, k-suppression, validation and SQL injection."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from dashboards.query import QueryError, parse_query, run_query
from dashboards.suppression import OTHER
from store.base import Store
from tests.dashboards import query_fixture as fx
from tests.dashboards.test_metrics import ask, table


@pytest.fixture
def loaded(store: Store) -> Store:
    fx.load(store)
    return store


def visitors(store: Store, filters: list[Any], **body: Any) -> Any:
    return ask(store, metrics=["visitors"], filters=filters, **body)["results"][0]["metrics"][0]


def test_filter_operators(loaded: Store) -> None:
    assert visitors(loaded, [["is", "visit:country", ["BE", "FR"]]]) == 2
    assert visitors(loaded, [["is_not", "visit:country", ["BE"]]]) == 2
    assert visitors(loaded, [["contains", "event:page", ["blog"]]]) == 1
    assert visitors(loaded, [["contains_not", "event:page", ["/"]]]) == 0
    assert visitors(loaded, [["matches", "event:page", ["^/pri.*g$"]]]) == 2
    assert visitors(loaded, [["matches_not", "visit:browser", ["^(Fire|Chr)"]]]) == 1
    assert visitors(loaded, [["is", "visit:browser", ["firefox"], {"case_sensitive": False}]]) == 1
    assert visitors(loaded, [["is", "visit:browser", ["firefox"]]]) == 0
    assert visitors(loaded, [["is", "event:props:plan", ["pro"]]]) == 1
    assert visitors(loaded, [["is", "visit:entry_page", ["/blog/post-1"]]]) == 1
    assert visitors(loaded, [["is", "visit:exit_page", ["/pricing"]]]) == 2
    assert visitors(loaded, [["is", "visit:source", ["Direct / None"]]]) == 2


def test_logical_filters(loaded: Store) -> None:
    either = ["or", [["is", "visit:country", ["BE"]], ["is", "visit:browser", ["Safari"]]]]
    both = ["and", [["is", "visit:device", ["Desktop"]], ["is", "visit:os", ["Linux"]]]]
    assert visitors(loaded, [either]) == 2
    assert visitors(loaded, [both]) == 1
    assert visitors(loaded, [["not", both]]) == 2
    assert visitors(loaded, [["is", "visit:device", ["Desktop"]], ["is", "event:page", ["/"]]]) == 2


def test_visit_metrics_follow_the_filters(loaded: Store) -> None:
    # Only visit B (FR) is left: one pageview, a bounce.
    fr = ask(
        loaded,
        metrics=["visits", "bounce_rate", "visit_duration"],
        filters=[["is", "visit:country", ["FR"]]],
    )
    assert fr["results"][0]["metrics"] == [1, 100, 0]
    # Visits that saw /pricing: A (150 s) and D (bounce, 0 s)
    pricing = ask(
        loaded,
        metrics=["visits", "bounce_rate", "visit_duration"],
        filters=[["is", "event:page", ["/pricing"]]],
    )
    assert pricing["results"][0]["metrics"] == [2, 50, 75]


def test_sql_injection_in_filter_values_is_a_literal(loaded: Store) -> None:
    for value in ("' OR 1=1 --", "x') OR ('1'='1", "\\'; DROP TABLE events; --"):
        for op in ("is", "contains", "is_not"):
            result = ask(loaded, metrics=["visitors"], filters=[[op, "event:page", [value]]])
            expected = 3 if op == "is_not" else 0
            assert result["results"][0]["metrics"] == [expected], (op, value)
        prop = ask(loaded, metrics=["visitors"], dimensions=[f"event:props:{value}"])
        assert table(prop) == {"(none)": [3]}
    assert ask(loaded, metrics=["pageviews"])["results"][0]["metrics"] == [6]


def test_comparison_with_the_previous_period(loaded: Store) -> None:
    day2 = [fx.DAY2.isoformat(), fx.DAY2.isoformat()]
    result = ask(
        loaded,
        metrics=["visitors", "pageviews", "bounce_rate"],
        date_range=day2,
        include={"comparisons": {"mode": "previous_period"}},
    )
    row = result["results"][0]
    assert row["metrics"] == [1, 3, 50]
    # day 1: 2 visitors, 3 pageviews, bounce 50 % -> -50 %, 0 %, 0 points
    assert row["comparison"] == {"dimensions": [], "metrics": [2, 3, 50], "change": [-50, 0, 0]}
    assert result["meta"]["comparison_date_range"][0].startswith(fx.DAY1.isoformat())
    series = ask(
        loaded,
        metrics=["pageviews"],
        dimensions=["time:day"],
        date_range=day2,
        include={"comparisons": {"mode": "previous_period"}},
    )
    assert series["results"][0]["comparison"]["dimensions"] == [fx.DAY1.isoformat()]
    assert series["results"][0]["comparison"]["metrics"] == [3]


def test_ordering_pagination_and_totals(loaded: Store) -> None:
    body = {"metrics": ["pageviews"], "dimensions": ["event:page"]}
    first = ask(
        loaded,
        **body,
        order_by=[["pageviews", "asc"]],
        pagination={"limit": 2},
        include={"total_rows": True},
    )
    assert [r["dimensions"][0] for r in first["results"]] == ["/blog/post-1", "/pricing"]
    assert first["meta"]["total_rows"] == 3
    rest = ask(
        loaded, **body, order_by=[["pageviews", "asc"]], pagination={"limit": 2, "offset": 2}
    )
    assert [r["dimensions"][0] for r in rest["results"]] == ["/"]
    by_name = ask(loaded, **body, order_by=[["event:page", "desc"]])
    assert [r["dimensions"][0] for r in by_name["results"]] == ["/pricing", "/blog/post-1", "/"]
    totals = ask(loaded, **body, include={"totals": True})
    assert totals["meta"]["totals"] == {"pageviews": 6}


def test_k_suppression_folds_small_rows_and_their_complement(loaded: Store) -> None:
    # k = 2: every country has 1 visitor, so all three fold into (other)
    countries = ask(loaded, 2, metrics=["visitors", "pageviews"], dimensions=["visit:country"])
    assert table(countries) == {OTHER: [3, 6]}
    # devices: Mobile (1) is small; folding it alone would reveal it as total - Desktop, so the
    # smallest visible row is folded with it
    devices = ask(loaded, 2, metrics=["visitors"], dimensions=["visit:device"])
    assert table(devices) == {OTHER: [3]}
    assert devices["meta"]["suppressed_rows"] == 2
    # pages at k = 2: /blog/post-1 (1) is small; the next smallest (/pricing, 2) joins it
    pages = ask(loaded, 2, metrics=["visitors", "pageviews"], dimensions=["event:page"])
    assert table(pages) == {"/": [3, 3], OTHER: [3, 3]}
    # a filter that narrows to a single visitor is withheld
    narrowed = ask(
        loaded, 2, metrics=["visitors", "pageviews"], filters=[["is", "visit:country", ["FR"]]]
    )
    assert narrowed["results"][0]["metrics"] == [None, None]
    # k = 4: more than the whole site; the folded group is itself below k and is withheld
    everything = ask(loaded, 4, metrics=["visitors"], dimensions=["visit:browser"])
    assert table(everything) == {OTHER: [None]}


def test_no_row_below_k_is_ever_shown(loaded: Store) -> None:
    for k in (2, 3):
        for dim in ("visit:source", "event:page", "visit:entry_page", "event:name", "visit:os"):
            result = ask(loaded, k, metrics=["visitors"], dimensions=[dim])
            for row in result["results"]:
                assert row["metrics"][0] is None or row["metrics"][0] >= k, (k, dim, row)
            folded = [r for r in result["results"] if r["dimensions"] == [OTHER]]
            shown = sum(r["metrics"][0] for r in result["results"] if r["dimensions"] != [OTHER])
            # what subtraction from the total reveals is the (other) row: >= k and >= 2 rows
            assert not folded or folded[0]["metrics"][0] is None or folded[0]["metrics"][0] >= k
            assert shown <= 3


def test_other_sites_never_leak(loaded: Store) -> None:
    config = fx.config()
    spec = parse_query(
        {"site_id": "shop.example.org", "metrics": ["visitors"], "date_range": fx.RANGE},
        config,
        fx.NOW,
    )
    assert run_query(loaded, config, spec, fx.NOW)["results"][0]["metrics"] == [1]
    assert ask(loaded, metrics=["visitors"])["results"][0]["metrics"] == [3]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"metrics": ["visitors"]}, "site_id"),
        ({"site_id": "nope.example", "metrics": ["visitors"], "date_range": "7d"}, "site_id"),
        ({"site_id": fx.SITE, "metrics": [], "date_range": "7d"}, "metrics"),
        ({"site_id": fx.SITE, "metrics": ["users"], "date_range": "7d"}, "metrics"),
        ({"site_id": fx.SITE, "metrics": ["visitors"]}, "date_range"),
        ({"site_id": fx.SITE, "metrics": ["visitors"], "date_range": "3w"}, "date_range"),
        (
            {"site_id": fx.SITE, "metrics": ["visitors"], "date_range": ["2024-13-01", "x"]},
            "date_range",
        ),
        (
            {
                "site_id": fx.SITE,
                "metrics": ["visitors"],
                "date_range": "7d",
                "dimensions": ["visit:city"],
            },
            "dimensions",
        ),
        (
            {
                "site_id": fx.SITE,
                "metrics": ["visitors"],
                "date_range": "7d",
                "filters": [["eq", "visit:os", ["x"]]],
            },
            "filters",
        ),
        (
            {
                "site_id": fx.SITE,
                "metrics": ["visitors"],
                "date_range": "7d",
                "filters": [["is", "event:goal", ["Nope"]]],
            },
            "filters",
        ),
        (
            {
                "site_id": fx.SITE,
                "metrics": ["visitors"],
                "date_range": "7d",
                "filters": [["matches", "event:page", ["("]]],
            },
            "filters",
        ),
        ({"site_id": fx.SITE, "metrics": ["conversion_rate"], "date_range": "7d"}, "metrics"),
        ({"site_id": fx.SITE, "metrics": ["exit_rate"], "date_range": "7d"}, "metrics"),
        (
            {
                "site_id": fx.SITE,
                "metrics": ["visitors"],
                "date_range": "7d",
                "order_by": [["pageviews", "desc"]],
            },
            "order_by",
        ),
        (
            {
                "site_id": fx.SITE,
                "metrics": ["visitors"],
                "date_range": "7d",
                "pagination": {"limit": 0},
            },
            "pagination.limit",
        ),
        ({"site_id": fx.SITE, "metrics": ["visitors"], "date_range": "7d", "extra": 1}, "extra"),
    ],
)
def test_validation_errors_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(QueryError) as raised:
        parse_query(body, fx.config(), fx.NOW)
    assert raised.value.field == field
    assert str(raised.value).startswith(f"`{field}`")


def test_date_range_presets() -> None:
    now = dt.datetime(2024, 3, 15, 10, tzinfo=dt.UTC)

    def span(value: Any) -> list[str]:
        body = {"site_id": fx.SITE, "metrics": ["visitors"], "date_range": value}
        return parse_query(body, fx.config(), now).period.iso()

    assert span("day") == ["2024-03-15T00:00:00Z", "2024-03-15T23:59:59Z"]
    assert span("7d") == ["2024-03-09T00:00:00Z", "2024-03-15T23:59:59Z"]
    assert span("30d") == ["2024-02-15T00:00:00Z", "2024-03-15T23:59:59Z"]
    assert span("month") == ["2024-03-01T00:00:00Z", "2024-03-31T23:59:59Z"]
    assert span("6mo") == ["2023-10-01T00:00:00Z", "2024-03-31T23:59:59Z"]
    assert span("12mo") == ["2023-04-01T00:00:00Z", "2024-03-31T23:59:59Z"]
    assert span(["2024-01-01", "2024-01-31"]) == ["2024-01-01T00:00:00Z", "2024-01-31T23:59:59Z"]


def test_old_ranges_warn_instead_of_returning_silently_partial_numbers(loaded: Store) -> None:
    config = fx.config()
    old = [(fx.NOW - dt.timedelta(days=90)).date().isoformat(), fx.DAY2.isoformat()]
    spec = parse_query(
        {"site_id": fx.SITE, "metrics": ["visitors", "time_on_page"], "date_range": old},
        config,
        fx.NOW,
    )
    result = run_query(loaded, config, spec, fx.NOW)
    assert "kept 30 days" in result["meta"]["warning"]
    spec = parse_query(
        {"site_id": fx.SITE, "metrics": ["visitors"], "date_range": old}, config, fx.NOW
    )
    assert "warning" not in run_query(loaded, config, spec, fx.NOW)["meta"]  # rollups hold it


def test_all_time_starts_at_the_first_data(loaded: Store) -> None:
    result = ask(loaded, metrics=["pageviews"], date_range="all")
    assert result["query"]["date_range"][0].startswith(fx.DAY1.isoformat())
    assert result["results"][0]["metrics"] == [6]
