"""Cases in the console, in real Chromium (issue 17, item 8): a consultant opens a crisis-abroad
case from the conversation she holds, in Russian, and a second one from the same conversation
once it is closed; the La Strada social-work specialist sees the case arrive in "my cases" live,
its referral alerted when nobody took it in time, takes it, logs services, refers the person to
the police, follows up and closes it, in English; people of another organisation see nothing of
it, in Russian too."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from playwright.async_api import Browser, BrowserContext, Locator, Page, expect

from tests.conftest import Gateway
from tests.integration.helpers import Consultant
from tests.integration.test_cases import CASE_FORM, crisis_chat, quick_alerts
from tests.integration.test_console_journey import LAPTOP, Watch, logged_in

MINSK = "Europe/Minsk"
RU = ("Логин", "Пароль", "Войти")
# Any CSP violation in the console's own page means markup or a style got in where text belongs.
CSP_WATCH = (
    "window.__csp = [];"
    "document.addEventListener('securitypolicyviolation', e => window.__csp.push(e.violatedDirective));"
)


@pytest.fixture
async def sofia(gateway: Gateway) -> AsyncIterator[Consultant]:
    """The demo accounts; Sofia, supervisor of every line, listening for threads queued."""
    await asyncio.to_thread(gateway.seed_demo_accounts)
    c = Consultant(gateway.store_url)
    try:
        await c.login("sofia", "sofia-demo")
        await c.open_events()
        yield c
    finally:
        await c.close()


class Console:
    """Browser contexts in the time zone of the hotlines, each page watched for requests that
    leave the store, dialogs, script errors and CSP violations."""

    def __init__(self, browser: Browser, gateway: Gateway) -> None:
        self.browser, self.gateway = browser, gateway
        self.watch = Watch(gateway.store_url)
        self.contexts: list[BrowserContext] = []
        self.pages: list[Page] = []
        self.errors: list[str] = []

    async def open(self, login: str, locale: str, labels: tuple[str, str, str] | None = None) -> Page:
        ctx = await self.browser.new_context(viewport=LAPTOP, locale=locale, timezone_id=MINSK)
        await ctx.add_init_script(CSP_WATCH)
        self.contexts.append(ctx)
        page = await logged_in(ctx, self.gateway, login, self.watch, *([labels] if labels else []))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.pages.append(page)
        return page

    async def check_and_close(self) -> None:
        violations = [await p.evaluate("window.__csp") for p in self.pages]
        for ctx in self.contexts:
            await ctx.close()
        assert violations == [[]] * len(self.pages)
        assert self.errors == [] and self.watch.dialogs == [] and self.watch.elsewhere == []


@pytest.mark.hotline_config.with_args(quick_alerts)
async def test_a_case_opened_in_russian_is_taken_logged_followed_up_and_closed_in_english(
    gateway: Gateway, browser: Browser, sofia: Consultant
) -> None:
    console = Console(browser, gateway)
    try:
        await walk_through(console, gateway, sofia)
    finally:
        await console.check_and_close()


async def walk_through(console: Console, gateway: Gateway, sofia: Consultant) -> None:
    # Sasha, social-work specialist of La Strada: her console opens on her cases, none yet.
    sasha = await console.open("sasha", "en-GB")
    await expect(sasha.locator("#cases-title")).to_have_text("My cases")
    await expect(sasha.locator("#case-list-empty")).to_have_text("No cases.")
    await expect(sasha.locator("#case-alerts")).to_contain_text("No alerts.")
    await expect(sasha.locator("#work")).to_be_hidden()

    # A client in a crisis abroad writes; Anna (La Strada) takes the chat in Russian.
    async with aiohttp.ClientSession() as http:
        thread_id = await crisis_chat(http, gateway, sofia, "Я в Польше, паспорт забрали")
    anna = await console.open("anna", "ru-RU", RU)
    await expect(anna.locator("#cases-toggle")).to_be_hidden()  # a consultant has no Cases view
    await anna.locator('#queues button[data-queue="lastrada-migration"]').click()
    await anna.get_by_role("button", name="Следующий").click()
    await anna.get_by_role("button", name="Открыть случай…").click()
    form = anna.locator("#case-intake-form")
    await form.get_by_label("Вид случая").select_option(label="Кризисная ситуация за рубежом")
    # The server names what is missing; the console says it with the questions' labels.
    await form.get_by_role("button", name="Открыть и передать").click()
    await expect(anna.locator("#case-open-error")).to_have_text(
        "Не заполнено: Где находится человек, Уровень риска"
    )
    await form.get_by_label("Где находится человек").select_option(label="Польша")
    await form.get_by_label("С какого времени").fill((date.today() - timedelta(days=12)).isoformat())
    await form.locator('select[name="intake.documents"]').select_option(
        label="Изъяты (работодателем, другими)"
    )
    await form.get_by_label("Как безопасно связаться").fill("Только в Telegram после 21:00 <b>x</b>")
    await form.get_by_label("Возвращение домой").check()
    await form.get_by_label("Жильё, убежище").check()
    await form.get_by_label("Уровень риска").select_option(label="Высокий")
    await form.get_by_role("button", name="Открыть и передать").click()
    receipt = anna.locator("#case-receipt")
    await expect(receipt).to_contain_text("Открыт случай LASTRADA-1: Кризисная ситуация за рубежом")
    await expect(receipt).to_contain_text("Передан: Специалист по социальной работе, принять до")

    # Sasha's list shows it at once, without a reload.
    row = sasha.locator("#case-list tbody tr").first
    await expect(row).to_contain_text("LASTRADA-1")
    await expect(row).to_contain_text("Crisis abroad")
    await expect(row).to_contain_text("Social-work specialist")

    # The conversation is closed with its case form: a case opens from the consultation it ended.
    anna_api = Consultant(gateway.store_url)
    try:
        await anna_api.login("anna", "anna-demo")
        status, closed = await anna_api.call("POST", f"/api/threads/{thread_id}/close", {"case": CASE_FORM})
        assert status == 200 and closed["status"] == "closed", closed
    finally:
        await anna_api.close()
    await expect(anna.locator("#thread-meta")).to_contain_text("закрыто")
    await expect(receipt).to_contain_text("LASTRADA-1")  # still there
    await anna.get_by_role("button", name="Открыть случай…").click()
    await form.get_by_label("Вид случая").select_option(label="Предполагаемая жертва торговли людьми")
    await form.get_by_label("Трудовая").check()
    await form.get_by_label("Уровень риска").select_option(label="Средний")
    await form.get_by_role("button", name="Открыть и передать").click()
    await expect(anna.locator("#case-receipt-1")).to_contain_text("Открыт случай LASTRADA-2")

    # Nobody took the crisis in time (the test's referral time is about two seconds): alerted
    # live at the top of Sasha's view, and first in her list, marked.
    await expect(sasha.locator("#alerts-late")).to_contain_text("LASTRADA-1 · Crisis abroad", timeout=15000)
    await expect(sasha.locator("#cases-toggle .case-badge")).to_contain_text("1")
    await expect(sasha.locator("#case-list tbody tr")).to_have_count(2)
    await expect(row).to_have_class("overdue")
    await expect(row).to_contain_text("LASTRADA-1")
    await expect(row).to_contain_text("overdue")

    # She opens it: the intake by its questions' labels, the free text as text.
    await sasha.locator("#case-list").get_by_role("button", name="LASTRADA-1").click()
    await expect(sasha.locator("#case-title")).to_have_text("LASTRADA-1 · Crisis abroad")
    await expect(sasha.locator("#case-title")).to_be_focused()

    def answer(question: str) -> Locator:
        return sasha.locator(f"#case-intake dt:text-is('{question}') + dd")

    await expect(answer("Where the person is")).to_have_text("Poland")
    await expect(answer("Urgent needs")).to_have_text("Return home, Shelter")
    await expect(answer("Documents")).to_have_text("Taken away (by the employer or others)")
    await expect(answer("How the person can be reached safely")).to_have_text(
        "Только в Telegram после 21:00 <b>x</b>"
    )
    assert await sasha.locator("#cases b").count() == 0

    # Takes it: active, hers; the alert is gone.
    await sasha.get_by_role("button", name="Take this case").click()
    await expect(sasha.locator("#case-facts")).to_contain_text("Status: active")
    await expect(sasha.locator("#case-facts")).to_contain_text("Held by: sasha")
    await expect(sasha.locator("#alerts-late")).to_have_count(0)
    await expect(sasha.locator("#cases-toggle .case-badge")).to_have_count(0)

    # Logs a shelter with its amount, then counselling, which has none.
    services = sasha.locator("#case-service-form")
    await services.get_by_label("Service").select_option(label="Shelter")
    await services.get_by_label("Amount").fill("120.5")
    await services.get_by_label("Note").fill("three nights")
    await services.get_by_role("button", name="Log service").click()
    logged = sasha.locator("#case-service-list li")
    await expect(logged).to_have_count(1)
    await expect(logged.first).to_contain_text("Shelter · Amount 120.5 · sasha")
    await expect(logged.first).to_contain_text("three nights")
    await expect(services.get_by_label("Note")).to_have_value("")  # the form is cleared
    await services.get_by_label("Service").select_option(label="Counselling")
    await expect(services.get_by_label("Amount")).to_be_hidden()
    await services.get_by_role("button", name="Log service").click()
    await expect(logged).to_have_count(2)

    # Refers the person to the police, and records what came of it.
    external = sasha.locator("#case-external-form")
    await external.get_by_label("Referred to service").select_option(label="Police")
    await external.get_by_role("button", name="Log referral").click()
    referrals = sasha.locator("#case-external-list li")
    await expect(referrals).to_contain_text("Police · sasha")
    await expect(referrals).to_contain_text("no result yet")
    results = sasha.locator("#case-result-form")
    await results.get_by_label("Result").fill("Statement taken")
    await results.get_by_role("button", name="Save result").click()
    await expect(referrals).to_contain_text("Result: Statement taken")

    # A follow-up due now: it shows among the alerts at once; done, it is gone.
    due = datetime.now(ZoneInfo(MINSK)).strftime("%Y-%m-%dT%H:%M")
    followups = sasha.locator("#case-followup-form")
    await followups.get_by_label("Due on").fill(due)
    await followups.get_by_label("Note").fill("Call her")
    await followups.get_by_role("button", name="Add follow-up").click()
    await expect(sasha.locator("#alerts-followups")).to_contain_text("LASTRADA-1 · Crisis abroad · Due on")
    planned = sasha.locator("#case-followup-list li")
    await expect(planned).to_contain_text("Call her")
    await expect(planned).to_contain_text("overdue")
    await planned.get_by_role("button", name="Done").click()
    await expect(planned).to_contain_text("done by sasha")
    await expect(sasha.locator("#alerts-followups")).to_have_count(0)
    await expect(sasha.locator("#case-alerts")).to_contain_text("No alerts.")

    await sasha.locator("#case-note-form").get_by_label("Note").fill("Home safe, looking for work")
    await sasha.get_by_role("button", name="Add note").click()
    await expect(sasha.locator("#case-note-list")).to_contain_text("Home safe, looking for work")

    # Closes it with a reason: the reason is asked only for a close.
    status_form = sasha.locator("#case-status-form")
    await expect(status_form.get_by_label("Close reason")).to_be_hidden()
    await status_form.get_by_label("New status").select_option(label="closed")
    await status_form.get_by_label("Close reason").select_option(label="Returned home safely")
    await status_form.get_by_role("button", name="Change status").click()
    await expect(sasha.locator("#case-facts")).to_contain_text("Status: closed (Returned home safely)")
    await expect(sasha.locator("#case-service-form")).to_have_count(0)  # a closed case takes no more
    await expect(sasha.locator("#case-list tbody tr")).to_have_count(1)  # LASTRADA-2 is still open
    await expect(sasha.locator("#case-list")).not_to_contain_text("LASTRADA-1")
    await sasha.get_by_label("Show").select_option(label="closed cases")
    await expect(sasha.locator("#case-list tbody tr")).to_have_count(1)
    await expect(sasha.locator("#case-list")).to_contain_text("LASTRADA-1")
    history = sasha.locator("#case-history")
    await history.locator("summary").click()
    await expect(history).to_contain_text("opened · anna")
    await expect(history).to_contain_text("service logged: Shelter · sasha")
    await expect(history).to_contain_text("status changed: closed (Returned home safely) · sasha")

    # Another organisation: Boris, BWC's consultant, has no Cases view; Kira, BWC's specialist,
    # sees none of La Strada's cases and no alert about them, in Russian.
    boris = await console.open("boris", "en-GB")
    await expect(boris.locator("#cases-toggle")).to_be_hidden()
    await expect(boris.locator("#cases")).to_be_hidden()
    kira = await console.open("kira", "ru-RU", RU)
    await expect(kira.locator("#cases-title")).to_have_text("Мои случаи")
    await expect(kira.locator("#case-list-empty")).to_have_text("Случаев нет.")
    await expect(kira.locator("#case-alerts")).to_contain_text("Сигналов нет.")
    await kira.get_by_label("Показать").select_option(label="закрытые случаи")
    await expect(kira.locator("#case-list-empty")).to_have_text("Случаев нет.")
    assert "LASTRADA" not in await kira.locator("#cases").inner_text()
