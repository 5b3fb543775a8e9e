"""Drop bots, crawlers and headless browsers before any other work.

Three checks, cached per UA (crawler patterns cost ~0.1 ms a UA; real traffic repeats UAs):
an empty UA; headless and automation markers; the maintained `crawler-user-agents` list (which
knows curl, python-requests, Go/Java HTTP clients, GPTBot/ClaudeBot/PerplexityBot and other
AI crawlers); and `user-agents`' `is_bot` (ua-parser's spider families).
"""

from __future__ import annotations

import re
from functools import lru_cache

import crawleruseragents

from ingest.event import Event
from ingest.hit import Hit
from ingest.steps.ua import parse_ua

CACHE_SIZE = 16384

_HEADLESS = re.compile(
    r"headless|phantomjs|slimerjs|puppeteer|playwright|selenium|webdriver|lighthouse|"
    r"chrome-lighthouse|pagespeed|cypress|nightmare|jsdom|htmlunit|zombie\.js",
    re.IGNORECASE,
)
# Automated agents the crawler list has been seen to miss; kept short and specific.
_EXTRA_BOTS = re.compile(
    r"crawler|spider|scraper|uptime-?monitor|^mozilla/5\.0$|^-$",
    re.IGNORECASE,
)


@lru_cache(maxsize=CACHE_SIZE)
def bot_reason(ua: str) -> str | None:
    """`empty_user_agent`, `headless` or `bot` when the UA is not a person's browser."""
    if not ua.strip():
        return "empty_user_agent"
    if _HEADLESS.search(ua):
        return "headless"
    if crawleruseragents.is_crawler(ua) or _EXTRA_BOTS.search(ua):
        return "bot"
    if parse_ua(ua).is_bot:
        return "bot"
    return None


def bots(hit: Hit, event: Event) -> str | None:
    return bot_reason(hit.user_agent)
