"""Faults F11-F13 of QUALITY.md 2 for the chat channels, with the ledger: every client frame
and every consultant reply has a unique id; at the end each is counted as lost, visibly
duplicated, redelivered internally (fine) or recovered (arrived after the fault).

- F11: chat_ingest killed (-9) mid-conversation; the clients resume.
- F12: Telegram answers 429 with retry_after; the same update_id is delivered twice.
- F13: two dispatchers and two chat_ingest replicas; one of each killed under load.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from pymongo import AsyncMongoClient

from services.chat_ingest.ws import session_id_for
from tests.conftest import Gateway, free_ports
from tests.fakes.telegram import FakeBotApi, Telegram
from tests.integration.chat_client import ChatClient, replica_logs, start_replica
from tests.integration.helpers import Consultant
from tests.reliability.ledger import CANARY

pytestmark = pytest.mark.slow

CLIENTS = 3  # a consultant holds at most 3 chats (queue_policy.capacity)
ROUNDS = 4


def kill(gateway: Gateway, key: str) -> None:
    """kill -9: no goodbye, no draining."""
    gateway.processes.procs[key].kill()
    assert gateway.processes.stop(key) == -9


async def stored_counts(gateway: Gateway) -> Counter[str]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(gateway.urls.mongo_url)
    try:
        cursor = client[gateway.database]["messages"].find({}, {"source_id": 1})
        return Counter([m["source_id"] async for m in cursor])
    finally:
        await client.close()


class Conversations:
    """Clients talking to consultants while the test breaks things; the ledger at the end."""

    def __init__(self, gateway: Gateway, vera: Consultant, http: aiohttp.ClientSession) -> None:
        self.gateway, self.vera, self.http = gateway, vera, http
        self.clients: list[ChatClient] = []
        self.threads: dict[str, ChatClient] = {}  # thread id -> its client
        self.replies: dict[str, tuple[ChatClient, float]] = {}  # reply id -> (client, sent at)
        self.frames: dict[str, ChatClient] = {}  # client frame id -> client
        self.fault_at = 0.0

    async def open(self, urls: list[str]) -> None:
        for i in range(CLIENTS):
            c = ChatClient(self.http, urls[i % len(urls)])
            await c.start(line="dv")
            self.clients.append(c)
            await self.say(c)
        for c in self.clients:
            await c.wait(lambda c=c: not c.pending)
        # accepted by chat_ingest is not yet queued: wait until the dispatcher has queued every one
        for _ in range(CLIENTS):
            await self.vera.wait_event(lambda e: e["name"] == "ThreadQueued")
        for _ in range(CLIENTS):
            status, thread = await self.vera.call("POST", "/api/queues/gp-dv/next")
            assert status == 200, thread
            owner = next(
                c for c in self.clients if session_id_for(c.token or "") == thread["client"]["address"]
            )
            self.threads[thread["id"]] = owner

    async def say(self, c: ChatClient) -> None:
        fid = uuid.uuid4().hex
        self.frames[fid] = c
        await c.say(f"ledger {CANARY} {fid}", fid)

    async def round(self) -> None:
        for c in self.clients:
            await self.say(c)
        for thread_id, c in self.threads.items():
            status, body = await self.vera.call(
                "POST",
                f"/api/threads/{thread_id}/messages",
                {"text": f"reply {uuid.uuid4().hex}"},
                {"Idempotency-Key": uuid.uuid4().hex},
            )
            assert status == 202, body
            self.replies[body["id"]] = (c, time.monotonic())

    async def resume_all(self, url_for: Callable[[ChatClient], str]) -> float:
        """Every dropped client resumes (as the widget does); seconds until all are in sync."""
        began = time.monotonic()
        for c in self.clients:
            if not c.connected:
                await c.resume(url_for(c))
        await self.settle()
        return time.monotonic() - began

    async def settle(self) -> None:
        for c in self.clients:
            mine = {r for r, (owner, _) in self.replies.items() if owner is c}
            await c.wait(lambda c=c, mine=mine: not c.pending and mine <= set(c.shown), within=60)

    async def ledger(self) -> dict[str, Any]:
        stored = await stored_counts(self.gateway)
        sources = {fid: f"chat:{session_id_for(c.token or '')}:{fid}" for fid, c in self.frames.items()}
        shown = Counter[str]()
        wrong = 0
        for c in self.clients:
            for r in c.from_consultants:
                shown[r] += 1
                wrong += self.replies[r][0] is not c
        return {
            "client_messages": len(self.frames),
            "replies": len(self.replies),
            "lost": sum(1 for s in sources.values() if stored[s] == 0)
            + sum(1 for r in self.replies if shown[r] == 0),
            "visibly_duplicated": sum(1 for s in sources.values() if stored[s] > 1)
            + sum(1 for r in self.replies if shown[r] > 1),
            "to_the_wrong_client": wrong,
            "redelivered_internally": sum(n - 1 for c in self.clients for n in c.received.values() if n > 1),
            "recovered": sum(1 for _, at in self.replies.values() if at >= self.fault_at),
        }


async def test_f11_chat_ingest_killed_mid_conversation_clients_resume(
    gateway: Gateway, vera: Consultant
) -> None:
    async with aiohttp.ClientSession() as http:
        conv = Conversations(gateway, vera, http)
        await conv.open([gateway.chat_url])
        for _ in range(ROUNDS):
            await conv.round()

        conv.fault_at = time.monotonic()
        kill(gateway, "chat_ingest")
        for c in conv.clients:
            await c.wait(lambda c=c: not c.connected)
        await conv.round()  # the clients write and the consultant answers while it is down

        await asyncio.to_thread(gateway.processes.start, "chat_ingest", gateway.env["chat_ingest"])
        await asyncio.to_thread(gateway.processes.wait_ready, gateway.ports)
        resync = await conv.resume_all(lambda c: gateway.chat_url)
        for _ in range(ROUNDS):
            await conv.round()
        await conv.settle()
        report = await conv.ledger()
    print(f"F11 ledger: {json.dumps(report)}; resync {resync:.2f} s")
    assert report["lost"] == 0 and report["visibly_duplicated"] == 0 and report["to_the_wrong_client"] == 0
    assert report["recovered"] > 0


async def test_f13_two_replicas_each_one_killed_under_load(gateway: Gateway, vera: Consultant) -> None:
    other = await asyncio.to_thread(start_replica, gateway, "chat_ingest_b")
    (port,) = free_ports(1)
    env = {**gateway.env["dispatcher"], "DISPATCHER_HTTP_PORT": str(port)}
    gateway.processes.start("dispatcher", env, replica="dispatcher_b")
    gateway.ports["dispatcher_b"] = port
    await asyncio.to_thread(gateway.processes.wait_ready, gateway.ports)
    async with aiohttp.ClientSession() as http:
        conv = Conversations(gateway, vera, http)
        await conv.open([gateway.chat_url, other])
        await conv.round()

        # Under load: the clients keep writing while a dispatcher and a chat replica die.
        async def load() -> None:
            for _ in range(ROUNDS):
                await conv.round()

        conv.fault_at = time.monotonic()
        loading = asyncio.create_task(load())
        kill(gateway, "dispatcher_b")
        kill(gateway, "chat_ingest_b")
        await loading
        resync = await conv.resume_all(lambda c: gateway.chat_url)  # the survivor takes them
        await conv.round()
        await conv.settle()
        report = await conv.ledger()
    print(f"F13 ledger: {json.dumps(report)}; resync {resync:.2f} s")
    assert report["lost"] == 0 and report["visibly_duplicated"] == 0 and report["to_the_wrong_client"] == 0


TOKEN = "654321:FAULT-token"
SECRET = "fault-secret-" + "z" * 16


async def post_until_accepted(tg: Telegram, update: dict[str, Any]) -> int:
    """As Telegram does: redeliver an update until the webhook answers 2xx; count attempts."""
    attempts = 0
    while True:
        attempts += 1
        status = await tg.post(update)
        if status == 200:
            return attempts
        assert status == 503, status
        await asyncio.sleep(0.1)  # Telegram's own retry pause


async def test_f12_telegram_429_and_the_same_update_twice(gateway: Gateway, vera: Consultant) -> None:
    api = FakeBotApi({TOKEN})
    await api.start()
    bots = {"dvbot": {"line": "dv", "token": TOKEN, "webhook_secret": SECRET}}
    url = await asyncio.to_thread(
        start_replica,
        gateway,
        "chat_ingest_tg",
        telegram_bots=json.dumps(bots),
        telegram_api_base=api.url,
        telegram_max_retry_after="10",
    )
    chat = 777
    try:
        async with aiohttp.ClientSession() as http:
            tg = Telegram(http, f"{url}/telegram/dvbot/webhook", SECRET)
            # The menu asked twice with one update_id (and both at once): answered once.
            start = tg.text(chat, "/start")
            await asyncio.gather(post_until_accepted(tg, start), post_until_accepted(tg, start))
            assert await post_until_accepted(tg, start) == 1
            assert len(api.sent(chat)) == 1

            texts = [tg.text(chat, f"ledger {CANARY} {i}") for i in range(10)]
            for update in texts:
                await asyncio.gather(post_until_accepted(tg, update), post_until_accepted(tg, update))
            queued = await vera.wait_event(lambda e: e["name"] == "ThreadQueued")
            status, thread = await vera.call("POST", "/api/queues/gp-dv/next")
            assert status == 200 and thread["id"] == queued["thread_id"]

            api.fail_next("sendMessage", retry_after=1, times=3)
            replies = []
            for i in range(5):
                status, body = await vera.call(
                    "POST",
                    f"/api/threads/{thread['id']}/messages",
                    {"text": f"answer {i}"},
                    {"Idempotency-Key": uuid.uuid4().hex},
                )
                assert status == 202
                replies.append(body["id"])
            delivered: set[str] = set()
            while not set(replies) <= delivered:  # in any order: 429s reorder them
                event = await vera.wait_event(lambda e: e["name"] == "MessageDelivered")
                delivered.add(event["message_id"])
    finally:
        await api.stop()

    stored = await stored_counts(gateway)
    sources = [f"telegram:dvbot:{u['update_id']}" for u in texts]
    sent_texts = Counter(c.body["text"] for c in api.sent(chat))
    throttled = [c for c in api.calls if c.status == 429]
    first_ok_after = min(c.at for c in api.sent(chat) if c.body["text"].startswith("answer "))
    report = {
        "updates": len(texts),
        "lost": sum(1 for s in sources if stored[s] == 0)
        + sum(1 for i in range(5) if sent_texts[f"answer {i}"] == 0),
        "visibly_duplicated": sum(1 for s in sources if stored[s] > 1)
        + sum(1 for i in range(5) if sent_texts[f"answer {i}"] > 1),
        "retries_429": len(throttled),
    }
    print(f"F12 ledger: {json.dumps(report)}")
    assert report["lost"] == 0 and report["visibly_duplicated"] == 0
    assert report["retries_429"] == 3
    # retry_after was honoured: nothing was sent in the second after a 429.
    assert first_ok_after - throttled[0].at >= 0.95
    assert TOKEN not in replica_logs(gateway)
