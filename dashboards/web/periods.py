"""The dashboard's date range: presets and custom ranges, the previous period, the chart interval.

Dates are UTC days. A range is resolved to explicit `[from, to]` dates here, so the page, its
JSON twin, its CSV export and a Stats API call with the same dates give the same numbers.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

PRESETS: dict[str, str] = {
    "day": "Today",
    "7d": "Last 7 days",
    "30d": "Last 30 days",
    "month": "This month",
    "6mo": "Last 6 months",
    "12mo": "Last 12 months",
    "all": "All time",
    "custom": "Custom range",
}
INTERVALS: dict[str, str] = {"hour": "Hourly", "day": "Daily", "week": "Weekly", "month": "Monthly"}
DEFAULT_PERIOD = "30d"
EARLIEST = dt.date(2000, 1, 1)
MAX_DAYS = 3 * 366


@dataclass(frozen=True)
class Period:
    key: str  # a PRESETS key
    start: dt.date
    end: dt.date
    interval: str

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def label(self) -> str:
        if self.key != "custom":
            return PRESETS[self.key]
        return f"{self.start:%d %b %Y} to {self.end:%d %b %Y}"

    def previous(self) -> Period:
        """The period of the same length that ends the day before this one starts."""
        if self.key == "month":
            last = self.start - dt.timedelta(days=1)
            return Period("custom", last.replace(day=1), last, self.interval)
        end = self.start - dt.timedelta(days=1)
        return Period("custom", end - dt.timedelta(days=self.days - 1), end, self.interval)

    def date_range(self) -> list[str]:
        return [self.start.isoformat(), self.end.isoformat()]

    def allowed_intervals(self) -> list[str]:
        if self.days <= 2:
            return ["hour", "day"]
        if self.days <= 31:
            return ["hour", "day", "week"]
        return ["day", "week", "month"]


def _date(value: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value[:10]) if value else None
    except ValueError:
        return None


def resolve(
    key: str | None,
    today: dt.date,
    start: str | None = None,
    end: str | None = None,
    interval: str | None = None,
    earliest: dt.date | None = None,
) -> Period:
    """A period from the page's query string; anything invalid falls back to a sensible default."""
    key = key if key in PRESETS else DEFAULT_PERIOD
    first = earliest or EARLIEST
    if key == "day":
        s, e = today, today
    elif key == "7d":
        s, e = today - dt.timedelta(days=6), today
    elif key == "30d":
        s, e = today - dt.timedelta(days=29), today
    elif key == "month":
        s, e = today.replace(day=1), today
    elif key == "6mo":
        s, e = (today.replace(day=1) - dt.timedelta(days=155)).replace(day=1), today
    elif key == "12mo":
        s, e = (today.replace(day=1) - dt.timedelta(days=340)).replace(day=1), today
    elif key == "all":
        s, e = min(first, today), today
    else:
        parsed_start, parsed_end = _date(start), _date(end)
        if parsed_start is None or parsed_end is None:
            return resolve(DEFAULT_PERIOD, today, interval=interval)
        s, e = sorted((parsed_start, parsed_end))
    if (e - s).days + 1 > MAX_DAYS:
        s = e - dt.timedelta(days=MAX_DAYS - 1)
    period = Period(key, s, e, "day")
    allowed = period.allowed_intervals()
    chosen = interval if interval in allowed else ("hour" if period.days <= 2 else "day")
    if period.days > 366 and interval not in allowed:
        chosen = "month"
    return Period(key, s, e, chosen)


def buckets(period: Period) -> list[dt.datetime]:
    """Every bucket start of the chart, so days without traffic show as zero."""
    start = dt.datetime.combine(period.start, dt.time(), dt.UTC)
    stop = dt.datetime.combine(period.end + dt.timedelta(days=1), dt.time(), dt.UTC)
    out: list[dt.datetime] = []
    if period.interval == "hour":
        moment = start
        while moment < stop:
            out.append(moment)
            moment += dt.timedelta(hours=1)
    elif period.interval == "day":
        moment = start
        while moment < stop:
            out.append(moment)
            moment += dt.timedelta(days=1)
    elif period.interval == "week":
        moment = start - dt.timedelta(days=start.weekday())
        while moment < stop:
            out.append(moment)
            moment += dt.timedelta(weeks=1)
    else:
        moment = start.replace(day=1)
        while moment < stop:
            out.append(moment)
            moment = (moment + dt.timedelta(days=32)).replace(day=1)
    return out
