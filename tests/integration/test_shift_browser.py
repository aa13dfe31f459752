"""A shift in real Chromium, as two colleagues of La Strada see it: Anna logs out and the chat
she held waits in Lena's console at once; Anna marks a chat urgent and offers it to Lena, who
accepts it in Russian."""

from __future__ import annotations

import aiohttp
from playwright.async_api import Browser, Page, expect

from tests.conftest import Gateway
from tests.integration.test_access_matrix import start_chat
from tests.integration.test_shift import add_lena


async def console(browser: Browser, gateway: Gateway, login: str, password: str, lang: str = "en") -> Page:
    page = await (await browser.new_context()).new_page()
    await page.goto(gateway.store_url + "/")
    await page.locator("#login .lang-select").select_option(lang)
    await page.locator("#login-form input[name=login]").fill(login)
    await page.locator("#login-form input[name=password]").fill(password)
    await page.locator("#login-form button[type=submit]").click()
    await expect(page.locator("#live")).to_have_class("on")
    return page


async def colleagues(gateway: Gateway, browser: Browser) -> tuple[Page, Page]:
    gateway.seed_demo_accounts()
    add_lena(gateway)
    anna = await console(browser, gateway, "anna", "anna-demo")
    lena = await console(browser, gateway, "lena", "lena-colleague", "ru")
    for page in (anna, lena):
        await page.locator('button[data-queue="lastrada-migration"]').click()
    async with aiohttp.ClientSession() as http:
        await start_chat(http, gateway, "Мне нужна помощь", line="113", region="minsk")
    await expect(lena.locator('button[data-queue="lastrada-migration"] .badge')).to_have_text("1")
    await anna.get_by_role("button", name="Next").click()
    await expect(anna.locator("#thread-meta")).to_contain_text("active (anna)")
    await expect(lena.locator("#threads")).to_contain_text("в работе · anna")
    return anna, lena


async def test_logging_out_puts_my_chat_in_a_colleagues_console_at_once(
    gateway: Gateway, browser: Browser
) -> None:
    anna, lena = await colleagues(gateway, browser)
    await expect(anna.locator("#availability")).to_have_value("available")
    await anna.get_by_role("button", name="Log out").click()
    await expect(anna.locator("#login-form")).to_be_visible()
    # Lena's console hears it: the chat waits again, nobody holds it.
    waiting = lena.locator("#threads li button")
    await expect(waiting).to_have_count(1)
    await expect(waiting).to_contain_text("ждёт")
    await expect(waiting).not_to_contain_text("anna")
    await expect(lena.locator('button[data-queue="lastrada-migration"] .badge')).to_have_text("1")


async def test_an_urgent_chat_handed_to_a_colleague_who_accepts(gateway: Gateway, browser: Browser) -> None:
    anna, lena = await colleagues(gateway, browser)
    await anna.get_by_role("button", name="Mark urgent").click()
    await expect(anna.locator("#urgent-by")).to_contain_text("Marked urgent by anna")
    await expect(lena.locator("#threads li button.urgent")).to_have_count(1)

    await anna.get_by_label("Hand to a colleague").select_option("lena")
    await anna.get_by_role("button", name="Offer").click()
    await expect(anna.locator("#handoff-pending")).to_contain_text("Offered to lena")
    # Lena sees the offer live, above her work, and accepts it.
    offer = lena.locator("#handoffs .handoff-offer")
    await expect(offer).to_contain_text("Вам предлагает anna")
    await offer.get_by_role("button", name="Принять").click()
    await expect(lena.locator("#thread-meta")).to_contain_text("в работе (lena)")
    await expect(lena.locator("#handoffs")).to_be_hidden()
    await expect(lena.get_by_role("textbox", name="Ответ", exact=True)).to_be_visible()  # hers to answer now
    await expect(anna.locator("#threads")).to_contain_text("active · lena")
    await expect(anna.locator("#thread-meta")).to_contain_text("active (lena)")
