"""The rules of a chat whose client left (conversations/client_left.py): when a client counts as
silent, which message clears the mark, which mark replaces which, and which forbids replies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from conversations.client_left import (
    NOT_SAFE,
    QUICK_EXIT,
    SILENT,
    at_least,
    holds_replies,
    marker,
    silent_since,
    wrote_after,
)

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


def test_a_stronger_mark_replaces_a_weaker_one_never_the_reverse() -> None:
    # The repository marks a thread unless it carries one of these already.
    assert at_least(NOT_SAFE) == [NOT_SAFE]
    assert at_least(QUICK_EXIT) == [NOT_SAFE, QUICK_EXIT]
    assert at_least(SILENT) == [NOT_SAFE, QUICK_EXIT, SILENT]


def test_only_not_safe_forbids_replies_and_writing_again_lifts_it() -> None:
    left = marker(NOT_SAFE, NOW, NOW)
    assert holds_replies(left)
    assert not holds_replies(marker(QUICK_EXIT, NOW, NOW))
    assert not holds_replies(marker(SILENT, NOW, NOW))
    assert not holds_replies(None)
    assert wrote_after(left, NOW + timedelta(seconds=1))
