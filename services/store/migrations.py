"""Schema migrations of the database, applied in order when the store starts.

The database records the last applied migration in ``meta/schema``. Every migration is
idempotent (several store replicas may start at once, and a migration interrupted half-way is
simply run again), so the upgrade path is: back up (``python -m deploy.backup dump``), deploy
the new images, let the store migrate on start. A new migration is appended here, never edited.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from shared.envelope import utcnow
from shared.logs import get_logger

log = get_logger(__name__)

Db = AsyncDatabase[dict[str, Any]]


async def _claims_are_counted(db: Db) -> None:
    # Claims became unique records claims/<thread>:<n>; a thread counts its claims from 0.
    await db["threads"].update_many({"claim_seq": {"$exists": False}}, {"$set": {"claim_seq": 0}})


async def _messages_have_a_received_time(db: Db) -> None:
    # Stored time (created_at) orders a thread; the source's own time is kept beside it.
    async for doc in db["messages"].find(
        {"direction": "in", "received_at": {"$exists": False}}, {"created_at": 1}
    ):
        await db["messages"].update_one({"_id": doc["_id"]}, {"$set": {"received_at": doc["created_at"]}})


MIGRATIONS: list[tuple[int, str, Callable[[Db], Awaitable[None]]]] = [
    (1, "threads count their claims", _claims_are_counted),
    (2, "inbound messages keep their source time", _messages_have_a_received_time),
]


async def schema_version(db: Db) -> int:
    doc = await db["meta"].find_one({"_id": "schema"})
    return int(doc["version"]) if doc else 0


async def migrate(db: Db) -> list[int]:
    """Apply every migration newer than the database's version; returns those applied."""
    applied = []
    current = await schema_version(db)
    for version, title, step in MIGRATIONS:
        if version <= current:
            continue
        log.info("migration_started", version=version, title=title)
        await step(db)
        await db["meta"].update_one(
            {"_id": "schema"}, {"$max": {"version": version}, "$set": {"migrated_at": utcnow()}}, upsert=True
        )
        applied.append(version)
    return applied
