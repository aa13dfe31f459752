"""The chat widget in real Chromium, embedded with one script tag in an organisation's page
on another origin: pre-chat choices, on-duty status, an exchange with a consultant through
the API, Quick exit (nothing stored, page replaced, not in history; every other socket of the
chat closed, on any replica), "Not safe now" (the same, and the thread marked for the
console), Escape twice, resume after the connection dropped, and the notice under a message
whose broken characters had to be replaced."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import Browser, Locator, Page, WebSocket, async_playwright, expect
from pymongo import AsyncMongoClient

from tests.conftest import ROOT, Gateway
from tests.integration.chat_client import ChatClient, start_replica
from tests.integration.helpers import Consultant

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        b = await p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
        )
        try:
            yield b
        finally:
            await b.close()


@dataclass
class Site:
    url: str

    @property
    def chat_page(self) -> str:
        return f"{self.url}/help"

    @property
    def neutral(self) -> str:
        return f"{self.url}/weather"


@pytest.fixture
async def site(gateway: Gateway) -> AsyncIterator[Site]:
    """An organisation's own plain web site (another origin) that embeds the widget."""

    async def home(request: web.Request) -> web.Response:
        return web.Response(text="<!doctype html><title>NGO</title><p>Welcome</p>", content_type="text/html")

    async def help_page(request: web.Request) -> web.Response:
        lang = request.query.get("lang", "en")
        html = (
            f'<!doctype html><html lang="{lang}"><title>Help</title><h1>Help</h1>'
            f'<script src="{gateway.chat_url}/chat/widget.js" data-line="dv" '
            f'data-exit-url="{site.neutral}"></script></html>'
        )
        return web.Response(text=html, content_type="text/html")

    async def weather(request: web.Request) -> web.Response:
        return web.Response(
            text="<!doctype html><title>Weather</title><p>Sunny</p>", content_type="text/html"
        )

    app = web.Application()
    app.router.add_get("/", home)
    app.router.add_get("/help", help_page)
    app.router.add_get("/weather", weather)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    port = tcp._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    site = Site(f"http://127.0.0.1:{port}")
    try:
        yield site
    finally:
        await runner.cleanup()


def record_frames(page: Page) -> list[dict[str, Any]]:
    """Frames the widget received (to learn its token, as an attacker with the device might)."""
    got: list[dict[str, Any]] = []

    def on_ws(ws: WebSocket) -> None:
        ws.on("framereceived", lambda payload: got.append(json.loads(payload)))

    page.on("websocket", on_ws)
    return got


async def storage_left(page: Page) -> dict[str, Any]:
    return dict(
        await page.evaluate(
            """async () => ({
                local: localStorage.length, session: sessionStorage.length, cookie: document.cookie,
                idb: (await indexedDB.databases()).length,
                caches: (await caches.keys()).length })"""
        )
    )


async def skip_and_say(page: Page, site: Site, text: str) -> Locator:
    """Start a chat without the questions and send ``text``, until it is acknowledged; the
    message box."""
    await page.goto(site.chat_page)
    await page.get_by_role("button", name="Skip and start").click()
    box = page.get_by_label("Your message")
    await box.fill(text)
    await box.press("Enter")
    await expect(page.locator("li.hl-you.hl-pending")).to_have_count(0)
    return box


NOTHING = {"local": 0, "session": 0, "cookie": "", "idb": 0, "caches": 0}


async def leave_by(page: Page, site: Site, button: str) -> None:
    """Press ``button`` (Quick exit, Not safe now) on the chat page, reached from the site's
    home: the neutral page replaces it, Back goes home, and nothing is left stored."""
    await page.get_by_role("button", name=button).click()
    await page.wait_for_url(site.neutral)
    await expect(page.locator("body")).to_have_text("Sunny")
    # Back does not return to the chat: the chat page was replaced, not left behind.
    await page.go_back()
    assert page.url == site.url + "/"
    assert await storage_left(page) == NOTHING
    assert await page.context.cookies() == []


async def test_start_exchange_with_a_consultant_then_quick_exit(
    gateway: Gateway, site: Site, vera: Consultant, browser: Browser
) -> None:
    agent = f"UA-CANARY-{uuid.uuid4().hex}"  # no user agent is stored or logged
    context = await browser.new_context(user_agent=agent)
    page = await context.new_page()
    frames = record_frames(page)
    await page.goto(site.url + "/")
    await page.goto(site.chat_page)

    chat = page.get_by_role("region", name="Chat with a consultant")
    await expect(chat).to_be_visible()
    await expect(page.locator(".hl-hours")).to_have_text("Hours: 08:00-20:00 daily.")
    await expect(page.get_by_role("status")).to_contain_text(
        "on duty"
    )  # "on duty now" or "Nobody is on duty"
    await page.get_by_label("Region", exact=True).select_option("minsk")
    await page.get_by_label("Topic").select_option("psychological")
    await page.get_by_role("button", name="Start chat").click()

    canary = f"CANARY-{uuid.uuid4().hex}"
    box = page.get_by_label("Your message")
    await expect(box).to_be_focused()
    await box.fill(f"I need to talk {canary}")
    await box.press("Enter")
    mine = page.locator("li.hl-you")
    await expect(mine).to_have_count(1)
    await expect(mine).not_to_have_class("hl-you hl-pending")  # acked: durably accepted

    queued = await vera.wait_event(lambda e: e["name"] == "ThreadQueued")
    await expect(page.get_by_role("status")).to_contain_text("number 1 in the queue")
    status, thread = await vera.call("POST", "/api/queues/gp-dv/next")
    assert status == 200 and thread["id"] == queued["thread_id"]
    assert (thread["region"], thread["topic"], thread["language"]) == ("minsk", "psychological", "en")
    await expect(page.get_by_role("status")).to_contain_text("A consultant is with you.")
    status, _ = await vera.call(
        "POST",
        f"/api/threads/{thread['id']}/messages",
        {"text": "<b>Hello</b>, I am here."},
        {"Idempotency-Key": uuid.uuid4().hex},
    )
    assert status == 202
    answer = page.locator("li.hl-consultant")
    await expect(answer).to_have_count(1)
    await expect(answer).to_contain_text("<b>Hello</b>, I am here.")  # text, never markup
    assert await storage_left(page) == NOTHING
    assert await context.cookies() == []

    await leave_by(page, site, "Quick exit")

    # The chat was ended: someone who later finds the token gets nothing back.
    token = next(f["token"] for f in frames if f.get("type") == "session")
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{gateway.chat_url}/chat/ws") as ws:
        await ws.send_json({"type": "resume", "token": token})
        assert (await ws.receive_json(timeout=10))["code"] == "unknown_session"
    await context.close()
    assert canary not in gateway.logs() and agent not in gateway.logs()
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(gateway.urls.mongo_url)
    try:
        stored = [d async for d in mongo[gateway.database]["chat_sessions"].find({})]
    finally:
        await mongo.close()
    assert stored and agent not in str(stored) and "127.0.0.1" not in str(stored)


async def test_not_safe_now_clears_the_page_and_storage_and_marks_the_thread(
    gateway: Gateway, site: Site, vera: Consultant, browser: Browser
) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(site.url + "/")
    await page.goto(site.chat_page + "?lang=be")
    await expect(page.get_by_role("button", name="Зараз небяспечна")).to_be_visible()
    await page.goto(site.chat_page + "?lang=ru")
    await expect(page.get_by_role("button", name="Сейчас небезопасно")).to_be_visible()
    await page.goto(site.url + "/")
    box = await skip_and_say(page, site, "He is coming home")
    queued = await vera.wait_event(lambda e: e["name"] == "ThreadQueued")
    status, thread = await vera.call("POST", "/api/queues/gp-dv/next")
    assert status == 200 and thread["id"] == queued["thread_id"]
    status, _ = await vera.call(
        "POST",
        f"/api/threads/{thread['id']}/messages",
        {"text": "I am here. Are you safe?"},
        {"Idempotency-Key": uuid.uuid4().hex},
    )
    assert status == 202
    await expect(page.locator("li.hl-consultant")).to_have_count(1)
    await box.fill("half-typed")
    # What an older widget might have left: it goes too.
    await page.evaluate(
        "sessionStorage.setItem('hl-chat-token', 'x'); localStorage.setItem('hl-chat-lang', 'en')"
    )

    await leave_by(page, site, "Not safe now")

    left = await vera.wait_event(lambda e: e["name"] == "ClientLeft" and e["thread_id"] == thread["id"])
    assert left["data"]["why"] == "not_safe"
    status, thread = await vera.call("GET", f"/api/threads/{thread['id']}")
    assert status == 200 and thread["client_left"]["why"] == "not_safe"
    assert [m["text"] for m in thread["messages"] if m["direction"] == "in"] == ["He is coming home"]
    await context.close()


async def test_escape_twice_leaves_at_once_and_texts_follow_the_language(
    gateway: Gateway, site: Site, browser: Browser
) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(site.url + "/")
    await page.goto(site.chat_page + "?lang=be")
    await expect(page.get_by_role("button", name="Хуткі выхад")).to_be_visible()
    await page.get_by_label("Мова").select_option("ru")
    await expect(page.get_by_role("button", name="Быстрый выход")).to_be_visible()
    # Keyboard only: skip the questions and start.
    await page.get_by_role("button", name="Пропустить и начать").focus()
    await page.keyboard.press("Enter")
    await expect(page.get_by_label("Ваше сообщение")).to_be_focused()
    await page.keyboard.type("Привет")
    await page.keyboard.press("Enter")
    await expect(page.locator("li.hl-you")).to_have_count(1)
    await page.keyboard.press("Escape")
    await page.keyboard.press("Escape")
    await page.wait_for_url(site.neutral)
    await page.go_back()
    assert page.url == site.url + "/"
    assert await storage_left(page) == NOTHING
    await context.close()


async def test_the_widget_resumes_after_the_connection_dropped(
    gateway: Gateway, site: Site, vera: Consultant, browser: Browser
) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    box = await skip_and_say(page, site, "first")
    queued = await vera.wait_event(lambda e: e["name"] == "ThreadQueued")
    assert (await vera.call("POST", "/api/queues/gp-dv/next"))[0] == 200

    # The chat server goes away (a restart): the widget says so and keeps what is typed.
    gateway.processes.stop("chat_ingest")
    await expect(page.get_by_role("status")).to_contain_text("Reconnecting")
    status, sent = await vera.call(
        "POST",
        f"/api/threads/{queued['thread_id']}/messages",
        {"text": "Are you safe?"},
        {"Idempotency-Key": uuid.uuid4().hex},
    )
    assert status == 202
    await box.fill("typed while offline")
    await box.press("Enter")
    await expect(page.locator("li.hl-you.hl-pending")).to_have_count(1)

    gateway.processes.start("chat_ingest", gateway.env["chat_ingest"])
    gateway.processes.wait_ready(gateway.ports)
    await expect(page.locator("li.hl-consultant")).to_have_text(["Consultant: Are you safe?"], timeout=30_000)
    await expect(page.locator("li.hl-you.hl-pending")).to_have_count(0)
    await vera.wait_event(lambda e: e["name"] == "MessageDelivered" and e["message_id"] == sent["id"])
    status, thread = await vera.call("GET", f"/api/threads/{queued['thread_id']}")
    texts = [m["text"] for m in thread["messages"] if m["direction"] == "in"]
    assert texts == ["first", "typed while offline"]
    await expect(page.locator("li.hl-consultant")).to_have_count(1)
    await context.close()


async def test_out_of_hours_the_widget_says_so_and_the_client_can_still_leave_a_message(
    gateway: Gateway, browser: Browser, tmp_path: Path
) -> None:
    import yaml

    config = yaml.safe_load((ROOT / "deploy" / "config" / "hotline.yaml").read_text(encoding="utf-8"))
    today = datetime.now(ZoneInfo("Europe/Minsk")).date()
    config["lines"]["dv"]["hours"]["holidays"] = [today.isoformat()]  # closed all day today
    path = tmp_path / "hotline.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    url = await asyncio.to_thread(start_replica, gateway, "chat_ingest_closed", config_path=str(path))

    page = await (await browser.new_context()).new_page()
    await page.goto(url + "/chat/")
    status = page.get_by_role("status")
    await expect(status).to_contain_text("Nobody is on duty now (hours 08:00-20:00). Leave a message")
    await page.get_by_role("button", name="Skip and start").click()
    await expect(status).to_contain_text("Nobody is on duty now")
    box = page.get_by_label("Your message")
    await box.fill("I will wait")
    await box.press("Enter")
    await expect(page.locator("li.hl-you")).to_have_count(1)
    await expect(page.locator("li.hl-you.hl-pending")).to_have_count(0)  # accepted all the same


# A second tab holding the same chat: a socket opened in the page, resumed with the token
# (the widget keeps its token in memory only, so this is someone who has it).
HOLD_IN_TAB = """async ([url, token]) => {
    window.held = { frames: [], closed: null };
    const ws = new WebSocket(url);
    ws.onmessage = (ev) => window.held.frames.push(JSON.parse(ev.data));
    ws.onclose = (ev) => { window.held.closed = ev.code; };
    await new Promise((ok) => { ws.onopen = ok; });
    ws.send(JSON.stringify({ type: "resume", token }));
    window.heldSocket = ws;
}"""


async def test_quick_exit_in_one_tab_ends_the_chat_in_the_other_tab_and_on_another_replica(
    gateway: Gateway, site: Site, browser: Browser
) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    frames = record_frames(page)
    await skip_and_say(page, site, "first")
    token = next(f["token"] for f in frames if f.get("type") == "session")

    other = await asyncio.to_thread(start_replica, gateway, "chat_ingest_b")
    tab = await context.new_page()
    await tab.goto(site.url + "/")  # the organisation's site, where the widget runs too
    await tab.evaluate(HOLD_IN_TAB, [gateway.chat_url.replace("http", "ws") + "/chat/ws", token])
    await tab.wait_for_function("window.held.frames.some((f) => f.type === 'session')")
    async with aiohttp.ClientSession() as http:
        far = ChatClient(http, other)
        far.token = token
        await far.resume()

        await page.get_by_role("button", name="Quick exit").click()
        await page.wait_for_url(site.neutral)
        # The other tab is told and its socket is closed; so is the socket on the other replica.
        await tab.wait_for_function("window.held.closed !== null")
        held = await tab.evaluate("window.held.frames.map((f) => f.type)")
        assert held[-1] == "closed", held
        await far.wait(lambda: far.closed == 1 and not far.connected)

        # The token is dead on both replicas.
        for url in (gateway.chat_url, other):
            async with http.ws_connect(f"{url}/chat/ws") as ws:
                await ws.send_json({"type": "resume", "token": token})
                assert (await ws.receive_json(timeout=10))["code"] == "unknown_session"
    await context.close()


async def test_a_message_with_broken_characters_reaches_a_consultant_and_the_sender_is_told(
    gateway: Gateway, site: Site, vera: Consultant, browser: Browser
) -> None:
    """Text with a lone surrogate (a broken emoji from a bad keyboard or a paste) is taken and
    reaches the consultant repaired; the widget says, under that message and in the client's
    language, that part of it could not be read. A whole message gets no such notice."""
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(site.chat_page + "?lang=be")
    await page.get_by_role("button", name="Прапусціць і пачаць").click()
    box = page.get_by_label("Ваша паведамленне")
    await box.fill("first")
    await box.press("Enter")
    await expect(page.locator("li.hl-you.hl-pending")).to_have_count(0)
    # Set in the page: the test's own protocol to the browser cannot carry a lone surrogate.
    await page.evaluate("document.getElementById('hl-chat-input').value = 'help \\ud800 me'")
    await box.press("Enter")
    await expect(page.locator("li.hl-you.hl-pending")).to_have_count(0)
    notice = page.locator("li.hl-you + li.hl-notice")
    await expect(notice).to_have_text(
        ["Частку вашага паведамлення не ўдалося прачытаць; астатняе кансультант бачыць."]
    )
    # Under the broken message, not the whole one.
    await expect(page.locator("li.hl-you").nth(1).locator("xpath=following-sibling::li[1]")).to_have_class(
        "hl-notice"
    )

    # One message queues the thread, the other is then received into it. The dispatcher takes
    # them side by side, so the two events may come in either order: after both, both are stored.
    seen: dict[str, set[str]] = {}

    def both(e: dict[str, Any]) -> bool:
        if e["name"] in ("ThreadQueued", "MessageReceived"):
            seen.setdefault(e["thread_id"], set()).add(e["name"])
        return seen.get(e.get("thread_id", ""), set()) == {"ThreadQueued", "MessageReceived"}

    queued = await vera.wait_event(both)
    status, thread = await vera.call("GET", f"/api/threads/{queued['thread_id']}")
    assert status == 200
    texts = [m["text"] for m in thread["messages"] if m["direction"] == "in"]
    assert sorted(texts) == ["first", "help \ufffd me"], texts
    await context.close()
