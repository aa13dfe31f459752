"""Live console sockets end with their session (issue 15): logging out, or an admin disabling
the account, closes that login's /api/events sockets at once, on every store replica, and they
hear no further event; other people's sockets stay open."""

from __future__ import annotations

import asyncio

import aiohttp

from deploy.local.stack import free_ports
from services.store.events import SESSION_ENDED_CODE
from tests.conftest import Gateway
from tests.integration.helpers import Consultant
from tests.integration.test_access_matrix import add_user, start_chat


def second_store(gateway: Gateway) -> str:
    """Another store replica on the same broker and database; returns its URL."""
    (port,) = free_ports(1)
    gateway.processes.start(
        "store", {**gateway.env["store"], "STORE_HTTP_PORT": str(port)}, replica="store_b"
    )
    gateway.processes.wait_ready({**gateway.ports, "store_b": port})
    return f"http://127.0.0.1:{port}"


async def closed(c: Consultant) -> aiohttp.WSMessage:
    """The next frame of ``c``'s socket, which must be its closing: not one event more."""
    assert c.events is not None
    msg = await c.events.receive(timeout=15)
    assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == SESSION_ENDED_CODE, msg
    return msg


async def consultant(url: str, login: str, password: str) -> Consultant:
    c = Consultant(url)
    await c.login(login, password)
    await c.open_events()
    return c


async def test_logout_and_disabling_close_the_logins_sockets_on_every_replica(gateway: Gateway) -> None:
    gateway.seed_demo_accounts()
    assert (
        add_user(
            gateway, "add-user", "--login=olga", "--role=admin", "--lines=113,dv", "--password-stdin",
            password="olga-admin-password",
        ).returncode
        == 0
    )  # fmt: skip
    url_b = await asyncio.to_thread(second_store, gateway)
    anna_a = await consultant(gateway.store_url, "anna", "anna-demo")
    anna_b = await consultant(url_b, "anna", "anna-demo")  # another session, another replica
    boris_a = await consultant(gateway.store_url, "boris", "boris-demo")
    boris_b = await consultant(url_b, "boris", "boris-demo")
    sofia = await consultant(url_b, "sofia", "sofia-demo")
    olga = await consultant(gateway.store_url, "olga", "olga-admin-password")
    try:
        # Log-out on replica A closes that session's socket; Anna's other session keeps hers.
        assert (await anna_a.call("DELETE", "/api/session"))[0] == 200
        await closed(anna_a)
        async with aiohttp.ClientSession() as http:
            await start_chat(http, gateway, "вопрос", line="113", region="minsk")
        queued = await anna_b.wait_event(lambda e: e["name"] == "ThreadQueued")
        await sofia.wait_event(lambda e: e["thread_id"] == queued["thread_id"])

        # Disabling Boris closes both his sockets, on both replicas, before any later event.
        assert (await olga.call("POST", "/api/users/boris/disable"))[0] == 200
        for socket in (boris_a, boris_b):
            await closed(socket)
        async with aiohttp.ClientSession() as http:
            await start_chat(http, gateway, "ещё вопрос", line="113", region="minsk")
        later = await sofia.wait_event(
            lambda e: e["name"] == "ThreadQueued" and e["thread_id"] != queued["thread_id"]
        )
        await anna_b.wait_event(lambda e: e["thread_id"] == later["thread_id"])
        # A closed socket stays closed, and its cookie opens no new one.
        for c in (anna_a, boris_a, boris_b):
            assert c.events is not None and c.events.closed
            async with c.http.get(c.base + "/api/events") as resp:
                assert resp.status == 401
    finally:
        for c in (anna_a, anna_b, boris_a, boris_b, sofia, olga):
            await c.close()
