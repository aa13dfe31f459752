"""Per-source bounds of chat_ingest (services/chat_ingest/sources.py): what counts as one
source, and that the counts stay bounded."""

from __future__ import annotations

import pytest

from services.chat_ingest import sources
from services.chat_ingest.sources import SourceLimits, source_of


def test_an_ipv6_client_counts_by_its_64_and_a_mapped_ipv4_as_itself() -> None:
    assert source_of("2001:db8:1:2:aaaa::1") == source_of("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert source_of("2001:db8:1:3::1") != source_of("2001:db8:1:2::1")
    assert source_of("::ffff:203.0.113.9") == source_of("203.0.113.9") == "203.0.113.9"
    assert source_of(None) == source_of("") == ""


def test_sockets_are_bounded_per_source_and_a_source_at_zero_is_forgotten() -> None:
    limits = SourceLimits(max_sockets=2, starts_per_minute=5)
    assert limits.open("a") and limits.open("a")
    assert not limits.open("a"), "a third socket of one source"
    assert limits.open("b")
    limits.close("a")
    assert limits.open("a")
    for source in ("a", "a", "b"):
        limits.close(source)
    assert len(limits) == 0


def test_starts_are_bounded_per_source_per_minute_and_forgotten_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr(sources.time, "monotonic", lambda: now[0])
    limits = SourceLimits(max_sockets=2, starts_per_minute=3)
    assert [limits.allow_start("a") for _ in range(4)] == [True, True, True, False]
    assert limits.allow_start("b")
    now[0] += sources.START_WINDOW - 1
    assert not limits.allow_start("a"), "within the same minute"
    now[0] += 1
    assert limits.allow_start("a"), "a new minute"
    now[0] += sources.START_WINDOW
    limits.allow_start("c")  # the pass that forgets the sources whose minute is over
    assert len(limits) == 1
