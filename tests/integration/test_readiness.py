"""Readiness per dependency: each service is ready when what its own job needs works, and
``/readyz`` names what is missing. While the database is down, chat_ingest still takes chat
(the broker is all it needs), so it stays ready and reports the database as degraded; the
dispatcher and the store, which cannot do their job, are not ready and name the database."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.conftest import Gateway
from tests.integration.helpers import readyz

pytestmark = pytest.mark.slow


async def until(gateway: Gateway, expected: dict[str, int], within: float = 60) -> dict[str, Any]:
    """Poll every service's /readyz (other processes: nothing to await) until each answers
    the expected status; return the bodies."""
    began = time.monotonic()
    while True:
        answers = {name: await asyncio.to_thread(readyz, gateway.ports[name]) for name in expected}
        if all(answers[n][0] == status for n, status in expected.items()):
            return {n: body for n, (_, body) in answers.items()}
        assert time.monotonic() - began < within, answers
        await asyncio.sleep(0.5)


async def test_a_database_outage_leaves_chat_ready_and_names_the_database_elsewhere(
    gateway: Gateway,
) -> None:
    everyone = dict.fromkeys(("store", "dispatcher", "email_ingest", "chat_ingest"), 200)
    await until(gateway, everyone)
    await asyncio.to_thread(gateway.stack.kill_database)
    try:
        down = await until(
            gateway, {"chat_ingest": 200, "dispatcher": 503, "store": 503, "email_ingest": 503}
        )
    finally:
        await asyncio.to_thread(gateway.stack.start_database)
    assert down["chat_ingest"]["checks"]["database"] is False
    assert down["chat_ingest"]["degraded"] == ["database"] and down["chat_ingest"]["missing"] == []
    for name in ("dispatcher", "store", "email_ingest"):
        assert down[name]["missing"] == ["database"], down[name]
    back = await until(gateway, everyone)
    assert all(body["missing"] == [] and body["degraded"] == [] for body in back.values()), back
