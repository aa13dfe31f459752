"""MongoDB client construction (PyMongo's async API) for the services that own data."""

from __future__ import annotations

import asyncio
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, ConnectionFailure, DuplicateKeyError, WriteError

from shared.logs import get_logger

log = get_logger(__name__)

DUPLICATE_KEY = 11000


def make_client(url: str) -> AsyncMongoClient[dict[str, Any]]:
    # Short server selection: readiness reports a dead database quickly instead of hanging.
    # tz_aware: datetimes come back timezone-aware UTC, as everywhere else in the code.
    return AsyncMongoClient(url, serverSelectionTimeoutMS=3000, tz_aware=True, connect=False)


async def ping(db: AsyncDatabase[dict[str, Any]]) -> bool:
    reply = await db.command("ping")
    return bool(reply.get("ok"))


class InsertBatcher:
    """Concurrent ``insert_one`` calls on one collection, written as one unordered
    ``insert_many`` (group commit).

    The first caller's document is written at once; documents that arrive while a write
    is in flight go together in the next one. Under light load nothing waits for a batch
    to fill; under heavy load the database does one command (one transaction) for many
    documents instead of one each. Each caller learns its own document's outcome: stored,
    or a duplicate of the unique key (``False``); any other failure is raised to the
    callers whose documents it concerns (all of them when the database is unreachable).
    """

    def __init__(self, collection: AsyncCollection[dict[str, Any]], max_batch: int = 200) -> None:
        self.collection = collection
        self.max_batch = max_batch
        self._pending: list[tuple[dict[str, Any], asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def insert(self, doc: dict[str, Any]) -> bool:
        """Write ``doc``; True when stored, False when a unique index already holds its key."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((doc, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        return await future

    async def _write(self) -> None:
        while self._pending:
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            try:
                await self._write_batch(batch)
            except BaseException as exc:  # cancelled at shutdown: nobody is left waiting
                failure = exc if isinstance(exc, Exception) else ConnectionError("insert interrupted")
                for _, future in batch + self._pending:
                    if not future.done():
                        future.set_exception(failure)
                self._pending.clear()
                raise

    async def _write_batch(self, batch: list[tuple[dict[str, Any], asyncio.Future[bool]]]) -> None:
        try:
            await self.collection.insert_many([doc for doc, _ in batch], ordered=False)
        except BulkWriteError as exc:
            failed: dict[int, dict[str, Any]] = {e["index"]: e for e in exc.details.get("writeErrors", [])}
            for index, (_, future) in enumerate(batch):
                error = failed.get(index)
                if error is None:
                    future.set_result(True)
                elif error.get("code") == DUPLICATE_KEY:
                    future.set_result(False)
                else:
                    future.set_exception(WriteError(error.get("errmsg", ""), error.get("code"), error))
            if exc.details.get("writeConcernErrors"):
                log.warning("insert_write_concern_error", collection=self.collection.name)
        except ConnectionFailure as exc:  # the database is away: every caller retries
            for _, future in batch:
                future.set_exception(exc)
        except Exception as exc:
            if len(batch) == 1:
                batch[0][1].set_exception(exc)
                return
            # One document the database or the driver refused: each alone, so the failure
            # lands on its own caller, never on the others that happened to share the write.
            for doc, future in batch:
                try:
                    await self.collection.insert_one(doc)
                except DuplicateKeyError:
                    future.set_result(False)
                except Exception as one:
                    future.set_exception(one)
                else:
                    future.set_result(True)
        else:
            for _, future in batch:
                future.set_result(True)
