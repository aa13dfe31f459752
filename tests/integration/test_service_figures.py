"""Service figures through the real services: a chat taken and answered gives its waiting time
and its time to the first answer, exactly as its event log says; a chat whose client quit
before anyone took it counts as abandoned; consultants get 403."""

from __future__ import annotations

import uuid
from datetime import datetime

import aiohttp

from tests.conftest import Gateway
from tests.integration.chat_client import ChatClient
from tests.integration.helpers import Consultant

DV_CASE = {"client_role": "survivor", "gender": "f", "age_group": "27-40"}


async def test_waiting_first_answer_and_abandoned_chats_as_the_event_log_says(
    gateway: Gateway, vera: Consultant
) -> None:
    async with aiohttp.ClientSession() as http:
        client = ChatClient(http, gateway.chat_url)
        await client.start(line="dv")
        await client.say("Мне нужна помощь")
        queued = await vera.wait_event(lambda e: e["name"] == "ThreadQueued")
        thread_id = queued["thread_id"]
        status, thread = await vera.call("POST", "/api/queues/gp-dv/next")
        assert status == 200 and thread["id"] == thread_id
        status, _ = await vera.call(
            "POST",
            f"/api/threads/{thread_id}/messages",
            {"text": "Я здесь"},
            {"Idempotency-Key": uuid.uuid4().hex},
        )
        assert status == 202
        assert (await vera.call("POST", f"/api/threads/{thread_id}/close", {"case": DV_CASE}))[0] == 200

        # Another client quits before anyone takes the chat.
        gone = ChatClient(http, gateway.chat_url)
        await gone.start(line="dv")
        await gone.say("Помогите")
        left_queued = await vera.wait_event(lambda e: e["name"] == "ThreadQueued")
        await gone.end()  # quick exit
        await vera.wait_event(
            lambda e: e["name"] == "ClientLeft" and e["thread_id"] == left_queued["thread_id"]
        )
        await client.drop()

    assert (await vera.call("GET", "/api/service-figures"))[0] == 403
    gateway.seed_demo_accounts()
    sofia = Consultant(gateway.store_url)
    try:
        await sofia.login("sofia", "sofia-demo")
        status, history = await sofia.call("GET", f"/api/threads/{thread_id}/history")
        assert status == 200
        at = {e["name"]: datetime.fromisoformat(e["at"]) for e in reversed(history)}  # the first of each
        waited = round((at["ThreadClaimed"] - at["ThreadQueued"]).total_seconds(), 1)
        answered = round((at["MessageSent"] - at["ThreadQueued"]).total_seconds(), 1)

        status, result = await sofia.call("GET", "/api/service-figures?period=day")
        assert status == 200, result
        (row,) = [r for r in result["rows"] if r["channel"] == "chat" and r["queue"] == "gp-dv"]
        assert row["waiting_seconds"] == {"count": 1, "p50": waited, "p90": waited}
        assert row["first_answer_seconds"] == {"count": 1, "p50": answered, "p90": answered}
        assert row["abandoned_while_waiting"] == 1
        assert [(s["consultant"], s["consultations"]) for s in result["consultations_per_shift"]] == [
            ("vera", 1)
        ]
        assert "not for publication" in result["note"]
        assert (await sofia.call("GET", "/api/service-figures?from=2026-13-01"))[0] == 422
        assert (await sofia.call("GET", "/api/service-figures?period=week"))[0] == 422
    finally:
        await sofia.close()
