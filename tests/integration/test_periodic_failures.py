"""A loop that runs in passes (the outbox, held replies; the dispatcher's sweeper, the store's
metrics, retention and the chat sweeps follow the same rule) on a real database: an outage
is one warning for all the passes it fails, without a place, and one line when a pass
completes again; a failure of the pass itself (here a command the database refuses) is an
error with its type and place, every time."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import structlog
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

from conversations.outbound import periodically
from deploy.local.stack import LocalStack
from shared.mongo import make_client
from shared.supervise import Heartbeat

EVERY = 0.05  # seconds between passes: the test waits for passes, not for time


@pytest.fixture
async def collection(stack: LocalStack) -> AsyncIterator[AsyncCollection[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = make_client(stack.mongo_url)
    name = "p" + uuid.uuid4().hex[:10]
    try:
        yield client[name]["passes"]
    finally:
        await client.drop_database(name)
        await client.close()


class Passes:
    """A loop of ``periodically`` whose passes and beats a test can await."""

    def __init__(self, one_pass: Callable[[], Any]) -> None:
        self.one_pass = one_pass
        self.failed = 0
        self.beats = 0
        self.changed = asyncio.Event()
        self.heartbeat = Heartbeat("test", None, False, _on_beat=self._beat)

    def _beat(self, _name: str) -> None:
        self.beats += 1
        self.changed.set()

    async def run_pass(self) -> None:
        try:
            await self.one_pass()
        except Exception:
            self.failed += 1
            self.changed.set()
            raise

    async def until(self, done: Callable[[], bool], within: float = 60) -> None:
        async def wait() -> None:
            while not done():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), within)


@pytest.mark.slow
async def test_a_database_outage_is_one_warning_and_its_end_one_line(
    stack: LocalStack, collection: AsyncCollection[dict[str, Any]]
) -> None:
    passes = Passes(lambda: collection.find_one({"_id": "x"}))
    with structlog.testing.capture_logs() as logs:
        loop = asyncio.create_task(periodically(passes.run_pass, EVERY, passes.heartbeat, "t_pass_failed"))
        try:
            await passes.until(lambda: passes.beats >= 1)
            await asyncio.to_thread(stack.kill_database)
            try:
                await passes.until(lambda: passes.failed >= 3)
            finally:
                await asyncio.to_thread(stack.start_database)
            beats = passes.beats
            await passes.until(lambda: passes.beats > beats)
        finally:
            loop.cancel()
            with pytest.raises(asyncio.CancelledError):
                await loop
    failed = [e for e in logs if e["event"] == "t_pass_failed"]
    assert [(e["log_level"], e["transient"]) for e in failed] == [("warning", True)]
    assert failed[0]["error"] in {"AutoReconnect", "ServerSelectionTimeoutError", "NetworkTimeout"}
    assert "where" not in failed[0] and "exc_info" not in failed[0]
    (back,) = [e for e in logs if e["event"] == "dependency_back"]
    assert back["after"] == "t_pass_failed" and back["failed_passes"] >= 3


async def test_a_pass_the_database_refuses_is_an_error_with_its_place_each_time(
    collection: AsyncCollection[dict[str, Any]],
) -> None:
    async def refused() -> None:
        # A command the database does not know (CommandNotFound, 59): the request is wrong,
        # asking again will not help.
        await collection.database.command("noSuchCommandOfOurs")

    passes = Passes(refused)
    with structlog.testing.capture_logs() as logs:
        loop = asyncio.create_task(periodically(passes.run_pass, EVERY, passes.heartbeat, "t_pass_failed"))
        try:
            await passes.until(lambda: passes.failed >= 2)
        finally:
            loop.cancel()
            with pytest.raises(asyncio.CancelledError):
                await loop
    failed = [e for e in logs if e["event"] == "t_pass_failed"]
    assert len(failed) >= 2 and {e["log_level"] for e in failed} == {"error"}
    assert {e["error"] for e in failed} == {"OperationFailure"}
    assert all(e["where"].startswith("tests/integration/test_periodic_failures.py:") for e in failed)
    assert all(e["where"].endswith(" in refused") for e in failed)
    assert passes.beats == 0 and not [e for e in logs if e["event"] == "dependency_back"]
