"""IP handling: normalise (IPv4-mapped IPv6 is IPv4), then truncate to the configured prefix.

The truncated network is the only IP-derived value that may be stored, and only when
`privacy.keep_ip_prefix` is on; the full address is used in memory (geolocation, the keyed
visitor hash) and dropped with the `Hit`.
"""

from __future__ import annotations

import ipaddress
import socket

from firstparty.config import Config
from ingest.event import Event
from ingest.hit import Hit
from ingest.pipeline import Step

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


_MAPPED = b"\x00" * 10 + b"\xff\xff"


def packed_ip(ip: str) -> bytes:
    """4 bytes for IPv4 (IPv4-mapped IPv6 included), 16 for IPv6; ValueError if invalid."""
    text = ip.strip().strip("[]").split("%", 1)[0]
    try:
        if ":" not in text:
            return socket.inet_pton(socket.AF_INET, text)
        packed = socket.inet_pton(socket.AF_INET6, text)
    except OSError:
        raise ValueError(f"not an IP address ({len(ip)} characters)") from None
    return packed[12:] if packed[:12] == _MAPPED else packed


def normalise_ip(ip: str) -> Address:
    """The address, with `::ffff:a.b.c.d` turned into `a.b.c.d` and any IPv6 zone dropped."""
    packed = packed_ip(ip)
    return ipaddress.IPv4Address(packed) if len(packed) == 4 else ipaddress.IPv6Address(packed)


def address_text(packed: bytes) -> str:
    """Canonical text of a packed address (4 or 16 bytes)."""
    return socket.inet_ntop(socket.AF_INET if len(packed) == 4 else socket.AF_INET6, packed)


def normalise_text(ip: str) -> str:
    """`normalise_ip` as canonical text, without building ipaddress objects (hot path)."""
    return address_text(packed_ip(ip))


def truncate_ip(ip: str, v4_prefix: int = 24, v6_prefix: int = 48) -> str:
    """The network of `ip` at the configured prefix, as CIDR text (e.g. `203.0.113.0/24`)."""
    packed = packed_ip(ip)
    bits = len(packed) * 8
    prefix = v4_prefix if bits == 32 else v6_prefix
    value = int.from_bytes(packed, "big") & ~((1 << (bits - prefix)) - 1)
    return f"{address_text(value.to_bytes(bits // 8, 'big'))}/{prefix}"


def ip_prefix(config: Config) -> Step:
    v4, v6 = config.privacy.ipv4_prefix, config.privacy.ipv6_prefix

    def step(hit: Hit, event: Event) -> str | None:
        if config.privacy.keep_ip_prefix:
            try:
                event.ip_prefix = truncate_ip(hit.ip, v4, v6)
            except ValueError:
                event.ip_prefix = ""
        return None

    return step
