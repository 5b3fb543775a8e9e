"""Every metric and every dimension against numbers counted by hand (see query_fixture)."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from itertools import repeat
from typing import Any, cast

import pytest

from dashboards.batch import Batch
from dashboards.metrics import DIMENSIONS, METRICS
from dashboards.query import parse_query, run_query
from ingest.sessions import Sessionizer
from ingest.writer import insert_events
from store.base import Store, StoreError
from tests.dashboards import query_fixture as fx

ALL = list(fx.EXPECTED)


def ask(store: Store, min_visitors: int = 1, **body: Any) -> dict[str, Any]:
    config = fx.config(min_visitors)
    spec = parse_query({"site_id": fx.SITE, "date_range": fx.RANGE, **body}, config, fx.NOW)
    return run_query(store, config, spec, fx.NOW)


def table(result: dict[str, Any]) -> dict[Any, list[Any]]:
    rows = result["results"]
    return {
        (r["dimensions"][0] if len(r["dimensions"]) == 1 else tuple(r["dimensions"])): r["metrics"]
        for r in rows
    }


@pytest.fixture
def loaded(store: Store) -> Store:
    fx.load(store)
    return store


def test_every_metric_matches_the_hand_count(loaded: Store) -> None:
    result = ask(loaded, metrics=ALL)
    assert dict(zip(ALL, result["results"][0]["metrics"], strict=True)) == fx.EXPECTED
    assert "visitors_note" in result["meta"]  # a two-day total is labelled as a sum of days


def test_the_rollup_path_gives_the_same_numbers_as_raw_events(loaded: Store) -> None:
    # Small data: the uniqCombined64(12) states are exact below ~200 distinct ids, so the two
    # paths must agree exactly here (docs/api.md: ~2 % HLL error on large sites).
    metrics = ["visitors", "visits", "pageviews", "events", "views_per_visit"]
    for dims in ([], ["time:day"], ["time:hour"], ["visit:source"], ["event:page"]):
        for filters in (
            [],
            [["is", dims[0], ["/", "google.com"]]] if dims and "time" not in dims[0] else [],
        ):
            body = {"metrics": metrics, "dimensions": dims, "filters": filters}
            raw = ask(loaded, **body, source="raw")
            rollup = ask(loaded, **body, source="rollup")
            assert raw["meta"]["source"] == "raw" and rollup["meta"]["source"] == "rollup"
            assert rollup["results"] == raw["results"], (dims, filters)
    breakdowns = [d for d, dim in DIMENSIONS.items() if dim.rollup]
    for name in breakdowns:
        body = {"metrics": ["visitors", "pageviews", "events"], "dimensions": [name]}
        assert (
            ask(loaded, **body, source="rollup")["results"]
            == ask(loaded, **body, source="raw")["results"]
        ), name


def test_auto_planning_uses_rollups_only_when_they_can_answer(loaded: Store) -> None:
    assert ask(loaded, metrics=["visitors"])["meta"]["source"] == "rollup"
    assert (
        ask(loaded, metrics=["visitors"], dimensions=["visit:country"])["meta"]["source"]
        == "rollup"
    )
    two = ask(
        loaded,
        metrics=["visitors"],
        dimensions=["visit:country"],
        filters=[["is", "visit:browser", ["Safari"]]],
    )
    # a filter on another of the panels' attributes: the closed days' pairs answer
    assert two["meta"]["source"] == "rollup"
    assert table(two) == {"DE": [1]}
    # filters on two attributes: closed visits answer
    three = ask(
        loaded,
        metrics=["visitors"],
        dimensions=["visit:country"],
        filters=[["is", "visit:browser", ["Safari"]], ["is_not", "visit:device", ["Mobile"]]],
    )
    assert three["meta"]["source"] == "visit_facts"
    pages = ask(
        loaded,
        metrics=["visitors"],
        dimensions=["event:page"],
        filters=[["is", "visit:browser", ["Safari"]]],
    )
    assert pages["meta"]["source"] == "raw"  # an event dimension needs raw events
    assert table(two) == {"DE": [1]}
    assert ask(loaded, metrics=["bounce_rate"])["meta"]["source"] == "rollup"


def test_visit_rollups_match_live_sessions_and_finalize_once(loaded: Store) -> None:
    # The fixture's days are closed (before yesterday): the planner folds them into
    # visits_daily on first use; forcing `raw` computes the same from the sessions table.
    metrics = ["visitors", "visits", "bounce_rate", "visit_duration"]
    cases = [
        ([], []),
        (["time:day"], []),
        (["visit:source"], []),
        (["visit:entry_page"], []),
        (["visit:exit_page"], [["is_not", "visit:exit_page", ["/blog/post-1"]]]),
        ([], [["is", "visit:country", ["DE", "FR"]]]),
        (["visit:country"], [["contains", "visit:country", ["E"]]]),
    ]
    for dims, filters in cases:
        body = {"metrics": metrics, "dimensions": dims, "filters": filters}
        auto = ask(loaded, **body)
        raw = ask(loaded, **body, source="raw")
        assert "sessions" not in auto["meta"]["source"], (dims, filters)
        assert "sessions" in raw["meta"]["source"]
        assert auto["results"] == raw["results"], (dims, filters)
    # a filter on one visit attribute, a breakdown by another: closed days from the pairs of
    # the panels' attributes, else from visit_facts
    metrics = ["visitors", "visits", "pageviews", "views_per_visit", "bounce_rate"]
    for dims, filters, source in (
        (["visit:browser"], [["is", "visit:country", ["DE", "FR"]]], "rollup"),
        (["visit:country"], [["is_not", "visit:browser", ["Firefox"]]], "rollup"),
        (["visit:source"], [["contains", "visit:utm_medium", ["mail"]]], "rollup"),
        (["time:day", "visit:os"], [["is", "visit:device", ["Desktop"]]], "rollup"),
        (
            ["time:day"],
            [["is_not", "visit:device", ["Mobile"]], ["is", "visit:os", ["Linux"]]],
            "visit_facts",
        ),
        (["visit:os"], [["is", "visit:entry_page", ["/"]]], "visit_facts"),
        (["visit:browser_version"], [["is", "visit:country", ["DE"]]], "visit_facts"),
    ):
        body = {"metrics": metrics, "dimensions": dims, "filters": filters}
        auto = ask(loaded, **body)
        assert auto["meta"]["source"] == source, (dims, filters)
        assert auto["results"] == ask(loaded, **body, source="raw")["results"], (dims, filters)
        assert auto["results"], (dims, filters)
    again = ask(loaded, metrics=["visits", "bounce_rate"])  # a second run folds nothing twice
    assert again["results"][0]["metrics"] == [4, 50]
    assert loaded.query("SELECT count() FROM visits_daily_done FINAL").scalar() >= 2
    assert loaded.query("SELECT count() FROM visit_facts").scalar() == 4  # once each
    assert loaded.query("SELECT count() FROM visit_pairs_done FINAL").scalar() >= 2


def test_running_periods_fold_visits_from_recent_events_like_the_sessions_table(
    loaded: Store,
) -> None:
    # A period that ends in the future is folded from its events (plus a timeout's margin);
    # a closed one from `sessions`. Same visits, same numbers.
    metrics = ["visitors", "visits", "bounce_rate", "visit_duration"]
    for dims in ([], ["visit:entry_page"], ["visit:exit_page"], ["visit:source"]):
        running = ask(loaded, metrics=metrics, dimensions=dims, date_range="7d", source="raw")
        closed = ask(loaded, metrics=metrics, dimensions=dims, source="raw")
        assert running["results"] == closed["results"], dims


def test_top_pages_with_visit_metrics_and_exit_rate(loaded: Store) -> None:
    result = ask(
        loaded,
        metrics=[
            "visitors",
            "pageviews",
            "bounce_rate",
            "exit_rate",
            "time_on_page",
            "scroll_depth",
        ],
        dimensions=["event:page"],
    )
    assert table(result) == {
        # sessions seen on `/`: A, B (bounce), C -> 33 %; exits from `/`: B and C of 3 views
        "/": [3, 3, 33, 66.7, 10, 50],
        "/pricing": [2, 2, 50, 100.0, 30, 80],
        "/blog/post-1": [1, 1, 0, 0.0, 10, 100],
    }
    assert [r["dimensions"][0] for r in result["results"]] == ["/", "/pricing", "/blog/post-1"]


def test_entry_and_exit_pages(loaded: Store) -> None:
    metrics = ["visitors", "visits", "pageviews", "bounce_rate", "visit_duration"]
    entry = ask(loaded, metrics=metrics, dimensions=["visit:entry_page"])
    assert table(entry) == {
        "/": [2, 2, 3, 50, 75],  # A (2 views, 150 s) and B (bounce)
        "/blog/post-1": [1, 1, 2, 0, 301],
        "/pricing": [1, 1, 1, 100, 0],
    }
    exits = ask(loaded, metrics=["visits"], dimensions=["visit:exit_page"])
    assert table(exits) == {"/": [2], "/pricing": [2]}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "visit:source",
            {"Direct / None": [2, 2], "google.com": [1, 2], "news.ycombinator.com": [1, 2]},
        ),
        ("visit:channel", {"Direct": [2, 2], "Organic Search": [1, 2], "Referral": [1, 2]}),
        (
            "visit:referrer",
            {"": [2, 2], "https://google.com/": [1, 2], "https://news.ycombinator.com/": [1, 2]},
        ),
        ("visit:utm_source", {"": [2, 4], "newsletter": [1, 2]}),
        ("visit:utm_medium", {"": [2, 4], "email": [1, 2]}),
        ("visit:utm_campaign", {"": [2, 4], "spring": [1, 2]}),
        ("visit:utm_content", {"": [3, 6]}),
        ("visit:utm_term", {"": [3, 6]}),
        ("visit:country", {"BE": [1, 2], "DE": [1, 3], "FR": [1, 1]}),
        ("visit:region", {"BE-BRU": [1, 2], "DE-BE": [1, 3], "FR-IDF": [1, 1]}),
        ("visit:device", {"Desktop": [2, 3], "Mobile": [1, 3]}),
        ("visit:browser", {"Chrome": [1, 1], "Firefox": [1, 2], "Safari": [1, 3]}),
        ("visit:browser_version", {"131": [1, 1], "132": [1, 2], "18": [1, 3]}),
        ("visit:os", {"Linux": [1, 2], "Windows": [1, 1], "iOS": [1, 3]}),
        ("visit:os_version", {"": [1, 2], "10": [1, 1], "18.1": [1, 3]}),
        ("event:hostname", {"example.com": [3, 6]}),
        ("event:name", {"pageview": [3, 6], "engagement": [2, 0], "Signup": [1, 0]}),
        ("event:props:plan", {"(none)": [3, 6], "pro": [1, 0]}),
    ],
)
def test_each_dimension(loaded: Store, name: str, expected: dict[str, list[int]]) -> None:
    assert table(ask(loaded, metrics=["visitors", "pageviews"], dimensions=[name])) == expected


def test_time_dimensions(loaded: Store) -> None:
    d1, d2 = fx.DAY1.isoformat(), fx.DAY2.isoformat()
    assert table(ask(loaded, metrics=["visitors", "pageviews"], dimensions=["time:day"])) == {
        d1: [2, 3],
        d2: [1, 3],
    }
    # `time` picks hours for a two-day range
    assert table(ask(loaded, metrics=["pageviews"], dimensions=["time"])) == {
        f"{d1} 10:00:00": [2],
        f"{d1} 11:00:00": [1],
        f"{d2} 09:00:00": [2],
        f"{d2} 12:00:00": [1],
    }
    hours = table(ask(loaded, metrics=["pageviews", "visits"], dimensions=["time:hour"]))
    assert hours == {
        f"{d1} 10:00:00": [2, 1],
        f"{d1} 11:00:00": [1, 1],
        f"{d2} 09:00:00": [2, 1],
        f"{d2} 12:00:00": [1, 1],
    }
    month = ask(loaded, metrics=["pageviews"], dimensions=["time:month"])
    assert sum(r["metrics"][0] for r in month["results"]) == 6
    week = ask(
        loaded, metrics=["pageviews"], dimensions=["time:week"], include={"time_labels": True}
    )
    assert sum(r["metrics"][0] for r in week["results"]) == 6
    assert all(label in week["meta"]["time_labels"] for label in table(week))
    bounce = table(ask(loaded, metrics=["bounce_rate", "visit_duration"], dimensions=["time:day"]))
    assert bounce == {d1: [50, 75], d2: [50, 150]}


def test_goals_and_conversion_rates(loaded: Store) -> None:
    goals = ask(
        loaded, metrics=["visitors", "events", "conversion_rate"], dimensions=["event:goal"]
    )
    assert table(goals) == {"Visit pricing": [2, 2, 66.67], "Signup": [1, 1, 33.33]}
    signup = ask(
        loaded,
        metrics=["visitors", "conversion_rate"],
        filters=[["is", "event:goal", ["Signup"]]],
    )
    assert signup["results"][0]["metrics"] == [1, 33.33]
    by_source = ask(
        loaded,
        metrics=["visitors", "conversion_rate"],
        dimensions=["visit:source"],
        filters=[["is", "event:goal", ["Visit pricing"]]],
    )
    assert table(by_source) == {"google.com": [1, 33.33], "Direct / None": [1, 33.33]}


def test_percentage_and_views_per_visit(loaded: Store) -> None:
    result = ask(
        loaded, metrics=["visitors", "percentage", "views_per_visit"], dimensions=["visit:device"]
    )
    assert table(result) == {"Desktop": [2, 66.7, 1.5], "Mobile": [1, 33.3, 1.5]}


def test_every_metric_and_dimension_is_covered_here() -> None:
    import inspect
    import sys

    source = inspect.getsource(sys.modules[__name__])
    for name in METRICS:
        assert name in source, name
    for name in DIMENSIONS:
        assert f'"{name}"' in source, name


def _visits_until_today(store: Store) -> dt.date:
    """The fixture plus visits yesterday (one running past midnight) and today; returns today."""
    today = fx.NOW.date()
    yesterday = today - dt.timedelta(days=1)
    insert_events(
        store,
        [
            fx.event(201, fx.at(yesterday, 23, 50), "pageview", "/", fx.GOOGLE),
            fx.event(201, fx.at(today, 0, 10), "pageview", "/pricing", fx.GOOGLE),
            fx.event(202, fx.at(today, 8, 0), "pageview", "/", fx.GOOGLE),
            fx.event(202, fx.at(today, 8, 3), "pageview", "/blog/post-1", fx.GOOGLE),
            fx.event(203, fx.at(today, 9, 0), "pageview", "/", fx.DIRECT_FR),
            fx.event(204, fx.at(today, 10, 0), "pageview", "/pricing", fx.HN),
        ],
        Sessionizer(dt.timedelta(minutes=30)),
        token="today",
    )
    return today


def test_filtered_visit_breakdowns_over_closed_days_and_today_match_the_sessions_table(
    loaded: Store,
) -> None:
    # Today's visits are folded from their events with the filter applied to the events
    # themselves; a BE visit that began yesterday and runs past midnight must still count on
    # yesterday (its start is seen in the timeout's margin) and never on today.
    today = _visits_until_today(loaded)
    metrics = ["visitors", "visits", "pageviews", "views_per_visit", "bounce_rate"]
    span = [fx.DAY1.isoformat(), today.isoformat()]
    config = fx.config()
    later = fx.NOW + dt.timedelta(days=3)  # every day of the range closed
    for dims, filters, source in (
        (["visit:browser"], [["is", "visit:country", ["BE"]]], "rollup"),
        (["visit:source"], [["is_not", "visit:country", ["BE"]]], "rollup"),
        (
            ["time:day"],
            [["contains", "visit:source", ["google"]], ["is", "visit:device", ["Desktop"]]],
            "visit_facts",
        ),
        (
            [],
            [["is", "visit:device", ["Desktop"]], ["is_not", "visit:os", ["Windows"]]],
            "visit_facts",
        ),
        (["visit:os"], [["is", "visit:entry_page", ["/"]]], "visit_facts"),
    ):
        body = {"metrics": metrics, "dimensions": dims, "filters": filters, "date_range": span}
        auto = ask(loaded, **body)
        assert {source, "sessions"} <= set(auto["meta"]["source"].split("+")), dims
        spec = parse_query({"site_id": fx.SITE, **body}, config, later)
        closed = run_query(loaded, config, spec, later)
        assert closed["meta"]["source"] == source, dims
        assert auto["results"] == closed["results"], (dims, filters)
        if "time:day" not in dims:
            # raw events count a visit's events where they fell: the same over the whole range
            assert auto["results"] == ask(loaded, **body, source="raw")["results"], dims
    # counted by hand: the BE visits are A (day 1), yesterday's 201 (its two views, one after
    # midnight) and today's 202, all on Firefox
    be = ask(
        loaded,
        metrics=["visitors", "visits", "pageviews"],
        dimensions=["visit:browser"],
        filters=[["is", "visit:country", ["BE"]]],
        date_range=span,
    )
    assert table(be) == {"Firefox": [3, 3, 6]}


class _CountingReads:
    """The real store, with its reads counted."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.reads = 0
        self.markers = 0  # reads of the folded days' markers

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def query(self, *args: Any, **kwargs: Any) -> Any:
        self.reads += 1
        self.markers += "visits_daily_done" in str(args[0] if args else kwargs.get("sql"))
        return self.store.query(*args, **kwargs)


def test_a_pages_breakdowns_asked_as_one_batch_answer_as_each_alone_in_fewer_reads(
    loaded: Store,
) -> None:
    # The site page asks its panels together: the visit breakdowns (and, with a filter, the
    # top stats) share one grouped read of the visits (closed days and today), and each still
    # gets exactly its own answer.
    today = _visits_until_today(loaded)
    config = fx.config()
    dims = ["visit:source", "visit:country", "visit:browser", "visit:entry_page", "event:page"]
    span = [fx.DAY1.isoformat(), today.isoformat()]
    for filters in (
        [["is", "visit:country", ["BE", "DE"]]],
        [["is_not", "visit:device", ["Mobile"]], ["contains", "visit:source", ["o"]]],
        [["is", "visit:entry_page", ["/"]]],
        [],
    ):
        top = ["visitors", "visits", "pageviews", "views_per_visit", "bounce_rate"]
        specs = [
            parse_query(
                {
                    "site_id": fx.SITE,
                    "metrics": ["visitors", "visits", "bounce_rate"] if d else top,
                    "dimensions": [d] if d else [],
                    "filters": filters,
                    "date_range": span,
                },
                config,
                fx.NOW,
            )
            for d in [*dims, ""]  # "": the top stats
        ]
        alone = _CountingReads(loaded)
        answers = [run_query(cast(Store, alone), config, s, fx.NOW) for s in specs]
        together = _CountingReads(loaded)
        batch: Batch[Any] = Batch(dims, totals=True)
        # in threads, as the page's queries run
        with ThreadPoolExecutor(len(specs)) as pool:
            batched = list(
                pool.map(
                    run_query,
                    repeat(cast(Store, together)),
                    repeat(config),
                    specs,
                    repeat(fx.NOW),
                    repeat(batch),
                )
            )
        for d, one, other in zip([*dims, ""], answers, batched, strict=True):
            assert one["results"] == other["results"], (d, filters)
            assert one["results"], (d, filters)
        assert together.reads < alone.reads, filters
        # the closed days are folded (or found folded) once for the page, not once per panel
        assert together.markers == 1 < alone.markers, (together.markers, alone.markers)


def test_a_batch_gives_every_asker_the_first_answer_or_its_error() -> None:
    batch: Batch[int] = Batch(["visit:source", "visit:browser", "event:page"])
    assert [d.name for d in batch.dims] == ["visit:source", "visit:browser"]
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return len(calls)

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(lambda _: batch.once("k", compute), range(32))) == {1}
    assert calls == [1]

    def fail() -> int:
        raise StoreError("query stopped at its cap")

    for _ in range(2):
        with pytest.raises(StoreError, match="cap"):
            batch.once("broken", fail)


def test_rollups_and_raw_events_agree_beyond_exact_counting(store: Store) -> None:
    # One estimator on every path: above ~200 ids the counts are estimates, and a merge of the
    # rollup's daily states still equals the count over the same raw rows.
    pages = ["/", "/a", "/b"]
    events = [
        fx.event(1000 + i, fx.at(day, 8 + i % 12, i % 60), "pageview", pages[i % 3], fx.DIRECT_FR)
        for day in (fx.DAY1, fx.DAY2)
        for i in range(700)
    ]
    insert_events(store, events, Sessionizer(dt.timedelta(minutes=30)), token="many")
    for dims in ([], ["event:page"], ["time:day"]):
        body = {"metrics": ["visitors", "visits", "pageviews"], "dimensions": dims}
        rollup = ask(store, **body, source="rollup")
        raw = ask(store, **body, source="raw")
        assert rollup["results"] == raw["results"], dims
    total = ask(store, metrics=["visitors"], source="raw")["results"][0]["metrics"][0]
    assert total != 700 and abs(total - 700) < 0.05 * 700  # an estimate, and a close one
    # the same for the visit rollups of closed days, filtered on another attribute: visitors
    # merge daily states like the raw count; visits are counted there, estimated from raw events
    body = {
        "metrics": ["visitors", "visits"],
        "dimensions": ["visit:browser"],
        "filters": [["is", "visit:country", ["FR"]]],
    }
    paired, raw = ask(store, **body), ask(store, **body, source="raw")
    assert paired["meta"]["source"] == "rollup"
    (row,), (raw_row,) = paired["results"], raw["results"]
    assert row["metrics"][0] == raw_row["metrics"][0] and abs(row["metrics"][0] - 700) < 35
    assert row["metrics"][1] == 1400 and abs(raw_row["metrics"][1] - 1400) < 70
