"""The console's search panel in real Chromium: anna, in Russian, finds a thread by a word of
its message with the keyboard (Enter searches) and opens it; boris, of another organisation,
finds nothing by the same word; a consultation is found by its number; Escape closes the
panel; a specialist opens a case found by its reference in the Cases view. What was searched
for reaches neither the URL nor the browser's storage."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from playwright.async_api import Browser, Page, expect

from tests.conftest import Gateway
from tests.integration.test_console_journey import LAPTOP, Watch, logged_in
from tests.integration.test_search import PHONE_WORD, write_world

RU = ("Логин", "Пароль", "Войти")


@asynccontextmanager
async def console(
    browser: Browser, gateway: Gateway, who: str, watch: Watch, locale: str = "en-GB"
) -> AsyncIterator[Page]:
    """``who`` logged in to the console in a browser context of its own."""
    ctx = await browser.new_context(viewport=LAPTOP, locale=locale, timezone_id="Europe/Minsk")
    try:
        if locale.startswith("ru"):
            yield await logged_in(ctx, gateway, who, watch, RU)
        else:
            yield await logged_in(ctx, gateway, who, watch)
    finally:
        await ctx.close()


async def search_words(page: Page, find: str, label: str, text: str) -> None:
    await page.get_by_role("button", name=find).click()
    field = page.get_by_label(label)
    await field.fill(text)
    await field.press("Enter")


async def test_anna_finds_and_opens_a_thread_boris_finds_nothing_a_number_finds_the_consultation(
    gateway: Gateway, browser: Browser
) -> None:
    gateway.seed_demo_accounts()
    w = await write_world(gateway)
    thread_id = w.t["lastrada"]["_id"]

    watch = Watch(gateway.store_url)
    async with console(browser, gateway, "anna", watch, "ru-RU") as page:
        opener = page.locator("#search-open")
        await expect(opener).to_have_text("Найти")
        await search_words(page, "Найти", "Слова", PHONE_WORD)
        panel = page.get_by_role("region", name="Поиск записи")
        found = page.locator("#search-results button")
        await expect(found).to_have_count(1)
        await expect(found).to_have_attribute("data-thread", thread_id)
        await expect(found).to_contain_text("Обращение · email, 113 · 2026-03-10 · закрыто")
        await expect(page.locator("#search-status")).to_have_text("Найдено: 1")
        await expect(found).to_be_focused()
        await found.press("Enter")
        await expect(panel).to_be_hidden()
        await expect(page.locator("#thread .msg .text").first).to_contain_text(PHONE_WORD)

        # A consultation by its number; the panel opens with the focus on the number.
        await opener.click()
        number = page.get_by_label("Номер (обращения, консультации или кейса)")
        await expect(number).to_be_focused()
        await number.fill(f"{thread_id}:1")
        await page.get_by_label("Слова").fill("")
        await number.press("Enter")
        await expect(found).to_have_count(1)
        await expect(found).to_contain_text(f"{thread_id}:1")

        # A line's case-form answers and a day: that day's consultations which gave them.
        await number.fill("")
        await page.get_by_label("Линия").select_option("113")
        await page.locator("#search-answers summary").click()
        await page.locator('#search-answers select[name="client_role"]').select_option("survivor")
        await page.get_by_label("С", exact=True).fill("2026-03-10")
        await page.get_by_label("По", exact=True).fill("2026-03-10")
        await page.get_by_label("По", exact=True).press("Enter")
        await expect(found).to_have_count(1)
        await expect(found).to_have_attribute("data-thread", thread_id)
        await expect(found).to_contain_text(f"Консультация {thread_id}:1 · 2026-03-10")
        await page.keyboard.press("Escape")
        await expect(panel).to_be_hidden()
        await expect(opener).to_be_focused()

        # The words were never written where they would outlive the request.
        assert PHONE_WORD not in page.url
        stored = await page.evaluate("() => JSON.stringify([localStorage, sessionStorage])")
        assert PHONE_WORD not in stored and thread_id not in stored

    async with console(browser, gateway, "boris", watch) as page:
        await search_words(page, "Find", "Words", PHONE_WORD)
        await expect(page.locator("#search-status")).to_have_text("Nothing found.")
        await expect(page.locator("#search-results button")).to_have_count(0)

    # A specialist of the owning organisation finds the case by its reference and opens it in
    # the Cases view.
    async with console(browser, gateway, "lspec", watch) as page:
        await search_words(page, "Find", "Number (thread, consultation or case)", "LASTRADA-1")
        found = page.locator("#search-results button[data-case]")
        await expect(found).to_have_count(1)
        await expect(found).to_contain_text("LASTRADA-1")
        await found.click()
        await expect(page.locator("#cases")).to_be_visible()
        await expect(page.locator("#case-title")).to_be_focused()
    assert watch.elsewhere == [] and watch.dialogs == []
