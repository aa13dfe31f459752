"""The consultant console in real Chromium, the whole journey with two consultants at once:
log in, availability, Next, read (folded quotes, sanitised HTML in a sandboxed frame),
canned answer, reply with delivery status, note, transfer, release, close with the case form;
every change seen live by the other consultant without a reload. Then the supervisor view
with holders and a crisis alert, in Russian."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import AsyncIterator, Callable
from email.message import EmailMessage
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import Browser, BrowserContext, Page, expect

from tests.conftest import Gateway
from tests.integration.helpers import Consultant, Mailbox, new_message_id

LAPTOP = {"width": 1366, "height": 768}


class Tracker:
    """A server standing in for a sender's tracking pixels and remote images: any hit is a leak."""

    def __init__(self) -> None:
        self.url = ""
        self.hits: list[str] = []


@pytest.fixture
async def tracker() -> AsyncIterator[Tracker]:
    found = Tracker()
    hits = found.hits

    async def record(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(body=b"GIF89a", content_type="image/gif")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    found.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield found
    finally:
        await runner.cleanup()


class Watch:
    """What a page did that it must not: requests leaving the store, dialogs, page errors."""

    def __init__(self, store_url: str) -> None:
        self.store = store_url
        self.elsewhere: list[str] = []
        self.dialogs: list[str] = []

    def attach(self, page: Page) -> None:
        def on_request(r: Any) -> None:
            if not (r.url.startswith(self.store) or r.url.startswith("ws://127.0.0.1")):
                self.elsewhere.append(r.url)

        page.on("request", on_request)

        async def on_dialog(d: Any) -> None:
            self.dialogs.append(d.message)
            await d.dismiss()

        page.on("dialog", on_dialog)


async def logged_in(
    context: BrowserContext,
    gateway: Gateway,
    login: str,
    watch: Watch,
    labels: tuple[str, str, str] = ("Login", "Password", "Log in"),
) -> Page:
    page = await context.new_page()
    watch.attach(page)
    await page.goto(gateway.store_url + "/")
    await page.get_by_label(labels[0]).fill(login)
    await page.get_by_label(labels[1]).fill(f"{login}-demo")
    await page.get_by_role("button", name=labels[2]).click()
    await expect(page.locator("#live")).to_have_class("on")
    return page


def html_mail(client: str, line: str, subject: str, pixel: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"], msg["Message-ID"] = client, line, subject, new_message_id()
    msg.set_content(
        "Хочу уехать работать в Польшу, агентство просит паспорт.\n\n"
        "On Mon, 2 Mar 2026 at 10:00, Hotline <hotline@demo.test> wrote:\n"
        "> Здравствуйте! Расскажите подробнее.\n"
    )
    msg.add_alternative(
        "<p>Хочу уехать <b>работать</b> в Польшу, агентство просит паспорт.</p>"
        f'<img src="{pixel}"><p style="background:url({pixel}?css)">'
        f'<a href="{pixel}?link" onclick="alert(1)">агентство</a></p><script>alert(2)</script>',
        subtype="html",
    )
    return msg.as_bytes()


def badge(page: Page, queue: str) -> Any:
    return page.locator(f'#queues button[data-queue="{queue}"] .badge')


def open_all_day(config: dict[str, Any]) -> None:
    for line in config["lines"].values():
        line["hours"] = {"timezone": "Europe/Minsk", "open": "00:00", "close": "23:59:59"}


@pytest.mark.hotline_config.with_args(open_all_day)
async def test_two_consultants_whole_journey_live(
    gateway: Gateway, browser: Browser, tracker: Tracker
) -> None:
    gateway.seed_demo_accounts()
    watch = Watch(gateway.store_url)
    pixel = f"{tracker.url}/pixel.gif"
    anna_ctx = await browser.new_context(viewport=LAPTOP, locale="en-GB")
    boris_ctx = await browser.new_context(viewport=LAPTOP, locale="en-GB")
    anna = await logged_in(anna_ctx, gateway, "anna", watch)
    boris = await logged_in(boris_ctx, gateway, "boris", watch)
    await expect(anna.locator("#who")).to_have_text("Anna (consultant)")

    # Availability: stored on the server, shown after a reload.
    async with anna.expect_response(lambda r: r.url.endswith("/api/me/status") and r.ok):
        await anna.get_by_label("Availability").select_option("available")
    await anna.reload()
    await expect(anna.get_by_label("Availability")).to_have_value("available")
    await expect(anna.locator("#live")).to_have_class("on")

    # A mail and a chat arrive in the shared triage queue: both consoles count them live.
    subject = f"Работа в Польше {uuid.uuid4().hex[:6]}"
    inbox = Mailbox("127.0.0.1", gateway.urls.imap_port, gateway.line_mailbox)
    await inbox.append(
        html_mail(f"{gateway.client_mailbox}@demo.test", f"{gateway.line_mailbox}@demo.test", subject, pixel)
    )
    await expect(badge(anna, "113-triage")).to_have_text("1", timeout=20_000)
    async with aiohttp.ClientSession() as http:
        chat = await http.ws_connect(f"{gateway.chat_url}/chat/ws")
        await chat.send_json({"type": "start", "line": "113", "language": "ru"})
        await chat.send_json(
            {"type": "message", "id": str(uuid.uuid4()), "text": "Можно ли учиться в Литве?"}
        )
        await expect(badge(boris, "113-triage")).to_have_text("2", timeout=20_000)
        await expect(badge(anna, "113-triage")).to_have_text("2")
        await expect(anna.locator('#queues button[data-queue="113-triage"] .oldest')).to_contain_text("min")

        # Anna takes the next one (the mail waited longest): Boris sees the count drop.
        await anna.locator('#queues button[data-queue="113-triage"]').click()
        await anna.get_by_role("button", name="Next").click()
        await expect(anna.locator("#thread h2")).to_contain_text(subject)
        await expect(badge(boris, "113-triage")).to_have_text("1")

        # The mail: HTML in a frame with no scripts, quoted history folded, plain text at hand.
        mail_msg = anna.locator("#thread .msg.in").first
        frame = mail_msg.locator("iframe.html")
        await expect(frame).to_have_attribute("sandbox", "")
        await expect(frame.content_frame.locator("b")).to_have_text("работать")
        assert await frame.content_frame.locator("img, script, [onclick], [href]").count() == 0
        quoted = mail_msg.locator("details.quoted")
        await expect(quoted).not_to_have_attribute("open", "")
        await expect(quoted.locator(".text")).to_be_hidden()
        await quoted.locator("summary").click()
        await expect(quoted.locator(".text")).to_contain_text("Расскажите подробнее")

        # A canned answer of the line, edited, sent; its delivery status follows live.
        await anna.get_by_label("Canned answer").select_option(label="Tourist visa and work")
        reply = anna.get_by_label("Reply")
        # The mail is in Russian (read from it: services/dispatcher/language.py): the canned
        # answer comes in the client's language, not the console's.
        await expect(reply).to_have_value(re.compile("^По туристической визе работать нельзя"))
        await reply.press("End")
        await reply.type(" Пришлите название агентства.")
        await anna.get_by_role("button", name="Send reply").click()
        sent = anna.locator("#thread .msg.out").filter(has_text="название агентства")
        await expect(sent).to_have_count(1)
        await expect(sent.locator(".meta")).to_contain_text("delivery: sent", timeout=20_000)

        # An internal note, then a transfer to the other NGO with a note.
        await anna.get_by_label("Note", exact=True).fill("Проверить агентство по реестру")
        await anna.get_by_role("button", name="Add note").click()
        await expect(anna.locator("#thread .msg.note")).to_contain_text("Проверить агентство")
        await anna.get_by_label("Transfer to").select_option("bwc-migration")
        await anna.get_by_label("Transfer note").fill("Клиентка из Бреста")
        await anna.get_by_role("button", name="Transfer").click()
        await expect(badge(boris, "bwc-migration")).to_have_text("1")

        # Anna takes the chat and gives it back: Boris sees it return.
        await anna.get_by_role("button", name="Next").click()
        await expect(anna.locator("#thread h2")).to_contain_text("[chat]")
        await expect(badge(boris, "113-triage")).to_have_text("0")
        await anna.get_by_role("button", name="Release").click()
        await expect(badge(boris, "113-triage")).to_have_text("1")

        # Boris takes the transferred mail: he sees Anna's reply and both notes.
        await boris.locator('#queues button[data-queue="bwc-migration"]').click()
        await boris.get_by_role("button", name="Next").click()
        await expect(boris.locator("#thread h2")).to_contain_text(subject)
        await expect(boris.locator("#thread .msg.note")).to_have_count(2)
        await expect(boris.locator("#thread .msg.out").filter(has_text="название агентства")).to_have_count(1)
        boris_frame = boris.locator("#thread .msg.in iframe.html").first.content_frame
        await expect(boris_frame.locator("b")).to_have_text("работать")
        if path := os.environ.get("CONSOLE_SCREENSHOT"):
            await boris.screenshot(path=path)

        # Closing asks for the case form; the server names what is missing.
        await boris.get_by_role("button", name="Close…").click()
        await boris.get_by_role("button", name="Close with this case form").click()
        error = boris.locator("#case-error")
        await expect(error).to_contain_text("Missing: ")
        for question in ("Who contacted us", "Gender", "Age group"):
            await expect(error).to_contain_text(question)
        await expect(boris.locator("#case-form fieldset.bad")).to_have_count(3)
        form = boris.locator("#case-form")
        await form.get_by_label("Who contacted us").select_option("survivor")
        await form.get_by_label("Gender", exact=True).select_option("f")
        await form.get_by_label("Age group").select_option("27-40")
        await form.get_by_label("Destination country").select_option("PL")
        await form.get_by_label("Crisis", exact=True).select_option("no")
        await form.locator('fieldset[data-field="topics"]').get_by_label("Legal work abroad").check()
        await form.locator('fieldset[data-field="services"]').get_by_label("Legal", exact=True).check()
        await form.locator('fieldset[data-field="services"]').get_by_label("Social / informational").check()
        await boris.get_by_role("button", name="Close with this case form").click()
        await expect(boris.locator("#thread-meta")).to_contain_text("Status: closed")
        await expect(badge(boris, "bwc-migration")).to_have_text("0")
        await chat.close()  # closed here, not left to the collector (an unclosed connection warns)

    # The case form is stored as categorical answers, lists where several may be chosen.
    api = Consultant(gateway.store_url)
    try:
        await api.login("boris", "boris-demo")
        status, closed = await api.call("GET", "/api/threads?queue=bwc-migration&status=closed")
        assert status == 200
        (thread,) = closed
        assert thread["case"] == {
            "client_role": "survivor",
            "gender": "f",
            "age_group": "27-40",
            "destination_country": "PL",
            "crisis": "no",
            "topics": ["work_abroad"],
            "services": ["legal", "social"],
        }
    finally:
        await api.close()
    assert watch.elsewhere == [] and watch.dialogs == []
    assert tracker.hits == []  # no pixel, no remote CSS, no link was fetched
    await anna_ctx.close()
    await boris_ctx.close()


def quick_crisis(config: dict[str, Any]) -> None:
    open_all_day(config)
    config["queue_policy"] = {"claim_timeout_minutes": 30, "crisis_escalation_minutes": 0.03}


@pytest.mark.hotline_config.with_args(quick_crisis)
@pytest.mark.service_env({"DISPATCHER_SWEEP_SECONDS": "0.5"})
async def test_supervisor_sees_queues_holders_and_crises_live_in_russian(
    gateway: Gateway, browser: Browser
) -> None:
    gateway.seed_demo_accounts()
    watch = Watch(gateway.store_url)
    ctx = await browser.new_context(viewport=LAPTOP, locale="ru-RU")
    sofia = await logged_in(ctx, gateway, "sofia", watch, ("Логин", "Пароль", "Войти"))
    # The browser's language picks Russian; the switch changes it at once.
    await expect(sofia.get_by_role("button", name="Следующий")).to_be_visible()
    await sofia.locator("header .lang-select").select_option("en")
    await expect(sofia.get_by_role("button", name="Next")).to_be_visible()
    await sofia.locator("header .lang-select").select_option("ru")
    await sofia.get_by_role("button", name="Обзор супервизора").click()
    row: Callable[[str], Any] = lambda q: sofia.locator(f'#sup-queues tr[data-queue="{q}"]')  # noqa: E731
    await expect(row("gp-dv")).to_contain_text("Насилие: консультанты")

    vera = Consultant(gateway.store_url)
    try:
        await vera.login("vera", "vera-demo")
        async with aiohttp.ClientSession() as http:
            calm = await http.ws_connect(f"{gateway.chat_url}/chat/ws")
            await calm.send_json({"type": "start", "line": "dv"})
            await calm.send_json({"type": "message", "id": str(uuid.uuid4()), "text": "Нужна консультация"})
            await expect(row("gp-dv").locator("td").nth(1)).to_have_text("1", timeout=20_000)
            status, _ = await vera.call("POST", "/api/queues/gp-dv/next")
            assert status == 200
            # Who holds what, live.
            await expect(row("gp-dv").locator(".holders")).to_have_text("vera [chat]")
            await expect(sofia.locator('#sup-people li[data-login="vera"]')).to_contain_text("ведёт 1")

            crisis = await http.ws_connect(f"{gateway.chat_url}/chat/ws")
            await crisis.send_json({"type": "start", "line": "dv", "topic": "danger_now"})
            await crisis.send_json({"type": "message", "id": str(uuid.uuid4()), "text": "Помогите"})
            # Urgent and waiting: listed at once; escalated after the configured wait, with an alert.
            await expect(row("gp-dv").locator("td").nth(3)).to_have_text("1", timeout=20_000)
            await expect(sofia.locator("#alerts")).to_contain_text(
                "Кризисное обращение ждёт слишком долго: Насилие: консультанты", timeout=20_000
            )
            await expect(sofia.locator("#sup-alerts li.escalated")).to_have_count(1)
            await calm.close()
            await crisis.close()
    finally:
        await vera.close()
    assert watch.elsewhere == [] and watch.dialogs == []
    await ctx.close()
