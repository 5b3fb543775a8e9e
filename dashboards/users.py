"""Dashboard users: an email, a role, and an argon2id password hash (never the password).

Roles, from least to most: `viewer` reads the dashboards; `privacy` also reads the privacy
team's pages; `admin` also manages users and share links.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from store.base import Store

ROLES = ("viewer", "privacy", "admin")
MIN_PASSWORD_LENGTH = 10
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")

# argon2id with the library's RFC 9106 "low memory" defaults (64 MiB, 3 passes): memory-hard,
# and a login costs ~50 ms, which also slows guessing.
_HASHER = PasswordHasher()
# Verified against when the email is unknown, so a login takes as long either way.
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


class UserError(ValueError):
    """A user operation was refused; the message says why."""


@dataclass(frozen=True)
class User:
    email: str
    role: str
    sites: tuple[str, ...] = ()  # empty: every configured site

    def can(self, role: str) -> bool:
        """True when this user's role is `role` or above it."""
        return ROLES.index(self.role) >= ROLES.index(role)


def normalise_email(email: str) -> str:
    email = email.strip().lower()
    if not _EMAIL.match(email) or len(email) > 254:
        raise UserError(f"{email!r} is not an email address")
    return email


def generate_password() -> str:
    """A random password (128+ bits), easy to copy: URL-safe letters and digits."""
    return secrets.token_urlsafe(18)


def _version() -> int:
    return time.time_ns()


def add_user(store: Store, email: str, role: str, password: str, sites: Sequence[str] = ()) -> User:
    """Create a user, or replace the role and password of an existing one."""
    email = normalise_email(email)
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    store.command(
        "INSERT INTO users (email, role, password_hash, sites, version) VALUES "
        "({e:String}, {r:String}, {h:String}, {s:Array(String)}, {v:UInt64})",
        {"e": email, "r": role, "h": _HASHER.hash(password), "s": list(sites), "v": _version()},
    )
    return User(email, role, tuple(sites))


def _row(store: Store, email: str) -> dict[str, Any] | None:
    rows = store.query(
        "SELECT email, role, password_hash, sites FROM users FINAL "
        "WHERE email = {e:String} AND deleted = 0",
        {"e": email},
    ).dicts()
    return rows[0] if rows else None


def get_user(store: Store, email: str) -> User | None:
    try:
        email = normalise_email(email)
    except UserError:
        return None
    row = _row(store, email)
    if row is None:
        return None
    return User(str(row["email"]), str(row["role"]), tuple(row["sites"]))


def list_users(store: Store) -> list[User]:
    rows = store.query(
        "SELECT email, role, sites FROM users FINAL WHERE deleted = 0 ORDER BY email"
    ).dicts()
    return [User(str(r["email"]), str(r["role"]), tuple(r["sites"])) for r in rows]


def remove_user(store: Store, email: str) -> bool:
    """Remove a user (their sessions stop working at once); False when there was none."""
    email = normalise_email(email)
    if _row(store, email) is None:
        return False
    store.command(
        "INSERT INTO users (email, role, password_hash, deleted, version) VALUES "
        "({e:String}, 'viewer', '', 1, {v:UInt64})",
        {"e": email, "v": _version()},
    )
    return True


def check_password(store: Store, email: str, password: str) -> User | None:
    """The user when the password matches; None otherwise (same cost whether or not they exist)."""
    try:
        email = normalise_email(email)
    except UserError:
        email = ""
    row = _row(store, email) if email else None
    stored = str(row["password_hash"]) if row else _DUMMY_HASH
    try:
        _HASHER.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if row is None:
        return None
    return User(str(row["email"]), str(row["role"]), tuple(row["sites"]))


def count_admins(store: Store) -> int:
    return int(
        store.query("SELECT count() FROM users FINAL WHERE deleted = 0 AND role = 'admin'").scalar()
    )
