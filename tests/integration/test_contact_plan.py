"""A client's safe-contact plan, through the real services (conversations/contact_plan.py): a
reply the plan forbids now is stored held with the reason, shown held in the thread, never
reaches the client (not live, not in a resumed chat's backlog), and goes once allowed (quiet
hours over, the client wrote, the plan changed) or never (cancelled). A neutral sender name and
subject are what the client's mailbox shows.

"Now" is the real clock: quiet hours are set to end a few seconds from now (plans take times to
the second), and the store's release pass runs every half second."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from email import policy
from email.parser import BytesParser
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from playwright.async_api import Browser, expect

from tests.conftest import Gateway
from tests.integration.chat_client import ChatClient
from tests.integration.email_support import database, supervisor
from tests.integration.helpers import Consultant, Mailbox, mail, new_message_id
from tests.integration.test_console_journey import LAPTOP, Watch
from tests.integration.test_console_journey import logged_in as console_of

MINSK = ZoneInfo("Europe/Minsk")  # the dv line's time zone (deploy/config)
FAST_RELEASE = pytest.mark.service_env({"STORE_HOLD_CHECK_SECONDS": "0.5"})


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def claimed_chat(
    http: aiohttp.ClientSession, gateway: Gateway, vera: Consultant
) -> tuple[ChatClient, str]:
    """A widget client of the dv line who wrote once, and its thread, claimed by vera."""
    chat = ChatClient(http, gateway.chat_url)
    await chat.start(line="dv", language="ru")
    await chat.say("Мне нужна помощь")
    queued = await vera.wait_event(lambda e: e["name"] == "ThreadQueued")
    status, claimed = await vera.call("POST", f"/api/threads/{queued['thread_id']}/claim")
    assert status == 200, claimed
    return chat, queued["thread_id"]


async def set_plan(who: Consultant, thread_id: str, plan: dict[str, Any]) -> dict[str, Any]:
    status, body = await who.call("PUT", f"/api/threads/{thread_id}/contact-plan", plan)
    assert status == 200, body
    return dict(body)


async def reply(who: Consultant, thread_id: str, text: str) -> dict[str, Any]:
    status, body = await who.call(
        "POST", f"/api/threads/{thread_id}/messages", {"text": text}, {"Idempotency-Key": uuid.uuid4().hex}
    )
    assert status == 202, body
    return dict(body)


async def delivery_of(who: Consultant, thread_id: str, message_id: str) -> dict[str, Any]:
    status, thread = await who.call("GET", f"/api/threads/{thread_id}")
    assert status == 200, thread
    return dict(next(m for m in thread["messages"] if m["id"] == message_id)["delivery"])


async def resumed_backlog(chat: ChatClient) -> None:
    """Reconnect as a client whose phone lost its network: the server sends the session frame,
    then every reply not yet shown. An unknown frame's error comes after them, so once it is
    read, everything the backlog held has arrived."""
    await chat.resume()
    errors = len(chat.errors)
    await chat.send_raw('{"type":"nonsense"}')
    await chat.wait(lambda: len(chat.errors) > errors)


@FAST_RELEASE
async def test_a_reply_in_quiet_hours_is_held_with_the_reason_and_sent_when_they_end(
    gateway: Gateway, vera: Consultant, http: aiohttp.ClientSession
) -> None:
    chat, thread_id = await claimed_chat(http, gateway, vera)
    now = datetime.now(MINSK).replace(microsecond=0)
    end = now + timedelta(seconds=8)
    quiet = {"from": (now - timedelta(hours=1)).strftime("%H:%M:%S"), "to": end.strftime("%H:%M:%S")}
    recorded = await set_plan(vera, thread_id, {"quiet_hours": quiet})
    # A web chat names nobody: the plan is the thread's own.
    assert recorded["scope"] == "thread" and recorded["set_by"] == "vera"
    assert recorded["plan"]["quiet_hours"] == quiet

    held = await reply(vera, thread_id, "Мы рядом")
    # The clock shows seconds only when the end has some.
    reason = f"quiet hours until {end:%H:%M:%S}" if end.second else f"quiet hours until {end:%H:%M}"
    assert held["delivery"]["status"] == "held" and held["delivery"]["detail"] == reason
    shown = await delivery_of(vera, thread_id, held["id"])
    assert (shown["status"], shown["detail"]) == ("held", reason)
    await resumed_backlog(chat)
    assert held["id"] not in chat.shown and datetime.now(MINSK) < end

    # Quiet hours over: the store's pass sends it, once.
    await chat.wait(lambda: held["id"] in chat.shown, within=30)
    assert datetime.now(MINSK) >= end
    await vera.wait_event(
        lambda e: (
            e["name"] == "MessageDelivered"
            and e["message_id"] == held["id"]
            and e["data"]["status"] == "sent"
        )
    )
    assert (await delivery_of(vera, thread_id, held["id"]))["status"] == "sent"
    assert chat.received[held["id"]] == 1
    await chat.drop()


@FAST_RELEASE
async def test_a_reply_on_a_channel_the_plan_forbids_is_held_until_allowed_or_cancelled(
    gateway: Gateway, vera: Consultant, http: aiohttp.ClientSession
) -> None:
    chat, thread_id = await claimed_chat(http, gateway, vera)
    await set_plan(vera, thread_id, {"channels": ["email"]})
    cancelled = await reply(vera, thread_id, "Первый ответ")
    kept = await reply(vera, thread_id, "Второй ответ")
    for doc in (cancelled, kept):
        assert doc["delivery"] == {**doc["delivery"], "status": "held", "detail": "channel not allowed"}

    path = f"/api/threads/{thread_id}/messages/{cancelled['id']}/cancel"
    status, body = await vera.call("POST", path)
    assert status == 200 and body["delivery"]["status"] == "cancelled", body
    assert (await vera.call("POST", path))[0] == 409  # no longer held
    assert (await delivery_of(vera, thread_id, cancelled["id"]))["status"] == "cancelled"
    # A reply that was never held cannot be cancelled.
    assert (await vera.call("POST", f"/api/threads/{thread_id}/messages/{'0' * 32}/cancel"))[0] == 409

    await resumed_backlog(chat)
    assert not ({cancelled["id"], kept["id"]} & set(chat.shown))

    # The plan now allows the chat: the held reply goes at once, the cancelled one never.
    await set_plan(vera, thread_id, {"channels": ["chat", "email"]})
    await chat.wait(lambda: kept["id"] in chat.shown)
    after = await reply(vera, thread_id, "Третий ответ")
    assert after["delivery"]["status"] == "queued"
    await chat.wait(lambda: after["id"] in chat.shown)
    assert cancelled["id"] not in chat.shown
    assert (await delivery_of(vera, thread_id, cancelled["id"]))["status"] == "cancelled"
    status, events = await vera.call("GET", f"/api/threads/{thread_id}/history")
    names = [e["name"] for e in events]
    assert names.count("ContactPlanSet") == 2 and names.count("ReplyCancelled") == 1, names
    await chat.drop()


@FAST_RELEASE
async def test_only_when_they_write_first_holds_a_reply_until_the_client_writes(
    gateway: Gateway, vera: Consultant, http: aiohttp.ClientSession
) -> None:
    chat, thread_id = await claimed_chat(http, gateway, vera)
    await set_plan(vera, thread_id, {"write_first": True})
    # The client wrote (the automatic answer after it does not count): the answer goes.
    first = await reply(vera, thread_id, "Здравствуйте")
    assert first["delivery"]["status"] == "queued"
    await chat.wait(lambda: first["id"] in chat.shown)
    # A second one waits for the client's next message.
    second = await reply(vera, thread_id, "Вы здесь?")
    assert second["delivery"] == {
        **second["delivery"],
        "status": "held",
        "detail": "waiting for the client to write first",
    }
    await resumed_backlog(chat)
    assert second["id"] not in chat.shown
    assert (await delivery_of(vera, thread_id, second["id"]))["status"] == "held"

    await chat.say("Да, теперь могу писать")
    await chat.wait(lambda: second["id"] in chat.shown, within=30)
    assert (await delivery_of(vera, thread_id, second["id"]))["status"] in {"queued", "sent"}
    assert chat.received[second["id"]] == 1
    await chat.drop()


async def test_a_neutral_sender_name_and_subject_are_what_the_client_s_mailbox_shows(
    gateway: Gateway,
) -> None:
    sofia = await supervisor(gateway)
    inbox = Mailbox("127.0.0.1", gateway.urls.imap_port, gateway.line_mailbox)
    client_box = Mailbox("127.0.0.1", gateway.urls.imap_port, gateway.client_mailbox)
    client_addr = f"{gateway.client_mailbox}@demo.test"
    mongo, db = database(gateway)
    try:
        await inbox.append(
            mail(
                client_addr,
                f"{gateway.line_mailbox}@demo.test",
                "Муж читает почту",
                "помогите",
                new_message_id(),
            )
        )
        queued = await sofia.wait_event(lambda e: e["name"] == "ThreadQueued")
        thread_id = queued["thread_id"]
        assert (await sofia.call("POST", f"/api/threads/{thread_id}/claim"))[0] == 200
        plan = {"sender_name": "Клуб любителей книг", "subject": "Новинки месяца"}
        recorded = await set_plan(sofia, thread_id, plan)
        # A mail names its person: the plan is the client's, for every thread of theirs.
        assert recorded["scope"] == "client"
        status, read = await sofia.call("GET", f"/api/threads/{thread_id}/contact-plan")
        assert status == 200 and read["plan"]["sender_name"] == plan["sender_name"], read

        sent = await reply(sofia, thread_id, "Ответ")
        stored = await db["messages"].find_one({"_id": sent["id"]})
        mails = [
            BytesParser(policy=policy.default).parsebytes(raw) for raw in await client_box.wait_for_mail(2)
        ]
        (received,) = [m for m in mails if m["Message-ID"] == stored["email_message_id"]]
        assert received["From"].addresses[0].display_name == "Клуб любителей книг"
        assert received["Subject"] == "Новинки месяца"
        assert "Муж" not in str(received["Subject"]) + str(received["From"])
        # The plan holds no text a person wrote: only the choices and who made them.
        doc = await db["contact_plans"].find_one({})
        assert doc is not None and set(doc) <= {
            "_id",
            "channels",
            "quiet_hours",
            "write_first",
            "sender_name",
            "subject",
            "set_by",
            "set_at",
        }
    finally:
        await mongo.close()
        await sofia.close()


async def test_the_console_records_a_plan_shows_a_held_reply_with_its_reason_and_cancels_it(
    gateway: Gateway, vera: Consultant, http: aiohttp.ClientSession, browser: Browser
) -> None:
    gateway.seed_demo_accounts()
    chat, thread_id = await claimed_chat(http, gateway, vera)
    ctx = await browser.new_context(viewport=LAPTOP, locale="en-GB")
    try:
        watch = Watch(gateway.store_url)
        page = await console_of(ctx, gateway, "vera", watch)
        await page.locator('#queues button[data-queue="gp-dv"]').click()
        await page.locator(f'#threads button[data-thread="{thread_id}"]').click()
        await page.locator("#contact-plan summary").click()
        await expect(page.locator("#contact-plan-about")).to_contain_text("No plan recorded")
        await page.get_by_label("web chat").uncheck()
        await page.get_by_label("Only answer when they write first").check()
        await page.get_by_role("button", name="Save plan").click()
        await expect(page.locator("#contact-plan-about")).to_contain_text("Recorded by vera")
        status, view = await vera.call("GET", f"/api/threads/{thread_id}/contact-plan")
        assert status == 200 and view["plan"]["channels"] == ["email", "telegram"], view
        assert view["plan"]["write_first"] is True and view["plan"]["quiet_hours"] is None

        held = await reply(vera, thread_id, "Ответ")
        message = page.locator(f'#messages [data-message="{held["id"]}"]')
        await expect(message.locator(".held-reason")).to_contain_text("Held: channel not allowed")
        await message.get_by_role("button", name="Cancel reply").click()
        await expect(message.locator(".meta")).to_contain_text("cancelled")
        await expect(message.locator(".held-reason")).to_have_count(0)
        assert (await delivery_of(vera, thread_id, held["id"]))["status"] == "cancelled"
        assert watch.elsewhere == [] and watch.dialogs == []
    finally:
        await ctx.close()
    await chat.drop()


async def test_the_hotlines_automatic_answer_keeps_to_the_persons_plan(gateway: Gateway) -> None:
    """A person who may not be written to by e-mail writes a new mail: the hotline's automatic
    acknowledgement, which their first mail got, is not sent to their mailbox this time."""
    sofia = await supervisor(gateway)
    inbox = Mailbox("127.0.0.1", gateway.urls.imap_port, gateway.line_mailbox)
    client_box = Mailbox("127.0.0.1", gateway.urls.imap_port, gateway.client_mailbox)
    client_addr = f"{gateway.client_mailbox}@demo.test"
    line_addr = f"{gateway.line_mailbox}@demo.test"
    mongo, db = database(gateway)
    try:
        await inbox.append(mail(client_addr, line_addr, "Помогите", "первое письмо", new_message_id()))
        first = (await sofia.wait_event(lambda e: e["name"] == "ThreadQueued"))["thread_id"]
        (ack,) = await client_box.wait_for_mail(1)  # answered as anyone is
        recorded = await set_plan(sofia, first, {"channels": ["telegram"]})
        assert recorded["scope"] == "client"

        await inbox.append(mail(client_addr, line_addr, "Снова", "второе письмо", new_message_id()))
        second = (await sofia.wait_event(lambda e: e["name"] == "ThreadQueued" and e["thread_id"] != first))[
            "thread_id"
        ]
        # The dispatcher decides the automatic answer before it announces the thread.
        answers = await db["messages"].find({"thread_id": second, "author": "bot"}).to_list()
        assert answers == []
        assert len(await db["messages"].find({"thread_id": first, "author": "bot"}).to_list()) == 1
        assert "auto_answer_withheld" in gateway.logs()
        # Still one mail in their mailbox: the first acknowledgement.
        assert [m for m in await client_box.wait_for_mail(1) if m != ack] == []
    finally:
        await mongo.close()
        await sofia.close()


@pytest.mark.service_env({"STORE_HOLD_CHECK_SECONDS": "0.5", "STORE_HOLD_PAGE": "2"})
async def test_replies_held_longer_never_keep_later_ones_from_going(
    gateway: Gateway, vera: Consultant, http: aiohttp.ClientSession
) -> None:
    """The pass reads held replies a page at a time (2 here): three older replies held for an
    hour fill the first pages, and the one after them goes as soon as its quiet hours end."""
    long_chat, long_thread = await claimed_chat(http, gateway, vera)
    now = datetime.now(MINSK).replace(microsecond=0)
    hour = {
        "from": (now - timedelta(hours=1)).strftime("%H:%M:%S"),
        "to": (now + timedelta(hours=1)).strftime("%H:%M:%S"),
    }
    await set_plan(vera, long_thread, {"quiet_hours": hour})
    waiting = [(await reply(vera, long_thread, f"Позже {n}"))["id"] for n in range(3)]

    short_chat, short_thread = await claimed_chat(http, gateway, vera)
    end = datetime.now(MINSK).replace(microsecond=0) + timedelta(seconds=6)
    soon = {"from": (now - timedelta(hours=1)).strftime("%H:%M:%S"), "to": end.strftime("%H:%M:%S")}
    await set_plan(vera, short_thread, {"quiet_hours": soon})
    later = await reply(vera, short_thread, "Мы рядом")
    assert later["delivery"]["status"] == "held"

    await short_chat.wait(lambda: later["id"] in short_chat.shown, within=30)
    assert datetime.now(MINSK) >= end
    for message_id in waiting:
        assert (await delivery_of(vera, long_thread, message_id))["status"] == "held"
    assert not set(waiting) & set(long_chat.shown)
    await long_chat.drop()
    await short_chat.drop()
