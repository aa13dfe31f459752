"""A phone call logged from the console in real Chromium, with the keyboard only and in Russian:
the button opens the form with the focus inside, the line's case form is the close dialog's one,
a required answer left out is named by its label, Enter saves, and the call counts as a phone
consultation in /api/stats. A double Enter, and a retry after an answer lost on the way, store
the call once (the form keeps its Idempotency-Key until the call is stored)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from playwright.async_api import Browser, Page, Route, expect

from shared.mongo import make_client
from tests.conftest import Gateway
from tests.integration.helpers import Consultant
from tests.integration.test_console_journey import LAPTOP, Watch, logged_in

MINSK = ZoneInfo("Europe/Minsk")
RU = ("Логин", "Пароль", "Войти")


async def focused(page: Page) -> dict[str, Any]:
    info: dict[str, Any] = await page.evaluate(
        """() => { const e = document.activeElement; const fs = e && e.closest("fieldset[data-field]");
        return { id: e ? e.id : "", tag: e ? e.tagName : "", type: e && e.type || "",
                 name: e && e.name || "", field: fs ? fs.getAttribute("data-field") : "" }; }"""
    )
    return info


async def tab_until(page: Page, wanted: dict[str, str], limit: int = 40) -> None:
    """Press Tab until the focused control matches ``wanted`` (a date-time input has a stop
    per part in Chromium, so the count of presses is not fixed)."""
    for _ in range(limit):
        now = await focused(page)
        if all(now.get(k) == v for k, v in wanted.items()):
            return
        await page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {wanted}; at {await focused(page)}")


async def phone_threads(gateway: Gateway) -> list[dict[str, Any]]:
    client = make_client(gateway.urls.mongo_url)
    try:
        return [t async for t in client[gateway.database]["threads"].find({"channel": "phone"})]
    finally:
        await client.close()


async def answer_all(page: Page, fields: dict[str, Any], skip: str | None = None) -> None:
    """From the first question on, answer each with the keyboard: the first option of a list
    (arrow down), the first tick box of a multi-answer question (Space); ``skip`` is left out."""
    for name, f in fields.items():
        if f["multiple"]:
            await tab_until(page, {"field": name, "type": "checkbox"})
            if name != skip:
                await page.keyboard.press("Space")
        else:
            await tab_until(page, {"field": name, "tag": "SELECT"})
            if name != skip:
                await page.keyboard.press("ArrowDown")


async def test_anna_logs_a_phone_call_with_the_keyboard_in_russian_and_it_counts_once(
    gateway: Gateway, browser: Browser
) -> None:
    gateway.seed_demo_accounts()
    anna_api = Consultant(gateway.store_url)
    await anna_api.login("anna", "anna-demo")
    status, config = await anna_api.call("GET", "/api/config")
    await anna_api.close()
    assert status == 200, config
    fields = config["case_form"]["113"]
    required = [n for n, f in fields.items() if f["required"] and not f["multiple"]]
    assert required, fields
    left_out = required[0]

    watch = Watch(gateway.store_url)
    ctx = await browser.new_context(viewport=LAPTOP, locale="ru-RU", timezone_id="Europe/Minsk")
    try:
        page = await logged_in(ctx, gateway, "anna", watch, RU)
        opener = page.locator("#phone-open")
        await expect(opener).to_have_text("Записать звонок")
        await page.locator("body").focus()
        await tab_until(page, {"id": "phone-open"})
        await page.keyboard.press("Enter")
        dialog = page.get_by_role("dialog", name="Телефонный звонок")
        await expect(dialog).to_be_visible()
        await expect(page.get_by_label("Линия")).to_be_focused()
        await expect(page.get_by_label("Линия")).to_have_value("113")
        await expect(page.get_by_label("Дата и время звонка")).not_to_have_value("")
        # Every question of the close dialog, with its required mark.
        for name, f in fields.items():
            legend = f["label"]["ru"] + (" *" if f["required"] else "")
            await expect(dialog.locator(f'fieldset[data-field="{name}"] legend')).to_have_text(legend)

        # One required answer left out: named by its label, the focus on it, nothing stored.
        await answer_all(page, fields, skip=left_out)
        await page.keyboard.press("Enter")
        await expect(page.locator("#phone-error")).to_have_text(
            "Не заполнено: " + fields[left_out]["label"]["ru"]
        )
        await expect(dialog.locator(f'fieldset.bad[data-field="{left_out}"] select')).to_be_focused()
        assert await phone_threads(gateway) == []

        # Answered, then Enter twice in a row: one call.
        await page.keyboard.press("ArrowDown")
        await page.keyboard.press("Enter")
        await page.keyboard.press("Enter")
        await expect(page.locator("#phone-message")).to_contain_text("сохранён")
        await expect(page.locator("#phone-error")).to_have_text("")
        # The form is cleared for the next call.
        for name, f in fields.items():
            if not f["multiple"]:
                await expect(dialog.locator(f'select[name="{name}"]')).to_have_value("")
        await expect(dialog.locator("input[type=checkbox]:checked")).to_have_count(0)

        # Escape closes it, and the focus is back on the button.
        await page.keyboard.press("Escape")
        await expect(dialog).to_be_hidden()
        await expect(opener).to_be_focused()
        assert watch.elsewhere == [] and watch.dialogs == []
    finally:
        await ctx.close()

    stored = await phone_threads(gateway)
    assert len(stored) == 1, stored
    call = stored[0]
    assert call["line"] == "113" and call["status"] == "closed"
    assert call["case"][left_out]
    sofia = Consultant(gateway.store_url)
    await sofia.login("sofia", "sofia-demo")
    try:
        day = datetime.now(MINSK).date().isoformat()
        status, result = await sofia.call("GET", f"/api/stats?from={day}&to={day}&by=channel")
        assert status == 200, result
        assert [r for r in result["rows"] if r["channel"] == "phone"] == [
            {"channel": "phone", "count": 1, "share": 100.0}
        ]
    finally:
        await sofia.close()


async def test_a_retry_after_a_lost_answer_stores_the_call_once(gateway: Gateway, browser: Browser) -> None:
    gateway.seed_demo_accounts()
    ctx = await browser.new_context(viewport=LAPTOP, locale="ru-RU", timezone_id="Europe/Minsk")
    keys: list[str] = []

    async def lose_first_answer(route: Route) -> None:
        keys.append(route.request.headers["idempotency-key"])
        if len(keys) == 1:
            await route.fetch()  # the store saves the call; its answer never reaches the console
            await route.abort("connectionreset")
        else:
            await route.continue_()

    try:
        page = await logged_in(ctx, gateway, "anna", Watch(gateway.store_url), RU)
        await page.route("**/api/consultations", lose_first_answer)
        await page.locator("#phone-open").focus()
        await page.keyboard.press("Enter")
        await expect(page.get_by_label("Линия")).to_be_focused()
        anna_api = Consultant(gateway.store_url)
        await anna_api.login("anna", "anna-demo")
        fields = (await anna_api.call("GET", "/api/config"))[1]["case_form"]["113"]
        await anna_api.close()
        await answer_all(page, fields)
        await page.keyboard.press("Enter")
        await expect(page.locator("#phone-error")).not_to_have_text("")
        await page.keyboard.press("Enter")  # the same form again
        await expect(page.locator("#phone-message")).to_contain_text("сохранён")
    finally:
        await ctx.close()
    assert len(keys) == 2 and keys[0] == keys[1], keys
    assert len(await phone_threads(gateway)) == 1
