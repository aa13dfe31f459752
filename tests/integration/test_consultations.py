"""A consultation is one episode of contact (PRODUCT.md 3.5), through the real services: a
client who writes again after a close opens the thread's next consultation, with its own start,
case form and automatic answer, and statistics count two consultations dated by their starts.
Telegram and e-mail here; the duty hours are made round-the-clock so the automatic answer is
an acknowledgement whatever the hour of the run."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from shared.mongo import make_client
from tests.conftest import Gateway
from tests.integration.helpers import Consultant, Mailbox, mail, new_message_id
from tests.integration.test_telegram import Bot, bot  # noqa: F401  (the Telegram fixture)

DV_CASE = {"client_role": "survivor", "gender": "f", "age_group": "27-40"}
DV_CASE_AGAIN = {"client_role": "survivor", "gender": "f", "age_group": "41-59"}
MIGRATION_CASE = {"client_role": "survivor", "gender": "m", "age_group": "18-26", "topics": ["work_abroad"]}


def round_the_clock(config: dict[str, Any]) -> None:
    for line in config["lines"].values():
        line["hours"] = {
            "timezone": "Europe/Minsk",
            "open": "00:00",
            "close": "23:59:59.999999",
            "holidays": [],
        }


pytestmark = pytest.mark.hotline_config.with_args(round_the_clock)


async def consultations(gateway: Gateway, thread_id: str) -> list[dict[str, Any]]:
    client = make_client(gateway.urls.mongo_url)
    try:
        cursor = client[gateway.database]["consultations"].find({"thread_id": thread_id}).sort("n")
        return [c async for c in cursor]
    finally:
        await client.close()


async def claim_reply_close(c: Consultant, queue: str, thread_id: str, case: dict[str, Any]) -> None:
    status, thread = await c.call("POST", f"/api/queues/{queue}/next")
    assert status == 200 and thread["id"] == thread_id, thread
    status, reply = await c.call(
        "POST",
        f"/api/threads/{thread_id}/messages",
        {"text": "We are here."},
        {"Idempotency-Key": uuid.uuid4().hex},
    )
    assert status == 202, reply
    status, closed = await c.call("POST", f"/api/threads/{thread_id}/close", {"case": case})
    assert status == 200 and closed["status"] == "closed", closed


async def bot_answers(c: Consultant, thread_id: str) -> list[str]:
    status, thread = await c.call("GET", f"/api/threads/{thread_id}")
    assert status == 200, thread
    return [m["text"] for m in thread["messages"] if m["author"] == "bot"]


async def test_a_telegram_client_who_writes_again_after_a_close_is_a_second_consultation(
    gateway: Gateway,
    bot: Bot,  # noqa: F811
    vera: Consultant,
) -> None:
    tg, chat = bot.telegram, 611
    assert await tg.post(tg.text(chat, "Помогите")) == 200
    queued = await vera.wait_event(lambda e: e["name"] == "ThreadQueued")
    thread_id = queued["thread_id"]
    await claim_reply_close(vera, "gp-dv", thread_id, DV_CASE)

    # The same chat writes again: the thread reopens with its second consultation.
    assert await tg.post(tg.text(chat, "Снова нужна помощь")) == 200
    again = await vera.wait_event(lambda e: e["name"] == "ThreadQueued")
    assert again["thread_id"] == thread_id
    await claim_reply_close(vera, "gp-dv", thread_id, DV_CASE_AGAIN)

    first, second = await consultations(gateway, thread_id)
    assert (first["n"], second["n"]) == (1, 2)
    assert first["case"]["age_group"] == "27-40" and second["case"]["age_group"] == "41-59"
    # Each dated by its own start: the second by the message after the first close.
    assert first["started_at"] < first["closed_at"] <= second["started_at"] < second["closed_at"]
    assert second["facts"]["at"] == second["started_at"]
    assert first["consultants"] == second["consultants"] == ["vera"]
    assert first["channel"] == second["channel"] == "telegram"
    # Each consultation was acknowledged: the automatic answer follows the consultation.
    assert len(await bot_answers(vera, thread_id)) == 2

    gateway.seed_demo_accounts()
    sofia = Consultant(gateway.store_url)
    try:
        await sofia.login("sofia", "sofia-demo")
        # Statistics' days are the stats time zone's (Europe/Minsk), not UTC's.
        day = first["started_at"].replace(tzinfo=UTC).astimezone(ZoneInfo("Europe/Minsk")).date().isoformat()
        status, result = await sofia.call("GET", f"/api/stats?from={day}&to={day}&line=dv&by=age_group")
        assert status == 200, result
        assert result["total"]["count"] == 2
        # ...and one person: the same Telegram user is the same client.
        assert first["client_id"] is not None and first["client_id"] == second["client_id"]
        assert (result["total"]["people"], result["total"]["without_known_person"]) == (1, 0)
        assert {r["age_group"]: r["count"] for r in result["rows"]} == {"27-40": 1, "41-59": 1}
    finally:
        await sofia.close()


async def test_an_email_answered_after_a_close_is_a_second_consultation(gateway: Gateway) -> None:
    gateway.seed_demo_accounts()
    inbox = Mailbox("127.0.0.1", gateway.urls.imap_port, gateway.line_mailbox)
    client_addr = f"{gateway.client_mailbox}@demo.test"
    line_addr = f"{gateway.line_mailbox}@demo.test"
    anna = Consultant(gateway.store_url)
    try:
        await anna.login("anna", "anna-demo")
        await anna.open_events()
        first_id = new_message_id()
        await inbox.append(mail(client_addr, line_addr, "Работа", "Мне предложили работу.", first_id))
        queued = await anna.wait_event(lambda e: e["name"] == "ThreadQueued")
        thread_id = queued["thread_id"]
        await claim_reply_close(anna, "113-triage", thread_id, MIGRATION_CASE)
        status, thread = await anna.call("GET", f"/api/threads/{thread_id}")
        ours = [m["email_message_id"] for m in thread["messages"] if m["author"] == "consultant:anna"]

        # The client answers our reply a while after the close: the same thread, a new consultation.
        await inbox.append(
            mail(
                client_addr,
                line_addr,
                "Re: Работа",
                "Ещё вопрос.",
                new_message_id(),
                in_reply_to=ours[0],
                references=[first_id, ours[0]],
            )
        )
        again = await anna.wait_event(lambda e: e["name"] == "ThreadQueued")
        assert again["thread_id"] == thread_id
        status, reopened = await anna.call("GET", f"/api/threads/{thread_id}")
        assert status == 200 and reopened["status"] == "waiting" and reopened["consultation"]["n"] == 2
        # It comes back to the organisation that answered it (its own queue, where the claim moved it).
        assert reopened["queue"] == "lastrada-migration"
        await claim_reply_close(anna, reopened["queue"], thread_id, {**MIGRATION_CASE, "gender": "f"})
        assert len(await bot_answers(anna, thread_id)) == 2
    finally:
        await anna.close()
    first, second = await consultations(gateway, thread_id)
    assert (first["case"]["gender"], second["case"]["gender"]) == ("m", "f")
    # A mail's start is its arrival on the IMAP server, to the second.
    assert first["started_at"] <= second["started_at"]
    assert first["outcome"] == second["outcome"] == "consultation"
    # One person: the same address is the same client.
    assert first["client_id"] is not None and first["client_id"] == second["client_id"]
    assert first["queues"] == ["113-triage", "lastrada-migration"] and second["queues"] == [
        "lastrada-migration"
    ]


def closed_for_three_days(config: dict[str, Any]) -> None:
    today = datetime.now(ZoneInfo("Europe/Minsk")).date()
    for line in config["lines"].values():
        line["hours"] = {
            "timezone": "Europe/Minsk",
            "open": "08:00",
            "close": "20:00",
            "holidays": [(today + timedelta(days=d)).isoformat() for d in (-1, 0, 1)],
        }


@pytest.mark.hotline_config.with_args(closed_for_three_days)
async def test_out_of_hours_each_consultation_gets_its_notice_within_one_closed_period(
    gateway: Gateway,
    bot: Bot,  # noqa: F811
    vera: Consultant,
) -> None:
    tg, chat = bot.telegram, 612
    assert await tg.post(tg.text(chat, "Помогите")) == 200
    queued = await vera.wait_event(lambda e: e["name"] == "ThreadQueued")
    thread_id = queued["thread_id"]
    await claim_reply_close(vera, "gp-dv", thread_id, DV_CASE)
    assert await tg.post(tg.text(chat, "Это снова я")) == 200
    await vera.wait_event(lambda e: e["name"] == "ThreadQueued" and e["thread_id"] == thread_id)
    # The notice names the same opening both times, and each consultation has its own.
    status, thread = await vera.call("GET", f"/api/threads/{thread_id}")
    assert status == 200 and thread["consultation"]["n"] == 2
    notices = await bot_answers(vera, thread_id)
    assert len(notices) == 2 and notices[0] == notices[1] and "102" in notices[0]
