"""Loop safety of automatic answers, the pure parts (issue 20 item 3): how our mail is marked
(RFC 3834 5), how a robot's mail is recognised, and the line's answer period. The exchange with
real auto-responders is tests/integration/test_email_loops.py."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from services.email_ingest.mime import AUTO_REPLY, BULK, PERSON, classify
from services.email_ingest.smtp import build_reply, checked
from shared.config import HotlineConfig
from shared.envelope import Channel, OutboundMessage, utcnow
from shared.settings import DEFAULT_CONFIG_PATH


def _out(role: str) -> OutboundMessage:
    return OutboundMessage(
        message_id="m1",
        thread_id="t1",
        channel=Channel.EMAIL,
        line="113",
        recipient="client@example.org",
        text="Hello",
        sent_at=utcnow(),
        sender_role=role,  # type: ignore[arg-type]
        email_message_id="<m1.tok@demo.test>",
        in_reply_to="<c1@example.org>",
    )


def test_an_automatic_answer_says_it_is_one_and_a_consultants_reply_does_not() -> None:
    auto = build_reply(_out("bot"), "hotline@demo.test", "")
    assert auto["Auto-Submitted"] == "auto-replied"
    # The mark survives the read-back check, so it is in the bytes sent.
    assert b"\r\nAuto-Submitted: auto-replied\r\n" in checked(auto).data
    person = build_reply(_out("consultant"), "hotline@demo.test", "")
    assert "Auto-Submitted" not in person  # RFC 3834 5: a person's mail is "no", or unmarked
    assert b"Auto-Submitted" not in checked(person).data


@pytest.mark.parametrize(
    ("header", "value", "kind"),
    [
        ("Auto-Submitted", "auto-replied", AUTO_REPLY),
        ("Auto-Submitted", "Auto-Generated", AUTO_REPLY),
        ("Auto-Submitted", "auto-notified; owner-email=x@example.org", AUTO_REPLY),
        ("Precedence", "auto_reply", AUTO_REPLY),
        ("X-Autoreply", "yes", AUTO_REPLY),
        ("Precedence", "bulk", BULK),
        ("Precedence", "junk", BULK),
        ("Precedence", "list", BULK),
        ("List-Id", "<news.example.org>", BULK),
        ("List-Unsubscribe", "<mailto:leave@example.org>", BULK),
        ("Auto-Submitted", "no", PERSON),
        ("Precedence", "first-class", PERSON),
    ],
)
def test_a_robots_mail_is_recognised_by_its_headers(header: str, value: str, kind: str) -> None:
    msg = EmailMessage()
    msg["From"] = "someone@example.org"
    msg[header] = value
    msg.set_content("Out of office")
    assert classify(msg) == kind


def _line(**changes: Any) -> dict[str, Any]:
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text(encoding="utf-8"))
    raw["lines"]["113"].update(changes)
    return dict(raw)


def test_a_lines_answer_period_is_a_day_unless_set_and_never_zero() -> None:
    assert HotlineConfig.model_validate(_line()).lines["113"].auto_answer_period_hours == 24
    assert (
        HotlineConfig.model_validate(_line(auto_answer_period_hours=72)).lines["113"].auto_answer_period_hours
        == 72
    )
    with pytest.raises(ValidationError, match="auto_answer_period_hours"):
        HotlineConfig.model_validate(_line(auto_answer_period_hours=0))
