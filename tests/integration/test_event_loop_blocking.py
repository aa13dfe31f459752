"""No blocking call in the event loop: the four services run under a watch of their loops
(tests/integration/loop_watch.py: an audit hook for file opens, sleeps, subprocesses and
blocking sockets inside a loop callback, and each callback's CPU time), while a chat, a mail
and a consultant's day go through the hot handlers; the watch must report nothing."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid

import aiohttp
import pytest

from deploy.local.services import SERVICES
from tests.conftest import Gateway
from tests.integration.chat_client import ChatClient
from tests.integration.helpers import Consultant, Mailbox, logged_in, mail, new_message_id
from tests.integration.loop_watch import ARMED, PREFIX


def findings(logs: str) -> list[dict[str, object]]:
    lines = [line.split(PREFIX, 1)[1].strip() for line in logs.splitlines() if line.startswith(PREFIX)]
    return [json.loads(line) for line in lines if line != ARMED]


async def arm(gateway: Gateway) -> None:
    """Arm each service's watch and wait until each says so."""
    for proc in gateway.processes.procs.values():
        proc.send_signal(signal.SIGUSR1)

    async def armed() -> None:
        while gateway.logs().count(f"{PREFIX} {ARMED}") < len(gateway.processes.procs):  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # log files: nothing pushes a line

    await asyncio.wait_for(armed(), 10)


@pytest.mark.service_wrap("tests.integration.loop_watch")
async def test_the_hot_handlers_make_no_blocking_call_on_the_event_loop(
    gateway: Gateway, vera: Consultant
) -> None:
    await arm(gateway)
    sofia: Consultant = await logged_in(gateway.store_url, "sofia")
    await sofia.open_events()
    try:
        async with aiohttp.ClientSession() as http:
            # A chat: start, three messages, the consultant claims, opens, replies, closes.
            client = ChatClient(http, gateway.chat_url)
            await client.start(line="dv", language="ru")
            for text in ("Здравствуйте", "Мне нужна помощь", "Вы здесь?"):
                await client.say(text)
            queued = await vera.wait_event(lambda e: e["name"] == "ThreadQueued")
            thread_id = queued["thread_id"]
            for path in ("/api/queues", "/api/threads?status=waiting", "/api/config", "/api/me"):
                status, _ = await vera.call("GET", path)
                assert status == 200, path
            status, _ = await vera.call("POST", "/api/queues/gp-dv/next")
            assert status == 200
            status, _ = await vera.call("GET", f"/api/threads/{thread_id}")
            assert status == 200
            status, reply = await vera.call(
                "POST",
                f"/api/threads/{thread_id}/messages",
                {"text": "Здравствуйте, я здесь."},
                {"Idempotency-Key": uuid.uuid4().hex},
            )
            assert status == 202, reply
            await client.wait(lambda: reply["id"] in client.shown)
            status, body = await vera.call(
                "POST", f"/api/threads/{thread_id}/close", {"outcome": "no_consultation", "reason": "spam"}
            )
            assert status == 200, body
            await client.drop()

            # A mail: fetched over IDLE, stored, queued, answered automatically.
            inbox = Mailbox("127.0.0.1", gateway.urls.imap_port, gateway.line_mailbox)
            await inbox.append(
                mail(
                    f"{gateway.client_mailbox}@demo.test",
                    f"{gateway.line_mailbox}@demo.test",
                    "Работа за границей",
                    "Мне предложили работу в Польше.",
                    new_message_id(),
                )
            )
            mailed = await sofia.wait_event(lambda e: e["name"] == "ThreadQueued")
            status, _ = await sofia.call("GET", f"/api/threads/{mailed['thread_id']}")
            assert status == 200

            # A supervisor's reads: the queue, statistics, a search; each service's metrics.
            for path in ("/api/threads?status=waiting", "/api/supervisor", "/api/stats"):
                status, _ = await sofia.call("GET", path)
                assert status == 200, path
            status, _ = await sofia.call("POST", "/api/search", {"text": "Польше"})
            assert status == 200
            for name in SERVICES:
                async with http.get(f"http://127.0.0.1:{gateway.ports[name]}/metrics") as r:
                    assert r.status == 200
    finally:
        await sofia.close()
    served = findings(gateway.logs())
    assert served == [], "\n".join(json.dumps(f, ensure_ascii=False) for f in served)
