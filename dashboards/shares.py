"""Read-only share links for one site: a random token in the URL, only its hash stored.

A link is revocable and may expire; whoever holds it sees that one site's dashboard and nothing
else (no other sites, no settings, no state changes).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import time
from dataclasses import dataclass

from store.base import Store

TOKEN_BYTES = 24


@dataclass(frozen=True)
class ShareLink:
    link_id: str
    site_id: str
    label: str
    created_by: str
    created_at: dt.datetime
    expires_at: dt.datetime | None

    def expired(self, now: dt.datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _link(row: dict[str, object]) -> ShareLink:
    created = _utc(row["created_at"])  # type: ignore[arg-type]
    assert created is not None
    return ShareLink(
        link_id=str(row["link_id"]),
        site_id=str(row["site_id"]),
        label=str(row["label"]),
        created_by=str(row["created_by"]),
        created_at=created,
        expires_at=_utc(row["expires_at"]),  # type: ignore[arg-type]
    )


def create_share(
    store: Store,
    site: str,
    created_by: str,
    label: str = "",
    expires_at: dt.datetime | None = None,
) -> tuple[str, ShareLink]:
    """A new link's token (shown once: only its hash is kept) and the link."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    digest = _hash(token)
    expires_at = _utc(expires_at)
    store.command(
        "INSERT INTO share_links (token_hash, link_id, site_id, label, created_by, expires_at, "
        "version) VALUES ({h:String}, {i:String}, {s:String}, {l:String}, {c:String}, "
        "{x:Nullable(DateTime64(3, 'UTC'))}, {v:UInt64})",
        {
            "h": digest,
            "i": digest[:12],
            "s": site,
            "l": label[:200],
            "c": created_by,
            "x": expires_at,
            "v": time.time_ns(),
        },
    )
    now = dt.datetime.now(dt.UTC)
    return token, ShareLink(digest[:12], site, label[:200], created_by, now, expires_at)


_COLUMNS = "link_id, site_id, label, created_by, created_at, expires_at"


def share_for_token(store: Store, token: str, now: dt.datetime) -> ShareLink | None:
    """The live link for a token; None when unknown, revoked or expired."""
    if not token or len(token) > 100:
        return None
    rows = store.query(
        f"SELECT {_COLUMNS} FROM share_links FINAL WHERE token_hash = {{h:String}} AND revoked = 0",
        {"h": _hash(token)},
    ).dicts()
    if not rows:
        return None
    link = _link(rows[0])
    return None if link.expired(now) else link


def list_shares(store: Store, site: str | None = None) -> list[ShareLink]:
    """Links not revoked (expired ones included, so an admin sees and can clean them up)."""
    rows = store.query(
        f"SELECT {_COLUMNS} FROM share_links FINAL WHERE revoked = 0 "
        "AND ({s:String} = '' OR site_id = {s:String}) ORDER BY created_at DESC",
        {"s": site or ""},
    ).dicts()
    return [_link(r) for r in rows]


def revoke_share(store: Store, link_id: str, site: str | None = None) -> bool:
    """Revoke a link by its ID (optionally only within `site`); False when none matched."""
    rows = store.query(
        "SELECT token_hash, link_id, site_id, label, created_by, created_at, expires_at "
        "FROM share_links FINAL WHERE link_id = {i:String} AND revoked = 0 "
        "AND ({s:String} = '' OR site_id = {s:String})",
        {"i": link_id, "s": site or ""},
    ).dicts()
    if not rows:
        return False
    for row in rows:
        store.command(
            "INSERT INTO share_links (token_hash, link_id, site_id, label, created_by, "
            "created_at, expires_at, revoked, version) VALUES ({h:String}, {i:String}, "
            "{s:String}, {l:String}, {c:String}, {t:DateTime64(3, 'UTC')}, "
            "{x:Nullable(DateTime64(3, 'UTC'))}, 1, {v:UInt64})",
            {
                "h": row["token_hash"],
                "i": row["link_id"],
                "s": row["site_id"],
                "l": row["label"],
                "c": row["created_by"],
                "t": row["created_at"],
                "x": row["expires_at"],
                "v": time.time_ns(),
            },
        )
    return True
