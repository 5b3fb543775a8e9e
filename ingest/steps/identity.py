"""Visitor identity without cookies: keyed 64-bit hashes under rotating random keys.

Cookieless: `visitor_hash(daily salt, site, normalised IP, UA)`. The salt changes every UTC day,
so the same person on two days, or on two sites, cannot be linked. Apps that send a device ID:
`device_hash(device key, site, device ID)` under a key that rotates per
`privacy.visitor_id_rotation`, stored with `visitor_kind = 'device'`. Neither input is stored.

Just after a boundary (within the session timeout) the hash under the previous key is also
computed, so the writer can continue a session that spans midnight (`Accepted.prev_visitor_id`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from ingest.devices import DeviceKeys, device_hash
from ingest.event import Event
from ingest.hit import Hit
from ingest.salts import SaltKeeper, visitor_hash
from ingest.steps.ip import normalise_text

MAX_DEVICE_ID = 256


def _ip_text(ip: str) -> str:
    try:
        return normalise_text(ip)  # one visitor whether it arrives mapped or not
    except ValueError:
        return ip


class Identity:
    def __init__(self, salts: SaltKeeper, devices: DeviceKeys | None = None) -> None:
        self.salts = salts
        self.devices = devices

    def _device_id(self, hit: Hit) -> str:
        if self.devices is None or not hit.device_id:
            return ""
        return hit.device_id.strip()[:MAX_DEVICE_ID]

    def step(self, hit: Hit, event: Event) -> str | None:
        at = hit.received_at
        # Destroy expired keys on the first hit after each boundary (a time comparison else).
        self.salts.maintain(at)
        if self.devices is not None:
            self.devices.maintain(at)
        device_id = self._device_id(hit)
        if device_id and self.devices is not None:
            event.visitor_id = device_hash(self.devices.key(at), hit.domain, device_id)
            event.visitor_kind = "device"
        else:
            salt = self.salts.key(at)
            event.visitor_id = visitor_hash(salt, hit.domain, _ip_text(hit.ip), hit.user_agent)
            event.visitor_kind = "cookieless"
        return None

    def in_memory(self, hits: Iterable[Hit]) -> bool:
        """Whether `step` and `previous` need no store call for any of `hits`."""
        start = end = None
        devices = False
        for hit in hits:
            at = hit.received_at
            if start is None or at < start:
                start = at
            if end is None or at > end:
                end = at
            devices = devices or bool(hit.device_id)
        if start is None or end is None:
            return True
        if not self.salts.in_memory(start, end):
            return False
        return self.devices is None or self.devices.in_memory(start, end, key=devices)

    def previous(self, hit: Hit, event: Event) -> int:
        """The hash under the previous period's key while a spanning session may be open."""
        at = hit.received_at
        device_id = self._device_id(hit)
        if event.visitor_kind == "device" and self.devices is not None and device_id:
            key = self.devices.previous(at)
            return device_hash(key, hit.domain, device_id) if key else 0
        salt = self.salts.previous(at)
        if salt is None:
            return 0
        return visitor_hash(salt, hit.domain, _ip_text(hit.ip), hit.user_agent)

    def maintain(self, now: dt.datetime) -> None:
        """Destroy expired salts and device keys (the server runs this on a timer; the
        pipeline also does on the first hit after a boundary), and make the day's salt, so
        that the HTTP workers usually find it rather than create it. A store error is logged
        and retried later, never raised."""
        self.salts.maintain(now)
        self.salts.key(now)
        if self.devices is not None:
            self.devices.maintain(now)
