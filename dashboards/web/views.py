"""What a site's dashboard shows, as plain data: the page renders it, its JSON twin returns it.

Every number comes from `dashboards.web.stats.run`, the same Stats API v2 query layer API
clients use; this module only decides which queries a page needs and how to label the answers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from dashboards.batch import Batch
from dashboards.web import stats
from dashboards.web.periods import INTERVALS, PRESETS, Period, buckets, resolve
from firstparty.config import Config
from store.aio import AsyncStore


@dataclass(frozen=True)
class Tab:
    key: str
    label: str
    dimension: str
    column: str  # the row label's heading


@dataclass(frozen=True)
class Panel:
    key: str
    title: str
    tabs: tuple[Tab, ...]


PANELS: tuple[Panel, ...] = (
    Panel(
        "sources",
        "Top sources",
        (
            Tab("channels", "Channels", "visit:channel", "Channel"),
            Tab("sources", "Sources", "visit:source", "Source"),
            Tab("campaigns", "Campaigns", "visit:utm_campaign", "UTM campaign"),
            Tab("utm_source", "UTM sources", "visit:utm_source", "UTM source"),
            Tab("utm_medium", "UTM mediums", "visit:utm_medium", "UTM medium"),
        ),
    ),
    Panel(
        "pages",
        "Top pages",
        (
            Tab("top", "Top pages", "event:page", "Page"),
            Tab("entry", "Entry pages", "visit:entry_page", "Entry page"),
            Tab("exit", "Exit pages", "visit:exit_page", "Exit page"),
        ),
    ),
    Panel(
        "locations",
        "Locations",
        (
            Tab("countries", "Countries", "visit:country", "Country"),
            Tab("regions", "Regions", "visit:region", "Region"),
        ),
    ),
    Panel(
        "devices",
        "Devices",
        (
            Tab("browsers", "Browsers", "visit:browser", "Browser"),
            Tab("os", "Operating systems", "visit:os", "OS"),
            Tab("devices", "Device types", "visit:device", "Device"),
        ),
    ),
)
GOALS = Tab("goals", "Goals", "event:goal", "Goal")

# Query-string name -> (dimension, chip label). Clicking a row adds one of these.
FILTERS: dict[str, tuple[str, str]] = {
    tab.dimension.split(":", 1)[1]: (tab.dimension, tab.column)
    for panel in PANELS
    for tab in panel.tabs
}
FILTERS["goal"] = ("event:goal", "Goal")
FILTERS["hostname"] = ("event:hostname", "Hostname")
FILTERS["referrer"] = ("visit:referrer", "Referrer")

TOP_STATS: tuple[tuple[str, str], ...] = (
    ("visitors", "Unique visitors"),
    ("visits", "Total visits"),
    ("pageviews", "Total pageviews"),
    ("views_per_visit", "Views per visit"),
    ("bounce_rate", "Bounce rate"),
    ("visit_duration", "Visit duration"),
)
# Where a rise is bad news (shown in the "worse" colour).
LOWER_IS_BETTER = frozenset({"bounce_rate"})
# Changes in percentage points, not percent (as Plausible shows them).
ABSOLUTE = frozenset({"bounce_rate"})
CHART_METRICS = ("visitors", "visits", "pageviews")
ROWS = 9


def _number(value: Any) -> float | None:
    """A metric's value as a float; None when there is none (no data gives None or NaN)."""
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _clean(value: Any) -> Any:
    """NaN (an average over nothing) as null, so the JSON twin stays valid JSON."""
    return None if isinstance(value, float) and math.isnan(value) else value


def fmt(metric: str, value: Any) -> str:
    """How a metric's value reads on the page."""
    value = _number(value)
    if value is None:
        return "-"
    if metric in ("bounce_rate", "conversion_rate", "exit_rate", "percentage"):
        return f"{float(value):.0f}%" if float(value).is_integer() else f"{float(value):.1f}%"
    if metric in ("visit_duration", "time_on_page"):
        seconds = round(float(value))
        if seconds < 60:
            return f"{seconds}s"
        minutes, seconds = divmod(seconds, 60)
        if minutes < 60:
            return f"{minutes}m {seconds:02d}s"
        hours, minutes = divmod(minutes, 60)
        return f"{hours}h {minutes:02d}m"
    if metric == "views_per_visit":
        return f"{float(value):.2f}"
    return f"{int(value):,}"


def change(metric: str, now: Any, before: Any) -> dict[str, Any] | None:
    """The change against the previous period, and whether it is good news."""
    now_f, before_f = _number(now), _number(before)
    if now_f is None or before_f is None:
        return None
    if metric in ABSOLUTE:
        delta = round(now_f - before_f)
        text = f"{abs(delta)} pp"
    elif before_f == 0:
        if now_f == 0:
            return {"value": 0, "text": "0%", "direction": "flat", "good": None}
        return {"value": None, "text": "new", "direction": "up", "good": True}
    else:
        delta = round(100 * (now_f - before_f) / before_f)
        text = f"{abs(delta)}%"
    direction = "up" if delta > 0 else "down" if delta < 0 else "flat"
    good = None if delta == 0 else (delta > 0) != (metric in LOWER_IS_BETTER)
    return {"value": delta, "text": text, "direction": direction, "good": good}


@dataclass(frozen=True)
class State:
    """The page's state, all from its query string (so every view has a URL)."""

    period: Period
    compare: bool
    filters: tuple[tuple[str, str], ...]  # (query name, value)
    tabs: dict[str, str]  # panel key -> tab key
    metric: str
    now: dt.datetime  # when the page was asked for: "today", the chart's end, realtime

    def params(self, **changes: Any) -> dict[str, str]:
        out: dict[str, str] = {"period": self.period.key}
        if self.period.key == "custom":
            out["from"], out["to"] = self.period.start.isoformat(), self.period.end.isoformat()
        out["interval"] = self.period.interval
        if self.compare:
            out["compare"] = "1"
        for name, value in self.filters:
            out[name] = value
        for panel, tab in self.tabs.items():
            out[f"tab_{panel}"] = tab
        if self.metric != "visitors":
            out["metric"] = self.metric
        for key, value in changes.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = str(value)
        return out

    def query(self, **changes: Any) -> str:
        return urlencode(self.params(**changes))

    def v2_filters(self) -> list[list[Any]]:
        return [["is", FILTERS[name][0], [value]] for name, value in self.filters]


def parse_state(args: Mapping[str, str], now: dt.datetime) -> State:
    period = resolve(
        args.get("period"), now.date(), args.get("from"), args.get("to"), args.get("interval")
    )
    filters = tuple(
        (name, args[name][:500]) for name in FILTERS if name in args and args[name] != ""
    )
    tabs = {}
    for panel in PANELS:
        wanted = args.get(f"tab_{panel.key}", "")
        tabs[panel.key] = wanted if wanted in {t.key for t in panel.tabs} else panel.tabs[0].key
    metric = args.get("metric", "visitors")
    return State(
        period=period,
        compare=args.get("compare") in ("1", "true", "on"),
        filters=filters,
        tabs=tabs,
        metric=metric if metric in CHART_METRICS else "visitors",
        now=now,
    )


def _query(site: str, period: Period, state: State, **extra: Any) -> dict[str, Any]:
    query: dict[str, Any] = {
        "site_id": site,
        "date_range": period.date_range(),
        "filters": state.v2_filters(),
        "metrics": ["visitors"],
    }
    query.update(extra)
    return query


async def _top_stats(
    store: AsyncStore, config: Config, site: str, state: State, batch: Batch[Any] | None = None
) -> dict[str, Any]:
    names = [name for name, _ in TOP_STATS]
    now_q = stats.run(
        store, config, _query(site, state.period, state, metrics=names), state.now, batch
    )
    prev_q = stats.run(
        store, config, _query(site, state.period.previous(), state, metrics=names), state.now
    )
    now, before = await asyncio.gather(now_q, prev_q)
    current = dict(zip(names, map(_clean, now["results"][0]["metrics"]), strict=True))
    previous = dict(zip(names, map(_clean, before["results"][0]["metrics"]), strict=True))
    meta = now.get("meta", {})
    notes = []
    if meta.get("visitors_note"):
        # Said plainly on the page: with daily salts a multi-day total is a sum of days.
        notes.append("Unique " + str(meta["visitors_note"]))
    if meta.get("warning"):
        notes.append(str(meta["warning"]))
    return {
        "notes": notes,
        "stats": [
            {
                "metric": name,
                "label": label,
                "value": current[name],
                "display": fmt(name, current[name]),
                "previous": previous[name],
                "previous_display": fmt(name, previous[name]),
                # Rates and averages over no earlier visits compare with nothing.
                "change": change(name, current[name], previous[name])
                if name in CHART_METRICS or previous.get("visits")
                else None,
                "chartable": name in CHART_METRICS,
            }
            for name, label in TOP_STATS
        ],
    }


def _series(response: dict[str, Any], points: list[dt.datetime], n: int) -> list[list[float]]:
    by_time: dict[str, list[Any]] = {}
    for row in response["results"]:
        key = str(row["dimensions"][0])[:19].replace("T", " ")
        if len(key) == 10:  # days, weeks and months are labelled by their first day
            key += " 00:00:00"
        by_time[key] = row["metrics"]
    out: list[list[float]] = [[] for _ in range(n)]
    for point in points:
        values = by_time.get(point.strftime("%Y-%m-%d %H:%M:%S"), [0] * n)
        for i in range(n):
            out[i].append(float(values[i] or 0))
    return out


async def _chart(store: AsyncStore, config: Config, site: str, state: State) -> dict[str, Any]:
    dim = f"time:{state.period.interval}"
    metrics = list(CHART_METRICS)
    # The future has no visitors yet: the chart stops at the current bucket.
    points = [p for p in buckets(state.period) if p <= state.now] or buckets(state.period)[:1]
    current = stats.run(
        store,
        config,
        _query(site, state.period, state, metrics=metrics, dimensions=[dim]),
        state.now,
    )
    if state.compare:
        prev_period = state.period.previous()
        prev_points = buckets(prev_period)
        prev = await stats.run(
            store,
            config,
            _query(site, prev_period, state, metrics=metrics, dimensions=[dim]),
            state.now,
        )
        prev_series = _series(prev, prev_points, len(metrics))
    series = _series(await current, points, len(metrics))
    chart: dict[str, Any] = {
        "interval": state.period.interval,
        "metric": state.metric,
        "labels": [int(p.timestamp()) for p in points],
        "series": dict(zip(metrics, series, strict=True)),
        "previous": None,
    }
    if state.compare:
        # Aligned by position: the previous period's first bucket under this period's first.
        chart["previous"] = {
            name: (values + [0.0] * len(points))[: len(points)]
            for name, values in zip(metrics, prev_series, strict=True)
        }
    return chart


async def _breakdown(
    store: AsyncStore,
    config: Config,
    site: str,
    state: State,
    tab: Tab,
    metrics: list[str],
    limit: int = ROWS,
    batch: Batch[Any] | None = None,
) -> dict[str, Any]:
    query = _query(
        site,
        state.period,
        state,
        metrics=metrics,
        dimensions=[tab.dimension],
        pagination={"limit": limit, "offset": 0},
    )
    response = await stats.run(store, config, query, state.now, batch)
    rows = []
    top = max((float(r["metrics"][0] or 0) for r in response["results"]), default=0.0)
    name = tab.dimension.split(":", 1)[1]
    active = dict(state.filters)
    for row in response["results"]:
        value = str(row["dimensions"][0])
        first = float(row["metrics"][0] or 0)
        rows.append(
            {
                "value": value,
                "label": value or "(none)",
                "metrics": dict(zip(metrics, map(_clean, row["metrics"]), strict=True)),
                "display": {m: fmt(m, v) for m, v in zip(metrics, row["metrics"], strict=True)},
                "bar": round(100 * first / top) if top else 0,
                # "(other)" folds small groups together (k-anonymity): not a filterable value.
                "filter": None
                if value in ("(other)", "") or active.get(name) == value
                else state.query(**{name: value}),
            }
        )
    return {
        "suppression": response.get("meta", {}).get("suppression", ""),
        "dimension": tab.dimension,
        "column": tab.column,
        "metrics": metrics,
        "metric_labels": [_METRIC_LABELS.get(m, m) for m in metrics],
        "rows": rows,
    }


_METRIC_LABELS = {
    "visitors": "Visitors",
    "events": "Events",
    "conversion_rate": "CR",
    "pageviews": "Pageviews",
}


async def site_view(store: AsyncStore, config: Config, site: str, state: State) -> dict[str, Any]:
    """Everything a site's page shows; the HTML page and its JSON twin both render this."""
    panels = [
        (panel, next(t for t in panel.tabs if t.key == state.tabs[panel.key])) for panel in PANELS
    ]
    # The panels' visit breakdowns share one read of the period's visits; with a filter, the
    # top stats take today's visits from it too (dashboards/batch.py).
    batch: Batch[Any] = Batch([tab.dimension for _, tab in panels], totals=True)
    jobs: list[Any] = [
        _top_stats(store, config, site, state, batch),
        _chart(store, config, site, state),
        stats.current_visitors(store, site, state.now),
        *[
            _breakdown(store, config, site, state, tab, ["visitors"], batch=batch)
            for _, tab in panels
        ],
    ]
    if config.goals:
        jobs.append(
            _breakdown(store, config, site, state, GOALS, ["visitors", "events", "conversion_rate"])
        )
    results = await asyncio.gather(*jobs)
    top_stats, chart, current, *breakdowns = results
    panel_views = []
    for (panel, tab), data in zip(panels, breakdowns, strict=False):
        panel_views.append(
            {
                "key": panel.key,
                "title": panel.title,
                "tab": tab.key,
                "tabs": [
                    {
                        "key": t.key,
                        "label": t.label,
                        "href": state.query(**{f"tab_{panel.key}": t.key}),
                        "current": t.key == tab.key,
                    }
                    for t in panel.tabs
                ],
                "export": urlencode({**state.params(), "dimension": tab.dimension}),
                **data,
            }
        )
    goals = None
    if config.goals:
        goals = {
            "key": "goals",
            "title": "Goals",
            "tabs": [],
            "export": urlencode({**state.params(), "dimension": GOALS.dimension}),
            **breakdowns[-1],
        }
    return {
        "site": site,
        "period": {
            "key": state.period.key,
            "label": state.period.label,
            "from": state.period.start.isoformat(),
            "to": state.period.end.isoformat(),
            "interval": state.period.interval,
            "intervals": [
                {"key": i, "label": INTERVALS[i], "href": state.query(interval=i)}
                for i in state.period.allowed_intervals()
            ],
            "previous": {
                "from": state.period.previous().start.isoformat(),
                "to": state.period.previous().end.isoformat(),
            },
        },
        "presets": [{"key": k, "label": v} for k, v in PRESETS.items()],
        "compare": state.compare,
        "filters": [
            {
                "name": name,
                "dimension": FILTERS[name][0],
                "label": FILTERS[name][1],
                "value": value,
                "remove": state.query(**{name: None}),
            }
            for name, value in state.filters
        ],
        "clear_filters": urlencode({k: v for k, v in state.params().items() if k not in FILTERS}),
        "top_stats": top_stats["stats"],
        "notes": top_stats["notes"],
        "chart": chart,
        "realtime": current,
        "panels": panel_views,
        "goals": goals,
        "query": state.params(),
    }


async def sparkline(
    store: AsyncStore, config: Config, site: str, now: dt.datetime
) -> dict[str, Any]:
    """A site's last 30 days: visitors per day and the total, for the site list."""
    period = resolve("30d", now.date(), interval="day")
    state = State(period, False, (), {}, "visitors", now)
    response = await stats.run(
        store,
        config,
        _query(site, period, state, metrics=["visitors"], dimensions=["time:day"]),
        now,
    )
    total = await stats.run(store, config, _query(site, period, state, metrics=["visitors"]), now)
    (series,) = _series(response, buckets(period), 1)
    return {"site": site, "visitors": total["results"][0]["metrics"][0], "series": series}
