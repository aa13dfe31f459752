"""The chat socket against the real services: resume with waiting replies, queue positions,
replicas, and the chat bad inputs of QUALITY.md 3."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.conftest import Gateway
from tests.integration.chat_client import ChatClient, start_replica
from tests.integration.helpers import Consultant


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def reply(vera: Consultant, thread_id: str, text: str) -> str:
    status, body = await vera.call(
        "POST", f"/api/threads/{thread_id}/messages", {"text": text}, {"Idempotency-Key": uuid.uuid4().hex}
    )
    assert status == 202, body
    return str(body["id"])


async def test_a_client_who_was_away_gets_each_waiting_reply_once_on_resume(
    gateway: Gateway, vera: Consultant, http: aiohttp.ClientSession
) -> None:
    client = ChatClient(http, gateway.chat_url)
    await client.start(line="dv", language="ru")
    await client.say("Здравствуйте")
    queued = await vera.wait_event(lambda e: e["name"] == "ThreadQueued")
    thread_id = queued["thread_id"]
    status, _ = await vera.call("POST", "/api/queues/gp-dv/next")
    assert status == 200

    await client.drop()
    waiting = [await reply(vera, thread_id, f"Ответ {i}") for i in range(3)]
    status, thread = await vera.call("GET", f"/api/threads/{thread_id}")
    assert [m["delivery"]["status"] for m in thread["messages"] if m["id"] in waiting] == ["queued"] * 3

    session = await client.resume()
    assert session["position"] == 0  # a consultant has the conversation
    await client.wait(lambda: set(waiting) <= set(client.shown))
    assert [client.shown[m]["text"] for m in waiting] == ["Ответ 0", "Ответ 1", "Ответ 2"]
    delivered: set[str] = set()
    while not set(waiting) <= delivered:  # reported in any order
        delivered.add((await vera.wait_event(lambda e: e["name"] == "MessageDelivered"))["message_id"])

    # Shown now, so a second resume brings nothing again; a live reply arrives once.
    await client.resume()
    live = await reply(vera, thread_id, "Вы здесь?")
    await client.wait(lambda: live in client.shown)
    assert all(n == 1 for n in client.received.values()), client.received
    assert set(waiting) | {live} <= set(client.shown)


async def test_clients_see_their_queue_position_change_live(
    gateway: Gateway, vera: Consultant, http: aiohttp.ClientSession
) -> None:
    first, second = ChatClient(http, gateway.chat_url), ChatClient(http, gateway.chat_url)
    await first.start(line="dv")
    assert first.session["position"] is None and isinstance(first.session["on_duty"], bool)
    await first.say("first")
    await first.wait(lambda: first.positions[-1] == 1)
    await second.start(line="dv")
    await second.say("second")
    await second.wait(lambda: second.positions[-1] == 2)

    status, thread = await vera.call("POST", "/api/queues/gp-dv/next")
    assert status == 200
    await first.wait(lambda: first.positions[-1] == 0)
    await second.wait(lambda: second.positions[-1] == 1)

    status, _ = await vera.call(
        "POST",
        f"/api/threads/{thread['id']}/close",
        {"case": {"client_role": "survivor", "gender": "f", "age_group": "27-40"}},
    )
    assert status == 200
    await first.wait(lambda: first.closed == 1)
    assert first.connected  # closing by the consultant does not cut the socket: the client may write again


async def test_replies_reach_the_replica_holding_the_clients_socket(
    gateway: Gateway, vera: Consultant, http: aiohttp.ClientSession
) -> None:
    other = start_replica(gateway, "chat_ingest_b")
    here, there = ChatClient(http, gateway.chat_url), ChatClient(http, other)
    await here.start(line="dv")
    await there.start(line="dv")
    await here.say("on replica a")
    a = (await vera.wait_event(lambda e: e["name"] == "ThreadQueued"))["thread_id"]
    await there.say("on replica b")
    b = (await vera.wait_event(lambda e: e["name"] == "ThreadQueued" and e["thread_id"] != a))["thread_id"]
    for _ in range(2):
        assert (await vera.call("POST", "/api/queues/gp-dv/next"))[0] == 200

    to_b = await reply(vera, b, "for b")
    to_a = await reply(vera, a, "for a")
    await there.wait(lambda: to_b in there.shown)
    await here.wait(lambda: to_a in here.shown)
    assert here.from_consultants == {to_a} and there.from_consultants == {to_b}

    # The client of replica b moves to replica a (its replica went away, or a new route):
    # the resume works there, and replies follow it.
    await there.resume(gateway.chat_url)
    again = await reply(vera, b, "still for b")
    await there.wait(lambda: again in there.shown)
    assert there.from_consultants == {to_b, again} and here.from_consultants == {to_a}


async def test_bad_frames_get_error_frames_and_the_socket_stays_up(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    client = ChatClient(http, gateway.chat_url)
    await client.start(line="dv")
    bad = [
        ("{not json", "bad_json"),
        ("[1, 2]", "bad_frame"),
        (json.dumps({"type": 7}), "bad_frame"),
        (json.dumps({"type": "hello"}), "unknown_type"),
        (json.dumps({"type": "message", "id": 5, "text": "x"}), "bad_field"),
        (json.dumps({"type": "message", "id": "a b", "text": "x"}), "bad_field"),
        (json.dumps({"type": "message", "id": "ok", "text": ["x"]}), "bad_field"),
        (json.dumps({"type": "message", "id": "ok", "text": "x" * 5000}), "too_long"),
        (json.dumps({"type": "start", "line": "nope"}), "bad_field"),
        (json.dumps({"type": "start", "line": "dv", "topic": "no_such_topic"}), "bad_field"),
        (json.dumps({"type": "resume", "token": "x" * 32}), "unknown_session"),
        ("[" * 5000 + "]" * 5000, "bad_json"),  # nesting deeper than the parser's recursion limit
    ]
    for raw, _ in bad:
        await client.send_raw(raw)
    await client.wait(lambda: len(client.errors) == len(bad))
    assert [e["code"] for e in client.errors] == [code for _, code in bad]
    await client.say("still here")
    await client.wait(lambda: not client.pending)

    # A 1 MiB frame is abuse: that socket is closed (1009), others are not.
    other = ChatClient(http, gateway.chat_url)
    await other.start(line="dv")
    await client.send_raw("x" * (1 << 20))
    await client.wait(lambda: not client.connected)
    assert client.ws is None or client.ws.close_code == 1009
    await other.say("unaffected")
    await other.wait(lambda: not other.pending)


async def test_a_flooding_client_is_limited_and_then_cut_off_while_others_go_on(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    flood, calm = ChatClient(http, gateway.chat_url), ChatClient(http, gateway.chat_url)
    await flood.start(line="dv")
    await calm.start(line="dv")
    assert flood.ws is not None
    with pytest.raises((ConnectionResetError, aiohttp.ClientConnectionError)):
        for i in range(1000):
            await flood.ws.send_json({"type": "message", "id": f"f{i}", "text": "spam"})
            if flood.ws.closed:
                raise aiohttp.ClientConnectionError("closed by the server")
            await asyncio.sleep(0.001)  # pacing: 1,000 frames a second
    await flood.wait(lambda: not flood.connected)
    assert flood.ws is not None and flood.ws.close_code == 1008
    assert {e["code"] for e in flood.errors} == {"rate_limited"}
    await calm.say("unaffected")
    await calm.wait(lambda: not calm.pending)


async def test_a_token_that_was_ended_or_never_issued_resumes_nothing(
    gateway: Gateway, vera: Consultant, http: aiohttp.ClientSession
) -> None:
    client = ChatClient(http, gateway.chat_url)
    await client.start(line="dv")
    await client.say("secret")
    thread_id = (await vera.wait_event(lambda e: e["name"] == "ThreadQueued"))["thread_id"]
    assert (await vera.call("POST", "/api/queues/gp-dv/next"))[0] == 200
    await client.end()
    await reply(vera, thread_id, "after the end")

    # Whoever finds the old token (a shared device) gets nothing of the conversation.
    intruder = ChatClient(http, gateway.chat_url)
    intruder.token = client.token
    await intruder._open()
    assert intruder.ws is not None
    await intruder.ws.send_json({"type": "resume", "token": client.token})
    await intruder.wait(lambda: bool(intruder.errors))
    assert intruder.errors == [
        {"type": "error", "code": "unknown_session", "detail": intruder.errors[0]["detail"]}
    ]
    assert intruder.shown == {} and intruder.session == {}
    await intruder.say("may I?")
    await intruder.wait(lambda: len(intruder.errors) == 2)
    assert intruder.errors[1]["code"] == "no_session"


async def test_connections_beyond_the_cap_are_refused(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    url = start_replica(gateway, "chat_ingest_capped", max_connections="3")
    held = [ChatClient(http, url) for _ in range(3)]
    for c in held:
        await c.start(line="dv")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(f"{url}/chat/ws")
    assert refused.value.status == 503
    await held[0].drop()
    again = ChatClient(http, url)
    await again.start(line="dv")


# Each idle socket starts a chat: the process's budget of new chats, and the bounds per source
# (all 2,000 come from one address), are set above the 2,000 started at once here (this test is
# about holding sockets, not about those bounds; test_chat_source_limits.py has theirs).
@pytest.mark.service_env(
    {
        "CHAT_INGEST_SESSION_START_BURST": "5000",
        "CHAT_INGEST_MAX_SOCKETS_PER_SOURCE": "5000",
        "CHAT_INGEST_STARTS_PER_SOURCE_PER_MINUTE": "5000",
    }
)
async def test_thousands_of_idle_connections_are_held_and_a_new_client_is_served_at_once(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    from benchmarks.chat import idle_connections

    pid = gateway.processes.pids()["chat_ingest"]
    client = ChatClient(http, gateway.chat_url)

    all_open = asyncio.Event()

    async def meanwhile() -> None:
        await all_open.wait()  # served while the idle ones are held
        await client.start(line="dv")
        await client.say("still served")
        await client.wait(lambda: not client.pending, within=30)

    figures, _ = await asyncio.gather(
        idle_connections("127.0.0.1", gateway.ports["chat_ingest"], pid, 2000, hold=5, opened_event=all_open),
        meanwhile(),
    )
    print(f"idle connections: {figures}")
    assert figures["held"] == 2000 and figures["refused"] == 0
    # Bounded memory (the precise figure, over 10,000 sockets, is in `make bench`).
    assert figures["kib_per_connection"] < 24
