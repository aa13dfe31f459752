"""The last resort of a request: an unexpected failure answers a 500 problem and is logged by
type and place, never with its message or a traceback (which may quote what a person wrote);
a database away or busy answers 503 with Retry-After and is one warning."""

from __future__ import annotations

import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pymongo.errors import DuplicateKeyError, OperationFailure

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


async def test_a_busy_database_is_a_503_problem_with_retry_after_and_one_warning() -> None:
    async def handler(request: web.Request) -> web.Response:
        raise OperationFailure(f"database is locked (5) (SQLITE_BUSY) near {CANARY}", 1)

    app = web.Application(middlewares=[errors])
    app.router.add_get("/api/threads", handler)
    with structlog.testing.capture_logs() as logs:
        async with TestClient(TestServer(app)) as client:
            resp = await client.get("/api/threads")
            body = await resp.json(content_type=None)
    assert resp.status == 503 and resp.content_type == "application/problem+json"
    assert int(resp.headers["Retry-After"]) > 0
    assert body["status"] == 503 and CANARY not in repr(body)
    assert [(e["event"], e["log_level"]) for e in logs] == [("request_unavailable", "warning")]
    (line,) = logs
    assert line["error"] == "OperationFailure" and line["route"] == "/api/threads"
    assert "where" not in line and "exc_info" not in line and CANARY not in repr(logs)


async def test_a_database_refusing_the_request_itself_stays_a_500() -> None:
    async def handler(request: web.Request) -> web.Response:
        raise DuplicateKeyError("E11000 duplicate key", 11000)

    app = web.Application(middlewares=[errors])
    app.router.add_post("/api/threads/{id}/notes", handler)
    with structlog.testing.capture_logs() as logs:
        async with TestClient(TestServer(app)) as client:
            resp = await client.post("/api/threads/t1/notes")
    assert resp.status == 500 and "Retry-After" not in resp.headers
    (failed,) = logs
    assert failed["event"] == "request_failed" and failed["log_level"] == "error"
    assert failed["error"] == "DuplicateKeyError" and failed["where"].endswith(" in handler")
