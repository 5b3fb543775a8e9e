"""The ingestion steps, one small module each, and the pipeline that runs them in order.

Cheap drops first (site, opt-out, bots, spam), then enrichment (URL hygiene, referrer and
channel, geolocation from the full IP, IP truncation, UA), and the visitor hash last.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable

from firstparty.config import Config
from ingest.devices import DeviceKeys
from ingest.event import Event
from ingest.hit import Hit
from ingest.pipeline import Pipeline
from ingest.salts import SaltKeeper
from ingest.steps.bots import bot_reason, bots
from ingest.steps.geo import Geo, geolocate, open_geo
from ingest.steps.identity import Identity
from ingest.steps.ip import ip_prefix, normalise_ip, truncate_ip
from ingest.steps.redact import Redactor
from ingest.steps.referrer import Referrers, channel, referrer
from ingest.steps.site import opt_out, site_allowed
from ingest.steps.spam import is_spam_host, referrer_spam
from ingest.steps.ua import parse_ua, user_agent
from ingest.steps.urls import url_parts

__all__ = [
    "Geo",
    "Identity",
    "Redactor",
    "Referrers",
    "bot_reason",
    "build_pipeline",
    "channel",
    "normalise_ip",
    "parse_ua",
    "truncate_ip",
]

DROP_REASONS = (
    "unknown_site",
    "invalid_url",
    "localhost",
    "hostname_not_allowed",
    "gpc",
    "dnt",
    "empty_user_agent",
    "headless",
    "bot",
    "referrer_spam",
    "internal_error",  # a step raised: logged by type, counted, never a 500
)


WARM_UP_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)


def warm_up() -> None:
    """Compile the UA resolver, the crawler patterns and the spam list now (~0.3 s), so the
    first beacon a worker serves is not the slow one."""
    bot_reason(WARM_UP_UA)
    is_spam_host("warm-up.invalid")


def build_pipeline(
    config: Config,
    salts: SaltKeeper,
    extra: list[tuple[str, Callable[[Hit, Event], str | None]]] | None = None,
    *,
    devices: DeviceKeys | None = None,
    geo: Geo | None = None,
) -> Pipeline:
    """The full pipeline. Device keys default to the salts' store and the configured
    rotation; the GeoIP database to `privacy.geoip_database` or the bundled one."""
    grace = dt.timedelta(minutes=config.privacy.session_timeout_minutes)
    salts.grace = grace  # the previous salt lives until sessions spanning midnight have closed
    if devices is None:
        devices = DeviceKeys(salts.store, config.privacy.visitor_id_rotation, grace)
    identity = Identity(salts, devices)
    redactions: Counter[str] = Counter()
    redactor = Redactor(redactions)
    geo = geo if geo is not None else open_geo(config)
    warm_up()
    return Pipeline(
        [
            ("site", site_allowed(config)),
            ("opt_out", opt_out(config)),
            ("bot", bots),
            ("spam", referrer_spam),
            ("url", url_parts(redactor)),
            ("referrer", referrer(config, redactor)),
            ("geo", geolocate(geo)),
            ("ip_prefix", ip_prefix(config)),
            ("user_agent", user_agent),
            ("visitor", identity.step),
            *(extra or []),
        ],
        previous=identity.previous,
        in_memory=identity.in_memory,
        redactions=redactions,
    )
