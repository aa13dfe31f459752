"""Which address a request comes from, for per-source limits only (the store's failed log-in
throttle, chat_ingest's sockets and chat starts per source).

Behind a reverse proxy every TCP peer is the proxy; the proxy names the client in
``X-Real-IP`` (deploy/proxy/nginx.conf sets it, replacing any a client sent). Any client can
write that header, so it is believed only from a peer in the service's trusted proxies;
``X-Forwarded-For`` is never read. An address found here is used to count, never stored or
logged (QUALITY.md 4).
"""

from __future__ import annotations

import ipaddress

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_address(remote: str | None, real_ip: str | None, trusted: list[IpNetwork]) -> str | None:
    """The address a request comes from: ``real_ip`` (the ``X-Real-IP`` header) when the TCP
    peer ``remote`` is a trusted proxy and the header holds one address, else ``remote``."""
    if remote is None or real_ip is None or not trusted:
        return remote
    try:
        peer, claimed = ipaddress.ip_address(remote), ipaddress.ip_address(real_ip.strip())
    except ValueError:
        return remote
    return str(claimed) if any(peer in net for net in trusted) else remote


def networks(value: object) -> object:
    """A settings validator (``mode="before"``) for a list of networks given as one
    comma-separated string of CIDRs, e.g. ``10.0.0.0/8,fd00::/8``; other values pass through."""
    if isinstance(value, str):
        return [ipaddress.ip_network(v.strip(), strict=False) for v in value.split(",") if v.strip()]
    return value
