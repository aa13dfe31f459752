"""An Idempotency-Key names one reply (issue 15), tried as a careless or hostile client would:
the same key on another thread or with another text is refused with 409 and sends nothing; the
same key, thread and text is a retry that gets the stored reply back."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.conftest import Gateway
from tests.integration.helpers import Consultant, Frames
from tests.integration.test_queue_api import open_all_day


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def chat(http: aiohttp.ClientSession, gateway: Gateway, text: str) -> Frames:
    ws = await http.ws_connect(f"{gateway.chat_url}/chat/ws")
    await ws.send_json({"type": "start", "line": "dv", "language": "ru"})
    frames = Frames(ws)
    await frames.next("session")
    await ws.send_json({"type": "message", "id": str(uuid.uuid4()), "text": text})
    await frames.next("ack")
    return frames


@pytest.mark.hotline_config.with_args(open_all_day)
async def test_a_key_reused_on_another_thread_or_text_is_409_and_sends_nothing(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    gateway.seed_demo_accounts()
    vera = Consultant(gateway.store_url)
    await vera.login("vera", "vera-demo")
    await vera.open_events()
    try:
        first = await chat(http, gateway, "первый вопрос")
        one = (await vera.wait_event(lambda e: e["name"] == "ThreadQueued"))["thread_id"]
        second = await chat(http, gateway, "второй вопрос")
        two = (await vera.wait_event(lambda e: e["name"] == "ThreadQueued" and e["thread_id"] != one))[
            "thread_id"
        ]
        for thread in (one, two):
            assert (await vera.call("POST", f"/api/threads/{thread}/claim"))[0] == 200

        async def reply(thread: str, text: str, key: str) -> tuple[int, Any]:
            return await vera.call(
                "POST", f"/api/threads/{thread}/messages", {"text": text}, {"Idempotency-Key": key}
            )

        status, sent = await reply(one, "Ответ первой клиентке", "key-0000-aaaa")
        assert status == 202
        assert (await first.next("message", sender="consultant"))["text"] == "Ответ первой клиентке"

        # The same key on the other thread, or with other text: refused, nothing stored.
        for thread, text in ((two, "Ответ второй клиентке"), (two, "Ответ первой клиентке"), (one, "Другое")):
            status, problem = await reply(thread, text, "key-0000-aaaa")
            assert status == 409 and problem["title"] == "Idempotency-Key already used", problem
        # The same key, thread and text: the stored reply, not a second one.
        status, again = await reply(one, "Ответ первой клиентке", "key-0000-aaaa")
        assert status == 202 and again["id"] == sent["id"]

        # The second client gets its own reply, and nothing of the first one before it.
        assert (await reply(two, "Ответ второй клиентке", "key-0000-bbbb"))[0] == 202
        got = await second.next("message", sender="consultant")
        assert got["text"] == "Ответ второй клиентке"
        assert [f["text"] for f in second.seen if f.get("from") == "consultant"] == ["Ответ второй клиентке"]
        _, thread_two = await vera.call("GET", f"/api/threads/{two}")
        assert [m["text"] for m in thread_two["messages"] if m["author"] == "consultant:vera"] == [
            "Ответ второй клиентке"
        ]
        _, thread_one = await vera.call("GET", f"/api/threads/{one}")
        assert [m["text"] for m in thread_one["messages"] if m["author"] == "consultant:vera"] == [
            "Ответ первой клиентке"
        ]
        assert [f["text"] for f in first.seen if f.get("from") == "consultant"] == ["Ответ первой клиентке"]
    finally:
        await vera.close()
