"""Redact personal data that pages put in URLs and props: emails, long tokens, ID-like numbers.

Each redaction is counted by kind in `Redactor.counts` (exposed as `Pipeline.redactions`, so
/metrics and the audit show how often it happened). Placeholders are route-style (`:email`,
`:token`, `:id`) so redacted paths group together in the dashboard.
"""

from __future__ import annotations

import re
from collections import Counter

# Order matters: an email contains digits, a UUID looks like a token.
_PATTERN = re.compile(
    # RFC 5322 local-part characters except "/" (a path separator in URLs).
    r"(?P<email>[A-Za-z0-9!#$%&'*+=?^_`{|}~.\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*"
    r"\.[A-Za-z][A-Za-z0-9\-]{1,62})"
    r"|(?P<uuid>\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b)"
    # IPv6: the full eight groups, or a compressed form with "::" (6+ characters, so C++-style
    # "std::x" survives), optionally with a dotted IPv4 tail (::ffff:192.0.2.1).
    r"|(?P<ipv6>(?<![0-9A-Fa-f:.])(?:(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}"
    r"|(?=[0-9A-Fa-f:.]{6,})(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4})*)?::"
    r"(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4})*)?(?::?\d{1,3}(?:\.\d{1,3}){3})?)"
    r"(?![0-9A-Fa-f:.]))"
    r"|(?P<ipv4>(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d.]))"
    r"|(?P<jwt>\beyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,})"
    # A run of letters and digits of 20+ characters that mixes both (hex, base64, API keys).
    # Hyphens split runs, so slugs ("top-10-tips-for-2024") survive.
    r"|(?P<token>(?<![A-Za-z0-9_])(?=[A-Za-z_]*[0-9])(?=[0-9_]*[A-Za-z])"
    r"[A-Za-z0-9_]{20,}(?![A-Za-z0-9_]))"
    # Five or more digits standing alone (order, user, phone numbers); years (4) survive. Not
    # followed by "@": a short number before a space must not swallow an email's local part.
    r"|(?P<id>(?<![A-Za-z0-9])\+?\d(?:[\d\-. ]{3,}\d)?(?![A-Za-z0-9@]))"
)
_TRIGGER = re.compile(r"[@\d:]")
_MIN_ID_DIGITS = 5

PLACEHOLDERS = {
    "email": ":email",
    "uuid": ":id",
    "ipv6": ":ip",
    "ipv4": ":ip",
    "jwt": ":token",
    "token": ":token",
    "id": ":id",
}
KINDS = {
    "email": "email",
    "uuid": "id",
    "ipv6": "ip",
    "ipv4": "ip",
    "jwt": "token",
    "token": "token",
    "id": "id",
}


class Redactor:
    def __init__(self, counts: Counter[str] | None = None) -> None:
        self.counts: Counter[str] = Counter() if counts is None else counts

    def _replace(self, match: re.Match[str]) -> str:
        kind = _kind(match)
        if kind is None:
            return match.group(0)
        self.counts[KINDS[kind]] += 1
        return PLACEHOLDERS[kind]

    def text(self, value: str) -> str:
        """`value` with personal-looking parts replaced; unchanged (and fast) when it has no
        digit, @ or colon, which is most paths."""
        if not _TRIGGER.search(value):
            return value
        return _PATTERN.sub(self._replace, value)

    @property
    def total(self) -> int:
        """Redactions counted so far (compare before and after to see whether any was made)."""
        return sum(self.counts.values())

    def keeps(self, value: str) -> bool:
        """Whether `text(value)` would return `value` as it is (nothing is counted)."""
        return not _TRIGGER.search(value) or all(_kind(m) is None for m in _PATTERN.finditer(value))


def _kind(match: re.Match[str]) -> str | None:
    """The kind of personal data `match` is, or None when it is to be kept (a short number)."""
    kind = match.lastgroup or "id"
    if kind == "id" and sum(c.isdigit() for c in match.group(0)) < _MIN_ID_DIGITS:
        return None
    return kind
