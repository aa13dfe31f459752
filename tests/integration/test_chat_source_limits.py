"""Per-source bounds on chat sockets and chat starts, as an attacker tries them (issue 15):
one address cannot hold the chat's sockets or spend the new-chat budget for everyone, and
cannot escape its own count by writing X-Real-IP; a client elsewhere still gets a chat, and
no address reaches a log. Against the real services: clients leave from 127.0.0.2 (one
address) and 127.0.0.1 (another, and the trusted proxy)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.conftest import Gateway
from tests.integration.chat_client import ChatClient, replica_logs
from tests.integration.test_login_throttle import session_from

ATTACKER = "127.0.0.2"  # not a trusted proxy: whatever it writes in X-Real-IP, it is itself
PROXY = "127.0.0.1/32"
NAMED = ["203.0.113.9", "198.51.100.7", "192.0.2.1", "192.0.2.2", "2001:db8::1"]


@pytest.fixture
async def attacker() -> AsyncIterator[aiohttp.ClientSession]:
    async with session_from(ATTACKER) as http:
        yield http


@pytest.fixture
async def elsewhere() -> AsyncIterator[aiohttp.ClientSession]:
    async with session_from() as http:
        yield http


async def connect(http: aiohttp.ClientSession, gateway: Gateway, real_ip: str | None = None) -> Any:
    headers = {"X-Real-IP": real_ip} if real_ip is not None else {}
    return await http.ws_connect(f"{gateway.chat_url}/chat/ws", headers=headers)


async def refused(ws: aiohttp.ClientWebSocketResponse) -> tuple[list[dict[str, Any]], int | None]:
    """The frames a socket gets until the server closes it, and the close code."""
    got = []
    async for msg in ws:
        if msg.type is aiohttp.WSMsgType.TEXT:
            got.append(json.loads(msg.data))
    return got, ws.close_code


async def start(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    await ws.send_json({"type": "start", "line": "dv"})
    answer: dict[str, Any] = await ws.receive_json(timeout=15)
    return answer


@pytest.mark.service_env({"CHAT_INGEST_MAX_SOCKETS_PER_SOURCE": "3", "CHAT_INGEST_TRUSTED_PROXIES": PROXY})
async def test_one_address_holds_a_bounded_number_of_sockets_and_others_still_get_a_chat(
    gateway: Gateway, attacker: aiohttp.ClientSession, elsewhere: aiohttp.ClientSession
) -> None:
    # Three sockets from one address, each claiming another address: still one source.
    held = [await connect(attacker, gateway, real_ip) for real_ip in NAMED[:3]]
    frames, code = await refused(await connect(attacker, gateway, NAMED[3]))
    assert [f["code"] for f in frames] == ["too_many_sockets"] and code == 4429, (frames, code)
    assert "too many chat connections" in frames[0]["detail"]

    # Another address gets a chat; so do clients the trusted proxy names, each its own source,
    # and the proxy's own bound is its own: three it names as one client, the fourth refused.
    other = ChatClient(elsewhere, gateway.chat_url)
    assert (await other.start(line="dv"))["type"] == "session"
    named = [await connect(elsewhere, gateway, "203.0.113.9") for _ in range(3)]
    assert (await start(named[0]))["type"] == "session"
    _, code = await refused(await connect(elsewhere, gateway, "203.0.113.9"))
    assert code == 4429
    named.append(await connect(elsewhere, gateway, "198.51.100.7"))
    assert (await start(named[-1]))["type"] == "session"

    # A socket closed is counted no more: the attacker's address may open one again.
    await held.pop().close()
    again = await connect(attacker, gateway)
    assert (await start(again))["type"] == "session"

    for ws in [*held, *named, again]:
        await ws.close()
    await other.drop()
    logs = replica_logs(gateway)
    assert ATTACKER not in logs and all(address not in logs for address in NAMED)


@pytest.mark.service_env(
    {
        "CHAT_INGEST_STARTS_PER_SOURCE_PER_MINUTE": "3",
        "CHAT_INGEST_TRUSTED_PROXIES": PROXY,
        # The process's budget: what one source may not spend for everyone.
        "CHAT_INGEST_SESSION_START_BURST": "6",
        "CHAT_INGEST_SESSION_STARTS_PER_SECOND": "0.001",
    }
)
async def test_one_address_starts_a_bounded_number_of_chats_and_cannot_spend_everyones_budget(
    gateway: Gateway, attacker: aiohttp.ClientSession, elsewhere: aiohttp.ClientSession
) -> None:
    # A new socket for each start (the per-socket bound is not what stops it), each with a
    # made-up X-Real-IP that is ignored: 3 chats, then refusals, however many it tries.
    sockets = [await connect(attacker, gateway, NAMED[n % len(NAMED)]) for n in range(8)]
    answers = [await start(ws) for ws in sockets]
    assert [a["type"] for a in answers] == ["session"] * 3 + ["error"] * 5, answers
    assert {a["code"] for a in answers[3:]} == {"too_many_starts"}
    assert "try again" in answers[3]["detail"]

    # Its refusals spent nothing of the process's budget: three more clients still get a chat.
    others = [ChatClient(elsewhere, gateway.chat_url) for _ in range(3)]
    for other in others:
        assert (await other.start(line="dv"))["type"] == "session"
        await other.drop()
    for ws in sockets:
        await ws.close()
    logs = replica_logs(gateway)
    assert ATTACKER not in logs and all(address not in logs for address in NAMED)
