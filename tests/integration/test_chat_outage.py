"""The chat through an outage, as a visitor lives it: the broker or the database killed while
the widget is open in real Chromium, and a Telegram update that arrives meanwhile.

Everything typed during the outage is stored exactly once after recovery (counted in the
database's ``messages`` by source id), without a page reload; a visitor who pressed start
while the database was away gets a session once it is back; a Telegram update that could
not be taken is answered non-2xx, so Telegram delivers it again, and is stored once.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from typing import Any

import pytest
from playwright.async_api import Browser, Page, WebSocket, expect
from pymongo import AsyncMongoClient

from services.chat_ingest.ws import session_id_for
from tests.conftest import Gateway
from tests.integration.test_telegram import Bot
from tests.integration.test_telegram import bot as bot  # the fixture: a replica with a Telegram bot

pytestmark = pytest.mark.slow

TYPED = 8  # messages typed during an outage (more than a burst of resends would carry at once)
RECOVERED_WITHIN = 90_000  # ms: resends back off up to 30 s (+ jitter) after the outage


class Frames:
    """The frames the widget sent and received on its sockets, awaitable."""

    def __init__(self, page: Page) -> None:
        self.sent: list[dict[str, Any]] = []
        self.received: list[dict[str, Any]] = []
        self.sockets = 0
        self._changed = asyncio.Event()
        page.on("websocket", self._on_ws)

    def _on_ws(self, ws: WebSocket) -> None:
        self.sockets += 1
        ws.on("framesent", lambda payload: self._add(self.sent, payload))
        ws.on("framereceived", lambda payload: self._add(self.received, payload))

    def _add(self, into: list[dict[str, Any]], payload: str | bytes) -> None:
        into.append(json.loads(payload))
        self._changed.set()

    async def until(self, predicate: Any, within: float = 30) -> None:
        deadline = time.monotonic() + within
        while not predicate():
            self._changed.clear()
            await asyncio.wait_for(self._changed.wait(), max(0.01, deadline - time.monotonic()))

    def of(self, kind: str, into: str = "received") -> list[dict[str, Any]]:
        return [f for f in getattr(self, into) if f.get("type") == kind]

    @property
    def token(self) -> str:
        return str(self.of("session")[-1]["token"])


async def stored(gateway: Gateway, sources: list[str], within: float = 120) -> Counter[str]:
    """Copies stored of each source id, once every one of them is stored (the database is
    another process's: polled twice a second, there is nothing to await)."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(gateway.urls.mongo_url)
    deadline = time.monotonic() + within
    try:
        while True:
            found = {"source_id": {"$in": sources}}
            cursor = client[gateway.database]["messages"].find(found, {"source_id": 1})
            counts = Counter([m["source_id"] async for m in cursor])
            if all(counts[s] for s in sources) or time.monotonic() > deadline:
                return counts
            await asyncio.sleep(0.5)
    finally:
        await client.close()


async def open_chat(browser: Browser, gateway: Gateway) -> tuple[Page, Frames]:
    page = await (await browser.new_context()).new_page()
    frames = Frames(page)
    await page.goto(gateway.chat_url + "/chat/")
    await expect(page.get_by_role("button", name="Skip and start")).to_be_visible()
    # Marks this document: a reload would start a new one without the mark.
    await page.evaluate("window.hlSameDocument = true")
    return page, frames


async def type_messages(page: Page, texts: list[str]) -> None:
    box = page.get_by_label("Your message")
    for text in texts:
        await box.fill(text)
        await box.press("Enter")


async def talking_chat(browser: Browser, gateway: Gateway) -> tuple[Page, Frames]:
    """A chat started, with one message ("before") acknowledged."""
    page, frames = await open_chat(browser, gateway)
    await page.get_by_role("button", name="Skip and start").click()
    await type_messages(page, ["before"])
    await expect(page.locator("li.hl-you.hl-pending")).to_have_count(0)
    return page, frames


def message_ids(frames: Frames) -> dict[str, str]:
    """text -> the frame id the widget gave it."""
    return {f["text"]: f["id"] for f in frames.of("message", "sent")}


async def test_messages_typed_while_the_broker_is_away_are_stored_once_after_it_returns(
    gateway: Gateway, browser: Browser
) -> None:
    page, frames = await talking_chat(browser, gateway)

    await asyncio.to_thread(gateway.stack.kill_rabbitmq)
    try:
        texts = [f"during outage {i} {uuid.uuid4().hex[:6]}" for i in range(TYPED)]
        await type_messages(page, texts)
        await expect(page.locator("li.hl-you.hl-pending")).to_have_count(TYPED)
        # The server refuses each with an error frame that names it.
        await frames.until(lambda: set(texts) <= set(message_ids(frames)))
        typed = {message_ids(frames)[t] for t in texts}
        await frames.until(lambda: typed <= {f.get("id") for f in frames.of("error")})
        refused = [f for f in frames.of("error") if f.get("id")]
        assert {f["code"] for f in refused} == {"unavailable"}, refused
        await expect(page.get_by_role("status")).to_contain_text("cannot be reached right now")
    finally:
        await asyncio.to_thread(gateway.stack.start_rabbitmq)

    # Every one is resent and acknowledged on the same socket, without a reload.
    await expect(page.locator("li.hl-you.hl-pending")).to_have_count(0, timeout=RECOVERED_WITHIN)
    assert await page.evaluate("window.hlSameDocument === true")
    assert frames.sockets == 1 and len(frames.of("session")) == 1
    ids = message_ids(frames)
    sources = [f"chat:{session_id_for(frames.token)}:{ids[t]}" for t in ["before", *texts]]
    counts = await stored(gateway, sources)
    assert [counts[s] for s in sources] == [1] * (TYPED + 1), counts
    # Resends stayed inside the socket's frame budget: the server never had to refuse one.
    assert not [f for f in frames.of("error") if f["code"] == "rate_limited"]
    await expect(page.locator("li.hl-you")).to_have_count(TYPED + 1)  # each shown once


async def test_a_visitor_who_starts_while_the_database_is_away_gets_a_session_when_it_returns(
    gateway: Gateway, browser: Browser
) -> None:
    talking, talking_frames = await talking_chat(browser, gateway)

    await asyncio.to_thread(gateway.stack.kill_database)
    try:
        # A chat already open goes on: the broker takes its messages.
        texts = [f"database away {i}" for i in range(3)]
        await type_messages(talking, texts)
        await expect(talking.locator("li.hl-you.hl-pending")).to_have_count(0)
        # A new visitor presses start: no session can be recorded now.
        late, late_frames = await open_chat(browser, gateway)
        await late.get_by_role("button", name="Skip and start").click()
        await late_frames.until(lambda: any(f["code"] == "unavailable" for f in late_frames.of("error")))
        await expect(late.get_by_role("status")).to_contain_text("cannot be reached right now")
        await type_messages(late, ["written before the chat started"])
        # The widget keeps asking (with backoff) while the database is away.
        await late_frames.until(lambda: len(late_frames.of("start", "sent")) >= 2)
        assert not late_frames.of("session")
    finally:
        await asyncio.to_thread(gateway.stack.start_database)

    await late_frames.until(lambda: bool(late_frames.of("session")), within=60)
    await expect(late.locator("li.hl-you.hl-pending")).to_have_count(0)
    assert await late.evaluate("window.hlSameDocument === true")
    assert late_frames.sockets == 1
    late_id = message_ids(late_frames)["written before the chat started"]
    late_source = f"chat:{session_id_for(late_frames.token)}:{late_id}"
    ids = message_ids(talking_frames)
    sources = [f"chat:{session_id_for(talking_frames.token)}:{ids[t]}" for t in ["before", *texts]]
    counts = await stored(gateway, [*sources, late_source])
    assert [counts[s] for s in [*sources, late_source]] == [1] * (len(sources) + 1), counts


async def test_a_telegram_update_that_cannot_be_taken_is_refused_and_stored_once_when_redelivered(
    gateway: Gateway, bot: Bot
) -> None:
    tg, chat = bot.telegram, 777
    during_broker = tg.text(chat, "while the broker is away")
    during_database = tg.text(chat, "while the database is away")

    await asyncio.to_thread(gateway.stack.kill_rabbitmq)
    try:
        # Not acknowledged as done: Telegram keeps it and delivers it again.
        assert await tg.post(during_broker) == 503
    finally:
        await asyncio.to_thread(gateway.stack.start_rabbitmq)
    await asyncio.to_thread(gateway.stack.kill_database)
    try:
        assert await tg.post(during_database) == 503
    finally:
        await asyncio.to_thread(gateway.stack.start_database)

    # Telegram's redeliveries: until a 2xx (polled as Telegram retries, here twice a second).
    for update in (during_broker, during_database):
        deadline = time.monotonic() + 60
        while await tg.post(update) != 200:
            assert time.monotonic() < deadline, "the update was never taken"
            await asyncio.sleep(0.5)
        assert await tg.post(update) == 200  # a further redelivery is a duplicate: nothing redone
    sources = [f"telegram:dvbot:{u['update_id']}" for u in (during_broker, during_database)]
    counts = await stored(gateway, sources)
    assert [counts[s] for s in sources] == [1, 1], counts
