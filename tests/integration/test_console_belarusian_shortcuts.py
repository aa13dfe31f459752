"""The console in Belarusian and its keyboard shortcuts, in real Chromium.

A browser set to Belarusian opens the console in Belarusian: header, queue list, a thread taken
by Next, its reply box and the panels beside it, the search panel, the shortcuts list. Then a
consultant's shift from the keyboard alone: ? lists the shortcuts, Alt+N takes the next
conversation, Alt+R goes to the reply box (where a "?" is typed, not obeyed), Ctrl+Enter sends,
Alt+L gives it back, Alt+Q goes to the queues, Alt+K opens the search, Alt+O turns the
notifications on."""

from __future__ import annotations

import uuid

from playwright.async_api import Browser, Page, expect

from tests.conftest import Gateway
from tests.integration.helpers import Mailbox, mail, new_message_id
from tests.integration.test_console_journey import LAPTOP, Watch, logged_in


async def mail_waiting(gateway: Gateway, page: Page, waiting: int = 1) -> str:
    """A mail in the 113 triage queue, seen in the console with ``waiting`` waiting there; its
    subject."""
    subject = f"Пытанне {uuid.uuid4().hex[:6]}"
    inbox = Mailbox("127.0.0.1", gateway.urls.imap_port, gateway.line_mailbox)
    await inbox.append(
        mail(
            f"{gateway.client_mailbox}@demo.test",
            f"{gateway.line_mailbox}@demo.test",
            subject,
            "Ці можна ехаць па турыстычнай візе?",
            new_message_id(),
        )
    )
    await expect(page.locator('#queues button[data-queue="113-triage"] .badge')).to_have_text(
        str(waiting), timeout=20_000
    )
    return subject


async def test_a_browser_in_belarusian_opens_the_console_in_belarusian(
    gateway: Gateway, browser: Browser
) -> None:
    gateway.seed_demo_accounts()
    watch = Watch(gateway.store_url)
    context = await browser.new_context(viewport=LAPTOP, locale="be-BY")
    try:
        page = await logged_in(context, gateway, "anna", watch, ("Лагін", "Пароль", "Увайсці"))
        await expect(page.locator("html")).to_have_attribute("lang", "be")
        header = page.locator("header")
        await expect(header.locator(".lang-select")).to_have_value("be")
        await expect(header).to_contain_text("Кансоль гарачай лініі")
        await expect(header).to_contain_text("Даступнасць")
        await expect(page.locator('#availability option[value="offline"]')).to_have_text("не ў сетцы")
        await expect(header.get_by_role("button", name="Знайсці")).to_be_visible()
        await expect(header.get_by_role("button", name="Запісаць званок")).to_be_visible()
        await expect(header.get_by_role("button", name="Апавяшчэнні: выкл.")).to_be_visible()
        await expect(header.get_by_role("button", name="Спалучэнні клавіш")).to_be_visible()
        await expect(header.get_by_role("button", name="Выйсці")).to_be_visible()

        # The queue list: its heading and the queues' titles from the configuration.
        await expect(page.locator("#queues-title")).to_have_text("Чэргі")
        triage = page.locator('#queues button[data-queue="113-triage"]')
        await expect(triage.locator(".qname")).to_have_text("113: без рэгіёна")
        await expect(page.locator("#thread .hint")).to_have_text(
            "Выберыце чаргу і націсніце «Наступная» або адкрыйце размову."
        )
        subject = await mail_waiting(gateway, page)
        await triage.click()
        await expect(page.locator("#threads-title")).to_have_text("Размовы: 113: без рэгіёна")
        await expect(page.locator("#threads")).to_contain_text(subject + " · чакае")
        await expect(triage.locator(".oldest")).to_contain_text("даўжэй за ўсіх")

        # Alt+N by the key where N is on a Latin keyboard: in the Belarusian layout it types "т".
        await page.evaluate(
            "document.activeElement.dispatchEvent(new KeyboardEvent('keydown',"
            " {key: 'т', code: 'KeyN', altKey: true, bubbles: true, cancelable: true}))"
        )
        thread = page.locator("#thread")
        await expect(thread.locator("h2")).to_contain_text(subject)
        await expect(page.locator("#thread-meta")).to_contain_text(
            "Статус: у рабоце (anna) · 113: Ла Страда"  # taken: in its organisation's queue
        )
        await expect(thread.locator(".msg.in .meta")).to_contain_text("Кліент")
        await expect(thread.get_by_label("Адказ", exact=True)).to_be_visible()
        await expect(thread.get_by_role("button", name="Адправіць")).to_be_visible()
        await expect(thread.get_by_role("button", name="Дадаць нататку")).to_be_visible()
        await expect(thread.get_by_role("button", name="Вярнуць у чаргу")).to_be_visible()
        await expect(thread.get_by_text("Далучыць файл (PDF або відарыс)")).to_be_visible()
        # The panels beside the thread: the person and the safe-contact plan.
        await expect(page.locator("#person summary")).to_have_text("Ранейшыя кансультацыі")
        await expect(page.locator("#contact-plan summary")).to_have_text("Бяспечны кантакт")
        # The close dialog: the case form's questions in Belarusian, from the configuration.
        await thread.get_by_role("button", name="Закрыць…").click()
        form = page.locator("#case-form")
        await expect(form.locator("h3")).to_have_text("Анкета размовы")
        await expect(form.locator('fieldset[data-field="client_role"] legend')).to_have_text(
            "Хто звярнуўся *"
        )
        await expect(form.get_by_role("button", name="Закрыць з гэтай анкетай")).to_be_visible()
        await expect(page.locator("#no-consultation legend")).to_have_text("Без кансультацыі")
        await form.get_by_role("button", name="Скасаваць").click()

        # A module's panel: the search.
        await header.get_by_role("button", name="Знайсці").click()
        search = page.locator("#search")
        await expect(search.locator("h2")).to_have_text("Пошук запісу")
        await expect(search.get_by_label("Нумар (размовы, кансультацыі або справы)")).to_be_focused()
        await expect(search.get_by_role("button", name="Шукаць")).to_be_visible()
        await search.get_by_role("button", name="Закрыць").click()

        # The shortcuts list, in Belarusian too.
        await header.get_by_role("button", name="Спалучэнні клавіш").click()
        shortcuts = page.get_by_role("dialog", name="Спалучэнні клавіш")
        await expect(shortcuts.locator('tr[data-keys="Alt+N"] td').nth(1)).to_have_text(
            "Наступная: узяць наступную размову, якая чакае ў чарзе"
        )
        await page.keyboard.press("Escape")
        await expect(shortcuts).to_be_hidden()

        # Switched to Russian and back: every text follows at once.
        await header.locator(".lang-select").select_option("ru")
        await expect(page.locator("#queues-title")).to_have_text("Очереди")
        await header.locator(".lang-select").select_option("be")
        await expect(page.locator("#queues-title")).to_have_text("Чэргі")
        await expect(thread.get_by_role("button", name="Вярнуць у чаргу")).to_be_visible()
    finally:
        await context.close()
    assert watch.elsewhere == [] and watch.dialogs == []


async def test_a_shift_from_the_keyboard(gateway: Gateway, browser: Browser) -> None:
    gateway.seed_demo_accounts()
    watch = Watch(gateway.store_url)
    context = await browser.new_context(viewport=LAPTOP, locale="en-GB")
    try:
        page = await logged_in(context, gateway, "anna", watch)
        subject = await mail_waiting(gateway, page)
        await page.locator('#queues button[data-queue="113-triage"]').click()
        await expect(page.locator("#threads")).to_contain_text(subject)

        # "?" outside a field lists every shortcut; Escape closes the list.
        await page.locator("#next").focus()
        await page.keyboard.press("?")
        shortcuts = page.get_by_role("dialog", name="Keyboard shortcuts")
        await expect(shortcuts).to_be_visible()
        await expect(shortcuts.locator("tbody tr td:first-child")).to_have_text(
            ["Alt+N", "Alt+R", "Ctrl+Enter", "Alt+L", "Alt+Q", "Alt+K", "Alt+O", "?", "Esc"]
        )
        await expect(shortcuts.locator('tr[data-keys="Alt+L"] td').nth(1)).to_have_text(
            "Release: give the open conversation back to its queue"
        )
        await page.keyboard.press("Escape")
        await expect(shortcuts).to_be_hidden()
        await expect(page.locator("#next")).to_be_focused()  # the focus is back where it was

        # Next, reply box, a "?" typed there stays text, Ctrl+Enter sends.
        await page.keyboard.press("Alt+KeyN")
        await expect(page.locator("#thread h2")).to_contain_text(subject)
        await expect(page.locator("#thread-meta")).to_contain_text("Status: active (anna)")
        await page.keyboard.press("Alt+KeyR")
        reply = page.get_by_label("Reply")
        await expect(reply).to_be_focused()
        await page.keyboard.type("Can you tell me more?")
        await expect(shortcuts).to_be_hidden()
        await expect(reply).to_have_value("Can you tell me more?")
        await page.keyboard.press("Control+Enter")
        await expect(page.locator("#thread .msg.out").filter(has_text="Can you tell me more?")).to_have_count(
            1
        )

        # Alt+L gives the conversation back to its queue.
        await page.keyboard.press("Alt+KeyL")
        await expect(page.locator("#thread-meta")).to_contain_text("Status: waiting")

        # Alt+Q goes to the queue list, at the queue being worked.
        await page.keyboard.press("Alt+KeyQ")
        triage = page.locator('#queues button[data-queue="113-triage"]')
        await expect(triage).to_be_focused()
        # A live update redraws the queues (another mail comes): the keyboard keeps its place.
        await mail_waiting(gateway, page, waiting=2)
        await expect(triage).to_be_focused()

        # Alt+K opens the search with the focus in it, and closes it again.
        await page.keyboard.press("Alt+KeyK")
        await expect(page.locator("#search")).to_be_visible()
        await expect(page.locator("#search-number")).to_be_focused()
        await page.keyboard.press("Alt+KeyK")
        await expect(page.locator("#search")).to_be_hidden()

        # Alt+O turns the notifications on.
        toggle = page.locator("#notify-toggle")
        await expect(toggle).to_have_attribute("aria-pressed", "false")
        await page.keyboard.press("Alt+KeyO")
        await expect(toggle).to_have_attribute("aria-pressed", "true")
        await expect(toggle).to_have_text("Notifications: on")

        # The header's button opens the list too.
        await page.get_by_role("button", name="Keyboard shortcuts").click()
        await expect(shortcuts).to_be_visible()
        await shortcuts.get_by_role("button", name="Close").click()
        await expect(shortcuts).to_be_hidden()
    finally:
        await context.close()
    assert watch.elsewhere == [] and watch.dialogs == []
