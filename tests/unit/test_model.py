"""The thread documents conversations.model builds: the fields every writer relies on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from conversations.identity import thread_id_for
from conversations.model import NORMAL, ThreadStatus, new_phone_consultation, new_thread

AT = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def test_a_new_thread_waits_unheld_with_its_id_derived_from_its_key() -> None:
    doc = new_thread(
        "chat:s1",
        channel="chat",
        line="dv",
        queue="gp-dv",
        organisations=["gp"],
        client_address="s1",
        created_at=AT,
        waiting_since=AT,
        context={"language": "ru", "region": None, "topic": None},
    )
    assert doc["_id"] == thread_id_for("chat:s1")
    assert doc["status"] == "waiting" and doc["assignee"] is None and doc["claim_seq"] == 0
    assert doc["priority"] == NORMAL and doc["client"] == {"address": "s1"}
    assert doc["language"] == "ru" and doc["reply_token"]


def test_two_new_threads_get_different_reply_tokens() -> None:
    one, two = (
        new_thread(
            "k",
            channel="email",
            line="dv",
            queue="q",
            organisations=[],
            client_address="a",
            created_at=AT,
            waiting_since=AT,
        )
        for _ in range(2)
    )
    assert one["reply_token"] != two["reply_token"]


def test_a_phone_consultation_is_born_closed_and_has_no_chat_context() -> None:
    now = AT + timedelta(hours=2)
    doc = new_phone_consultation(
        "vera",
        "key-12345",
        line="dv",
        queue="gp-dv",
        organisations=["gp"],
        case={"gender": "f"},
        at=AT,
        now=now,
    )
    assert doc["key"] == "phone:vera:key-12345" and doc["_id"] == thread_id_for(doc["key"])
    assert doc["status"] == ThreadStatus.CLOSED == "closed"
    assert (doc["created_at"], doc["waiting_since"], doc["closed_at"], doc["updated_at"]) == (
        AT,
        AT,
        now,
        now,
    )
    assert doc["closed_by"] == "vera" and doc["case"] == {"gender": "f"} and doc["client"] == {"address": ""}
    assert not {"language", "region", "topic"} & doc.keys()
