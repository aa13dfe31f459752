"""The outbox: a consultant's reply written while the broker is away is accepted (202), shown
queued, and reaches the client exactly once after the broker is back, published by the store's
outbox sweeper; the store stays ready meanwhile (the broker reported as degraded)."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import pytest

from tests.conftest import Gateway
from tests.integration.chat_client import ChatClient
from tests.integration.email_support import database
from tests.integration.helpers import Consultant, readyz, until

pytestmark = pytest.mark.slow


@pytest.mark.service_env({"STORE_OUTBOX_SECONDS": "1"})
async def test_a_reply_written_while_the_broker_is_away_reaches_the_client_once(
    gateway: Gateway, vera: Consultant
) -> None:
    async with aiohttp.ClientSession() as http:
        client = ChatClient(http, gateway.chat_url)
        await client.start(line="dv")
        await client.say("I need to talk")
        await client.wait(lambda: not client.pending)
        # accepted by chat_ingest is not yet queued: the dispatcher routes it next
        queued = await vera.wait_event(lambda e: e["name"] == "ThreadQueued")
        status, thread = await vera.call("POST", "/api/queues/gp-dv/next")
        assert status == 200 and thread["id"] == queued["thread_id"], thread
        await asyncio.to_thread(gateway.stack.stop_rabbitmq)
        try:
            status, body = await vera.call(
                "POST",
                f"/api/threads/{thread['id']}/messages",
                {"text": "We are here for you"},
                {"Idempotency-Key": uuid.uuid4().hex},
            )
            assert status == 202, body
            assert body["delivery"]["status"] == "queued"
            ready, health = await asyncio.to_thread(readyz, gateway.ports["store"])
            assert ready == 200 and health["degraded"] == ["broker"], health
        finally:
            await asyncio.to_thread(gateway.stack.start_rabbitmq)
        await client.wait(lambda: body["id"] in client.shown, within=90)
        # The outbox records the reply as published right after the broker confirmed it, and
        # the client may be shown it before that write lands: wait for the record.
        mongo, db = database(gateway)

        async def published() -> bool:
            return bool(((await db["messages"].find_one({"_id": body["id"]})) or {}).get("published"))

        try:
            await until(published)
        finally:
            await mongo.close()
        await client.drop()
    assert client.received[body["id"]] == 1
