"""MongoDB client construction (PyMongo's async API) for the services that own data."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase


def make_client(url: str) -> AsyncMongoClient[dict[str, Any]]:
    # Short server selection: readiness reports a dead database quickly instead of hanging.
    # tz_aware: datetimes come back timezone-aware UTC, as everywhere else in the code.
    return AsyncMongoClient(url, serverSelectionTimeoutMS=3000, tz_aware=True, connect=False)


async def ping(db: AsyncDatabase[dict[str, Any]]) -> bool:
    reply = await db.command("ping")
    return bool(reply.get("ok"))
