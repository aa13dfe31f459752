"""The chat socket's edges as a careless or hostile client finds them (issue 15): sockets held
without a chat, a chat ended on one socket while others hold it, text that is not valid
Unicode. Against the real services."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from pymongo import AsyncMongoClient

from tests.conftest import Gateway
from tests.integration.chat_client import ChatClient, replica_logs, start_replica
from tests.integration.helpers import Consultant, opened
from tests.integration.test_telegram import Bot
from tests.integration.test_telegram import bot as bot  # the fixture: a replica with a Telegram bot


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def frames_until_closed(
    ws: aiohttp.ClientWebSocketResponse, within: float = 20
) -> list[dict[str, Any]]:
    """Every frame the server sends until it closes the socket (fails if it does not in time)."""
    got: list[dict[str, Any]] = []

    async def read() -> None:
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                got.append(json.loads(msg.data))

    await asyncio.wait_for(read(), within)
    return got


@pytest.mark.service_env({"CHAT_INGEST_HANDSHAKE_SECONDS": "1"})
async def test_a_socket_that_never_holds_a_chat_is_closed_after_the_handshake_time_out(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    talking = ChatClient(http, gateway.chat_url)
    await talking.start(line="dv")
    url = f"{gateway.chat_url}/chat/ws"
    # One says nothing at all; the other keeps talking, but never a start or resume that works.
    silent = await http.ws_connect(url)
    busy = await http.ws_connect(url)
    await busy.send_str("{not json")
    await busy.send_json({"type": "resume", "token": "x" * 32})
    await busy.send_json({"type": "message", "id": "m1", "text": "hello?"})

    silent_frames, busy_frames = await asyncio.gather(frames_until_closed(silent), frames_until_closed(busy))
    assert [f["code"] for f in silent_frames] == ["handshake_timeout"]
    assert [f["code"] for f in busy_frames] == [
        "bad_json",
        "unknown_session",
        "no_session",
        "handshake_timeout",
    ]
    assert silent.close_code == busy.close_code == 4408

    # The chat started before them has outlived the time-out (their close came after it): a
    # socket that holds a chat is never closed for idling, a chat may be quiet for long.
    assert talking.connected
    await talking.say("still here")
    await talking.wait(lambda: not talking.pending)


async def test_quick_exit_on_one_socket_ends_the_chat_on_every_socket_of_every_replica(
    gateway: Gateway, vera: Consultant, http: aiohttp.ClientSession
) -> None:
    other = start_replica(gateway, "chat_ingest_b")
    leaving = ChatClient(http, gateway.chat_url)
    await leaving.start(line="dv")
    await leaving.say("before the exit")
    thread_id = (await vera.wait_event(lambda e: e["name"] == "ThreadQueued"))["thread_id"]
    # Two more holders of the same session: another tab on this replica, one on the other.
    tab, far = ChatClient(http, gateway.chat_url), ChatClient(http, other)
    for holder in (tab, far):
        holder.token = leaving.token
        await holder.resume()

    await leaving.end()  # Quick exit
    await tab.wait(lambda: tab.closed == 1 and not tab.connected)
    await far.wait(lambda: far.closed == 1 and not far.connected)

    # The ended token resumes on no replica, and nothing can be written with it.
    for url in (gateway.chat_url, other):
        ws = await http.ws_connect(f"{url}/chat/ws")
        await ws.send_json({"type": "resume", "token": leaving.token})
        assert (await ws.receive_json(timeout=10))["code"] == "unknown_session"
        await ws.send_json({"type": "message", "id": "after", "text": "after the exit"})
        assert (await ws.receive_json(timeout=10))["code"] == "no_session"
        await ws.close()
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(gateway.urls.mongo_url)
    try:
        db = mongo[gateway.database]
        assert (await db["chat_sessions"].find_one({}, {"ended": 1}) or {}).get("ended") is True
        stored = [m async for m in db["messages"].find({"thread_id": thread_id, "direction": "in"})]
        key = gateway.env["store"]["STORE_MASTER_KEY"]
        texts = [m["text"] for m in await opened(mongo, gateway.database, key, stored)]
    finally:
        await mongo.close()
    assert texts == ["before the exit"]


# JSON escapes of a lone surrogate: valid JSON, valid UTF-8 on the wire, but no Unicode text.
LONE = "\\ud800"
UNREADABLE_RU = "Часть вашего сообщения не удалось прочитать; остальное консультант видит."


async def inbound_texts(vera: Consultant, thread_id: str) -> list[str]:
    status, thread = await vera.call("GET", f"/api/threads/{thread_id}")
    assert status == 200, thread
    return [m["text"] for m in thread["messages"] if m["direction"] == "in"]


async def test_a_chat_message_with_a_lone_surrogate_is_repaired_and_reaches_a_consultant(
    gateway: Gateway, vera: Consultant, http: aiohttp.ClientSession
) -> None:
    client = ChatClient(http, gateway.chat_url)
    await client.start(line="dv")
    await client.send_raw('{"type": "message", "id": "broken", "text": "help ' + LONE + ' me"}')
    await client.wait(lambda: "broken" in client.acked or bool(client.errors))
    assert client.errors == [] and client.connected
    # The ack tells the sender part of it could not be read (the widget says so in the chat).
    assert client.repaired == {"broken"}
    thread_id = (await vera.wait_event(lambda e: e["name"] == "ThreadQueued"))["thread_id"]
    await client.say("next one")
    await client.wait(lambda: not client.pending)
    # The same frame resent (as the widget does without an ack) is stored once.
    await client.send_raw('{"type": "message", "id": "broken", "text": "help ' + LONE + ' me"}')
    last = await client.say("last one")
    await client.wait(lambda: not client.pending)
    await vera.wait_event(lambda e: e.get("message_id") == client.acked[last])  # stored
    texts = await inbound_texts(vera, thread_id)
    assert texts == ["help \ufffd me", "next one", "last one"], texts
    assert client.repaired == {"broken"}, "only the broken message's ack says so"


async def test_a_telegram_update_with_a_lone_surrogate_is_answered_and_stored_once_repaired(
    gateway: Gateway, vera: Consultant, bot: Bot
) -> None:
    tg = bot.telegram
    canary = f"CANARY-{uuid.uuid4().hex}"
    update = tg.text(901, f"{canary} PLACE me")
    raw = json.dumps(update).replace("PLACE", LONE).encode()  # ASCII JSON: the escape stays
    assert await tg.post(None, raw=raw) == 200
    # Telegram's redelivery of it: done, not left claimed (a claim left "busy" answers 503).
    assert await tg.post(None, raw=raw) == 200
    thread_id = (await vera.wait_event(lambda e: e["name"] == "ThreadQueued"))["thread_id"]
    assert await inbound_texts(vera, thread_id) == [f"{canary} \ufffd me"]
    assert canary not in replica_logs(gateway)
    # The bot told the sender before answering the webhook, once (the redelivery was a
    # duplicate), in their language; a whole text gets no such notice.
    assert await tg.post(tg.text(901, "all of it readable")) == 200
    notices = [c.body["text"] for c in bot.api.sent(901) if c.body["text"] == UNREADABLE_RU]
    assert len(notices) == 1, bot.api.sent(901)
