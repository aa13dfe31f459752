"""A chat whose client left, through the real services: a quick exit, or no client message for
``queue_policy.client_silent_minutes``, marks the thread (``client_left``), announces
``ClientLeft`` to consoles and keeps it in the event log; the client writing again clears the
mark (``ClientReturned``); one action closes it (``POST /api/threads/{id}/close-left``: claimed
if waiting, closed as no consultation with reason silent), counted once under "no consultation:
silent" and never in case statistics, however many consultants press it at once. "Not safe now"
in the console: marked loud, the reply box gives way, the supervisor is alerted."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from playwright.async_api import Browser, expect

from conversations.client_left import SILENT, marker
from conversations.model import new_thread
from shared.mongo import make_client
from tests.conftest import Gateway
from tests.integration.chat_client import ChatClient
from tests.integration.helpers import Consultant
from tests.integration.test_console_journey import LAPTOP, Watch
from tests.integration.test_console_journey import logged_in as console_of

MINSK = ZoneInfo("Europe/Minsk")


def silent_soon(config: dict[str, Any]) -> None:
    """A web chat's client counts as silent after about a second."""
    config["queue_policy"]["client_silent_minutes"] = 0.02


def today() -> str:
    return datetime.now(MINSK).date().isoformat()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def logged_in(gateway: Gateway, who: str) -> Consultant:
    c = Consultant(gateway.store_url)
    await c.login(who, f"{who}-demo")
    await c.open_events()
    return c


async def queued_chat(
    http: aiohttp.ClientSession, gateway: Gateway, who: Consultant, **choices: str
) -> tuple[ChatClient, str]:
    """A widget client who wrote once; the thread id, once ``who``'s console heard it queued."""
    chat = ChatClient(http, gateway.chat_url)
    await chat.start(**choices)
    await chat.say("Мне нужна помощь")
    queued = await who.wait_event(lambda e: e["name"] == "ThreadQueued")
    return chat, queued["thread_id"]


async def history(who: Consultant, thread_id: str) -> list[str]:
    status, events = await who.call("GET", f"/api/threads/{thread_id}/history")
    assert status == 200, events
    return [e["name"] for e in events]


async def test_a_quick_exit_marks_the_thread_and_one_action_closes_it_as_silent(
    gateway: Gateway, vera: Consultant, http: aiohttp.ClientSession
) -> None:
    sofia = await logged_in(gateway, "sofia")
    try:
        chat, thread_id = await queued_chat(http, gateway, vera, line="dv", language="ru")
        # Not marked: nothing to close in one action.
        status, problem = await vera.call("POST", f"/api/threads/{thread_id}/close-left")
        assert status == 409, problem

        await chat.end()
        left = await vera.wait_event(lambda e: e["name"] == "ClientLeft" and e["thread_id"] == thread_id)
        assert left["data"]["why"] == "quick_exit"
        status, thread = await vera.call("GET", f"/api/threads/{thread_id}")
        assert status == 200 and thread["status"] == "waiting"
        assert thread["client_left"]["why"] == "quick_exit"
        listed = (await vera.call("GET", "/api/threads?queue=gp-dv&status=waiting"))[1]
        assert [t["client_left"]["why"] for t in listed if t["id"] == thread_id] == ["quick_exit"]

        # One action, on a thread nobody holds: claimed and closed, without a case form.
        status, closed = await vera.call("POST", f"/api/threads/{thread_id}/close-left")
        assert status == 200, closed
        assert closed["status"] == "closed" and closed["assignee"] == "vera"
        assert closed["outcome"] == "no_consultation" and closed["no_consultation_reason"] == "silent"
        assert "client_left" not in closed and "case" not in closed
        assert (await vera.call("POST", f"/api/threads/{thread_id}/close-left"))[0] == 409
        names = await history(vera, thread_id)
        assert names[-3:] == ["ClientLeft", "ThreadClaimed", "ThreadClosed"], names

        day = today()
        status, result = await sofia.call("GET", f"/api/stats?from={day}&to={day}&by=gender")
        assert status == 200, result
        assert result["total"]["count"] == 0 and result["rows"] == []
        assert result["no_consultation"] == {"count": 1, "rows": [{"reason": "silent", "count": 1}]}
        await chat.drop()
    finally:
        await sofia.close()


@pytest.mark.hotline_config.with_args(silent_soon)
@pytest.mark.service_env({"DISPATCHER_SWEEP_SECONDS": "0.2"})
async def test_a_silent_chat_is_marked_and_the_client_writing_again_clears_it(
    gateway: Gateway, vera: Consultant, http: aiohttp.ClientSession
) -> None:
    chat, thread_id = await queued_chat(http, gateway, vera, line="dv", language="ru")
    first = await vera.wait_event(lambda e: e["name"] == "ClientLeft" and e["thread_id"] == thread_id)
    assert first["data"]["why"] == "silent"
    status, thread = await vera.call("GET", f"/api/threads/{thread_id}")
    assert status == 200 and thread["client_left"]["why"] == "silent"
    # Marked from the client's last message: the console says for how long.
    assert thread["client_left"]["at"] == first["data"]["since"]

    await chat.say("Я здесь")
    back = await vera.wait_event(lambda e: e["name"] == "ClientReturned" and e["thread_id"] == thread_id)
    assert back["data"]["why"] == "silent"
    # Silent again from the new message on: the mark was cleared, and is set anew from it.
    again = await vera.wait_event(lambda e: e["name"] == "ClientLeft" and e["thread_id"] == thread_id)
    assert again["data"]["since"] > first["data"]["since"]
    names = await history(vera, thread_id)
    assert names.count("ClientReturned") == 1 and names.index("ClientReturned") > names.index("ClientLeft")

    # Held by vera, the mark stays (the rule covers held chats too); closing drops it.
    status, claimed = await vera.call("POST", f"/api/threads/{thread_id}/claim")
    assert status == 200 and claimed["client_left"]["why"] == "silent"
    dv_case = {"client_role": "survivor", "gender": "f", "age_group": "27-40"}
    status, closed = await vera.call("POST", f"/api/threads/{thread_id}/close", {"case": dv_case})
    assert status == 200 and "client_left" not in closed, closed
    await chat.drop()


async def test_two_consultants_closing_at_once_close_it_once(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    gateway.seed_demo_accounts()
    anna, boris, sofia = [await logged_in(gateway, who) for who in ("anna", "boris", "sofia")]
    try:
        # The 113 line's shared triage queue: both NGOs' consultants see the thread waiting.
        chat, thread_id = await queued_chat(http, gateway, anna, line="113")
        await chat.end()
        await boris.wait_event(lambda e: e["name"] == "ClientLeft" and e["thread_id"] == thread_id)
        path = f"/api/threads/{thread_id}/close-left"
        answers = await asyncio.gather(anna.call("POST", path), boris.call("POST", path))
        assert sorted(status for status, _ in answers) == [200, 409], answers
        names = await history(sofia, thread_id)
        assert names.count("ThreadClosed") == 1 and names.count("ThreadClaimed") == 1, names

        day = today()
        status, result = await sofia.call("GET", f"/api/stats?from={day}&to={day}&by=gender")
        assert status == 200, result
        assert result["total"]["count"] == 0
        assert result["no_consultation"] == {"count": 1, "rows": [{"reason": "silent", "count": 1}]}
        await chat.drop()
    finally:
        for c in (anna, boris, sofia):
            await c.close()


async def test_the_console_marks_the_chat_and_closes_it_with_one_button_in_russian(
    gateway: Gateway, browser: Browser
) -> None:
    gateway.seed_demo_accounts()
    now = datetime.now(UTC)
    thread = new_thread(
        f"chat:{uuid.uuid4().hex}",
        channel="chat",
        line="113",
        queue="113-triage",
        organisations=["lastrada", "bwc"],
        client_address="",
        created_at=now - timedelta(minutes=20),
        waiting_since=now - timedelta(minutes=20),
    )
    thread["client_left"] = marker(SILENT, now - timedelta(minutes=17), now)
    client = make_client(gateway.urls.mongo_url)
    try:
        await client[gateway.database]["threads"].insert_one(thread)
    finally:
        await client.close()
    ctx = await browser.new_context(viewport=LAPTOP, locale="ru-RU")
    try:
        page = await console_of(ctx, gateway, "boris", Watch(gateway.store_url), ("Логин", "Пароль", "Войти"))
        await page.locator('#queues button[data-queue="113-triage"]').click()
        item = page.locator(f'#threads button[data-thread="{thread["_id"]}"]')
        await expect(item.locator(".left-mark")).to_have_text("Клиент ушёл: нет сообщений уже 17 мин")
        await item.click()
        await expect(page.locator("#client-left")).to_have_text("Клиент ушёл: нет сообщений уже 17 мин")
        # Waiting, held by nobody: one button closes it.
        await page.get_by_role("button", name="Закрыть: клиент ушёл").click()
        await expect(page.locator("#thread-meta")).to_contain_text("закрыто")
        await expect(page.locator("#client-left")).to_have_count(0)
    finally:
        await ctx.close()


async def test_not_safe_is_marked_loud_replies_are_held_and_the_supervisor_is_alerted_in_the_console(
    gateway: Gateway, vera: Consultant, http: aiohttp.ClientSession, browser: Browser
) -> None:
    gateway.seed_demo_accounts()
    chat, thread_id = await queued_chat(http, gateway, vera, line="dv", language="en")
    status, _ = await vera.call("POST", f"/api/threads/{thread_id}/claim")
    assert status == 200
    contexts = [await browser.new_context(viewport=LAPTOP) for _ in range(2)]
    try:
        sofia = await console_of(contexts[0], gateway, "sofia", Watch(gateway.store_url))
        await sofia.get_by_role("button", name="Supervisor view").click()
        await expect(sofia.locator("#sup-not-safe")).to_have_text("none")
        page = await console_of(contexts[1], gateway, "vera", Watch(gateway.store_url))
        await page.locator('#queues button[data-queue="gp-dv"]').click()
        item = page.locator(f'#threads button[data-thread="{thread_id}"]')
        await item.click()
        await expect(page.locator("#reply-form")).to_be_visible()

        await chat.end("not_safe")
        mark = page.locator("#client-left")
        await expect(mark).to_have_text("Not safe: do not reply until they write")
        await expect(mark).to_have_attribute("role", "alert")
        await expect(page.locator("#reply-form")).to_have_count(0)
        await expect(page.locator("#reply-held")).to_contain_text("No reply can be sent")
        await expect(item).to_have_class(re.compile(r"\bnot-safe\b"))
        await expect(sofia.locator("#alerts")).to_contain_text("Client not safe now")
        await expect(sofia.locator(f'#sup-not-safe li[data-thread="{thread_id}"]')).to_be_visible()
    finally:
        for ctx in contexts:
            await ctx.close()
