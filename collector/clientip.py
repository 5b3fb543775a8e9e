"""The visitor's IP: the socket peer, or X-Forwarded-For when the peer is a trusted proxy.

On the hot path, so addresses are compared as packed integers (`socket.inet_pton`), never as
`ipaddress` objects, which cost several microseconds each.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

from ingest.steps.ip import address_text, normalise_text, packed_ip

# (address length in bytes, network as an int, netmask as an int)
Network = tuple[int, int, int]


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    out = []
    for entry in entries:
        net = ipaddress.ip_network(entry, strict=False)
        mapped = isinstance(net, ipaddress.IPv6Network) and net.network_address.ipv4_mapped
        if mapped and net.prefixlen >= 96:  # written as ::ffff:a.b.c.d: compare as IPv4
            net = ipaddress.IPv4Network((mapped, net.prefixlen - 96))
        out.append((net.max_prefixlen // 8, int(net.network_address), int(net.netmask)))
    return tuple(out)


def _within(packed: bytes, networks: tuple[Network, ...]) -> bool:
    value = int.from_bytes(packed, "big")
    return any(len(packed) == size and value & mask == net for size, net, mask in networks)


@functools.lru_cache(maxsize=1024)  # peers (the proxies) are few and repeat on every request
def is_trusted(peer: str, networks: tuple[Network, ...]) -> bool:
    """Whether the address `peer` is in one of `networks` (a trusted proxy)."""
    try:
        return _within(packed_ip(peer), networks)  # IPv4-mapped IPv6 comes back as IPv4
    except ValueError:
        return False


def joined_lines(lines: Iterable[str]) -> str | None:
    """Every X-Forwarded-For header line, in order, as one list (None when there is none).

    A proxy may add its own line after one the client wrote: read as one list, the rightmost
    hops (what the trusted proxies saw) come last, so a forged line cannot stand in for them.
    """
    return ", ".join(lines) or None


def client_ip(peer: str, forwarded_for: str | None, trusted: tuple[Network, ...]) -> str | None:
    """Walk X-Forwarded-For from the right, skipping trusted proxies; None if no valid address."""
    if not trusted or not forwarded_for or not is_trusted(peer, trusted):
        return _valid(peer)
    for hop in reversed(forwarded_for.split(",")):
        try:
            packed = packed_ip(hop)
        except ValueError:
            return None  # garbage where the client should be: no address, not a forged one
        if not _within(packed, trusted):
            return address_text(packed)
    return _valid(peer)


def _valid(address: str) -> str | None:
    try:
        return normalise_text(address)
    except ValueError:
        return None
