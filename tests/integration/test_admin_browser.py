"""The administration screen in real Chromium (services/store/static/admin.js): an account
made there logs in and chooses its own password; disabled there, it cannot log in and its
conversations go back to the queue; a canned answer edited there is what a consultant's
console inserts; a directory entry edited there is what the chat widget shows."""

from __future__ import annotations

import asyncio

import aiohttp
from playwright.async_api import Browser, Page, expect

from tests.conftest import Gateway
from tests.integration.helpers import Consultant
from tests.integration.test_access_matrix import add_user, start_chat

SET_PASSWORD = "first-password-1"
OWN_PASSWORD = "my-own-password-2"


async def log_in(page: Page, gateway: Gateway, login: str, password: str) -> None:
    await page.goto(gateway.store_url + "/")
    form = page.locator("#login-form")
    await form.get_by_label("Login").fill(login)
    await form.get_by_label("Password").fill(password)
    await form.get_by_role("button", name="Log in").click()


async def administrator(gateway: Gateway, browser: Browser) -> Page:
    gateway.seed_demo_accounts()
    done = await asyncio.to_thread(
        add_user, gateway, "add-user", "--login=olga", "--role=national_admin", "--lines=113,dv",
        "--password-stdin", password="olga-password",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    page = await (await browser.new_context()).new_page()
    await log_in(page, gateway, "olga", "olga-password")
    await expect(page.locator("#live")).to_have_class("on")
    await page.get_by_role("button", name="Administration").click()
    await expect(page.locator("#admin-accounts-table")).to_be_visible()
    return page


async def test_an_account_made_on_the_screen_works_and_disabled_there_stops_and_returns_its_threads(
    gateway: Gateway, browser: Browser
) -> None:
    admin = await administrator(gateway, browser)
    await admin.get_by_role("button", name="New account").click()
    form = admin.locator("#admin-account-form")
    await form.get_by_label("Login", exact=True).fill("nina")
    await form.get_by_label("Name", exact=True).fill("Nina")
    await form.locator("select[name=role]").select_option("consultant")
    await form.get_by_label("Organisation").fill("lastrada")
    await form.get_by_label("Lines (comma-separated)").fill("113")
    await form.get_by_label("Languages (comma-separated)").fill("en")
    await form.get_by_label("Password (at least 10 characters)").fill(SET_PASSWORD)
    await form.get_by_role("button", name="Save").click()
    row = admin.locator('tr[data-account="nina"]')
    await expect(row).to_contain_text("lastrada")
    await expect(row).to_contain_text("must change password")

    # Nina logs in, is asked for her own password first, then works in the console.
    nina = await (await browser.new_context()).new_page()
    await log_in(nina, gateway, "nina", SET_PASSWORD)
    change = nina.locator("#password-change-form")
    await change.get_by_label("Current password").fill(SET_PASSWORD)
    await change.get_by_label("New password (at least 10 characters)").fill(OWN_PASSWORD)
    await change.get_by_role("button", name="Save").click()
    await expect(nina.locator("#who")).to_have_text("Nina (consultant)")
    await expect(nina.locator("#live")).to_have_class("on")

    # She takes a conversation; disabled on the screen, her console ends and it goes back.
    async with aiohttp.ClientSession() as http:
        await start_chat(http, gateway, "Нужна помощь", line="113", region="minsk")
    queue = nina.locator('button[data-queue="lastrada-migration"]')
    await expect(queue.locator(".badge")).to_have_text("1", timeout=20_000)
    await queue.click()
    await nina.get_by_role("button", name="Next").click()
    await expect(nina.locator("#thread h2")).to_be_visible()

    await admin.locator('tr[data-account="nina"]').get_by_role("button", name="Disable").click()
    await expect(admin.locator('tr[data-account="nina"]')).to_contain_text("disabled")
    await expect(nina.locator("#login")).to_be_visible()  # her console logged out at once
    await expect(nina.locator("#app")).to_be_hidden()
    await log_in(nina, gateway, "nina", OWN_PASSWORD)
    await expect(nina.locator("#login-error")).to_have_text("Wrong login or password")

    anna = Consultant(gateway.store_url)
    try:
        await anna.login("anna", "anna-demo")
        status, waiting = await anna.call("GET", "/api/threads?queue=lastrada-migration&status=waiting")
        assert status == 200 and len(waiting) == 1 and waiting[0]["assignee"] is None
    finally:
        await anna.close()


async def test_canned_answers_and_directory_edited_on_the_screen_reach_the_console_and_the_widget(
    gateway: Gateway, browser: Browser
) -> None:
    admin = await administrator(gateway, browser)
    answer = admin.locator('li[data-canned="113-1"]')
    await answer.get_by_role("button", name="Edit").click()
    form = admin.locator("#admin-canned-form")
    await form.get_by_label("Text (en)").fill("Check the agency with us before you sign anything.")
    await form.get_by_role("button", name="Save").click()
    await expect(admin.locator("#admin-status")).to_have_text("Saved.")

    entry = admin.locator('li[data-entry="police"]')
    await entry.get_by_role("button", name="Edit").click()
    form = admin.locator("#admin-entry-form")
    await form.get_by_label("Phone").fill("112")
    await form.get_by_role("button", name="Save").click()
    await expect(admin.locator('li[data-entry="police"]')).to_contain_text("112")

    # A consultant's console inserts the new text.
    async with aiohttp.ClientSession() as http:
        await start_chat(http, gateway, "Hello", line="113", region="minsk", language="en")
    anna = await (await browser.new_context()).new_page()
    await log_in(anna, gateway, "anna", "anna-demo")
    queue = anna.locator('button[data-queue="lastrada-migration"]')
    await expect(queue.locator(".badge")).to_have_text("1", timeout=20_000)
    await queue.click()
    await anna.get_by_role("button", name="Next").click()
    await anna.locator("#canned").select_option(label="Safe travel checklist")
    await expect(anna.get_by_label("Reply")).to_have_value(
        "Check the agency with us before you sign anything."
    )

    # The widget's directory shows the new phone (chat_ingest's copy follows within seconds).
    visitor = await (await browser.new_context()).new_page()
    await visitor.goto(gateway.chat_url + "/chat/")
    await visitor.get_by_text("Find help in my region").click()
    await expect(visitor.locator('.hl-directory li[data-entry="police"]')).to_contain_text(
        "112", timeout=15_000
    )
