"""The rules of a chat whose client left (conversations/client_left.py): when a client counts as
silent, and which message clears the mark."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from conversations.client_left import QUICK_EXIT, SILENT, marker, silent_since, wrote_after

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_a_client_is_silent_once_the_configured_time_has_passed_and_never_when_it_is_off() -> None:
    assert silent_since(NOW - timedelta(minutes=15), NOW, 15)
    assert not silent_since(NOW - timedelta(minutes=14, seconds=59), NOW, 15)
    assert not silent_since(NOW - timedelta(days=3), NOW, 0)


def test_only_a_message_after_the_client_left_clears_the_mark() -> None:
    left = marker(QUICK_EXIT, NOW, NOW + timedelta(seconds=1))
    assert left == {"why": QUICK_EXIT, "at": NOW, "marked_at": NOW + timedelta(seconds=1)}
    # Sent before the quick exit, handled after it: the client is still gone.
    assert not wrote_after(left, NOW - timedelta(milliseconds=5))
    assert not wrote_after(left, NOW)
    assert wrote_after(marker(SILENT, NOW, NOW), NOW + timedelta(milliseconds=1))
    assert not wrote_after(None, NOW)
    assert not wrote_after({"why": SILENT}, NOW)
