"""Leases (shared/lease.py) against the real database: never two holders, even when many
processes race for a new or a lapsed lease; a holder keeps its own; a release frees it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from deploy.local.stack import LocalStack
from shared.lease import Lease


@pytest.fixture
async def leases(stack: LocalStack) -> AsyncIterator[Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_url, tz_aware=True)
    name = "lease" + uuid.uuid4().hex[:8]
    try:
        yield client[name]["leases"]
    finally:
        await client.drop_database(name)
        await client.close()


async def test_racers_for_a_new_or_a_lapsed_lease_get_exactly_one_holder(leases: Any) -> None:
    lease = Lease(leases, 60)
    won = await asyncio.gather(*(lease.take("outbox", f"replica-{i}") for i in range(20)))
    assert won.count(True) == 1
    holder = f"replica-{won.index(True)}"
    assert await lease.take("outbox", holder)  # its own lease, renewed
    assert not await lease.take("outbox", "replica-late")
    # The holder vanished: its lease lapses, and again exactly one of many takes it over.
    await leases.update_one(
        {"_id": "outbox"}, {"$set": {"until": (await leases.find_one())["until"].replace(year=2000)}}
    )
    won = await asyncio.gather(*(lease.take("outbox", f"next-{i}") for i in range(20)))
    assert won.count(True) == 1
    assert await leases.count_documents({}) == 1


async def test_a_released_lease_is_free_and_only_its_holder_releases_it(leases: Any) -> None:
    lease = Lease(leases, 60)
    assert await lease.take("m1", "a")
    await lease.release("m1", "b")  # not b's: nothing happens
    assert not await lease.take("m1", "b")
    await lease.release("m1", "a")
    assert await lease.take("m1", "b")
