"""Who is asking: dashboard sessions (signed cookies), API keys, CSRF tokens, login limits.

`authenticate(request, config, store)` is the one entry point every data endpoint uses: it
accepts a dashboard session cookie or an `Authorization: Bearer` API key and returns a
`Principal` with the sites it may read, or None.

The signing secret is random, created once in the data directory with mode 0600, and never
written to the config or a log. The session cookie holds only a random session ID (signed); the
store keeps its SHA-256, so logout, user removal and a password reset end a session at once.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import hmac
import ipaddress
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from collector.clientip import client_ip, is_trusted, joined_lines, parse_networks
from dashboards.keys import sites_for_key
from dashboards.users import User
from firstparty.config import Config
from store.aio import AsyncStore

SESSION_COOKIE = "fp_session"
LOGIN_COOKIE = "fp_login"  # a pre-session nonce, so the login form has a CSRF token too
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SESSION_LIFETIME = dt.timedelta(days=14)
SECRET_FILE = "dashboard.secret"  # noqa: S105 - a file name, not a secret
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Principal:
    """An authenticated caller and the sites it may read."""

    kind: str  # "session" (a dashboard user), "key" (a Stats API key) or "share" (a share link)
    sites: tuple[str, ...]
    email: str = ""
    role: str = ""
    csrf: str = ""  # the token forms and fetches must echo (sessions only)
    share_token: str = ""  # the link's token (share principals only), for building its URLs

    def can_read(self, site: str) -> bool:
        return site in self.sites

    @property
    def is_admin(self) -> bool:
        return self.kind == "session" and self.role == "admin"

    @property
    def is_privacy(self) -> bool:
        return self.kind == "session" and self.role in ("privacy", "admin")


def load_secret(data_dir: Path) -> bytes:
    """The signing secret, created (32 random bytes, mode 0600) the first time it is needed."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / SECRET_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        # Several workers may race here: O_EXCL lets exactly one write it.
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
    for _ in range(50):
        text = path.read_text().strip()
        if len(text) == 64:
            return bytes.fromhex(text)
        time.sleep(0.01)  # the creating worker has not finished writing yet
    raise RuntimeError(f"{path} does not hold a valid secret; delete it to make a new one")


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def hashed_network(secret: bytes, address: str | None) -> str:
    """A keyed hash of the client's /24 (IPv4) or /48 (IPv6): what the login limiter keys on."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return "unknown"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = 24 if ip.version == 4 else 48
    net = ipaddress.ip_network(f"{ip}/{prefix}", strict=False)
    return hmac.new(secret, f"net:{net}".encode(), hashlib.sha256).hexdigest()[:16]


class LoginLimiter:
    """Failed logins per hashed network and per hashed email in a sliding window.

    The state holds keyed hashes only, never an IP address or an email. It lives in each HTTP
    worker's memory, so with N workers an attacker gets at most N times the allowance.
    """

    def __init__(
        self,
        max_failures: int = 10,
        window: float = 15 * 60,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self.clock = clock
        self._failures: dict[str, collections.deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> collections.deque[float]:
        times = self._failures.get(key)
        if times is None:
            return collections.deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def retry_after(self, keys: list[str]) -> int:
        """Seconds until a login may be tried again (0: allowed now)."""
        now = self.clock()
        with self._lock:
            waits = [
                int(times[0] + self.window - now) + 1
                for key in keys
                if len(times := self._recent(key, now)) >= self.max_failures
            ]
        return max(waits, default=0)

    def failed(self, keys: list[str]) -> None:
        now = self.clock()
        with self._lock:
            if len(self._failures) > 100_000:  # bound memory under a distributed attack
                self._failures.clear()
            for key in keys:
                self._failures.setdefault(key, collections.deque()).append(now)

    def keys(self) -> list[str]:
        """What the limiter holds (for the privacy checks: hashes only)."""
        with self._lock:
            return list(self._failures)


@dataclass
class Auth:
    """The dashboard's authentication state for one HTTP worker."""

    config: Config
    store: AsyncStore
    secret: bytes
    limiter: LoginLimiter = field(default_factory=LoginLimiter)
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)

    def __post_init__(self) -> None:
        self._sessions = URLSafeTimedSerializer(self.secret, salt="firstparty-session")
        self._trusted = parse_networks(self.config.server.trusted_proxies)

    # -- tokens ---------------------------------------------------------------------------
    def _mac(self, purpose: str, value: str) -> str:
        return hmac.new(self.secret, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()

    def csrf_for_session(self, sid: str) -> str:
        return self._mac("csrf", sid)[:40]

    def csrf_for_login(self, nonce: str) -> str:
        return self._mac("login-csrf", nonce)[:40]

    def limiter_keys(self, request: HTTPConnection, email: str) -> list[str]:
        peer = request.client.host if request.client else ""
        forwarded = joined_lines(request.headers.getlist("x-forwarded-for"))
        ip = client_ip(peer, forwarded, self._trusted)
        email_key = self._mac("login-email", email.strip().lower())[:16]
        return [hashed_network(self.secret, ip), "email:" + email_key]

    def secure_cookies(self, request: HTTPConnection) -> bool:
        """Secure cookies when served over https: directly, per `public_url`, or per a trusted
        proxy's `X-Forwarded-Proto`."""
        if request.url.scheme == "https" or self.config.server.public_url.startswith("https://"):
            return True
        if request.headers.get("x-forwarded-proto", "").lower() != "https":
            return False
        return is_trusted(request.client.host if request.client else "", self._trusted)

    # -- sessions -------------------------------------------------------------------------
    async def start_session(self, response: Response, request: Request, user: User) -> str:
        """Record a new session for `user` and set its cookie; returns the session ID."""
        sid = secrets.token_urlsafe(32)
        now = self.clock()
        await self.store.command(
            "INSERT INTO dashboard_sessions (sid_hash, email, expires_at, version) VALUES "
            "({h:String}, {e:String}, {x:DateTime64(3, 'UTC')}, {v:UInt64})",
            {"h": _sha256(sid), "e": user.email, "x": now + SESSION_LIFETIME, "v": time.time_ns()},
        )
        response.set_cookie(
            SESSION_COOKIE,
            self._sessions.dumps(sid),
            max_age=int(SESSION_LIFETIME.total_seconds()),
            path="/",
            httponly=True,
            samesite="lax",
            secure=self.secure_cookies(request),
        )
        response.delete_cookie(LOGIN_COOKIE, path="/")
        return sid

    def session_id(self, request: HTTPConnection) -> str | None:
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie or len(cookie) > 512:
            return None
        try:
            sid = self._sessions.loads(cookie, max_age=int(SESSION_LIFETIME.total_seconds()))
        except BadSignature:
            return None
        return sid if isinstance(sid, str) else None

    async def end_session(self, response: Response, request: HTTPConnection) -> None:
        sid = self.session_id(request)
        if sid is not None:
            await self.store.command(
                "INSERT INTO dashboard_sessions (sid_hash, email, expires_at, revoked, version) "
                "VALUES ({h:String}, '', {x:DateTime64(3, 'UTC')}, 1, {v:UInt64})",
                {"h": _sha256(sid), "x": self.clock(), "v": time.time_ns()},
            )
        response.delete_cookie(SESSION_COOKIE, path="/")

    async def session_principal(self, request: HTTPConnection) -> Principal | None:
        sid = self.session_id(request)
        if sid is None:
            return None
        rows = await self.store.query(
            "SELECT u.email AS email, u.role AS role, u.sites AS sites FROM "
            "(SELECT email, version FROM dashboard_sessions FINAL WHERE sid_hash = {h:String} "
            " AND revoked = 0 AND expires_at > {now:DateTime64(3, 'UTC')}) AS s "
            "INNER JOIN (SELECT email, role, sites, version FROM users FINAL WHERE deleted = 0) "
            "AS u ON u.email = s.email "
            # A password or role reset (`users add` again) ends the sessions started before it.
            "WHERE s.version > u.version",
            {"h": _sha256(sid), "now": self.clock()},
        )
        found = rows.dicts()
        if not found:
            return None
        row = found[0]
        return Principal(
            kind="session",
            sites=self.readable_sites(tuple(row["sites"])),
            email=str(row["email"]),
            role=str(row["role"]),
            csrf=self.csrf_for_session(sid),
        )

    def readable_sites(self, scoped: tuple[str, ...]) -> tuple[str, ...]:
        """Every configured site, or those of them a user is scoped to."""
        configured = tuple(site.domain for site in self.config.sites)
        return tuple(s for s in configured if s in scoped) if scoped else configured

    # -- CSRF -----------------------------------------------------------------------------
    def same_origin(self, request: HTTPConnection) -> bool:
        """The request's Origin (or Referer) names this host; absent headers do not pass."""
        origin = request.headers.get("origin") or request.headers.get("referer") or ""
        host = request.headers.get("host", "")
        if not origin or origin == "null" or not host:
            return False
        rest = origin.split("://", 1)[-1]
        return rest.split("/", 1)[0].lower() == host.lower()

    def csrf_ok(self, principal: Principal, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(principal.csrf, token or "")

    # -- the one entry point --------------------------------------------------------------
    async def authenticate(self, request: HTTPConnection) -> Principal | None:
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            key = auth[7:].strip()
            sites = await self.store.sync_call(sites_for_key, key) if key else None
            if sites is None:
                return None
            return Principal(kind="key", sites=tuple(sites))
        principal = await self.session_principal(request)
        if principal is None:
            return None
        method = request.scope.get("method", "GET")
        if method not in SAFE_METHODS:
            # A cookie rides along on cross-site requests; a state-changing or data-reading
            # POST must prove it comes from our own pages: the CSRF header, or our Origin.
            if not (
                self.csrf_ok(principal, request.headers.get(CSRF_HEADER))
                or self.same_origin(request)
            ):
                return None
        return principal


_AUTHS: dict[tuple[str, int], Auth] = {}
_AUTHS_LOCK = threading.Lock()


def get_auth(config: Config, store: AsyncStore) -> Auth:
    """The worker's `Auth` for this config and store (one limiter and secret per worker)."""
    key = (str(config.data_dir.resolve()), id(store))
    with _AUTHS_LOCK:
        auth = _AUTHS.get(key)
        if auth is None or auth.config is not config:
            auth = Auth(config, store, load_secret(config.data_dir))
            _AUTHS[key] = auth
        return auth


async def authenticate(
    request: HTTPConnection, config: Config, store: AsyncStore
) -> Principal | None:
    """A dashboard session (cookie) or a Stats API key (`Authorization: Bearer`), else None.

    Cookie-authenticated requests with an unsafe method must carry the CSRF header or come from
    our own Origin. The principal's `sites` are those it may read.
    """
    return await get_auth(config, store).authenticate(request)
