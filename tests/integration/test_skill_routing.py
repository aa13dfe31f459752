"""Routing by skill and language through the real services (services/store/skills.py): a
thread in a language not everyone speaks, or on a topic that needs a skill, is kept for the
consultants who have it (others see it marked, "next" passes it over, a claim is refused)
and becomes the whole queue's after the configured wait, which consoles hear as an event."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.conftest import Gateway
from tests.integration.helpers import Consultant, Mailbox, mail, new_message_id
from tests.integration.test_access_matrix import add_user, start_chat

WAIT_MINUTES = 0.1  # six seconds: the fallback is awaited as the store's event


def shortened(config: dict[str, Any]) -> None:
    config["queue_policy"]["skill_wait_minutes"] = WAIT_MINUTES
    config["queue_policy"]["common_languages"] = ["ru", "be"]


@pytest.fixture
async def people(gateway: Gateway) -> AsyncIterator[dict[str, Consultant]]:
    gateway.seed_demo_accounts()
    done = await asyncio.to_thread(
        add_user, gateway, "add-user", "--login=olga", "--role=national_admin", "--lines=113,dv",
        "--password-stdin", password="olga-password",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    logged: dict[str, Consultant] = {}
    try:
        for login in ("olga", "anna", "vera"):
            c = Consultant(gateway.store_url)
            await c.login(login, "olga-password" if login == "olga" else f"{login}-demo")
            await c.open_events()
            logged[login] = c
        yield logged
    finally:
        for c in logged.values():
            await c.close()


async def listed(c: Consultant, thread_id: str) -> dict[str, Any]:
    status, threads = await c.call("GET", "/api/threads?status=waiting")
    assert status == 200
    return next(t for t in threads if t["id"] == thread_id)


@pytest.mark.hotline_config.with_args(shortened)
async def test_a_thread_in_english_waits_for_an_english_speaker_then_for_anyone(
    gateway: Gateway, people: dict[str, Consultant]
) -> None:
    anna, olga = people["anna"], people["olga"]
    async with aiohttp.ClientSession() as http:
        await start_chat(
            http, gateway, "I need help with a job offer", line="113", region="minsk", language="en"
        )
    first = (await anna.wait_event(lambda e: e["name"] == "ThreadQueued"))["thread_id"]

    # Anna speaks no English: she sees it kept for a colleague, cannot take it, next skips it.
    kept = (await listed(anna, first))["reserved"]
    assert kept["for"] == {"language": "en"} and kept["until"]
    status, refused = await anna.call("POST", f"/api/threads/{first}/claim")
    assert status == 409 and refused["title"] == "Kept for a colleague"
    assert (await anna.call("POST", "/api/queues/lastrada-migration/next"))[0] == 204

    # After the wait it is everyone's: consoles hear so, and Anna takes it with "next".
    opened = await anna.wait_event(lambda e: e["name"] == "ThreadOpenedToAll" and e["thread_id"] == first)
    assert opened["queue"] == "lastrada-migration"
    assert (await listed(anna, first))["reserved"] is None
    status, taken = await anna.call("POST", "/api/queues/lastrada-migration/next")
    assert status == 200 and taken["id"] == first

    # Once her account lists English, the next English chat is hers at once.
    async with aiohttp.ClientSession() as http:
        await start_chat(
            http, gateway, "Hello, a question about a visa", line="113", region="minsk", language="en"
        )
    second = (await anna.wait_event(lambda e: e["name"] == "ThreadQueued"))["thread_id"]
    assert (await anna.call("POST", f"/api/threads/{second}/claim"))[0] == 409
    status, _ = await olga.call("PATCH", "/api/admin/accounts/anna", {"languages": ["en"]})
    assert status == 200
    assert (await listed(anna, second))["reserved"] is None
    status, taken = await anna.call("POST", f"/api/threads/{second}/claim")
    assert status == 200 and taken["assignee"] == "anna"

    # A chat in a language everyone speaks is nobody's in particular.
    async with aiohttp.ClientSession() as http:
        await start_chat(http, gateway, "Нужна помощь", line="113", region="minsk", language="ru")
    third = (await anna.wait_event(lambda e: e["name"] == "ThreadQueued"))["thread_id"]
    assert (await listed(anna, third))["reserved"] is None


@pytest.mark.hotline_config.with_args(shortened)
async def test_a_topic_that_needs_a_skill_waits_for_a_consultant_who_has_it(
    gateway: Gateway, people: dict[str, Consultant]
) -> None:
    vera, olga = people["vera"], people["olga"]
    async with aiohttp.ClientSession() as http:
        await start_chat(http, gateway, "Мне нужен юрист", line="dv", topic="legal", language="ru")
    thread = (await vera.wait_event(lambda e: e["name"] == "ThreadQueued"))["thread_id"]
    assert (await listed(vera, thread))["reserved"]["for"] == {"skill": "legal"}
    assert (await vera.call("POST", f"/api/threads/{thread}/claim"))[0] == 409
    assert (await vera.call("POST", "/api/queues/gp-legal/next"))[0] == 204
    # The administrator gives her the skill: the thread is hers to take at once.
    status, account = await olga.call("PATCH", "/api/admin/accounts/vera", {"skills": ["legal"]})
    assert status == 200 and account["skills"] == ["legal"]
    status, taken = await vera.call("POST", "/api/queues/gp-legal/next")
    assert status == 200 and taken["id"] == thread


@pytest.mark.hotline_config.with_args(shortened)
async def test_a_mail_in_english_is_kept_for_an_english_speaker(
    gateway: Gateway, people: dict[str, Consultant]
) -> None:
    olga = people["olga"]
    inbox = Mailbox("127.0.0.1", gateway.urls.imap_port, gateway.line_mailbox)
    body = "Hello, my employer abroad took my passport and I cannot leave."
    await inbox.append(mail("someone@example.org", "h@demo.test", "Help", body, new_message_id()))
    queued = await olga.wait_event(lambda e: e["name"] == "ThreadQueued")
    # The dispatcher detected the mail's language; the consultant of the queue lacks it.
    consultant = people["anna"] if queued["line"] == "113" else people["vera"]
    kept = (await listed(consultant, queued["thread_id"]))["reserved"]
    assert kept is not None and kept["for"] == {"language": "en"}
    assert (await consultant.call("POST", f"/api/threads/{queued['thread_id']}/claim"))[0] == 409
