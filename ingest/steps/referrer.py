"""Referrer -> source name and acquisition channel.

Sources come from the vendored Ghost referrer list (ingest/data/referrers.json, MIT) plus our
own entries below (AI assistants and a few the list lacks). `utm_source`, `source` and `ref`
override the referrer; self-referrals (the site's own hosts) are ignored. The channel follows
GA4's default channel grouping, with an "AI Assistants" channel added.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import NamedTuple
from urllib.parse import urlsplit

from firstparty.config import Config
from ingest.event import Event
from ingest.hit import Hit
from ingest.pipeline import Step
from ingest.steps.redact import Redactor
from ingest.steps.site import host_allowed
from ingest.steps.spam import suffixes

MAX_SOURCE = 200


@dataclass(frozen=True, slots=True)
class Source:
    name: str
    medium: str  # search, social, email, paid, referral, ai, video, shopping, unknown


# host -> (name, medium); these win over the vendored list.
OUR_SOURCES: dict[str, tuple[str, str]] = {
    "chatgpt.com": ("ChatGPT", "ai"),
    "chat.openai.com": ("ChatGPT", "ai"),
    "perplexity.ai": ("Perplexity", "ai"),
    "claude.ai": ("Claude", "ai"),
    "copilot.microsoft.com": ("Microsoft Copilot", "ai"),
    "copilot.cloud.microsoft": ("Microsoft Copilot", "ai"),
    "gemini.google.com": ("Gemini", "ai"),
    "bard.google.com": ("Gemini", "ai"),
    "chat.mistral.ai": ("Mistral Le Chat", "ai"),
    "chat.deepseek.com": ("DeepSeek", "ai"),
    "meta.ai": ("Meta AI", "ai"),
    "grok.com": ("Grok", "ai"),
    "you.com": ("You.com", "ai"),
    "phind.com": ("Phind", "ai"),
    "poe.com": ("Poe", "ai"),
    "kagi.com": ("Kagi", "search"),
    "search.brave.com": ("Brave Search", "search"),
    "ecosia.org": ("Ecosia", "search"),
    "startpage.com": ("Startpage", "search"),
    "qwant.com": ("Qwant", "search"),
    "youtube.com": ("YouTube", "video"),
    "m.youtube.com": ("YouTube", "video"),
    "youtu.be": ("YouTube", "video"),
    "vimeo.com": ("Vimeo", "video"),
    "twitch.tv": ("Twitch", "video"),
    "dailymotion.com": ("Dailymotion", "video"),
    "tiktok.com": ("TikTok", "social"),
    "threads.net": ("Threads", "social"),
    "bsky.app": ("Bluesky", "social"),
    "x.com": ("Twitter", "social"),
    "amazon.com": ("Amazon", "shopping"),
    "ebay.com": ("eBay", "shopping"),
    "etsy.com": ("Etsy", "shopping"),
    "shopping.google.com": ("Google Shopping", "shopping"),
    "news.ycombinator.com": ("Hacker News", "social"),
}


@lru_cache(maxsize=1)
def vendored_referrers() -> dict[str, dict[str, str]]:
    text = resources.files("ingest.data").joinpath("referrers.json").read_text("utf-8")
    data: dict[str, dict[str, str]] = json.loads(text)
    return data


class Referrers:
    def __init__(self, data: dict[str, dict[str, str]] | None = None) -> None:
        if data is None:
            data = vendored_referrers()
        self._hosts: dict[str, Source] = {}
        self._paths: dict[str, list[tuple[str, Source]]] = {}
        self._names: dict[str, Source] = {}
        media: dict[str, Counter[str]] = {}
        for key, entry in data.items():
            source = Source(entry["source"], entry.get("medium", "unknown"))
            host, slash, path = key.partition("/")
            if slash:
                self._paths.setdefault(host.lower(), []).append(("/" + path, source))
            else:
                self._hosts[host.lower()] = source
            media.setdefault(source.name, Counter())[source.medium] += 1
        for name, counts in media.items():
            # A name's usual medium ("Google" is search, though support.google.com is not).
            self._names[name.lower()] = Source(name, counts.most_common(1)[0][0])
        for host, (name, medium) in OUR_SOURCES.items():
            source = Source(name, medium)
            self._hosts[host] = source
            self._names[name.lower()] = source
            labels = host.split(".")
            if len(labels) == 2:  # "chatgpt" for chatgpt.com, as utm_source often says
                self._names.setdefault(labels[0], source)
        for entries in self._paths.values():
            entries.sort(key=lambda item: len(item[0]), reverse=True)

    def lookup(self, host: str, path: str = "/") -> Source | None:
        """The source of a referrer: exact host (path-specific entries first), then without
        `www.`, then parent domains."""
        for candidate in suffixes(host.lower().removeprefix("www.")):
            if "." not in candidate:
                break
            for name in (candidate, "www." + candidate):
                for prefix, source in self._paths.get(name, ()):
                    if path.startswith(prefix):
                        return source
                found = self._hosts.get(name)
                if found is not None:
                    return found
        return None

    def by_name(self, value: str) -> Source | None:
        """A `utm_source`-style value: a known source name, or a domain in the list."""
        lowered = value.strip().lower()
        found = self._names.get(lowered)
        if found is None and "." in lowered and " " not in lowered:
            found = self.lookup(lowered)
        return found


# GA4 default channel grouping (https://support.google.com/analytics/answer/9756891), as
# regular expressions over utm_medium / utm_campaign.
_PAID_MEDIUM = re.compile(r"^(.*cp.*|ppc|retargeting|paid.*)$")
_DISPLAY_MEDIUM = re.compile(r"^(display|banner|expandable|interstitial|cpm)$")
_SOCIAL_MEDIUM = re.compile(
    r"^(social|social-network|social-media|sm|social network|social media)$"
)
_EMAIL = re.compile(r"^(email|e-mail|e_mail|e mail|newsletter)$")
_SHOPPING_CAMPAIGN = re.compile(r"^(.*(([^a-df-z]|^)shop|shopping).*)$")
_PUSH_MEDIUM = re.compile(r"(mobile|notification|push$)")
PAID_SEARCH_CLICKS = frozenset({"gclid", "gbraid", "wbraid", "gclsrc", "msclkid", "yclid"})
PAID_SOCIAL_CLICKS = frozenset({"ttclid", "twclid", "li_fat_id", "rdt_cid", "sccid", "epik"})

CHANNELS = (
    "Direct",
    "Cross-network",
    "Paid Shopping",
    "Paid Search",
    "Paid Social",
    "Paid Video",
    "Display",
    "Paid Other",
    "Organic Shopping",
    "Organic Social",
    "Organic Video",
    "Organic Search",
    "AI Assistants",
    "Email",
    "Affiliates",
    "Referral",
    "Audio",
    "SMS",
    "Mobile Push Notifications",
    "Unassigned",
)


def channel(
    medium_of_source: str,
    source_name: str,
    utm_medium: str,
    utm_campaign: str,
    click_id: str,
    has_referrer: bool,
) -> str:
    kind = medium_of_source
    medium = utm_medium.lower()
    campaign = utm_campaign.lower()
    source = source_name.lower()
    paid = bool(_PAID_MEDIUM.match(medium)) if medium else False
    if not source and not medium and not click_id and not has_referrer and not campaign:
        return "Direct"
    if "cross-network" in campaign:
        return "Cross-network"
    if (kind == "shopping" or _SHOPPING_CAMPAIGN.match(campaign)) and paid:
        return "Paid Shopping"
    if (kind == "search" and paid) or click_id in PAID_SEARCH_CLICKS:
        return "Paid Search"
    if (kind == "social" and paid) or click_id in PAID_SOCIAL_CLICKS:
        return "Paid Social"
    if kind == "video" and paid:
        return "Paid Video"
    if _DISPLAY_MEDIUM.match(medium) or click_id == "dclid" or kind == "paid":
        return "Display"
    if paid:
        return "Paid Other"
    if kind == "shopping" or (campaign and _SHOPPING_CAMPAIGN.match(campaign)):
        return "Organic Shopping"
    if kind == "social" or _SOCIAL_MEDIUM.match(medium):
        return "Organic Social"
    if kind == "video" or "video" in medium:
        return "Organic Video"
    if kind == "search" or medium == "organic":
        return "Organic Search"
    if kind == "ai" or medium in ("ai", "ai-assistant", "llm"):
        return "AI Assistants"
    if kind == "email" or _EMAIL.match(medium) or _EMAIL.match(source):
        return "Email"
    if medium == "affiliate" or click_id == "irclid":
        return "Affiliates"
    if medium in ("referral", "app", "link") or (has_referrer and not medium):
        return "Referral"
    if medium == "audio":
        return "Audio"
    if medium == "sms" or source == "sms":
        return "SMS"
    if medium and _PUSH_MEDIUM.search(medium):
        return "Mobile Push Notifications"
    return "Unassigned"


class Referred(NamedTuple):
    """What an event may keep of a referrer URL: no query, fragment, user info or port."""

    host: str
    origin: str  # scheme://host
    path: str  # not redacted yet: that is counted only for a referrer that is stored


NOWHERE = Referred("", "", "")
# Referrers repeat even more than pages (browsers send only the origin by default). Cached
# only when nothing of the referrer would be dropped or redacted, as the page URL (urls.py).
CACHED_REFERRERS = 4096


def referrer(config: Config, redactor: Redactor, referrers: Referrers | None = None) -> Step:
    table = referrers or Referrers()
    cache: dict[str, Referred] = {}

    @lru_cache(maxsize=16384)
    def lookup(host: str, path: str) -> Source | None:
        return table.lookup(host, path)

    @lru_cache(maxsize=4096)
    def by_name(value: str) -> Source | None:
        return table.by_name(value)

    def parse(raw: str) -> Referred:
        try:
            ref = urlsplit(raw)
            host = (ref.hostname or "").lower().rstrip(".")
        except ValueError:
            return NOWHERE
        if not host or ref.scheme not in ("http", "https", "android-app", ""):
            return NOWHERE
        path = ref.path or "/"
        referred = Referred(host, f"{ref.scheme or 'https'}://{host}", path)
        whole = not (ref.query or ref.fragment) and ref.netloc == host
        if whole and redactor.keeps(path):
            if len(cache) >= CACHED_REFERRERS:
                cache.clear()
            cache[raw] = referred
        return referred

    def step(hit: Hit, event: Event) -> str | None:
        override = event.referrer_source  # set by the url step from utm_source/source/ref
        event.referrer_source = ""
        found: Source | None = None
        has_referrer = False
        if hit.referrer:
            referred = cache.get(hit.referrer) or parse(hit.referrer)
            host = referred.host
            site = config.site(hit.domain)
            own = host == event.hostname or (site is not None and host_allowed(site, host))
            if host and not own:
                has_referrer = True
                event.referrer = referred.origin + redactor.text(referred.path)[:500]
                found = lookup(host, referred.path)
                event.referrer_source = found.name if found else host.removeprefix("www.")
        if override:
            named = by_name(override)
            found = named if named is not None else Source(override[:MAX_SOURCE], "")
            event.referrer_source = found.name
            # A tagged link without a medium (`?ref=producthunt`) is a referral.
            has_referrer = True
        event.channel = channel(
            found.medium if found else "",
            event.referrer_source,
            event.utm_medium,
            event.utm_campaign,
            event.click_id,
            has_referrer,
        )
        return None

    return step
