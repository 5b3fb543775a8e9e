"""Random rotating keys kept in the store: the daily visitor salts and the device-ID keys.

Every key comes from the CSPRNG (`secrets`, 128 bits), never from a date or a long-lived secret.
A key belongs to one period (a day for salts; the `visitor_id_rotation` period for device keys)
and is destroyed once that period has ended and the sessions that spanned its end have closed
(`grace`, the session timeout). So at most the current and the previous key exist, and the
previous one only for `grace` after the boundary.

Shared and restart-safe: the store is the only place a key lives besides process memory. Several
collectors that race to create a period's key all settle on the smallest value (`min`); the
losers' rows are deleted, and a keeper that created a key re-reads the choice once after
`recheck`, so a race costs seconds of split visitors at most.

Never logged: values travel to the store as Arrow insert bodies (not as query text or URL
parameters a server might log), are read back as query results, and appear in no log line,
error message or metric. The `salt_log` table records TIMES ONLY (created, destroyed).

Physically destroyed: each period has its own partition, dropped with DROP PARTITION (the data
part is removed at once); the tables' cleanup settings remove any outdated part within seconds.
`lingering_parts` lets tests and the audit check `system.parts` for leftovers.

Time is always passed in (`at`, `now`), so tests never sleep and the pipeline uses the hit's
receive time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass

from store.base import Store, StoreError

log = logging.getLogger("firstparty.salts")

SALT_BYTES = 16  # 128 bits
RECHECK = dt.timedelta(seconds=10)

PeriodOf = Callable[[dt.date], dt.date]
NextPeriod = Callable[[dt.date], dt.date]


def _day(day: dt.date) -> dt.date:
    return day


def _next_day(start: dt.date) -> dt.date:
    return start + dt.timedelta(days=1)


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


@dataclass(frozen=True)
class KeyTable:
    """Where one kind of key lives; names are ours, never from input."""

    table: str
    kind: str  # in salt_log: visitor_salt or device_key
    period_column: str
    value_column: str
    rotation: str | None  # device_keys holds a rotation column; salts are always daily


SALTS = KeyTable("salts", "visitor_salt", "day", "salt", None)
DEVICE_KEYS = KeyTable("device_keys", "device_key", "period", "key", "daily")


@dataclass
class _Cached:
    value: bytes
    recheck_at: dt.datetime | None  # set when this process created the key, or is provisional
    provisional: bool = False  # made in memory while the store was unreachable

    def current(self, at: dt.datetime) -> bool:
        """Whether the value may be used at `at` without asking the store again."""
        return self.recheck_at is None or at < self.recheck_at


class KeyRing:
    """Get-or-create the key of a period; find the previous one; destroy expired ones."""

    def __init__(
        self,
        store: Store,
        table: KeyTable,
        period_of: PeriodOf = _day,
        next_period: NextPeriod = _next_day,
        grace: dt.timedelta = dt.timedelta(minutes=30),
    ) -> None:
        self._store = store
        self._t = table
        self._period_of = period_of
        self._next_period = next_period
        self.grace = grace
        self._lock = threading.Lock()
        self._cache: dict[dt.date, _Cached] = {}
        self._absent: dict[dt.date, dt.datetime] = {}  # no previous key: ask again after this
        self._next_maintenance: dt.datetime | None = None

    @property
    def store(self) -> Store:
        return self._store

    # -- reading and creating ---------------------------------------------------------------

    def period_of(self, at: dt.datetime) -> dt.date:
        return self._period_of(at.astimezone(dt.UTC).date())

    def period_end(self, period: dt.date) -> dt.datetime:
        return _midnight(self._next_period(period))

    def key(self, at: dt.datetime) -> bytes:
        """The key of the period containing `at`, created if no collector has made it yet.

        If the store cannot be reached, a provisional random key is used from memory (events
        keep flowing; only this collector's visitors may be split from the others' for the
        outage) and offered to the store as this period's candidate once it answers again.
        """
        period = self.period_of(at)
        cached = self._cache.get(period)
        if cached is not None and cached.current(at):
            return cached.value
        with self._lock:
            cached = self._cache.get(period)
            if cached is None:
                self._forget_expired(at)
                cached = self._settle(period, at, None)
            elif not cached.current(at):
                cached = self._settle(period, at, cached)
            self._cache[period] = cached
            return cached.value

    def _settle(self, period: dt.date, at: dt.datetime, cached: _Cached | None) -> _Cached:
        try:
            if cached is None or cached.provisional:
                offer = cached.value if cached is not None else None
                value, created = self._load_or_create(period, at, offer)
                return _Cached(value, at + RECHECK if created else None)
            chosen = self._chosen(period)
            return _Cached(chosen if chosen is not None else cached.value, None)
        except StoreError as exc:
            if cached is None:
                log.warning(
                    "the %s for %s could not be read from the store (%s); using a provisional "
                    "one from memory until the store answers",
                    self._t.kind,
                    period,
                    type(exc).__name__,
                )
                cached = _Cached(secrets.token_bytes(SALT_BYTES), None, provisional=True)
            return _Cached(cached.value, at + RECHECK, cached.provisional)

    def previous(self, at: dt.datetime) -> bytes | None:
        """The previous period's key while sessions spanning the boundary may be open.

        Never creates a key: a previous key nobody made has no sessions to continue.
        """
        prev = self._spanned(at)
        if prev is None:
            return None
        cached = self._cache.get(prev)
        if cached is not None:
            return cached.value
        if self._known_absent(prev, at):
            return None
        with self._lock:
            if prev not in self._cache:
                try:
                    value = self._chosen(prev)
                except StoreError:
                    value = None  # no continuation across midnight during an outage
                if value is None:
                    self._absent = {prev: at + RECHECK}
                    return None
                self._cache[prev] = _Cached(value, None)
            return self._cache[prev].value

    def in_memory(self, start: dt.datetime, end: dt.datetime, key: bool = True) -> bool:
        """Whether `maintain`, and with `key` also `key` and `previous`, answer from memory
        (without a store call) at every time from `start` to `end`.

        The collector runs the pipeline on its event loop only then: a store call there (the
        first beacon of a day, a recheck, a destruction) would stall every request of the
        worker for as long as the store takes to answer.
        """
        if not self._maintained(end):
            return False
        if not key:
            return True
        for at in (start, end):
            cached = self._cache.get(self.period_of(at))
            if cached is None or not cached.current(end):
                return False
            prev = self._spanned(at)
            if prev is not None and prev not in self._cache and not self._known_absent(prev, end):
                return False
        return True

    def _spanned(self, at: dt.datetime) -> dt.date | None:
        """The previous period, while sessions that span its end may still be open at `at`."""
        period = self.period_of(at)
        if at - _midnight(period) >= self.grace:
            return None
        return self._period_of(period - dt.timedelta(days=1))

    def _known_absent(self, period: dt.date, at: dt.datetime) -> bool:
        """Whether the store recently had no key for `period` (asked again after RECHECK)."""
        absent_until = self._absent.get(period)
        return absent_until is not None and at < absent_until

    def existing(self) -> list[tuple[dt.date, bytes]]:
        """Every key of this kind still in the store (for data-subject requests)."""
        rows = self._store.query(
            f"SELECT {self._t.period_column} AS period, min({self._t.value_column}) AS value "
            f"FROM {self._t.table} {self._where()} GROUP BY period ORDER BY period",
            self._params(),
        )
        return [(row["period"], bytes.fromhex(row["value"])) for row in rows.dicts()]

    def _where(self, extra: str = "") -> str:
        clauses = [extra] if extra else []
        if self._t.rotation is not None:
            clauses.append("rotation = {rotation:String}")
        return ("WHERE " + " AND ".join(clauses)) if clauses else ""

    def _params(self, **values: object) -> dict[str, object]:
        if self._t.rotation is not None:
            values["rotation"] = self._t.rotation
        return values

    def _load_or_create(
        self, period: dt.date, now: dt.datetime, offer: bytes | None = None
    ) -> tuple[bytes, bool]:
        existing = self._chosen(period)
        if existing is not None:
            return existing, False
        candidate = (offer or secrets.token_bytes(SALT_BYTES)).hex()
        # An insert body, never a bound parameter: parameters travel in a ClickHouse server's
        # request URL, which proxies and the server's trace log may record.
        import pyarrow as pa  # only here: workers load it just when they create a key

        columns: dict[str, pa.Array] = {
            self._t.period_column: pa.array([period], pa.date32()),
            self._t.value_column: pa.array([candidate], pa.string()),
            "created_at": pa.array([now], pa.timestamp("ms", tz="UTC")),
        }
        if self._t.rotation is not None:
            columns["rotation"] = pa.array([self._t.rotation], pa.string())
        self._store.insert(self._t.table, pa.table(columns))
        chosen = self._chosen(period)
        if chosen is None:  # pragma: no cover - the insert above was acknowledged
            raise RuntimeError(f"the new {self._t.kind} was not found after inserting it")
        if chosen.hex() == candidate:
            self._log(period, "created", now)
        return chosen, True

    def _chosen(self, period: dt.date) -> bytes | None:
        # Several collectors may race to create a period's key: all of them pick the smallest.
        row = self._store.query(
            f"SELECT min({self._t.value_column}) AS value, count() AS n FROM {self._t.table} "
            + self._where(f"{self._t.period_column} = {{period:Date}}"),
            self._params(period=period),
        ).dicts()
        if not row or not row[0]["n"]:
            return None
        if row[0]["n"] > 1:
            self._delete_losers(period)
        return bytes.fromhex(row[0]["value"])

    def _delete_losers(self, period: dt.date) -> None:
        # The comparison runs inside the server, so no key value is sent as a parameter.
        where = self._where(f"{self._t.period_column} = {{period:Date}}")
        self._store.command(
            f"ALTER TABLE {self._t.table} DELETE {where} AND {self._t.value_column} != "
            f"(SELECT min({self._t.value_column}) FROM {self._t.table} {where})",
            self._params(period=period),
            settings={"mutations_sync": 2},
        )

    def _log(self, period: dt.date, action: str, at: dt.datetime) -> None:
        # Bound parameters (names and times, nothing secret) rather than an Arrow batch:
        # workers log the destructions they run and have no pyarrow loaded.
        self._store.command(
            "INSERT INTO salt_log (kind, rotation, period, action, at) VALUES ({kind:String}, "
            "{rotation:String}, {period:Date}, {action:String}, {at:DateTime64(3, 'UTC')})",
            {
                "kind": self._t.kind,
                "rotation": self._t.rotation or "daily",
                "period": period,
                "action": action,
                "at": at,
            },
        )

    # -- destruction ------------------------------------------------------------------------

    def _forget_expired(self, now: dt.datetime) -> None:
        self._cache = {
            p: c for p, c in self._cache.items() if self.period_end(p) + self.grace > now
        }

    def destroy_expired(self, now: dt.datetime) -> list[dt.date]:
        """Destroy every key whose period ended more than `grace` before `now`."""
        with self._lock:
            self._forget_expired(now)
            periods = self._store.query(
                f"SELECT DISTINCT {self._t.period_column} AS period FROM {self._t.table} "
                + self._where(),
                self._params(),
            ).column("period")
            expired = sorted(p for p in periods if self.period_end(p) + self.grace <= now)
            for period in expired:
                partition = (
                    "{period:Date}"
                    if self._t.rotation is None
                    else "({rotation:String}, {period:Date})"
                )
                self._store.command(
                    f"ALTER TABLE {self._t.table} DROP PARTITION {partition}",
                    self._params(period=period),
                    settings={"mutations_sync": 2},
                )
                self._log(period, "destroyed", now)
            return expired

    def _maintained(self, now: dt.datetime) -> bool:
        """Whether nothing is due for destruction before `now`'s next boundary."""
        return self._next_maintenance is not None and now < self._next_maintenance

    def maintain(self, now: dt.datetime) -> None:
        """Destroy expired keys at most once per period boundary; cheap on the hot path."""
        if self._maintained(now):
            return
        try:
            self.destroy_expired(now)
        except StoreError as exc:
            log.warning(
                "expired %ss could not be destroyed yet (%s); retrying in a minute",
                self._t.kind,
                type(exc).__name__,
            )
            self._next_maintenance = now + dt.timedelta(minutes=1)
            return
        self._next_maintenance = self.period_end(self.period_of(now)) + self.grace


class SaltKeeper(KeyRing):
    """The daily visitor salts."""

    def __init__(self, store: Store, grace: dt.timedelta = dt.timedelta(minutes=30)) -> None:
        super().__init__(store, SALTS, grace=grace)

    def salt(self, day: dt.date) -> bytes:
        """The salt of `day` (created if missing); `key(at)` is the time-aware form."""
        return self.key(_midnight(day))


def lingering_parts(store: Store, table: str) -> int:
    """Inactive (outdated) data parts of `table` that still hold rows: should be 0 soon after
    a destruction, because deleted keys must not linger on disk."""
    return int(
        store.query(
            "SELECT count() FROM system.parts WHERE database = currentDatabase() "
            "AND table = {table:String} AND NOT active AND rows > 0",
            {"table": table},
        ).scalar()
        or 0
    )


def visitor_hash(salt: bytes, *parts: str) -> int:
    """A keyed 64-bit hash (BLAKE2b with the salt as key); the parts are joined unambiguously."""
    digest = hashlib.blake2b(key=salt, digest_size=8)
    for part in parts:
        encoded = part.encode("utf-8", "surrogatepass")
        digest.update(len(encoded).to_bytes(4, "big"))
        digest.update(encoded)
    return int.from_bytes(digest.digest(), "big")
