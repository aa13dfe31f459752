"""The console's live events socket: a writer that fails closes its socket, never leaves it deaf."""

from __future__ import annotations

from typing import Any, cast

import aiohttp
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from services.store.auth import COOKIE, Sessions, User
from services.store.events import INTERNAL_ERROR_CODE, ConsoleHub
from shared.supervise import Supervisor

ANNA = User("anna", "Anna", "consultant", "lastrada", ["113"])


class OneSession:
    """The session check of a logged-in consultant (the hub asks nothing else of Sessions)."""

    async def resolve(self, token: str | None) -> tuple[User, str] | None:
        return (ANNA, "csrf") if token == "live" else None


async def test_a_console_writer_that_fails_closes_its_socket_and_is_counted() -> None:
    registry = CollectorRegistry()
    hub = ConsoleHub(
        cast(Sessions, OneSession()), lambda user: ["113-triage"], supervisor=Supervisor(registry)
    )
    app = web.Application()
    app.router.add_get("/api/events", hub.handle_ws)
    async with TestClient(TestServer(app), cookies={COOKIE: "live"}) as client:
        ws = await client.ws_connect("/api/events")
        hello = await ws.receive_json(timeout=5)
        assert hello["type"] == "hello"
        (queued,) = hub.clients.values()
        # What no frame of ours is (str is all send_str takes): the writer raises TypeError.
        queued.outbox.put_nowait(cast(Any, object()))
        with structlog.testing.capture_logs() as logs:
            msg = await ws.receive(timeout=5)
        assert msg.type is aiohttp.WSMsgType.CLOSE, msg
        assert ws.close_code == INTERNAL_ERROR_CODE
        assert hub.clients == {}
    (failed,) = [e for e in logs if e["event"] == "task_failed"]
    assert failed["task"] == "console-writer" and failed["error"] == "TypeError"
    value = registry.get_sample_value(
        "hotline_task_failures_total", {"task": "console-writer", "error": "TypeError"}
    )
    assert value == 1
