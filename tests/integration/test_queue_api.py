"""Routing and shared queues through the real services: urgency, out-of-hours answers,
capacity, transfer with a note, release, offline, claim time-outs and crisis escalation."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from tests.conftest import Gateway
from tests.integration.helpers import Consultant, Frames


class ChatClient:
    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.http, self.ws, self.frames = http, ws, Frames(ws)

    async def say(self, text: str) -> dict[str, Any]:
        await self.ws.send_json({"type": "message", "id": str(uuid.uuid4()), "text": text})
        return await self.frames.next("ack")


@pytest.fixture
async def chat(gateway: Gateway) -> AsyncIterator[Any]:
    sessions: list[aiohttp.ClientSession] = []

    async def start(**choices: str) -> ChatClient:
        http = aiohttp.ClientSession()
        sessions.append(http)
        ws = await http.ws_connect(f"{gateway.chat_url}/chat/ws")
        await ws.send_json({"type": "start", **choices})
        client = ChatClient(http, ws)
        await client.frames.next("session")
        return client

    try:
        yield start
    finally:
        for http in sessions:
            await http.close()


async def consultant(gateway: Gateway, login: str) -> Consultant:
    c = Consultant(gateway.store_url)
    await c.login(login, f"{login}-demo")
    await c.open_events()
    return c


def minsk_days_around_today() -> list[str]:
    today = datetime.now(ZoneInfo("Europe/Minsk")).date()
    return [str(today + timedelta(days=d)) for d in (-1, 0, 1)]


def closed_today(config: dict[str, Any]) -> None:
    config["lines"]["dv"]["hours"]["holidays"] = minsk_days_around_today()


def open_all_day(config: dict[str, Any]) -> None:
    config["lines"]["dv"]["hours"].update({"open": "00:00", "close": "23:59:59"})
    config["lines"]["dv"]["hours"]["holidays"] = []


@pytest.mark.hotline_config.with_args(closed_today)
async def test_out_of_hours_notice_once_with_emergency_numbers(gateway: Gateway, chat: Any) -> None:
    gateway.seed_demo_accounts()
    client = await chat(line="dv", language="en")
    await client.say("Is anyone there?")
    notice = await client.frames.next("message", sender="bot")
    assert "102" in notice["text"] and "103" in notice["text"] and "08:00" in notice["text"]
    await client.say("Hello?")
    await client.say("I will wait")
    vera = await consultant(gateway, "vera")
    try:
        status, threads = await vera.call("GET", "/api/threads?queue=gp-dv")
        assert status == 200
        (thread,) = threads
        status, full = await vera.call("GET", f"/api/threads/{thread['id']}")
        authors = [m["author"] for m in full["messages"]]
        # Three messages from the client, one notice for this closed period: never three.
        assert authors.count("client") == 3 and authors.count("bot") == 1
        assert [f["from"] for f in client.frames.seen if f["type"] == "message"] == ["bot"]
    finally:
        await vera.close()


@pytest.mark.hotline_config.with_args(open_all_day)
async def test_danger_goes_first_and_capacity_is_respected(gateway: Gateway, chat: Any) -> None:
    gateway.seed_demo_accounts()
    vera = await consultant(gateway, "vera")
    try:
        calm = await chat(line="dv", language="ru")
        await calm.say("Подскажите, как получить консультацию юриста по разделу имущества")
        first = await vera.wait_event(lambda e: e["name"] == "ThreadQueued")
        scared = await chat(line="dv", language="ru")
        await scared.say("Муж угрожает мне ножом, я заперта в квартире")
        urgent = await vera.wait_event(
            lambda e: e["name"] == "ThreadQueued" and e["thread_id"] != first["thread_id"]
        )
        status, queue = await vera.call("GET", "/api/threads?queue=gp-dv&status=waiting")
        assert [t["id"] for t in queue] == [urgent["thread_id"], first["thread_id"]]
        status, taken = await vera.call("POST", "/api/queues/gp-dv/next")
        assert status == 200 and taken["id"] == urgent["thread_id"] and taken["priority"] > 0
        # Capacity for chat is 3 in the example; take two more chats, then the fourth is refused.
        for _ in range(2):
            extra = await chat(line="dv")
            await extra.say("вопрос")
        for _ in range(2):
            status, _ = await vera.call("POST", "/api/queues/gp-dv/next")
            assert status == 200
        last = await chat(line="dv")
        await last.say("ещё вопрос")
        await vera.wait_event(lambda e: e["name"] == "ThreadQueued")
        status, problem = await vera.call("POST", "/api/queues/gp-dv/next")
        assert status == 409 and problem["title"] == "At capacity"
        status, mine = await vera.call("GET", "/api/threads?mine=1&status=active")
        assert len(mine) == 3
        # Going offline gives every held conversation back to the queue, in its place.
        status, _ = await vera.call("PUT", "/api/me/status", {"status": "offline"})
        assert status == 200
        status, mine = await vera.call("GET", "/api/threads?mine=1&status=active")
        assert mine == []
        status, queue = await vera.call("GET", "/api/threads?queue=gp-dv&status=waiting")
        assert queue[0]["id"] == urgent["thread_id"]
    finally:
        await vera.close()


async def test_transfer_to_the_other_ngo_with_a_note_and_release(gateway: Gateway, chat: Any) -> None:
    gateway.seed_demo_accounts()
    boris, anna = await consultant(gateway, "boris"), await consultant(gateway, "anna")
    try:
        client = await chat(line="113", region="brest", topic="work_abroad")
        await client.say("Хочу поехать работать в Литву")
        queued = await boris.wait_event(lambda e: e["name"] == "ThreadQueued")
        assert queued["queue"] == "bwc-migration"
        thread_id = queued["thread_id"]
        assert (await anna.call("GET", f"/api/threads/{thread_id}"))[0] == 404  # not La Strada's
        assert (await boris.call("POST", "/api/queues/bwc-migration/next"))[0] == 200
        status, moved = await boris.call(
            "POST",
            f"/api/threads/{thread_id}/transfer",
            {"queue": "lastrada-migration", "note": "Клиентка переезжает в Минск"},
        )
        assert status == 200 and moved["queue"] == "lastrada-migration" and moved["status"] == "waiting"
        await anna.wait_event(lambda e: e["name"] == "ThreadTransferred" and e["thread_id"] == thread_id)
        assert (await boris.call("GET", f"/api/threads/{thread_id}"))[0] == 404  # gone from BWC
        status, claimed = await anna.call("POST", f"/api/threads/{thread_id}/claim")
        assert status == 200 and claimed["assignee"] == "anna"
        status, full = await anna.call("GET", f"/api/threads/{thread_id}")
        notes = [m for m in full["messages"] if m["direction"] == "note"]
        assert [n["text"] for n in notes] == ["Клиентка переезжает в Минск"]
        assert [f for f in client.frames.seen if f.get("text") == notes[0]["text"]] == []  # never sent
        status, released = await anna.call("POST", f"/api/threads/{thread_id}/release")
        assert status == 200 and released["status"] == "waiting" and released["assignee"] is None
        assert (await boris.call("POST", f"/api/threads/{thread_id}/release"))[0] == 404
    finally:
        await boris.close()
        await anna.close()


def quick_policy(config: dict[str, Any]) -> None:
    open_all_day(config)
    config["queue_policy"] = {"claim_timeout_minutes": 0.03, "crisis_escalation_minutes": 0.03}


@pytest.mark.hotline_config.with_args(quick_policy)
@pytest.mark.service_env({"DISPATCHER_SWEEP_SECONDS": "0.5"})
async def test_silent_claims_go_back_and_waiting_crises_are_raised(gateway: Gateway, chat: Any) -> None:
    gateway.seed_demo_accounts()
    vera, sofia = await consultant(gateway, "vera"), await consultant(gateway, "sofia")
    try:
        crisis = await chat(line="dv", topic="danger_now")
        await crisis.say("Помогите")
        escalated = await sofia.wait_event(lambda e: e["name"] == "CrisisEscalated")
        status, thread = await sofia.call("GET", f"/api/threads/{escalated['thread_id']}")
        assert thread["priority"] > 10 and thread["status"] == "waiting"
        status, taken = await vera.call("POST", "/api/queues/gp-dv/next")
        assert taken["id"] == escalated["thread_id"]
        released = await vera.wait_event(
            lambda e: e["name"] == "ThreadReleased" and e["thread_id"] == taken["id"]
        )
        assert released["data"]["reason"] == "no reply in time"
        status, thread = await vera.call("GET", f"/api/threads/{taken['id']}")
        assert status == 200 and thread["status"] == "waiting" and thread["assignee"] is None
        status, history = await sofia.call("GET", f"/api/threads/{taken['id']}/history")
        assert [e["name"] for e in history][:4] == [
            "ThreadQueued",
            "CrisisEscalated",
            "ThreadClaimed",
            "ThreadReleased",
        ]
        assert all(datetime.fromisoformat(e["at"]) <= datetime.now(UTC) for e in history)
    finally:
        await vera.close()
        await sofia.close()
