"""The client's address: the TCP peer, or what a trusted reverse proxy says in X-Forwarded-For.

X-Forwarded-For is a list anyone can start; each proxy appends the address it saw. So the
header is read only when the peer is a configured proxy, from the right, skipping our own
proxies: the first address that is not one of them is the client.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network


@lru_cache(maxsize=16)
def _networks(trusted: tuple[str, ...]) -> tuple[IPv4Network | IPv6Network, ...]:
    return tuple(ip_network(item, strict=False) for item in trusted)


def _is_trusted(address: str, networks: Iterable[IPv4Network | IPv6Network]) -> bool:
    try:
        ip = ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def client_ip(peer: str | None, forwarded_for: str | None, trusted: tuple[str, ...]) -> str:
    """The address to rate-limit, block and log."""
    peer = peer or "unknown"
    networks = _networks(trusted)
    if not forwarded_for or not networks or not _is_trusted(peer, networks):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, networks):
            try:
                return str(ip_address(hop))
            except ValueError:
                return peer  # garbage in the header: the proxy is the best we know
    return hops[0] if hops else peer


def from_trusted_proxy(peer: str | None, trusted: tuple[str, ...]) -> bool:
    """Whether the TCP peer is one of our proxies (whose headers are believed)."""
    return bool(peer) and _is_trusted(str(peer), _networks(trusted))
