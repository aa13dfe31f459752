"""A supervisor watches a chat live in real Chromium and takes it over: she sees the client's
words as they come without being able to answer, then takes the conversation; from then on
only she can reply, the consultant's console is told, and the history says who took it from
whom. Through the real services, with a widget client on the real chat socket."""

from __future__ import annotations

import uuid

import aiohttp
from playwright.async_api import Browser, expect

from tests.conftest import Gateway
from tests.integration.chat_client import ChatClient
from tests.integration.helpers import Consultant


async def test_a_supervisor_watches_a_chat_live_and_takes_it_over(gateway: Gateway, browser: Browser) -> None:
    gateway.seed_demo_accounts()
    anna = Consultant(gateway.store_url)
    async with aiohttp.ClientSession() as http:
        try:
            await anna.login("anna", "anna-demo")
            await anna.open_events()
            client = ChatClient(http, gateway.chat_url)
            await client.start(line="113", region="minsk", language="ru")
            await client.say("здравствуйте")
            queued = await anna.wait_event(lambda e: e["name"] == "ThreadQueued")
            thread_id = queued["thread_id"]
            assert (await anna.call("POST", f"/api/threads/{thread_id}/claim"))[0] == 200

            page = await browser.new_page()
            await page.goto(gateway.store_url + "/")
            await page.get_by_label("Login").fill("sofia")
            await page.get_by_label("Password").fill("sofia-demo")
            await page.get_by_role("button", name="Log in").click()
            await expect(page.locator("#live")).to_have_class("on")
            await page.locator("#supervisor-toggle").click()
            await page.locator(f'#sup-queues button.watch[data-thread="{thread_id}"]').click()
            await expect(page.locator("#watching")).to_contain_text("anna holds this conversation")
            await expect(page.get_by_label("Reply")).to_have_count(0)  # watching is read-only

            # The client writes: the supervisor sees it as it comes.
            words = f"мне страшно {uuid.uuid4().hex[:6]}"
            await client.say(words)
            await expect(page.locator("#thread .msg.in").filter(has_text=words)).to_have_count(1)

            await page.locator("#take-over").click()
            await expect(page.get_by_label("Reply")).to_have_count(1)
            await expect(page.locator("#watching")).to_have_count(0)
            taken = await anna.wait_event(lambda e: e["name"] == "ThreadTakenOver")
            assert (taken["thread_id"], taken["data"]["previous"]) == (thread_id, "anna")
            assert taken["assignee"] == "sofia"
            # Anna can no longer answer: the conversation is Sofia's.
            status, _ = await anna.call(
                "POST",
                f"/api/threads/{thread_id}/messages",
                {"text": "I am still here"},
                {"Idempotency-Key": uuid.uuid4().hex},
            )
            assert status == 409

            answer = f"Я с вами {uuid.uuid4().hex[:6]}"
            await page.get_by_label("Reply").fill(answer)
            await page.get_by_role("button", name="Send reply").click()
            await client.wait(lambda: any(f.get("text") == answer for f in client.shown.values()))
            await page.close()
            status, history = await anna.call("GET", f"/api/threads/{thread_id}/history")
        finally:
            await anna.close()
    assert status == 200
    (over,) = [e for e in history if e["name"] == "ThreadTakenOver"]
    assert (over["by"], over["data"]["previous"]) == ("sofia", "anna")
