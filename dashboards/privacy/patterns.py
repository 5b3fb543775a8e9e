"""What personal data looks like in text, for the audit's scans of tables, spool and logs.

The RE2 patterns (ClickHouse's regex engine) pick candidates in the database; Python then
decides with `ipaddress`, so a version number or a clock time is not reported as an address.
Findings are masked before they reach a report: the audit must not itself leak what it finds.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

# Candidates, with an optional /prefix so truncated networks (CIDR) can be told apart.
IPV4_RE2 = r"\b(?:\d{1,3}\.){3}\d{1,3}(?:/\d{1,3})?"
IPV6_RE2 = r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:(?:\.\d{1,3}){3})?(?:/\d{1,3})?"
EMAIL_RE2 = r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}"
UUID_RE2 = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
TOKEN_RE2 = r"[A-Za-z0-9_]{20,}"  # noqa: S105 - a pattern, not a password
# As strict as the pipeline's redaction (ingest/steps/redact.py): 5+ digits, 20+ mixed chars.
ID_NUMBER_RE2 = r"\d{5,}"
USER_AGENT_RE2 = (
    r"Mozilla/\d|AppleWebKit/|Gecko/\d|Chrome/\d+\.\d|Safari/\d|Firefox/\d|"
    r"\(Windows NT |\(Macintosh;|\(X11;|\(iPhone;|\(iPad;|\(Linux; Android|Dalvik/|okhttp/|curl/\d"
)

_V4 = re.compile(IPV4_RE2)
_V6 = re.compile(IPV6_RE2)
_EMAIL = re.compile(EMAIL_RE2)
_UUID = re.compile(UUID_RE2)
_TOKEN = re.compile(TOKEN_RE2)
_ID_NUMBER = re.compile(ID_NUMBER_RE2)
USER_AGENT = re.compile(USER_AGENT_RE2)


@dataclass(frozen=True)
class IpPolicy:
    """What an address in text may be: a network at most as long as the configured prefix."""

    ipv4_prefix: int
    ipv6_prefix: int
    # Addresses that are not visitors' (listen address, trusted proxies, loopback).
    infrastructure: tuple[str, ...] = ()


@dataclass(frozen=True)
class IpFinding:
    kind: str  # "raw" (a host address) or "prefix" (a network longer than the policy)
    masked: str
    infrastructure: bool = False


def _network_ok(text: str, policy: IpPolicy) -> bool:
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError:
        return False
    limit = policy.ipv4_prefix if net.version == 4 else policy.ipv6_prefix
    return net.prefixlen <= limit


def mask_ip(text: str) -> str:
    """Enough to find a finding again, not enough to identify anyone."""
    addr_text = text.split("/", 1)[0]
    try:
        addr = ipaddress.ip_address(addr_text)
    except ValueError:
        return "(unparsable)"
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if addr.version == 4:
        return ".".join(str(addr).split(".")[:2]) + ".x.x"
    return ":".join(addr.exploded.split(":")[:2]) + ":x:x:x:x:x:x"


def _is_infrastructure(addr: ipaddress.IPv4Address | ipaddress.IPv6Address, p: IpPolicy) -> bool:
    if addr.is_loopback or addr.is_unspecified:
        return True
    for item in p.infrastructure:
        try:
            if addr in ipaddress.ip_network(item, strict=False):
                return True
        except ValueError:
            continue
    return False


def classify_ip(candidate: str, policy: IpPolicy) -> IpFinding | None:
    """None when `candidate` is not an address, or is a network truncated enough."""
    candidate = candidate.strip(".:")
    if "/" in candidate and _network_ok(candidate, policy):
        return None
    text = candidate.split("/", 1)[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    kind = "prefix" if "/" in candidate else "raw"
    return IpFinding(kind, mask_ip(text), _is_infrastructure(addr, policy))


def find_ips(text: str, policy: IpPolicy) -> list[IpFinding]:
    found = []
    for pattern in (_V4, _V6):
        for match in pattern.finditer(text):
            finding = classify_ip(match.group(0), policy)
            if finding is not None:
                found.append(finding)
    return found


def prefix_ok(value: str, policy: IpPolicy) -> bool:
    """A value of an IP-prefix column: empty, or a network exactly at the configured length."""
    if value == "":
        return True
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError:
        return False
    limit = policy.ipv4_prefix if net.version == 4 else policy.ipv6_prefix
    return net.prefixlen == limit


def is_token(text: str) -> bool:
    """A long opaque string (session token, API key, hash): letters and digits mixed."""
    return bool(re.search(r"\d", text)) and bool(re.search(r"[A-Za-z]", text))


@dataclass(frozen=True)
class TextFinding:
    kind: str  # email, uuid, token, id_number, query_string
    redacted: str


def redact(text: str) -> str:
    text = _EMAIL.sub("[email]", text)
    text = _UUID.sub("[uuid]", text)
    text = _TOKEN.sub(lambda m: "[token]" if is_token(m.group(0)) else m.group(0), text)
    text = _ID_NUMBER.sub("[number]", text)
    for pattern in (_V4, _V6):
        text = pattern.sub(
            lambda m: "[ip]" if classify_ip(m.group(0), IpPolicy(32, 128)) else m.group(0), text
        )
    return text[:120]


ALLOWED_QUERY_KEYS = ("ref", "source")


def query_keys_allowed(url: str) -> bool:
    """Stored URLs carry no query string, except the allow-listed campaign keys."""
    if "?" not in url:
        return True
    query = url.split("?", 1)[1].split("#", 1)[0]
    for pair in query.split("&"):
        key = pair.split("=", 1)[0].lower()
        if key and not (key.startswith("utm_") or key in ALLOWED_QUERY_KEYS):
            return False
    return True


def text_findings(text: str, *, url: bool, ids: bool) -> list[TextFinding]:
    """Emails, UUIDs and long tokens anywhere; query strings and ID-like numbers in URLs."""
    kinds: list[str] = []
    if _EMAIL.search(text):
        kinds.append("email")
    if _UUID.search(text):
        kinds.append("uuid")
    if any(is_token(m.group(0)) for m in _TOKEN.finditer(text)):
        kinds.append("token")
    if ids and _ID_NUMBER.search(text):
        kinds.append("id_number")
    if url and not query_keys_allowed(text):
        kinds.append("query_string")
    return [TextFinding(kind, redact(text)) for kind in kinds]


def entropy_bits_per_char(text: str) -> float:
    if not text:
        return 0.0
    counts = Counter(text)
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def count_by(items: Iterable[str]) -> dict[str, int]:
    return dict(sorted(Counter(items).items()))
