"""Daily random salts, shared through the store so every collector and restart agrees.

Salts come from the CSPRNG (never from a date or a long-lived secret). At most the current and
the previous day's salt exist; the previous one is destroyed once sessions that spanned midnight
have closed. Salt values never appear in logs, errors or metrics.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import threading

from store.base import Store

SALT_BYTES = 16  # 128 bits


class SaltKeeper:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._cache: dict[dt.date, bytes] = {}

    def salt(self, day: dt.date) -> bytes:
        cached = self._cache.get(day)
        if cached is not None:
            return cached
        with self._lock:
            if day not in self._cache:
                self._cache = {d: s for d, s in self._cache.items() if d >= day - dt.timedelta(1)}
                self._cache[day] = self._load_or_create(day)
            return self._cache[day]

    def _load_or_create(self, day: dt.date) -> bytes:
        existing = self._chosen(day)
        if existing is not None:
            return existing
        candidate = secrets.token_bytes(SALT_BYTES).hex()
        self._store.command(
            "INSERT INTO salts (day, salt) VALUES ({day:Date}, {salt:String})",
            {"day": day, "salt": candidate},
        )
        chosen = self._chosen(day)
        assert chosen is not None
        return chosen

    def _chosen(self, day: dt.date) -> bytes | None:
        # Several collectors may race to create a day's salt: all of them pick the smallest.
        value = self._store.query(
            "SELECT min(salt) FROM salts WHERE day = {day:Date} HAVING count() > 0", {"day": day}
        ).scalar()
        return bytes.fromhex(value) if value else None


def visitor_hash(salt: bytes, *parts: str) -> int:
    """A keyed 64-bit hash; the parts are joined unambiguously."""
    digest = hashlib.blake2b(key=salt, digest_size=8)
    for part in parts:
        encoded = part.encode("utf-8", "surrogatepass")
        digest.update(len(encoded).to_bytes(4, "big"))
        digest.update(encoded)
    return int.from_bytes(digest.digest(), "big")
