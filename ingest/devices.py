"""Device IDs (sent by apps or server-side callers): keyed hashes with a rotating key.

`privacy.visitor_id_rotation` sets the key's period: daily (default), weekly (ISO weeks),
monthly, or 13months (13-month blocks counted from January 2000, the CNIL maximum). Keys are
random, kept in the `device_keys` table, and destroyed once their period has ended and the
sessions spanning its end have closed (see `ingest.salts.KeyRing`). The raw device ID is never
stored: only `device_hash(key, site, device_id)` reaches the `events` table, as `visitor_id`
with `visitor_kind = 'device'`.

`device_hashes` serves data-subject requests: given a device ID, it computes its hash under
every key still in existence, which is exactly the set of `visitor_id` values that can still be
linked to that device (rows hashed with a destroyed key cannot be linked by anyone).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from ingest.salts import DEVICE_KEYS, KeyRing, visitor_hash
from store.base import Store

ROTATIONS = ("daily", "weekly", "monthly", "13months")
_EPOCH_YEAR = 2000


def _month_index(day: dt.date) -> int:
    return (day.year - _EPOCH_YEAR) * 12 + day.month - 1


def _from_month_index(index: int) -> dt.date:
    return dt.date(_EPOCH_YEAR + index // 12, index % 12 + 1, 1)


def period_start(rotation: str, day: dt.date) -> dt.date:
    """The first day of the rotation period that contains `day`."""
    if rotation == "daily":
        return day
    if rotation == "weekly":
        return day - dt.timedelta(days=day.weekday())
    if rotation == "monthly":
        return day.replace(day=1)
    if rotation == "13months":
        return _from_month_index(_month_index(day) // 13 * 13)
    raise ValueError(f"unknown visitor_id_rotation {rotation!r}; allowed: {', '.join(ROTATIONS)}")


def next_period(rotation: str, start: dt.date) -> dt.date:
    """The first day of the period after the one starting on `start`."""
    if rotation == "daily":
        return start + dt.timedelta(days=1)
    if rotation == "weekly":
        return start + dt.timedelta(days=7)
    if rotation == "monthly":
        return _from_month_index(_month_index(start) + 1)
    if rotation == "13months":
        return _from_month_index(_month_index(start) + 13)
    raise ValueError(f"unknown visitor_id_rotation {rotation!r}; allowed: {', '.join(ROTATIONS)}")


class DeviceKeys(KeyRing):
    def __init__(
        self,
        store: Store,
        rotation: str = "daily",
        grace: dt.timedelta = dt.timedelta(minutes=30),
    ) -> None:
        period_start(rotation, dt.date(2000, 1, 1))  # validates the name early
        super().__init__(
            store,
            replace(DEVICE_KEYS, rotation=rotation),
            period_of=lambda day: period_start(rotation, day),
            next_period=lambda start: next_period(rotation, start),
            grace=grace,
        )
        self.rotation = rotation


def device_hash(key: bytes, site: str, device_id: str) -> int:
    # The "device" tag keeps these hashes apart from cookieless ones even under equal inputs.
    return visitor_hash(key, "device", site, device_id)


def device_hashes(store: Store, site: str, device_id: str) -> list[int]:
    """The hashes of `device_id` on `site` under every device key still in the store, whatever
    rotation it was made for (the config may have changed since)."""
    rows = store.query(
        "SELECT rotation, period, min(key) AS key FROM device_keys "
        "GROUP BY rotation, period ORDER BY period, rotation"
    ).dicts()
    return [device_hash(bytes.fromhex(row["key"]), site, device_id) for row in rows]
