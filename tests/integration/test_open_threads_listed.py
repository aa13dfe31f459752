"""Open threads are listed whatever the number of closed ones (issue 15): a queue with 250
older, higher-priority closed threads and one person waiting now, through the real services
and in the console in Chromium; the closed ones are paged. And whatever the number of open
ones: with 250 people waiting in one queue, more than a page, the console lists every one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page, expect

from conversations.identity import new_id, new_reply_token
from conversations.model import NORMAL
from shared.mongo import make_client
from tests.conftest import Gateway
from tests.integration.helpers import Consultant, Frames
from tests.integration.test_queue_api import open_all_day

CLOSED = 250
WAITING = 250  # more than one page of GET /api/threads (200)


def dv_thread(status: str, at: datetime, **fields: Any) -> dict[str, Any]:
    """A thread of the DV queue, as the store keeps it, that came in at ``at``."""
    return {
        "_id": new_id(),
        "key": f"seeded:{uuid.uuid4().hex}",
        "line": "dv",
        "queue": "gp-dv",
        "organisations": ["gp"],
        "status": status,
        "reply_token": new_reply_token(),
        "created_at": at,
        "waiting_since": at,
        "assignee": None,
        **fields,
    }


def closed_threads(n: int) -> list[dict[str, Any]]:
    """Closed chat threads of the DV queue, older and more urgent than anyone waiting now."""
    start = datetime(2025, 1, 1, tzinfo=UTC)
    return [
        dv_thread(
            "closed",
            start + timedelta(hours=i),
            channel="chat",
            priority=5,
            client={"address": "x"},
            closed_at=start + timedelta(hours=i, minutes=30),
        )
        for i in range(n)
    ]


def waiting_threads(n: int) -> list[dict[str, Any]]:
    """E-mail threads waiting in the DV queue at normal priority, each a second after the
    one before, the latest a minute ago: the last is the last in the queue's order."""
    start = datetime.now(UTC) - timedelta(seconds=n + 60)
    return [
        dv_thread(
            "waiting",
            start + timedelta(seconds=i),
            channel="email",
            priority=NORMAL,
            client={"address": f"p{i}@example.org"},
        )
        for i in range(n)
    ]


async def seed(gateway: Gateway, threads: list[dict[str, Any]]) -> None:
    """Writes ``threads`` straight to the test's database, as the store would have."""
    client = make_client(gateway.urls.mongo_url)
    try:
        await client[gateway.database]["threads"].insert_many(threads)
    finally:
        await client.close()


async def console(browser: Browser, gateway: Gateway, login: str, password: str) -> Page:
    """A Chromium page of the console, logged in through its form."""
    page = await browser.new_page()
    await page.goto(gateway.store_url + "/")
    await page.get_by_label("Login").fill(login)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()
    return page


@pytest.mark.hotline_config.with_args(open_all_day)
async def test_a_person_waiting_now_is_listed_behind_250_closed_threads(
    gateway: Gateway, browser: Browser
) -> None:
    gateway.seed_demo_accounts()
    old = closed_threads(CLOSED)
    await seed(gateway, old)
    vera = Consultant(gateway.store_url)
    await vera.login("vera", "vera-demo")
    await vera.open_events()
    try:
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(f"{gateway.chat_url}/chat/ws")
            await ws.send_json({"type": "start", "line": "dv"})
            frames = Frames(ws)
            await frames.next("session")
            await ws.send_json({"type": "message", "id": str(uuid.uuid4()), "text": "мне нужна помощь"})
            await frames.next("ack")
            waiting = (await vera.wait_event(lambda e: e["name"] == "ThreadQueued"))["thread_id"]

            status, listed = await vera.call("GET", "/api/threads?queue=gp-dv&status=waiting")
            assert status == 200 and [t["id"] for t in listed] == [waiting]

            # The console lists them by status: the waiting person is on screen.
            page = await console(browser, gateway, "vera", "vera-demo")
            await page.locator('button[data-queue="gp-dv"]').click()
            await expect(page.locator(f'#threads button[data-thread="{waiting}"]')).to_be_visible()
            await expect(page.locator("#threads button")).to_have_count(1)  # no closed one

        # The closed ones come in pages, latest closed first, each once.
        seen: list[str] = []
        url = f"{gateway.store_url}/api/threads?queue=gp-dv&status=closed"
        pages = 0
        while url:
            async with vera.http.get(url) as resp:
                assert resp.status == 200
                seen += [t["id"] for t in await resp.json()]
                link = resp.links.get("next")
                url = str(link["url"]) if link else ""
                pages += 1
        assert pages == 2 and len(seen) == len(set(seen)) == CLOSED
        latest_first = sorted(old, key=lambda d: d["closed_at"], reverse=True)
        assert seen == [d["_id"] for d in latest_first]
        status, small = await vera.call("GET", "/api/threads?queue=gp-dv&status=closed&limit=10&page=3")
        assert status == 200 and [t["id"] for t in small] == seen[20:30]
        for bad in ("limit=0", "limit=201", "page=0", "page=x"):
            status, problem = await vera.call("GET", f"/api/threads?queue=gp-dv&{bad}")
            assert status == 422 and problem["status"] == 422, bad
    finally:
        await vera.close()


async def test_every_person_waiting_is_listed_past_the_first_page(gateway: Gateway, browser: Browser) -> None:
    gateway.seed_demo_accounts()
    waiting = waiting_threads(WAITING)
    await seed(gateway, waiting)
    page = await console(browser, gateway, "vera", "vera-demo")
    await page.locator('button[data-queue="gp-dv"]').click()
    # The person who has waited least is the last of the queue's order, on the second page.
    await expect(page.locator(f'#threads button[data-thread="{waiting[-1]["_id"]}"]')).to_be_visible()
    await expect(page.locator("#threads button")).to_have_count(WAITING)  # each one once
    ids = await page.locator("#threads button").evaluate_all("bs => bs.map(b => b.dataset.thread)")
    assert ids == [d["_id"] for d in waiting]  # in the order Next hands them out
