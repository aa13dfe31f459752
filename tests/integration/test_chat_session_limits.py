"""Chat sessions are bounded and expire: a flood of starts is refused after the bounds (per
socket and per process, never per client address), and the sweep deletes sessions unused for
CHAT_INGEST_SESSION_TTL_SECONDS (ended or idle) while keeping those a socket holds, with the
other per-visitor records (Telegram chat choices and update claims); resuming an expired
session gets a clear error."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from pymongo import AsyncMongoClient

from services.chat_ingest.ws import session_id_for
from shared.envelope import utcnow
from tests.conftest import Gateway
from tests.integration.chat_client import ChatClient


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def db(gateway: Gateway) -> AsyncIterator[Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(gateway.urls.mongo_url, tz_aware=True)
    try:
        yield client[gateway.database]
    finally:
        await client.close()


async def until(check: Callable[[], Any], within: float = 30) -> None:
    """Until ``check()`` (a database query of another process's work) is true: polled twice a
    second, the database offers nothing to await."""
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "not within time"
        await asyncio.sleep(0.5)


async def starts(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[dict[str, Any]]:
    """Send ``count`` starts on one socket (inside its frame budget); the answers in order."""
    answers = []
    for _ in range(count):
        await ws.send_json({"type": "start", "line": "dv"})
        answers.append(await ws.receive_json(timeout=15))
    return answers


@pytest.mark.service_env(
    {
        "CHAT_INGEST_MAX_STARTS_PER_SOCKET": "3",
        "CHAT_INGEST_SESSION_START_BURST": "10",
        # Next to nothing refills during the test: the process's budget is the burst alone.
        "CHAT_INGEST_SESSION_STARTS_PER_SECOND": "0.001",
    }
)
async def test_a_flood_of_starts_is_refused_after_the_bounds(
    gateway: Gateway, http: aiohttp.ClientSession, db: Any
) -> None:
    async with http.ws_connect(f"{gateway.chat_url}/chat/ws") as ws:
        answers = await starts(ws, 5)
        assert [a["type"] for a in answers] == ["session"] * 3 + ["error"] * 2
        assert {a["code"] for a in answers[3:]} == {"too_many_sessions"}
        assert "too many chats" in answers[3]["detail"]

    # Many sockets, one start each: the process creates no more than its budget (10 in all).
    sockets = [await http.ws_connect(f"{gateway.chat_url}/chat/ws") for _ in range(10)]
    try:
        answers = [(await starts(ws, 1))[0] for ws in sockets]
    finally:
        for ws in sockets:
            await ws.close()
    assert [a["type"] for a in answers] == ["session"] * 7 + ["error"] * 3, answers
    assert {a["code"] for a in answers[7:]} == {"busy"}
    assert await db["chat_sessions"].count_documents({}) == 10


@pytest.mark.service_env({"CHAT_INGEST_SESSION_TTL_SECONDS": "3", "CHAT_INGEST_SWEEP_SECONDS": "0.5"})
async def test_the_sweep_deletes_expired_sessions_and_an_expired_one_cannot_be_resumed(
    gateway: Gateway, http: aiohttp.ClientSession, db: Any
) -> None:
    now = utcnow()
    # Per-visitor records of Telegram, and a session written before sessions had an expiry.
    await db["telegram_updates"].insert_many(
        [
            {"_id": "dvbot:1", "state": "done", "at": now - timedelta(days=3)},  # past redelivery
            {"_id": "dvbot:2", "state": "done", "at": now},
        ]
    )
    await db["telegram_chats"].insert_one({"_id": "dvbot:9", "region": "minsk", "expires_at": now})
    # Ids of a chat's messages the bot could delete ("not safe now"): kept 48 hours, no longer.
    await db["telegram_trail"].insert_many(
        [
            {
                "_id": "dvbot:9:1",
                "chat": "dvbot:9",
                "message_id": 1,
                "sent_at": now - timedelta(hours=49),
                "expires_at": now - timedelta(hours=1),
            },
            {
                "_id": "dvbot:9:2",
                "chat": "dvbot:9",
                "message_id": 2,
                "sent_at": now,
                "expires_at": now + timedelta(hours=48),
            },
        ]
    )
    await db["chat_sessions"].insert_one({"_id": "legacy", "line": "dv", "ended": False, "started_at": now})

    idle, ended, held = (ChatClient(http, gateway.chat_url) for _ in range(3))
    for c in (idle, ended, held):
        await c.start(line="dv")
    await idle.drop()  # the page was closed: nobody resumes it
    await ended.end()
    assert idle.token and ended.token and held.token
    gone = [session_id_for(idle.token), session_id_for(ended.token), "legacy"]

    async def swept() -> bool:
        return await db["chat_sessions"].count_documents({"_id": {"$in": gone}}) == 0

    await until(swept)
    assert await db["telegram_updates"].distinct("_id") == ["dvbot:2"]
    assert await db["telegram_chats"].count_documents({}) == 0
    assert await db["telegram_trail"].distinct("_id") == ["dvbot:9:2"]
    # The session a socket holds is kept past the TTL: it is in use.
    kept = await db["chat_sessions"].find_one({"_id": session_id_for(held.token)})
    assert kept is not None and kept["expires_at"] > utcnow()

    async with http.ws_connect(f"{gateway.chat_url}/chat/ws") as ws:
        await ws.send_json({"type": "resume", "token": idle.token})
        answer = await ws.receive_json(timeout=15)
    assert answer["type"] == "error" and answer["code"] == "unknown_session"
    assert "expired" in answer["detail"]
    # The held one resumes (on a new socket) as before.
    session = await held.resume()
    assert session["token"] == held.token
    await held.drop()
