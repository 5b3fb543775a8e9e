"""URL hygiene: path normalisation and redaction, query strings stripped except `utm_*`, `ref`
and `source`, click IDs reduced to a flag (the parameter's name, never its value), props
redacted."""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import parse_qsl, unquote, urlsplit

from ingest.event import SCROLL_UNKNOWN, Event
from ingest.hit import Hit
from ingest.pipeline import Step
from ingest.steps.redact import Redactor

MAX_PATH = 2000
MAX_VALUE = 500

UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term")
SOURCE_PARAMS = ("utm_source", "source", "ref")  # first present wins
# Ad-platform click identifiers: unique per click, so they are never stored; the column
# `click_id` says which one was present (ad attribution without the identifier).
CLICK_IDS = (
    "gclid",
    "gbraid",
    "wbraid",
    "gclsrc",
    "dclid",
    "msclkid",
    "fbclid",
    "ttclid",
    "twclid",
    "li_fat_id",
    "rdt_cid",
    "sccid",
    "epik",
    "irclid",
    "yclid",
    "igshid",
    "mc_eid",
    "_hsenc",
    "srsltid",
    "_gl",
)
_CLICK_IDS = frozenset(CLICK_IDS)
_SLASHES = re.compile(r"/{2,}")


def normalise_path(path: str) -> str:
    """Decoded, one slash per separator, no `.`/`..` segments, always starting with `/`."""
    path = unquote(path, errors="replace")
    if not path.startswith("/"):
        path = "/" + path
    if "//" in path:
        path = _SLASHES.sub("/", path)
    if "/." in path:
        segments: list[str] = []
        for segment in path.split("/")[1:]:
            if segment == "..":
                if segments:
                    segments.pop()
            elif segment != ".":
                segments.append(segment)
        path = "/" + "/".join(segments)
    return path[:MAX_PATH]


def query_fields(query: str) -> tuple[dict[str, str], str, bool]:
    """The kept parameters (utm_*, source, ref; lower-cased names), the click-ID flag, and
    whether every parameter was kept."""
    kept: dict[str, str] = {}
    click = ""
    if not query:
        return kept, click, True
    whole = True
    try:
        pairs = parse_qsl(query, keep_blank_values=False, max_num_fields=200)
    except ValueError:  # more fields than any real landing URL has
        pairs = parse_qsl(query[:4000], keep_blank_values=False)
        whole = False
    for name, value in pairs:
        key = name.lower()
        if key in _CLICK_IDS:
            click = click or key
        elif (key.startswith("utm_") or key in ("source", "ref")) and key not in kept:
            kept[key] = value.strip()[:MAX_VALUE]
    return kept, click, whole and not click and len(kept) == len(pairs)


class Location(NamedTuple):
    """What an event keeps of its page's URL."""

    pathname: str
    click_id: str
    utm_source: str
    utm_medium: str
    utm_campaign: str
    utm_content: str
    utm_term: str
    source: str  # from utm_source, source or ref: the referrer step resolves it to a name


# Pages repeat (a site has far fewer pages than page views), so a worker remembers what it
# kept of each URL, but only of a URL that is kept whole: nothing in it was dropped or
# redacted (no click ID or other parameter, fragment or user info, nothing personal-looking),
# so the cache holds nothing that the events do not store anyway, and redaction counts stay
# exact. Cleared when full: cheaper per beacon than keeping an LRU order.
CACHED_URLS = 4096


def locate(url: str, hash_mode: bool, redactor: Redactor) -> tuple[Location, bool]:
    """What an event keeps of `url`, and whether the URL was kept whole; ValueError if it
    cannot be parsed."""
    parts = urlsplit(url)
    query = parts.query
    path = parts.path or "/"
    fragment = parts.fragment
    if hash_mode and fragment.startswith("/"):
        path, _, frag_query = fragment.partition("?")
        query = "&".join(q for q in (query, frag_query) if q)
        fragment = ""
    redactions = redactor.total
    kept, click, all_kept = query_fields(query)
    source = next((kept[param] for param in SOURCE_PARAMS if kept.get(param)), "")
    location = Location(
        redactor.text(normalise_path(path)),
        click,
        redactor.text(kept.get("utm_source", "")),
        redactor.text(kept.get("utm_medium", "")).lower(),
        redactor.text(kept.get("utm_campaign", "")),
        redactor.text(kept.get("utm_content", "")),
        redactor.text(kept.get("utm_term", "")),
        redactor.text(source),
    )
    whole = all_kept and not fragment and "@" not in parts.netloc
    return location, whole and redactor.total == redactions


def url_parts(redactor: Redactor) -> Step:
    cache: dict[tuple[str, bool], Location] = {}

    def step(hit: Hit, event: Event) -> str | None:
        key = (hit.url, hit.hash_mode)
        location = cache.get(key)
        if location is None:
            try:
                location, whole = locate(hit.url, hit.hash_mode, redactor)
            except ValueError:
                return "invalid_url"
            if whole:
                if len(cache) >= CACHED_URLS:
                    cache.clear()
                cache[key] = location
        (
            event.pathname,
            event.click_id,
            event.utm_source,
            event.utm_medium,
            event.utm_campaign,
            event.utm_content,
            event.utm_term,
            event.referrer_source,  # held until the referrer step resolves it to a name
        ) = location
        event.name = redactor.text(hit.name)  # custom event names sometimes embed an e-mail
        event.props = {
            redactor.text(k)[:MAX_VALUE]: redactor.text(v)[:MAX_VALUE] for k, v in hit.props.items()
        }
        event.interactive = 1 if hit.interactive else 0
        event.engagement_ms = max(0, min(hit.engagement_ms or 0, 2**32 - 1))
        depth = hit.scroll_depth
        event.scroll_depth = SCROLL_UNKNOWN if depth is None else max(0, min(depth, 100))
        return None

    return step
