"""Per-source bounds on chat sockets and chat starts, counted in this process's memory.

A source is the client's address (:func:`shared.peers.client_address`: the TCP peer, or the
``X-Real-IP`` of a trusted proxy); an IPv6 client counts by its /64, the block one household
or phone is given, so rotating addresses inside it is no escape. One source may hold
``max_sockets`` sockets at once and start ``starts_per_minute`` chats in any minute (counted
from its first start in that minute), so one client can neither hold the chat's sockets nor
spend the process's start budget (``session_starts_per_second``) for everyone.

Privacy (QUALITY.md 4): the addresses are dictionary keys here and nowhere else: never
stored, logged or put in a metric. Memory stays bounded: a source's socket count is dropped
when it falls to zero, and its start count once its minute is over.
"""

from __future__ import annotations

import ipaddress
import time

START_WINDOW = 60.0  # seconds: starts are counted per source per minute
IPV6_PREFIX = 64


def source_of(address: str | None) -> str:
    """The key an address counts under: itself (IPv4), its /64 (IPv6), ``""`` when unknown
    (not a TCP peer: every such client is one source)."""
    if not address:
        return ""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, IPV6_PREFIX), strict=False))
    return str(parsed)


class SourceLimits:
    """Sockets held and chats started per source (see the module's docstring). Not shared by
    replicas: each replica bounds what reaches it, as the process start budget does."""

    def __init__(self, max_sockets: int, starts_per_minute: int) -> None:
        self.max_sockets = max_sockets
        self.starts_per_minute = starts_per_minute
        self._sockets: dict[str, int] = {}
        self._starts: dict[str, tuple[float, int]] = {}  # source -> (its minute began, starts)
        self._pruned = time.monotonic()

    def open(self, source: str) -> bool:
        """Count a socket of ``source``; False (nothing counted) when it holds the most already.
        Every True is matched by one :meth:`close`."""
        held = self._sockets.get(source, 0)
        if held >= self.max_sockets:
            return False
        self._sockets[source] = held + 1
        return True

    def close(self, source: str) -> None:
        held = self._sockets.get(source, 0) - 1
        if held > 0:
            self._sockets[source] = held
        else:
            self._sockets.pop(source, None)

    def allow_start(self, source: str) -> bool:
        """Count a chat start of ``source``; False (nothing counted) past its starts this minute."""
        now = time.monotonic()
        if now - self._pruned >= START_WINDOW:
            # Once a minute: forget every source whose minute is over.
            self._starts = {s: w for s, w in self._starts.items() if now - w[0] < START_WINDOW}
            self._pruned = now
        began, count = self._starts.get(source, (now, 0))
        if now - began >= START_WINDOW:
            began, count = now, 0
        if count >= self.starts_per_minute:
            return False
        self._starts[source] = (began, count + 1)
        return True

    def __len__(self) -> int:
        """Sources counted at all (for tests of the memory bound)."""
        return len(self._sockets.keys() | self._starts.keys())
