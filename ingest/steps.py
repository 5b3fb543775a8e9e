"""The ingestion steps. Each fills its part of the Event or returns a drop reason."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from urllib.parse import urlsplit

from firstparty.config import Config
from ingest.event import SCROLL_UNKNOWN, Event
from ingest.hit import Hit
from ingest.pipeline import Pipeline, Step
from ingest.salts import SaltKeeper, visitor_hash


def site_allowed(config: Config) -> Step:
    def step(hit: Hit, event: Event) -> str | None:
        site = config.site(hit.domain)
        if site is None:
            return "unknown_site"
        host = (urlsplit(hit.url).hostname or "").lower()
        if host in ("localhost", "127.0.0.1", "::1") or host.endswith(".localhost"):
            return "localhost"
        allowed = site.hostnames or (site.domain,)
        if not any(host == h or (not site.hostnames and host.endswith("." + h)) for h in allowed):
            return "hostname_not_allowed"
        event.hostname = host
        return None

    return step


def opt_out(config: Config) -> Step:
    def step(hit: Hit, event: Event) -> str | None:
        if config.privacy.honour_gpc and hit.gpc:
            return "gpc"
        if config.privacy.honour_dnt and hit.dnt:
            return "dnt"
        return None

    return step


def url_parts(hit: Hit, event: Event) -> str | None:
    parts = urlsplit(hit.url)
    event.pathname = parts.path or "/"
    if hit.hash_mode and parts.fragment.startswith("/"):
        event.pathname = parts.fragment.split("?", 1)[0]
    if hit.referrer:
        ref = urlsplit(hit.referrer)
        if ref.hostname and ref.hostname.lower() != event.hostname:
            event.referrer = f"{ref.scheme}://{ref.hostname.lower()}{ref.path}"
            event.referrer_source = ref.hostname.lower().removeprefix("www.")
    event.props = dict(hit.props)
    event.interactive = 1 if hit.interactive else 0
    event.engagement_ms = max(0, min(hit.engagement_ms or 0, 2**32 - 1))
    event.scroll_depth = SCROLL_UNKNOWN if hit.scroll_depth is None else hit.scroll_depth
    return None


def truncate_ip(ip: str, v4_prefix: int, v6_prefix: int) -> str:
    """The network of `ip` at the configured prefix, as CIDR text."""
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    prefix = v4_prefix if addr.version == 4 else v6_prefix
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


def ip_prefix(config: Config) -> Step:
    def step(hit: Hit, event: Event) -> str | None:
        if config.privacy.keep_ip_prefix:
            event.ip_prefix = truncate_ip(
                hit.ip, config.privacy.ipv4_prefix, config.privacy.ipv6_prefix
            )
        return None

    return step


def visitor(salts: SaltKeeper) -> Step:
    def step(hit: Hit, event: Event) -> str | None:
        salt = salts.salt(hit.received_at.date())
        event.visitor_id = visitor_hash(salt, hit.domain, hit.ip, hit.user_agent)
        return None

    return step


def build_pipeline(
    config: Config,
    salts: SaltKeeper,
    extra: list[tuple[str, Callable[[Hit, Event], str | None]]] | None = None,
) -> Pipeline:
    return Pipeline(
        [
            ("site", site_allowed(config)),
            ("opt_out", opt_out(config)),
            ("url", url_parts),
            ("ip_prefix", ip_prefix(config)),
            ("visitor", visitor(salts)),
            *(extra or []),
        ]
    )
