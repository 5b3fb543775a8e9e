"""Stats API keys: random, shown once, stored as a SHA-256 hash, scoped to sites."""

from __future__ import annotations

import hashlib
import secrets

from store.base import Store

PREFIX = "fp_"


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(store: Store, sites: list[str]) -> str:
    key = PREFIX + secrets.token_urlsafe(32)
    store.command(
        "INSERT INTO api_keys (key_hash, prefix, sites) VALUES "
        "({h:String}, {p:String}, {s:Array(String)})",
        {"h": _hash(key), "p": key[:10], "s": sites},
    )
    return key


def sites_for_key(store: Store, key: str) -> list[str] | None:
    """The sites a key may read, or None when the key is unknown or revoked."""
    rows = store.query(
        "SELECT sites FROM api_keys FINAL WHERE key_hash = {h:String} AND revoked = 0",
        {"h": _hash(key)},
    )
    if not len(rows):
        return None
    return [str(s) for s in rows.scalar()]
