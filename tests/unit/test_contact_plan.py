"""A safe-contact plan's rules (conversations/contact_plan.py), without servers: which reason
holds a reply, quiet hours across midnight in the line's time zone, what a plan may hold, and
the envelope of a held reply saying so."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from conversations.contact_plan import (
    CHANNEL_NOT_ALLOWED,
    WAITING_FOR_CLIENT,
    ContactPlan,
    hold_reason,
    plan_key,
)
from conversations.outbound import outbound_envelope

MINSK = "Europe/Minsk"  # UTC+3


def at_minsk(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, 7, (hour - 3) % 24, minute, tzinfo=UTC)


def plan(**fields: object) -> ContactPlan:
    return ContactPlan.model_validate(fields)


def test_no_plan_holds_nothing() -> None:
    assert hold_reason(None, "email", at_minsk(3), MINSK, client_turn=False) is None
    assert hold_reason(plan(), "email", at_minsk(3), MINSK, client_turn=False) is None


@pytest.mark.parametrize(
    ("hour", "minute", "held"),
    [(21, 59, False), (22, 0, True), (23, 30, True), (0, 0, True), (7, 29, True), (7, 30, False)],
)
def test_quiet_hours_across_midnight_in_the_line_s_time_zone(hour: int, minute: int, held: bool) -> None:
    quiet = plan(quiet_hours={"from": "22:00", "to": "07:30"})
    reason = hold_reason(quiet, "chat", at_minsk(hour, minute), MINSK, client_turn=True)
    assert reason == ("quiet hours until 07:30" if held else None)


def test_the_most_lasting_reason_is_named_first() -> None:
    strict = plan(channels=["email"], quiet_hours={"from": "00:00", "to": "23:59"}, write_first=True)
    assert hold_reason(strict, "telegram", at_minsk(12), MINSK, client_turn=False) == CHANNEL_NOT_ALLOWED
    assert hold_reason(strict, "email", at_minsk(12), MINSK, client_turn=False) == "quiet hours until 23:59"
    turn = plan(write_first=True)
    assert hold_reason(turn, "email", at_minsk(12), MINSK, client_turn=False) == WAITING_FOR_CLIENT
    assert hold_reason(turn, "email", at_minsk(12), MINSK, client_turn=True) is None


@pytest.mark.parametrize(
    "fields",
    [
        {"sender_name": "Books\r\nBcc: x@example.org"},
        {"subject": "x" * 121},
        {"channels": ["sms"]},
        {"quiet_hours": {"from": "22:00", "to": "22:00"}},
        {"quiet_hours": {"from": "25:00", "to": "07:00"}},
        {"note": "a free-text field the plan does not have"},
    ],
)
def test_a_plan_holds_only_its_choices(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ContactPlan.model_validate(fields)


def test_the_plan_of_a_thread_without_a_client_is_its_own() -> None:
    assert plan_key({"_id": "t1", "client_id": None}) == "thread:t1"
    assert plan_key({"_id": "t1", "client_id": "c1"}) == "client:c1"


def test_a_held_reply_s_envelope_says_so_and_carries_the_neutral_sender() -> None:
    thread = {"_id": "t1", "channel": "email", "line": "dv", "client": {"address": "c@example.org"}}
    now = datetime(2026, 12, 7, tzinfo=UTC)
    doc = {
        "_id": "m1",
        "text": "answer",
        "created_at": now,
        "author": "consultant:vera",
        "delivery": {"status": "held", "at": now, "detail": WAITING_FOR_CLIENT},
    }
    neutral = plan(sender_name="Book club", subject="News")
    held = outbound_envelope(thread, doc, neutral)
    assert held.hold == WAITING_FOR_CLIENT
    assert (held.sender_name, held.neutral_subject) == ("Book club", "News")
    doc["delivery"] = {"status": "queued", "at": now}
    assert outbound_envelope(thread, doc).hold is None
