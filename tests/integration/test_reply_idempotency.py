"""An Idempotency-Key names one reply (issue 15), tried as a careless or hostile client would:
the same key on another thread or with another text is refused with 409 and sends nothing; the
same key, thread and text is a retry that gets the stored reply back."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Route, expect

from tests.conftest import Gateway
from tests.integration.helpers import Consultant, Frames
from tests.integration.test_open_threads_listed import console
from tests.integration.test_queue_api import open_all_day


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def chat(http: aiohttp.ClientSession, gateway: Gateway, text: str) -> Frames:
    ws = await http.ws_connect(f"{gateway.chat_url}/chat/ws")
    await ws.send_json({"type": "start", "line": "dv", "language": "ru"})
    frames = Frames(ws)
    await frames.next("session")
    await ws.send_json({"type": "message", "id": str(uuid.uuid4()), "text": text})
    await frames.next("ack")
    return frames


@pytest.mark.hotline_config.with_args(open_all_day)
async def test_a_key_reused_on_another_thread_or_text_is_409_and_sends_nothing(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    gateway.seed_demo_accounts()
    vera = Consultant(gateway.store_url)
    await vera.login("vera", "vera-demo")
    await vera.open_events()
    try:
        first = await chat(http, gateway, "первый вопрос")
        one = (await vera.wait_event(lambda e: e["name"] == "ThreadQueued"))["thread_id"]
        second = await chat(http, gateway, "второй вопрос")
        two = (await vera.wait_event(lambda e: e["name"] == "ThreadQueued" and e["thread_id"] != one))[
            "thread_id"
        ]
        for thread in (one, two):
            assert (await vera.call("POST", f"/api/threads/{thread}/claim"))[0] == 200

        async def reply(thread: str, text: str, key: str) -> tuple[int, Any]:
            return await vera.call(
                "POST", f"/api/threads/{thread}/messages", {"text": text}, {"Idempotency-Key": key}
            )

        status, sent = await reply(one, "Ответ первой клиентке", "key-0000-aaaa")
        assert status == 202
        assert (await first.next("message", sender="consultant"))["text"] == "Ответ первой клиентке"

        # The same key on the other thread, or with other text: refused, nothing stored.
        for thread, text in ((two, "Ответ второй клиентке"), (two, "Ответ первой клиентке"), (one, "Другое")):
            status, problem = await reply(thread, text, "key-0000-aaaa")
            assert status == 409 and problem["title"] == "Idempotency-Key already used", problem
        # The same key, thread and text: the stored reply, not a second one.
        status, again = await reply(one, "Ответ первой клиентке", "key-0000-aaaa")
        assert status == 202 and again["id"] == sent["id"]

        # The second client gets its own reply, and nothing of the first one before it.
        assert (await reply(two, "Ответ второй клиентке", "key-0000-bbbb"))[0] == 202
        got = await second.next("message", sender="consultant")
        assert got["text"] == "Ответ второй клиентке"
        assert [f["text"] for f in second.seen if f.get("from") == "consultant"] == ["Ответ второй клиентке"]
        _, thread_two = await vera.call("GET", f"/api/threads/{two}")
        assert [m["text"] for m in thread_two["messages"] if m["author"] == "consultant:vera"] == [
            "Ответ второй клиентке"
        ]
        _, thread_one = await vera.call("GET", f"/api/threads/{one}")
        assert [m["text"] for m in thread_one["messages"] if m["author"] == "consultant:vera"] == [
            "Ответ первой клиентке"
        ]
        assert [f["text"] for f in first.seen if f.get("from") == "consultant"] == ["Ответ первой клиентке"]
    finally:
        await vera.close()


@pytest.mark.hotline_config.with_args(open_all_day)
async def test_the_console_retries_a_lost_reply_once_and_sends_an_edited_one_anew(
    gateway: Gateway, http: aiohttp.ClientSession, browser: Browser
) -> None:
    gateway.seed_demo_accounts()
    client = await chat(http, gateway, "можно прийти?")
    page = await console(browser, gateway, "vera", "vera-demo")
    await page.locator('button[data-queue="gp-dv"]').click()
    await expect(page.locator("#threads button")).to_have_count(1)
    await page.get_by_role("button", name="Next").click()

    sent: list[tuple[str, str]] = []  # (URL, Idempotency-Key) of each reply sent

    async def answers_lost(route: Route) -> None:
        """The first and the third reply reach the store, but their answers are lost."""
        if route.request.method != "POST":
            await route.continue_()
            return
        sent.append((route.request.url, route.request.headers["idempotency-key"]))
        if len(sent) in (1, 3):
            await route.fetch()
            await route.abort()
        else:
            await route.continue_()

    await page.route("**/api/threads/*/messages", answers_lost)
    first, second, edited = "Можно, завтра в 10.", "Адрес пришлём", "Адрес пришлём в чат за час до встречи."
    out = page.locator("#thread .msg.out")
    await page.get_by_label("Reply").fill(first)
    await page.get_by_role("button", name="Send reply").click()
    # Stored all the same: the live update shows it; then the thread is redrawn in Russian.
    await expect(out.filter(has_text=first)).to_have_count(1)
    await page.locator("#app .lang-select").select_option("ru")
    reply, send = page.get_by_label("Ответ", exact=True), page.get_by_role("button", name="Отправить")
    await expect(reply).to_have_value(first)
    await send.click()  # the retry of the same text: the same key, sent once
    await expect(reply).to_have_value("")

    await reply.fill(second)
    await send.click()
    await expect(out.filter(has_text=second)).to_have_count(1)
    await expect(reply).to_have_value(second)  # no answer: the console still holds it
    await reply.fill(edited)  # edited after the failed send: another reply, another key
    await send.click()
    await expect(reply).to_have_value("")
    await expect(out.filter(has_text=edited)).to_have_count(1)

    keys = [key for _, key in sent]
    assert len(keys) == 4 and keys[0] == keys[1] and len(set(keys)) == 3, keys
    resp = await page.request.get(sent[0][0].removesuffix("/messages"))
    assert resp.status == 200
    stored = [m["text"] for m in (await resp.json())["messages"] if m["author"] == "consultant:vera"]
    assert stored == [first, second, edited]
    for text in stored:
        assert (await client.next("message", sender="consultant"))["text"] == text
    assert [f["text"] for f in client.seen if f.get("from") == "consultant"] == stored
