"""Drop early: unknown sites, localhost, hostnames outside a site's allow-list, opt-outs."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from firstparty.config import Config, Site
from ingest.event import Event
from ingest.hit import Hit
from ingest.pipeline import Step

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0", "[::1]"})  # noqa: S104


def host_allowed(site: Site, host: str) -> bool:
    """A site's `hostnames` (exact, or `*.example.com` for subdomains); without any, the
    domain and its subdomains."""
    if not site.hostnames:
        return host == site.domain or host.endswith("." + site.domain)
    for allowed in site.hostnames:
        if allowed.startswith("*."):
            if host.endswith(allowed[1:]) or host == allowed[2:]:
                return True
        elif host == allowed:
            return True
    return False


def is_local(host: str) -> bool:
    if host in LOCAL_HOSTS or host.endswith(".localhost"):
        return True
    if not host or not (host[0].isdigit() or host[0] in "[:"):
        return False  # a name, not an address literal: skip the costly parse
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def site_allowed(config: Config) -> Step:
    def step(hit: Hit, event: Event) -> str | None:
        site = config.site(hit.domain)
        if site is None:
            return "unknown_site"
        try:
            host = (urlsplit(hit.url).hostname or "").lower().rstrip(".")
        except ValueError:
            return "invalid_url"
        if is_local(host):
            return "localhost"
        if not host_allowed(site, host):
            return "hostname_not_allowed"
        event.hostname = host
        return None

    return step


def opt_out(config: Config) -> Step:
    """GPC and DNT per policy: an opted-out request writes nothing and is only counted."""
    honour_gpc, honour_dnt = config.privacy.honour_gpc, config.privacy.honour_dnt

    def step(hit: Hit, event: Event) -> str | None:
        if honour_gpc and hit.gpc:
            return "gpc"
        if honour_dnt and hit.dnt:
            return "dnt"
        return None

    return step
