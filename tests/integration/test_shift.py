"""A shift against the real store (services/store/shift.py): what a consultant holds goes back
when they log out, their session expires, their console is gone or they stay away; offers to a
colleague lapse; the urgent mark; and who may hand what to whom (the attacker's side).

The timers are shortened by settings; the tests await the live events the store announces."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.conftest import Gateway
from tests.integration.helpers import Consultant, Mailbox, logged_in, mail, new_message_id
from tests.integration.test_access_matrix import add_user, start_chat

FAST = {
    "STORE_CONSOLE_GONE_MINUTES": "0.03",  # under 2 s
    "STORE_AWAY_EMAIL_MINUTES": "0.05",  # 3 s
    "STORE_HANDOFF_MINUTES": "0.03",
    "STORE_SHIFT_CHECK_SECONDS": "0.2",
}


async def at_work(gateway: Gateway, login: str) -> Consultant:
    """``login`` logged in with the console open (its live events socket)."""
    c = await logged_in(gateway.store_url, login)
    await c.open_events()
    return c


def released(thread_id: str, reason: str) -> Any:
    return lambda e: (
        e["name"] == "ThreadReleased" and e["thread_id"] == thread_id and e["data"].get("reason") == reason
    )


@pytest.fixture
async def sofia(gateway: Gateway) -> AsyncIterator[Consultant]:
    """The supervisor of every line, watching the live events: what a colleague would see."""
    gateway.seed_demo_accounts()
    c = await logged_in(gateway.store_url, "sofia")
    await c.open_events()
    try:
        yield c
    finally:
        await c.close()


async def chat_held_by(c: Consultant, watcher: Consultant, gateway: Gateway, **choices: str) -> str:
    async with aiohttp.ClientSession() as http:
        await start_chat(http, gateway, "Мне нужна помощь", **choices)
    queued = await watcher.wait_event(lambda e: e["name"] == "ThreadQueued")
    status, thread = await c.call("POST", f"/api/threads/{queued['thread_id']}/claim")
    assert status == 200 and thread["assignee"], thread
    return str(queued["thread_id"])


async def mail_held_by(c: Consultant, watcher: Consultant, gateway: Gateway) -> str:
    """A client's mail to the 113 line, claimed by ``c``."""
    inbox = Mailbox("127.0.0.1", gateway.urls.imap_port, gateway.line_mailbox)
    client, line = f"{gateway.client_mailbox}@demo.test", f"{gateway.line_mailbox}@demo.test"
    await inbox.append(mail(client, line, "Виза", "?", new_message_id()))
    queued = await watcher.wait_event(lambda e: e["name"] == "ThreadQueued")
    assert (await c.call("POST", f"/api/threads/{queued['thread_id']}/claim"))[0] == 200
    return str(queued["thread_id"])


def add_lena(gateway: Gateway) -> None:
    """Lena, Anna's colleague at La Strada on the 113 line (password lena-colleague)."""
    done = add_user(
        gateway,
        "add-user",
        "--login=lena",
        "--name=Lena",
        "--organisation=lastrada",
        "--lines=113",
        "--password-stdin",
        password="lena-colleague",
    )
    assert done.returncode == 0, done.stderr


async def status_of(gateway: Gateway, login: str) -> str:
    sup = await logged_in(gateway.store_url, "sofia")
    try:
        _, overview = await sup.call("GET", "/api/supervisor")
        return str(next(p["status"] for p in overview["consultants"] if p["login"] == login))
    finally:
        await sup.close()


@pytest.mark.service_env(FAST)
async def test_logging_out_gives_chats_back_at_once(gateway: Gateway, sofia: Consultant) -> None:
    vera = await at_work(gateway, "vera")
    thread = await chat_held_by(vera, sofia, gateway, line="dv")
    status, _ = await vera.call("DELETE", "/api/session")
    assert status == 200
    await sofia.wait_event(released(thread, "logout"), within=10)
    status, doc = await sofia.call("GET", f"/api/threads/{thread}")
    assert doc["status"] == "waiting" and doc["assignee"] is None
    await vera.close()
    assert await status_of(gateway, "vera") == "away"


@pytest.mark.service_env(FAST)
async def test_a_console_gone_makes_its_consultant_away_and_back(gateway: Gateway, sofia: Consultant) -> None:
    vera = await logged_in(gateway.store_url, "vera")
    await vera.open_events()
    thread = await chat_held_by(vera, sofia, gateway, line="dv")
    assert vera.events is not None
    await vera.events.close()  # the browser is closed; the session lives on
    await sofia.wait_event(released(thread, "gone"), within=15)
    assert await status_of(gateway, "vera") == "away"
    await vera.open_events()  # the console is back: so is she
    for _ in range(50):
        if await status_of(gateway, "vera") == "available":
            break
    assert await status_of(gateway, "vera") == "available"
    await vera.close()


@pytest.mark.service_env({**FAST, "STORE_SESSION_HOURS": "0.0008", "STORE_CONSOLE_GONE_MINUTES": "5"})
async def test_an_expired_session_gives_chats_back(gateway: Gateway, sofia: Consultant) -> None:
    vera = await logged_in(gateway.store_url, "vera")
    thread = await chat_held_by(vera, sofia, gateway, line="dv")
    # The session lasts under 3 s and nothing is asked of the API meanwhile.
    await sofia.wait_event(released(thread, "expired"), within=15)
    await vera.close()


@pytest.mark.service_env(FAST)
async def test_an_answered_mail_goes_back_once_its_holder_is_away_long_enough(
    gateway: Gateway, sofia: Consultant
) -> None:
    anna = await at_work(gateway, "anna")
    thread = await mail_held_by(anna, sofia, gateway)
    status, _ = await anna.call(
        "POST",
        f"/api/threads/{thread}/messages",
        {"text": "Ответ"},
        headers={"Idempotency-Key": new_message_id()},
    )
    assert status == 202
    # Away: the mail stays with her for a while (a chat would have gone at once)...
    assert (await anna.call("PUT", "/api/me/status", {"status": "away"}))[0] == 200
    status, doc = await anna.call("GET", f"/api/threads/{thread}")
    assert doc["status"] == "active" and doc["assignee"] == "anna"
    # ...then goes back, although she answered it.
    event = await sofia.wait_event(released(thread, "away"), within=20)
    assert event["data"]["holder"] == "anna"
    status, history = await sofia.call("GET", f"/api/threads/{thread}/history")
    assert [e["data"].get("reason") for e in history if e["name"] == "ThreadReleased"] == ["away"]
    await anna.close()


@pytest.mark.service_env(FAST)
async def test_disabling_gives_everything_back_through_the_same_path(
    gateway: Gateway, sofia: Consultant
) -> None:
    vera = await at_work(gateway, "vera")
    thread = await chat_held_by(vera, sofia, gateway, line="dv")
    # The operator command has no broker: the store announces what it gave back.
    done = await asyncio.to_thread(add_user, gateway, "disable-user", "--login=vera", password="")
    assert done.returncode == 0, done.stderr
    event = await sofia.wait_event(released(thread, "disabled"), within=15)
    assert event["data"]["by"] == "admin-command"
    await vera.close()


@pytest.fixture
async def team(gateway: Gateway) -> AsyncIterator[dict[str, Consultant]]:
    """Anna and Lena of La Strada on the 113 line, Boris of BWC on it, Vera of GP."""
    gateway.seed_demo_accounts()
    add_lena(gateway)
    people: dict[str, Consultant] = {}
    try:
        for login in ("anna", "boris", "vera", "sofia"):
            people[login] = await at_work(gateway, login)
        lena = Consultant(gateway.store_url)
        await lena.login("lena", "lena-colleague")
        await lena.open_events()
        people["lena"] = lena
        yield people
    finally:
        for c in people.values():
            await c.close()


@pytest.mark.service_env(FAST)
async def test_a_hand_off_goes_only_to_a_colleague_who_accepts_or_lapses(
    gateway: Gateway, team: dict[str, Consultant]
) -> None:
    anna, lena, boris, sofia = (team[n] for n in ("anna", "lena", "boris", "sofia"))
    thread = await chat_held_by(anna, sofia, gateway, line="113", region="minsk")
    path = f"/api/threads/{thread}/handoff"

    # The attacker's side: another organisation, another line, nobody, oneself: one answer.
    answers = [
        await anna.call("POST", path, {"to": to}) for to in ("boris", "vera", "nobody", "anna", "sofia")
    ]
    assert {s for s, _ in answers} == {422}
    assert len({a["title"] for _, a in answers}) == 1
    status, colleagues = await anna.call("GET", f"/api/threads/{thread}/colleagues")
    # Her organisation's people on the line: the supervisor, a consultant and a specialist.
    assert status == 200 and [c["login"] for c in colleagues] == ["larisa", "lena", "sasha"]
    # Someone who does not hold it cannot offer it; one who cannot see it learns nothing.
    assert (await lena.call("POST", path, {"to": "anna"}))[0] == 409
    assert (await boris.call("POST", path, {"to": "kira"}))[0] == 404
    assert (await boris.call("POST", path + "/accept"))[0] == 404

    status, offered = await anna.call("POST", path, {"to": "lena"})
    assert status == 200 and offered["handoff"]["to"] == "lena"
    event = await lena.wait_event(lambda e: e["name"] == "HandoffOffered" and e["thread_id"] == thread)
    assert event["data"] == {"by": "anna", "to": "lena", "until": event["data"]["until"]}
    assert (await anna.call("POST", path, {"to": "lena"}))[0] == 409  # one offer at a time
    assert (await sofia.call("POST", path + "/accept"))[0] == 409  # not offered to her
    status, offers = await lena.call("GET", "/api/handoffs")
    assert status == 200 and [o["id"] for o in offers] == [thread]

    # Not answered in time: it stays with Anna, who is at work.
    await lena.wait_event(lambda e: e["name"] == "HandoffLapsed" and e["thread_id"] == thread, within=15)
    status, doc = await anna.call("GET", f"/api/threads/{thread}")
    assert doc["assignee"] == "anna" and "handoff" not in doc
    assert (await lena.call("POST", path + "/accept"))[0] == 409

    # Offered again and accepted: Lena holds it.
    assert (await anna.call("POST", path, {"to": "lena"}))[0] == 200
    status, doc = await lena.call("POST", path + "/accept")
    assert status == 200 and doc["assignee"] == "lena" and doc["status"] == "active"
    await anna.wait_event(lambda e: e["name"] == "HandoffAccepted" and e["thread_id"] == thread)
    assert (
        await anna.call(
            "POST", f"/api/threads/{thread}/messages", {"text": "x"}, {"Idempotency-Key": "k" * 10}
        )
    )[0] == 409

    # Declined: back in the hands of the one who offered it.
    assert (await lena.call("POST", path, {"to": "anna"}))[0] == 200
    status, doc = await anna.call("POST", path + "/decline")
    assert status == 200 and doc["assignee"] == "lena" and "handoff" not in doc


@pytest.mark.service_env(FAST)
async def test_an_unanswered_offer_of_someone_away_goes_to_the_queue(
    gateway: Gateway, team: dict[str, Consultant]
) -> None:
    anna, sofia = team["anna"], team["sofia"]
    thread = await mail_held_by(anna, sofia, gateway)
    assert (await anna.call("POST", f"/api/threads/{thread}/handoff", {"to": "lena"}))[0] == 200
    # A mail stays with her when she says away; the offer lapses and it goes to the queue.
    assert (await anna.call("PUT", "/api/me/status", {"status": "away"}))[0] == 200
    await sofia.wait_event(released(thread, "handoff not accepted"), within=15)
    doc = (await sofia.call("GET", f"/api/threads/{thread}"))[1]
    assert doc["status"] == "waiting" and doc["assignee"] is None and "handoff" not in doc


async def test_marking_urgent_by_hand(gateway: Gateway, team: dict[str, Consultant]) -> None:
    anna, boris, sofia = team["anna"], team["boris"], team["sofia"]
    thread = await chat_held_by(anna, sofia, gateway, line="113", region="minsk")
    path = f"/api/threads/{thread}/urgent"
    assert (await boris.call("POST", path, {"urgent": True}))[0] == 404  # another organisation's
    assert (await anna.call("POST", path, {"urgent": "yes"}))[0] == 422
    status, doc = await anna.call("POST", path, {"urgent": True})
    assert status == 200 and doc["priority"] >= 10 and doc["urgent_mark"]["by"] == "anna"
    event = await sofia.wait_event(lambda e: e["name"] == "ThreadMarkedUrgent" and e["thread_id"] == thread)
    assert event["data"] == {"by": "anna", "urgent": True}
    status, doc = await anna.call("POST", path, {"urgent": False})
    assert status == 200 and doc["priority"] == 0 and "urgent_mark" not in doc
