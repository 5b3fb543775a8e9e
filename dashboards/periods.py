"""Date ranges and time buckets, in UTC (Plausible's `date_range` presets and `time:*`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

PRESETS = ("day", "7d", "28d", "30d", "91d", "month", "6mo", "12mo", "year", "all")

# Time dimension -> its bucket over a UTC DateTime expression, as the label text we show.
BUCKETS: dict[str, str] = {
    "time:hour": "toString(toStartOfHour({}))",
    "time:day": "toString(toDate({}))",
    "time:week": "toString(toMonday({}))",
    "time:month": "toString(toStartOfMonth({}))",
}


class RangeError(ValueError):
    pass


@dataclass(frozen=True)
class Period:
    """A half-open UTC interval [start, end) with the label the caller used."""

    start: dt.datetime
    end: dt.datetime
    label: str

    @property
    def days(self) -> float:
        return (self.end - self.start).total_seconds() / 86400

    def previous(self) -> Period:
        """The period of the same length just before this one (Plausible's previous_period)."""
        length = self.end - self.start
        return Period(self.start - length, self.start, "previous_period")

    def iso(self) -> list[str]:
        last = self.end - dt.timedelta(seconds=1)
        return [_iso(self.start), _iso(last)]

    def day_aligned(self) -> bool:
        return self.hour_aligned() and self.start.hour == 0 and self.end.hour == 0

    def hour_aligned(self) -> bool:
        return all(
            t.minute == 0 and t.second == 0 and t.microsecond == 0 for t in (self.start, self.end)
        )


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def _month_start(day: dt.date, back: int = 0) -> dt.date:
    index = day.year * 12 + day.month - 1 - back
    return dt.date(index // 12, index % 12 + 1, 1)


def _parse_point(text: str, is_end: bool) -> dt.datetime:
    if len(text) == 10:
        day = dt.date.fromisoformat(text)
        return _midnight(day + dt.timedelta(days=1 if is_end else 0))
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def parse_range(value: object, now: dt.datetime, first_day: dt.date | None = None) -> Period:
    """A preset (`day`, `7d`, `30d`, `month`, `6mo`, `12mo`, `year`, `all`) or `[from, to]`."""
    today = now.astimezone(dt.UTC).date()
    tomorrow = _midnight(today + dt.timedelta(days=1))
    if isinstance(value, str):
        if value == "day":
            return Period(_midnight(today), tomorrow, value)
        if value in ("7d", "28d", "30d", "91d"):
            days = int(value[:-1])
            return Period(_midnight(today - dt.timedelta(days=days - 1)), tomorrow, value)
        if value == "month":
            return Period(_midnight(_month_start(today)), _midnight(_month_start(today, -1)), value)
        if value in ("6mo", "12mo"):
            months = int(value[:-2])
            return Period(
                _midnight(_month_start(today, months - 1)),
                _midnight(_month_start(today, -1)),
                value,
            )
        if value == "year":
            return Period(
                _midnight(dt.date(today.year, 1, 1)),
                _midnight(dt.date(today.year + 1, 1, 1)),
                value,
            )
        if value == "all":
            start = first_day or today
            return Period(_midnight(min(start, today)), tomorrow, value)
        raise RangeError(f"unknown preset {value!r}; use one of {', '.join(PRESETS)} or [from, to]")
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value):
        try:
            start = _parse_point(value[0], False)
            end = _parse_point(value[1], True)
        except ValueError:
            raise RangeError("dates must be YYYY-MM-DD or ISO 8601 date-times") from None
        if len(value[1]) > 10:
            end = end + dt.timedelta(seconds=1) if end.microsecond == 0 else end
        if end <= start:
            raise RangeError("the end must be after the start")
        if end - start > dt.timedelta(days=3660):
            raise RangeError("the range may span at most 10 years")
        return Period(start, end, "custom")
    raise RangeError(f"must be one of {', '.join(PRESETS)}, or [from, to] as two ISO dates")


def auto_bucket(period: Period) -> str:
    """The `time` dimension's grain: hours for a day, days up to ~3 months, else months."""
    if period.days <= 2:
        return "time:hour"
    if period.days <= 100:
        return "time:day"
    return "time:month"


def bucket_label(grain: str, value: object) -> str:
    """How a bucket is shown: `2024-01-31` for days, weeks and months, `2024-01-31 10:00:00`."""
    if isinstance(value, dt.datetime):
        if grain == "time:hour":
            return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:00:00")
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def time_labels(grain: str, period: Period) -> list[str]:
    """Every bucket in the period, so charts can show empty buckets as zeros."""
    labels: list[str] = []
    if grain == "time:hour":
        t = period.start.replace(minute=0, second=0, microsecond=0)
        while t < period.end and len(labels) < 24 * 400:
            labels.append(t.strftime("%Y-%m-%d %H:00:00"))
            t += dt.timedelta(hours=1)
        return labels
    day = period.start.date()
    last = (period.end - dt.timedelta(microseconds=1)).date()
    if grain == "time:week":
        day -= dt.timedelta(days=day.weekday())
        step = dt.timedelta(days=7)
    elif grain == "time:month":
        day = day.replace(day=1)
    else:
        step = dt.timedelta(days=1)
    while day <= last and len(labels) < 5000:
        labels.append(day.isoformat())
        day = _month_start(day, -1) if grain == "time:month" else day + step
    return labels
