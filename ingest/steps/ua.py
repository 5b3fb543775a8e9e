"""User agent -> allow-listed enums: browser, major version, OS, OS version, device class.

`ua-parser`'s fast resolver (the Rust `ua-parser-rs`, via the `ua-parser[regex]` extra) parses;
`user-agents`, the library the design names, classifies the device (desktop, mobile, tablet)
and spiders from that parse, so the UA is parsed once. An LRU cache sits in front because real
traffic repeats UAs. Only names in the allow-lists below are stored, never the raw UA: anything
else becomes "Other".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import ua_parser
from user_agents.parsers import (
    UserAgent,
    parse_browser,
    parse_device,
    parse_operating_system,
)

from ingest.event import Event
from ingest.hit import Hit

CACHE_SIZE = 16384
OTHER = "Other"

# ua-parser family -> stored name. Values are the whole allow-list of the `browser` column.
BROWSER_NAMES: dict[str, str] = {
    "Chrome": "Chrome",
    "Chrome Mobile": "Chrome",
    "Chrome Mobile iOS": "Chrome",
    "Chrome Mobile WebView": "Android WebView",
    "Chromium": "Chromium",
    "Firefox": "Firefox",
    "Firefox Mobile": "Firefox",
    "Firefox iOS": "Firefox",
    "Safari": "Safari",
    "Mobile Safari": "Safari",
    "Mobile Safari UI/WKWebView": "Safari (in-app)",
    "Edge": "Edge",
    "Edge Mobile": "Edge",
    "Opera": "Opera",
    "Opera Mobile": "Opera",
    "Opera Mini": "Opera Mini",
    "Samsung Internet": "Samsung Internet",
    "Yandex Browser": "Yandex Browser",
    "UC Browser": "UC Browser",
    "Vivaldi": "Vivaldi",
    "Brave": "Brave",
    "DuckDuckGo Mobile": "DuckDuckGo",
    "MiuiBrowser": "Mi Browser",
    "Silk": "Silk",
    "IE": "Internet Explorer",
    "IE Mobile": "Internet Explorer",
    "Facebook": "Facebook (in-app)",
    "Instagram": "Instagram (in-app)",
    "Electron": "Electron",
    "Whale": "Whale",
    "QQ Browser": "QQ Browser",
    "Huawei Browser": "Huawei Browser",
}
BROWSERS = frozenset(BROWSER_NAMES.values()) | {OTHER}

OS_NAMES: dict[str, str] = {
    "Windows": "Windows",
    "Mac OS X": "macOS",
    "iOS": "iOS",
    "iPadOS": "iOS",
    "Android": "Android",
    "Chrome OS": "ChromeOS",
    "Linux": "GNU/Linux",
    "Ubuntu": "GNU/Linux",
    "Debian": "GNU/Linux",
    "Fedora": "GNU/Linux",
    "Arch Linux": "GNU/Linux",
    "Linux Mint": "GNU/Linux",
    "Red Hat": "GNU/Linux",
    "FreeBSD": "FreeBSD",
    "OpenBSD": "OpenBSD",
    "HarmonyOS": "HarmonyOS",
    "KaiOS": "KaiOS",
    "Tizen": "Tizen",
    "Windows Phone": "Windows Phone",
    "BlackBerry OS": "BlackBerry OS",
    "Fire OS": "Fire OS",
}
OSES = frozenset(OS_NAMES.values()) | {OTHER}
DEVICES = frozenset({"desktop", "mobile", "tablet", "other"})

_VERSION = re.compile(r"\d{1,5}")


@dataclass(frozen=True, slots=True)
class UAInfo:
    browser: str
    browser_version: str
    os: str
    os_version: str
    device: str
    is_bot: bool


def _version(part: str | None) -> str:
    return part if part is not None and _VERSION.fullmatch(part) else ""


def _user_agent(ua: str) -> UserAgent:
    """A `user_agents.UserAgent` built from the fast resolver's result (no second parse)."""
    result = ua_parser.parse(ua).with_defaults()
    agent = UserAgent.__new__(UserAgent)
    agent.ua_string = ua
    u, o, d = result.user_agent, result.os, result.device
    agent.browser = parse_browser(u.family, u.major, u.minor, u.patch)
    agent.os = parse_operating_system(o.family, o.major, o.minor, o.patch)
    agent.device = parse_device(d.family, d.brand, d.model)
    return agent


@lru_cache(maxsize=CACHE_SIZE)
def parse_ua(ua: str) -> UAInfo:
    agent = _user_agent(ua)
    browser = BROWSER_NAMES.get(agent.browser.family, OTHER)
    os_name = OS_NAMES.get(agent.os.family, OTHER)
    version = agent.browser.version
    browser_version = _version(str(version[0])) if version and browser != OTHER else ""
    os_version = ""
    if os_name != OTHER and agent.os.version:
        parts = [str(p) for p in agent.os.version[:2]]
        # macOS 10.x and iOS minor versions mean something; elsewhere the major suffices.
        keep = 2 if (os_name == "macOS" and parts[0] == "10") else 1
        os_version = ".".join(p for p in parts[:keep] if _version(p))
    if agent.is_tablet:
        device = "tablet"
    elif agent.is_mobile:
        device = "mobile"
    elif agent.is_pc or os_name in ("ChromeOS", "GNU/Linux", "FreeBSD", "OpenBSD"):
        device = "desktop"
    else:
        device = "other"
    return UAInfo(browser, browser_version, os_name, os_version, device, bool(agent.is_bot))


def user_agent(hit: Hit, event: Event) -> str | None:
    info = parse_ua(hit.user_agent)
    event.browser = info.browser
    event.browser_version = info.browser_version
    event.os = info.os
    event.os_version = info.os_version
    event.device = info.device
    return None
