"""Schema migrations of the database, applied in order when the store starts.

The database records the last applied migration in ``meta/schema``. Every migration is
idempotent (several store replicas may start at once, and a migration interrupted half-way is
simply run again), so the upgrade path is: back up (``python -m deploy.backup dump``), deploy
the new images, let the store migrate on start. A new migration is appended here, never edited.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from shared import html
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


async def _html_is_sanitised_once(db: Db) -> None:
    # E-mail HTML of another sanitiser version (before the version was kept: none) is
    # sanitised again, once, with the budget, and keeps the current version; a thread view
    # then shows it as stored (api.message_view). Done here rather than on the first view
    # because a view must not wait on the sanitiser, and because one store replica does it
    # for all. Each message off the event loop: the store answers meanwhile. A change of
    # html.VERSION appends a migration that runs this step again.
    async for doc in db["messages"].find(
        {"html": {"$ne": None}, "html_sanitiser": {"$ne": html.VERSION}}, {"html": 1}
    ):
        if not isinstance(doc.get("html"), str):
            continue
        clean = await asyncio.to_thread(html.sanitise, doc["html"])
        await db["messages"].update_one(
            {"_id": doc["_id"]}, {"$set": {"html": clean, "html_sanitiser": html.VERSION}}
        )


MIGRATIONS: list[tuple[int, str, Callable[[Db], Awaitable[None]]]] = [
    (1, "threads count their claims", _claims_are_counted),
    (2, "inbound messages keep their source time", _messages_have_a_received_time),
    (3, "e-mail HTML is sanitised once, with the budget, and keeps its version", _html_is_sanitised_once),
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
