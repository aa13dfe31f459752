"""MongoDB client construction (PyMongo's async API) for the services that own data."""

from __future__ import annotations

import asyncio
from typing import Any

from bson.errors import InvalidDocument
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    DuplicateKeyError,
    EncryptionError,
    OperationFailure,
    PyMongoError,
    WriteError,
)

from shared.logs import get_logger
from shared.query_shapes import shapes_listener

log = get_logger(__name__)

DUPLICATE_KEY = 11000


# Server error codes that mean "cannot serve this now, ask again", not "this request is wrong":
# the codes of MongoDB's retryable-writes specification (HostUnreachable 6, HostNotFound 7,
# NetworkTimeout 89, ShutdownInProgress 91, PrimarySteppedDown 189, ExceededTimeLimit 262,
# SocketException 9001, NotWritablePrimary 10107, InterruptedAtShutdown 11600,
# InterruptedDueToReplStateChange 11602, NotPrimaryNoSecondaryOk 13435, NotPrimaryOrSecondary
# 13436), and LockTimeout 24 and WriteConflict 112, which a later attempt resolves.
TRANSIENT_CODES = frozenset({6, 7, 24, 89, 91, 112, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436})
# The local stand-in (FerretDB on SQLite) reports a busy database file as InternalError (code 1)
# carrying SQLite's own words (SQLITE_BUSY, SQLITE_LOCKED): a moment later the write succeeds.
_BUSY = ("database is locked", "sqlite_busy", "database table is locked", "sqlite_locked")
# What libmongocrypt says when the key service (a KMIP server) did not answer, after its own
# retries: an outage of a dependency, as the database's; a key it refuses is not one.
_KEY_SERVICE_AWAY = ("kms request failed due to network error",)


def _key_service_away(cause: BaseException) -> bool:
    return any(text in str(cause).lower() for text in _KEY_SERVICE_AWAY)


def is_transient_database_error(exc: BaseException) -> bool:
    """True when ``exc`` says the database is away, busy or failing over (ask again later),
    False when it is about the request itself (a duplicate key, a document refused, a bug).
    Only the server's error text is inspected; it is never logged."""
    if isinstance(exc, ConnectionFailure):  # unreachable, timed out, no primary selected
        return True
    if isinstance(exc, EncryptionError):  # the vault could not reach its keys, or refused
        return is_transient_database_error(exc.cause) or _key_service_away(exc.cause)
    if not isinstance(exc, PyMongoError):
        return False
    if exc.has_error_label("RetryableWriteError") or exc.has_error_label("TransientTransactionError"):
        return True
    if isinstance(exc, BulkWriteError):
        errors = exc.details.get("writeErrors", [])
        return bool(errors) and all(
            e.get("code") in TRANSIENT_CODES or _busy(str(e.get("errmsg", ""))) for e in errors
        )
    if isinstance(exc, OperationFailure):
        return exc.code in TRANSIENT_CODES or _busy(str(exc))
    return False


def refuses_one_document(exc: BaseException) -> bool:
    """True when ``exc`` is a refusal, for good, of the one document a request carried, which
    another document would not meet: the server's write error for it (a duplicate key
    included: callers that expect one handle it first), the driver's refusal to send it
    (``DocumentTooLarge``, over the 16 MiB a document may hold, is a bson ``InvalidDocument``,
    not a ``PyMongoError``), or the vault's refusal to seal a value under the data key it names
    (that key was deleted). False for what every request would meet: the database away or
    busy (``is_transient_database_error``), no rights, a bad command (``OperationFailure``
    without a write error)."""
    if is_transient_database_error(exc):
        return False
    return isinstance(exc, WriteError | InvalidDocument | EncryptionError)


def _busy(text: str) -> bool:
    lowered = text[:2000].lower()
    return any(marker in lowered for marker in _BUSY)


def make_client(url: str) -> AsyncMongoClient[dict[str, Any]]:
    # Short server selection: readiness reports a dead database quickly instead of hanging.
    # tz_aware: datetimes come back timezone-aware UTC, as everywhere else in the code.
    # event_listeners: the query-shape recorder when HOTLINE_QUERY_SHAPES is set (diagnostics,
    # off by default; shared/query_shapes.py).
    return AsyncMongoClient(
        url,
        serverSelectionTimeoutMS=3000,
        tz_aware=True,
        connect=False,
        event_listeners=shapes_listener(),
    )


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
