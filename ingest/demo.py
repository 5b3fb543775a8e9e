"""`firstparty demo-data`: realistic synthetic traffic through the real ingestion pipeline.

Visitors come from a weighted mix of countries (IP addresses picked so that the bundled GeoIP
database places them there), browsers and devices (real user-agent strings), referrers and
UTM campaigns; they read a few pages with engagement pings (visible time and scroll depth),
and some click, download or sign up (custom events with properties). Every beacon becomes a
`Hit` and goes through `build_pipeline` (bots, URL hygiene, referrer and channel, geolocation,
IP truncation, UA parsing, visitor hash) and then `insert_events`, in large batches.

The demo's daily salts are random and held in memory only: historical days get no salt rows
and no salt log entries, so the privacy audit of a demo store is not confused by them.
"""

from __future__ import annotations

import datetime as dt
import random
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from firstparty.config import Config
from ingest.hit import Hit
from ingest.pipeline import Accepted
from ingest.salts import SaltKeeper
from ingest.sessions import Sessionizer
from ingest.steps import build_pipeline
from ingest.steps.geo import open_geo
from ingest.writer import insert_events
from store.base import Store

BATCH = 20_000

USER_AGENTS = (
    # (weight, user agent)
    (
        30,
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36",
    ),
    (
        14,
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    ),
    (
        12,
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Mobile Safari/537.36",
    ),
    (
        10,
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like "
        "Gecko) Version/18.1 Safari/605.1.15",
    ),
    (8, "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"),
    (
        7,
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
    ),
    (5, "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"),
    (
        5,
        "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
    ),
    (
        4,
        "Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
        "Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
    ),
    (
        5,
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like "
        "Gecko) Chrome/131.0.0.0 Safari/537.36",
    ),
)

# (weight, referrer URL, utm query)
REFERRERS = (
    (35, "", ""),
    (25, "https://www.google.com/", ""),
    (4, "https://www.bing.com/", ""),
    (3, "https://duckduckgo.com/", ""),
    (5, "https://news.ycombinator.com/item", ""),
    (4, "https://www.reddit.com/r/analytics/", ""),
    (4, "https://t.co/abc", ""),
    (3, "https://www.linkedin.com/feed/", ""),
    (3, "https://www.facebook.com/", "utm_source=facebook&utm_medium=paid&utm_campaign=spring"),
    (6, "", "utm_source=newsletter&utm_medium=email&utm_campaign=november"),
    (3, "https://github.com/firstparty", ""),
    (3, "https://www.google.com/", "utm_source=google&utm_medium=cpc&utm_campaign=brand"),
)

COUNTRIES = (
    ("BE", 25), ("FR", 14), ("NL", 10), ("DE", 10), ("US", 14), ("GB", 8),
    ("ES", 4), ("IT", 4), ("CA", 3), ("IN", 3), ("BR", 2), ("JP", 3),
)  # fmt: skip

PAGES = (
    ("/", 30), ("/pricing", 12), ("/features", 9), ("/blog", 6), ("/blog/cookieless-analytics", 8),
    ("/blog/gdpr-checklist", 6), ("/blog/first-party-data", 4), ("/docs", 6),
    ("/docs/getting-started", 6), ("/docs/api", 3), ("/about", 3), ("/contact", 3),
    ("/signup", 4),
)  # fmt: skip


class MemorySalts(SaltKeeper):
    """Random per-day salts held in memory for the run only (never stored, never logged)."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self._memory: dict[dt.date, bytes] = {}

    def key(self, at: dt.datetime) -> bytes:
        day = at.astimezone(dt.UTC).date()
        if day not in self._memory:
            self._memory = {d: s for d, s in self._memory.items() if d >= day - dt.timedelta(1)}
            self._memory[day] = secrets.token_bytes(16)
        return self._memory[day]

    def previous(self, at: dt.datetime) -> bytes | None:
        return None

    def maintain(self, now: dt.datetime) -> None:
        return None

    def destroy_expired(self, now: dt.datetime) -> list[dt.date]:
        return []


def _weighted(rng: random.Random, items: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([i[0] for i in items], weights=[i[1] for i in items])[0]


def country_ips(config: Config, rng: random.Random, per_country: int = 40) -> dict[str, list[str]]:
    """Public IPv4 addresses that the configured GeoIP database places in each demo country."""
    geo = open_geo(config)
    wanted = {c for c, _ in COUNTRIES}
    found: dict[str, list[str]] = {c: [] for c in wanted}
    try:
        for _ in range(400_000):
            octets = (rng.randint(1, 223), rng.randint(0, 255), rng.randint(0, 255))
            ip = ".".join(map(str, octets)) + f".{rng.randint(1, 254)}"
            country, _region = geo.lookup(ip)
            if country in found and len(found[country]) < per_country:
                found[country].append(ip)
            if all(len(v) >= per_country for v in found.values()):
                break
    finally:
        geo.close()
    return {c: ips for c, ips in found.items() if ips}


@dataclass
class Generator:
    site: str
    rng: random.Random
    ips: dict[str, list[str]]
    hits_per_visit: float = 4.0
    countries: tuple[tuple[str, int], ...] = field(init=False)

    def __post_init__(self) -> None:
        self.countries = tuple((c, w) for c, w in COUNTRIES if c in self.ips) or (("", 1),)

    def visitor(self) -> tuple[str, str]:
        country = _weighted(self.rng, self.countries)
        pool = self.ips.get(country) or ["203.0.113.7"]
        # vary the last octet so visitors sharing a /24 still differ
        base = self.rng.choice(pool).rsplit(".", 1)[0]
        ip = f"{base}.{self.rng.randint(1, 254)}"
        ua = self.rng.choices([u for _, u in USER_AGENTS], weights=[w for w, _ in USER_AGENTS])[0]
        return ip, ua

    def _hit(
        self, name: str, url: str, ref: str, at: dt.datetime, ip: str, ua: str, **extra: object
    ) -> Hit:
        return Hit(
            domain=self.site,
            name=name,
            url=url,
            referrer=ref,
            received_at=at,
            ip=ip,
            user_agent=ua,
            **extra,  # type: ignore[arg-type]
        )

    def visit(self, start: dt.datetime, ip: str, ua: str) -> list[Hit]:
        rng = self.rng
        ref, utm = rng.choices(
            [(r, u) for _, r, u in REFERRERS], weights=[w for w, _, _ in REFERRERS]
        )[0]
        pages = max(1, min(12, int(rng.expovariate(1 / (self.hits_per_visit / 2)))))
        hits: list[Hit] = []
        t = start
        for i in range(pages):
            path = _weighted(rng, PAGES)
            url = f"https://{self.site}{path}" + (f"?{utm}" if utm and i == 0 else "")
            came_from = ref if i == 0 else f"https://{self.site}/"
            hits.append(self._hit("pageview", url, came_from, t, ip, ua))
            visible = int(rng.lognormvariate(3.0, 1.0) * 1000)  # median ~20 s
            if pages > 1 or rng.random() < 0.6:
                hits.append(
                    self._hit(
                        "engagement",
                        url,
                        came_from,
                        t + dt.timedelta(milliseconds=visible),
                        ip,
                        ua,
                        interactive=False,
                        engagement_ms=visible,
                        scroll_depth=rng.choice((25, 40, 60, 75, 90, 100)),
                    )
                )
            roll = rng.random()
            custom: tuple[str, dict[str, str]] | None = None
            if roll < 0.04:
                custom = ("Signup", {"plan": rng.choice(("free", "pro", "team"))})
            elif roll < 0.09:
                target = rng.choice(("https://github.com/firstparty", "https://clickhouse.com/"))
                custom = ("Outbound Link: Click", {"url": target})
            elif roll < 0.11:
                custom = ("File Download", {"url": f"https://{self.site}/whitepaper.pdf"})
            if custom is not None:
                at = t + dt.timedelta(seconds=rng.randint(2, 15))
                hits.append(self._hit(custom[0], url, came_from, at, ip, ua, props=custom[1]))
            t += dt.timedelta(milliseconds=visible + rng.randint(500, 4000))
        return hits

    def day(self, day: dt.date, events: int, until: dt.datetime) -> list[Hit]:
        """About `events` hits on `day`, busier in the (European) daytime."""
        hits: list[Hit] = []
        midnight = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
        while len(hits) < events:
            hour = min(23, max(0, int(self.rng.gauss(14, 4.5))))
            start = midnight + dt.timedelta(hours=hour, seconds=self.rng.randint(0, 3599))
            if start >= until:
                continue
            ip, ua = self.visitor()
            hits.extend(h for h in self.visit(start, ip, ua) if h.received_at < until)
        hits.sort(key=lambda h: h.received_at)
        return hits


def _progress(done: int, total: int, started: float) -> None:
    width = 30
    filled = int(width * done / max(total, 1))
    rate = done / max(time.monotonic() - started, 1e-6)
    sys.stderr.write(
        f"\r[{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,} events  {rate:,.0f}/s"
    )
    sys.stderr.flush()


def generate(
    store: Store,
    config: Config,
    site: str,
    days: int,
    events: int,
    now: dt.datetime | None = None,
    seed: int | None = None,
    progress: Callable[[int, int, float], None] | None = _progress,
) -> tuple[int, dict[str, int]]:
    """Push about `events` synthetic beacons for `site` over the last `days` days through the
    pipeline into the store. Returns (events stored, drops by reason)."""
    now = now or dt.datetime.now(dt.UTC)
    rng = random.Random(seed)
    pipeline = build_pipeline(config, MemorySalts(store))
    generator = Generator(site, rng, country_ips(config, rng))
    sessions = Sessionizer(dt.timedelta(minutes=config.privacy.session_timeout_minutes))
    per_day = [events // days + (1 if i < events % days else 0) for i in range(days)]
    stored = 0
    started = time.monotonic()
    run = secrets.token_hex(4)
    pending: list[Accepted] = []

    def flush() -> int:
        insert_events(
            store,
            [a.event for a in pending],
            sessions,
            token=f"demo-{run}-{stored}",
            prev_ids=[a.prev_visitor_id for a in pending],
        )
        count = len(pending)
        pending.clear()
        return count

    for offset, count in enumerate(per_day):
        day = (now - dt.timedelta(days=days - 1 - offset)).date()
        for hit in generator.day(day, count, now):
            result = pipeline.process(hit)
            if isinstance(result, Accepted):
                pending.append(result)
            if len(pending) >= BATCH:
                stored += flush()
                if progress:
                    progress(min(stored, events), events, started)
    stored += flush()
    if progress:
        progress(min(stored, events), events, started)
    if progress:
        sys.stderr.write("\n")
    return stored, dict(pipeline.dropped)
