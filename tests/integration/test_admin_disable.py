"""Disabling an account with the operator command does what the API's disable does: the
person's sessions end and every thread they held goes back to its queue, with the release in
the thread's history, so no client is left waiting for someone who can no longer log in."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.conftest import Gateway
from tests.integration.helpers import Consultant
from tests.integration.test_access_matrix import add_user, start_chat


async def test_the_disable_command_gives_the_persons_threads_back_to_their_queues(
    gateway: Gateway, vera: Consultant
) -> None:
    async with aiohttp.ClientSession() as http:
        await start_chat(http, gateway, "Мне нужна помощь", line="dv")
    queued = await vera.wait_event(lambda e: e["name"] == "ThreadQueued")
    status, thread = await vera.call("POST", "/api/queues/gp-dv/next")
    assert status == 200 and thread["id"] == queued["thread_id"] and thread["assignee"] == "vera"

    done = await asyncio.to_thread(add_user, gateway, "disable-user", "--login=vera", password="")
    assert done.returncode == 0, done.stderr
    assert "1 thread(s) back in their queues" in done.stdout

    sofia = Consultant(gateway.store_url)
    try:
        await sofia.login("sofia", "sofia-demo")
        status, released = await sofia.call("GET", f"/api/threads/{thread['id']}")
        assert status == 200 and released["status"] == "waiting" and released["assignee"] is None
        status, history = await sofia.call("GET", f"/api/threads/{thread['id']}/history")
        assert status == 200
        assert [(e["name"], e["by"], e["data"].get("reason")) for e in history][-1] == (
            "ThreadReleased",
            "admin-command",
            "disabled",
        )
    finally:
        await sofia.close()
    assert (await vera.call("GET", "/api/me"))[0] == 401  # her sessions ended too
