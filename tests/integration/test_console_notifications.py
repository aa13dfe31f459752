"""Notifications in real Chromium: a consultant who turned them on is told, by a sound and a
desktop notification, when a chat starts in their queues, when a crisis arrives and when a
client answers in a thread they hold; the tab's title counts the people waiting and the answers
not yet opened. A notification never says who wrote or what.

The page's Notification and AudioContext are the browser's own, wrapped by an init script that
records what the console asked of them (the test cannot look at the desktop)."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
from playwright.async_api import Browser, Page, expect

from tests.conftest import Gateway
from tests.integration.chat_client import ChatClient
from tests.integration.helpers import Consultant

RECORD = """
window.__notes = [];
window.__beeps = 0;
const Real = window.Notification;
class Recorded extends Real {
  constructor(title, options) {
    super(title, options);
    window.__notes.push({ title: title, body: (options || {}).body, tag: (options || {}).tag });
  }
}
Object.defineProperty(Recorded, "permission", { get: () => Real.permission });
Recorded.requestPermission = (...args) => Real.requestPermission(...args);
window.Notification = Recorded;
const oscillator = AudioContext.prototype.createOscillator;
AudioContext.prototype.createOscillator = function () { window.__beeps += 1; return oscillator.call(this); };
"""


async def notes(page: Page) -> list[dict[str, Any]]:
    return list(await page.evaluate("window.__notes"))


async def told(page: Page, count: int) -> list[dict[str, Any]]:
    """The page's notifications, once there are ``count`` of them."""
    await page.wait_for_function(f"window.__notes.length >= {count}", timeout=30_000)
    return await notes(page)


async def test_a_consultant_is_told_of_chats_crises_and_answers_without_their_text(
    gateway: Gateway, browser: Browser
) -> None:
    gateway.seed_demo_accounts()
    # The page's CSP allows no eval, which Playwright's waiting for a condition uses.
    context = await browser.new_context(bypass_csp=True)
    await context.grant_permissions(["notifications"], origin=gateway.store_url)
    await context.add_init_script(RECORD)
    page = await context.new_page()
    await page.goto(gateway.store_url + "/")
    await page.get_by_label("Login").fill("anna")
    await page.get_by_label("Password").fill("anna-demo")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.locator("#live")).to_have_class("on")
    toggle = page.locator("#notify-toggle")
    await expect(toggle).to_have_text("Notifications: off")
    await expect(page).to_have_title("Hotline console")
    await toggle.click()
    await expect(toggle).to_have_attribute("aria-pressed", "true")

    canary = f"canary-{uuid.uuid4().hex}"
    anna = Consultant(gateway.store_url)
    async with aiohttp.ClientSession() as http:
        try:
            await anna.login("anna", "anna-demo")
            await anna.open_events()
            # A chat starts in one of Anna's queues.
            chat = ChatClient(http, gateway.chat_url)
            await chat.start(line="113", region="minsk", language="ru")
            await chat.say(f"{canary} нужна консультация")
            (new_chat,) = await told(page, 1)
            assert new_chat["title"] == "A chat is waiting"
            await expect(page).to_have_title("(1) Hotline console")

            # A crisis (its topic says so) is told as a crisis.
            crisis = ChatClient(http, gateway.chat_url)
            await crisis.start(line="113", region="minsk", topic="crisis_abroad", language="ru")
            await crisis.say(f"{canary} меня не выпускают")
            second = (await told(page, 2))[1]
            assert second["title"] == "A crisis is waiting"
            await expect(page).to_have_title("(2) Hotline console")

            # Anna takes the first chat; its client answers: she is told, the title counts it.
            event = await anna.wait_event(lambda e: e["name"] == "ThreadQueued" and not e.get("urgent"))
            thread_id = event["thread_id"]
            assert (await anna.call("POST", f"/api/threads/{thread_id}/claim"))[0] == 200
            await expect(page).to_have_title("(1) Hotline console")  # one still waits: the crisis
            await chat.say(f"{canary} вы здесь?")
            third = (await told(page, 3))[2]
            assert (third["title"], third["tag"]) == ("The client answered", f"answered:{thread_id}")
            await expect(page).to_have_title("(2) Hotline console")

            # Opened, the answer is read: the title counts only who waits.
            await page.locator('button[data-queue="lastrada-migration"]').click()
            await page.locator(f'#threads [data-thread="{thread_id}"]').first.click()
            await expect(page).to_have_title("(1) Hotline console")
        finally:
            await anna.close()
    shown = await notes(page)
    assert len(shown) == 3
    assert await page.evaluate("window.__beeps") == 3
    # Where, never who or what: a notification may show on a locked screen.
    assert all(canary not in str(n) for n in shown)
    assert {n["body"] for n in shown} == {"113: La Strada"}
    await context.close()


async def test_nothing_is_told_to_a_consultant_who_did_not_turn_notifications_on(
    gateway: Gateway, browser: Browser
) -> None:
    gateway.seed_demo_accounts()
    # The page's CSP allows no eval, which Playwright's waiting for a condition uses.
    context = await browser.new_context(bypass_csp=True)
    await context.grant_permissions(["notifications"], origin=gateway.store_url)
    await context.add_init_script(RECORD)
    page = await context.new_page()
    await page.goto(gateway.store_url + "/")
    await page.get_by_label("Login").fill("anna")
    await page.get_by_label("Password").fill("anna-demo")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.locator("#live")).to_have_class("on")
    async with aiohttp.ClientSession() as http:
        chat = ChatClient(http, gateway.chat_url)
        await chat.start(line="113", region="minsk", language="ru")
        await chat.say("нужна консультация")
        # The count in the title shows the chat arrived; no sound, no notification.
        await expect(page).to_have_title("(1) Hotline console", timeout=30_000)
    assert await notes(page) == []
    assert await page.evaluate("window.__beeps") == 0
    await context.close()
