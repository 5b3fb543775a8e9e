"""Drop referrer spam: the vendored public-domain list (ingest/data/referrer-spam.txt); a
listed domain also covers its subdomains."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from urllib.parse import urlsplit

from ingest.event import Event
from ingest.hit import Hit


@lru_cache(maxsize=1)
def spam_domains() -> frozenset[str]:
    text = resources.files("ingest.data").joinpath("referrer-spam.txt").read_text("utf-8")
    return frozenset(
        line.strip().lower() for line in text.splitlines() if line.strip() and "#" not in line
    )


def suffixes(host: str) -> list[str]:
    """`a.b.example.com` -> itself, `b.example.com`, `example.com`, `com`."""
    labels = host.split(".")
    return [".".join(labels[i:]) for i in range(len(labels))]


@lru_cache(maxsize=16384)
def is_spam_host(host: str) -> bool:
    domains = spam_domains()
    return any(suffix in domains for suffix in suffixes(host.lower().rstrip(".")))


def referrer_host(referrer: str) -> str:
    if not referrer:
        return ""
    try:
        return (urlsplit(referrer if "//" in referrer else "//" + referrer).hostname or "").lower()
    except ValueError:
        return ""


def referrer_spam(hit: Hit, event: Event) -> str | None:
    host = referrer_host(hit.referrer)
    if host and is_spam_host(host):
        return "referrer_spam"
    return None
