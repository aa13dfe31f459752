"""The last resort of a request: an unexpected failure answers a 500 problem and is logged by
type and place, never with its message or a traceback (which may quote what a person wrote)."""

from __future__ import annotations

import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from shared.http import errors

CANARY = "CANARY-a-survivor-wrote-this"


async def test_an_unexpected_failure_is_a_500_problem_logged_without_its_text() -> None:
    async def handler(request: web.Request) -> web.Response:
        text = (await request.json())["text"]
        raise ValueError(f"could not handle {text}")

    app = web.Application(middlewares=[errors])
    app.router.add_post("/api/threads/{id}/notes", handler)
    with structlog.testing.capture_logs() as logs:
        async with TestClient(TestServer(app)) as client:
            resp = await client.post("/api/threads/t1/notes", json={"text": CANARY})
            body = await resp.text()
    assert resp.status == 500 and resp.content_type == "application/problem+json"
    assert CANARY not in body
    (failed,) = [e for e in logs if e["event"] == "request_failed"]
    assert failed["error"] == "ValueError" and failed["route"] == "/api/threads/{id}/notes"
    where = failed["where"]
    assert where.startswith("tests/unit/test_http_errors.py:") and where.endswith(" in handler")
    assert CANARY not in repr(logs) and "exc_info" not in failed
