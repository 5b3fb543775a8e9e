"""Which address is the visitor's: the peer, or X-Forwarded-For only behind a trusted proxy."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.clientip import client_ip, parse_networks
from firstparty.config import parse

TRUSTED = parse_networks(["127.0.0.1", "10.0.0.0/8", "fd00::/8"])


@pytest.mark.parametrize(
    ("peer", "xff", "trusted", "expected"),
    [
        # No trusted proxies configured: the header is ignored, whoever sends it.
        ("198.51.100.7", "1.2.3.4", (), "198.51.100.7"),
        ("127.0.0.1", "1.2.3.4", (), "127.0.0.1"),
        # An untrusted peer cannot forge its address with the header.
        ("198.51.100.7", "1.2.3.4", TRUSTED, "198.51.100.7"),
        # Trusted peer: the first untrusted address from the right.
        ("127.0.0.1", "203.0.113.9", TRUSTED, "203.0.113.9"),
        ("127.0.0.1", "203.0.113.9, 10.1.2.3", TRUSTED, "203.0.113.9"),
        ("10.0.0.5", "6.6.6.6, 203.0.113.9, 10.1.2.3", TRUSTED, "203.0.113.9"),
        # Every hop trusted: the left-most is the best we know.
        ("127.0.0.1", "10.9.9.9, 10.1.2.3", TRUSTED, "127.0.0.1"),
        # Garbage in the chain where the client should be: no address, not a forged one.
        ("127.0.0.1", "not-an-ip", TRUSTED, None),
        ("127.0.0.1", "", TRUSTED, "127.0.0.1"),
        # IPv6 and IPv4-mapped peers.
        ("::ffff:127.0.0.1", "203.0.113.9", TRUSTED, "203.0.113.9"),
        ("fd00::1", "2001:db8::42", TRUSTED, "2001:db8::42"),
        ("127.0.0.1", "[2001:db8::42]", TRUSTED, "2001:db8::42"),
        ("", None, TRUSTED, None),
    ],
)
def test_client_ip(
    peer: str, xff: str | None, trusted: tuple[object, ...], expected: str | None
) -> None:
    assert client_ip(peer, xff, trusted) == expected  # type: ignore[arg-type]


def test_trusted_proxies_from_config_and_environment() -> None:
    config = parse('[server]\ntrusted_proxies = ["127.0.0.1", "10.0.0.0/8"]\n', env={})
    assert config.server.trusted_proxies == ("127.0.0.1", "10.0.0.0/8")
    env = parse("", env={"FIRSTPARTY_TRUSTED_PROXIES": "192.0.2.1, 10.0.0.0/8"})
    assert client_ip("192.0.2.1", "203.0.113.5", parse_networks(env.server.trusted_proxies)) == (
        "203.0.113.5"
    )


@given(
    address=st.ip_addresses(),
    network=st.ip_addresses().flatmap(
        lambda a: st.integers(0, a.max_prefixlen).map(
            lambda p: ipaddress.ip_network((a, p), strict=False)
        )
    ),
)
def test_trust_matches_the_ipaddress_module(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
    network: ipaddress.IPv4Network | ipaddress.IPv6Network,
) -> None:
    # A proxy at `address` forwarding for 192.0.2.1 is believed exactly when it is in `network`.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return  # mapped peers are compared as IPv4: covered by the table above
    forwarded = ipaddress.ip_address("192.0.2.1")
    proxied = client_ip(str(address), str(forwarded), parse_networks([str(network)]))
    believed = address in network and forwarded not in network
    assert proxied == (str(forwarded) if believed else str(address))
