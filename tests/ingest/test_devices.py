"""Device IDs: keyed hashes under a rotating random key; never stored raw; DSR hashes."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firstparty.config import parse
from ingest.devices import (
    ROTATIONS,
    DeviceKeys,
    device_hash,
    device_hashes,
    next_period,
    period_start,
)
from ingest.hit import Hit
from ingest.pipeline import Accepted
from ingest.salts import SaltKeeper
from ingest.steps import build_pipeline
from store.base import Store

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
CONFIG = '[[site]]\ndomain = "example.com"\n[privacy]\nvisitor_id_rotation = "{rotation}"\n'


def at(day: dt.date, hour: int = 12, minute: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=dt.UTC)


@given(st.sampled_from(ROTATIONS), st.dates(dt.date(2000, 1, 1), dt.date(2100, 1, 1)))
def test_periods_tile_the_calendar(rotation: str, day: dt.date) -> None:
    start = period_start(rotation, day)
    end = next_period(rotation, start)
    assert start <= day < end
    assert period_start(rotation, start) == start  # idempotent
    assert period_start(rotation, end) == end  # the next period starts where this one ends
    if rotation == "13months":
        months = (end.year - start.year) * 12 + end.month - start.month
        assert months == 13  # the CNIL maximum, never more


def hit(
    when: dt.datetime, device_id: str | None = "device-abc-123", ip: str = "198.51.100.7"
) -> Hit:
    return Hit(
        domain="example.com",
        name="pageview",
        url="https://example.com/",
        referrer="",
        received_at=when,
        ip=ip,
        user_agent=CHROME,
        device_id=device_id,
    )


@pytest.mark.parametrize(
    ("rotation", "same_after"), [("daily", None), ("weekly", 3), ("monthly", 10)]
)
def test_device_visitor_is_stable_within_the_rotation_period(
    store: Store, rotation: str, same_after: int | None
) -> None:
    pipeline = build_pipeline(parse(CONFIG.format(rotation=rotation), env={}), SaltKeeper(store))
    monday = dt.date(2026, 3, 2)
    first = pipeline.process(hit(at(monday)))
    assert isinstance(first, Accepted)
    assert first.event.visitor_kind == "device"
    # A different IP does not matter for a device visitor.
    again = pipeline.process(hit(at(monday, 18), ip="203.0.113.9"))
    assert isinstance(again, Accepted) and again.event.visitor_id == first.event.visitor_id
    if same_after is not None:
        later = pipeline.process(hit(at(monday + dt.timedelta(days=same_after))))
        assert isinstance(later, Accepted) and later.event.visitor_id == first.event.visitor_id
    next_day = pipeline.process(hit(at(monday + dt.timedelta(days=40))))
    assert isinstance(next_day, Accepted) and next_day.event.visitor_id != first.event.visitor_id


def test_device_hashes_cover_every_key_in_existence_and_expired_keys_are_destroyed(
    store: Store,
) -> None:
    keys = DeviceKeys(store, "daily", grace=dt.timedelta(minutes=30))
    day = dt.date(2026, 5, 1)
    k1 = keys.key(at(day))
    k2 = keys.key(at(day + dt.timedelta(days=1)))
    expected = [device_hash(k, "example.com", "dev-1") for k in (k1, k2)]
    assert device_hashes(store, "example.com", "dev-1") == expected
    keys.destroy_expired(at(day + dt.timedelta(days=2), 0, 31))
    assert device_hashes(store, "example.com", "dev-1") == []
    rows = store.query("SELECT kind, action FROM salt_log ORDER BY at, action").tuples()
    assert ("device_key", "destroyed") in rows


def test_device_key_spanning_midnight_gives_previous_hash(store: Store) -> None:
    pipeline = build_pipeline(parse(CONFIG.format(rotation="daily"), env={}), SaltKeeper(store))
    day = dt.date(2026, 5, 1)
    before = pipeline.process(hit(at(day, 23, 50)))
    after = pipeline.process(hit(at(day + dt.timedelta(days=1), 0, 5)))
    assert isinstance(before, Accepted) and isinstance(after, Accepted)
    assert after.event.visitor_id != before.event.visitor_id
    assert after.prev_visitor_id == before.event.visitor_id


def test_raw_device_id_is_never_in_the_event(store: Store) -> None:
    pipeline = build_pipeline(parse(CONFIG.format(rotation="daily"), env={}), SaltKeeper(store))
    result = pipeline.process(hit(at(dt.date(2026, 5, 1)), device_id="RAW-DEVICE-7f3a9c"))
    assert isinstance(result, Accepted)
    assert "RAW-DEVICE-7f3a9c" not in repr(result.event.to_dict())
