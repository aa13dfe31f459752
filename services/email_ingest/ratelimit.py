"""The per-line send rate limit, shared by every email_ingest replica through the database.

A provider limits sends per mailbox, not per process: with two replicas a per-process limit
would let a line send twice its ``send_per_minute``. So each send of a line takes the line's
next number ``n`` by inserting the record ``<line>:<n>`` into ``smtp_send_slots``, with the
time ``at`` it may leave:

    at(n) = max(now, at(n - per_minute) + 60 s)

so no 60 seconds ever hold more than ``per_minute`` sends of a line, and a line that was quiet
sends up to ``per_minute`` replies at once (the burst) before the next ones wait their turn.

Why records and not a counter: FerretDB v1, the MongoDB stand-in of the local stack and the
tests, may apply concurrent conditional updates more than once, so no token bucket or counter
document is kept. Inserting a unique ``_id`` is reliable on both: of two replicas that race for
number ``n`` one gets it and the other takes the next one. Records below
``n - 2 * per_minute`` are never read again and are deleted as the line goes on (FerretDB v1
has no TTL indexes). Times are wall-clock seconds, so replicas on different hosts need
synchronised clocks (NTP), as mail servers do anyway.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

# The limit is "per minute": the window in which at most per_minute sends of a line fall.
WINDOW_SECONDS = 60.0


def send_time(now: float, earlier: float | None, window: float = WINDOW_SECONDS) -> float:
    """When a send may leave: now, unless the send ``per_minute`` places before it left less
    than a window ago (``earlier``; None when there is none), then one window after that one."""
    return now if earlier is None else max(now, earlier + window)


class SendLimit:
    """Reserves send times for the lines' replies; one per service, shared by its senders."""

    def __init__(
        self,
        slots: AsyncCollection[dict[str, Any]],
        window: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.slots = slots
        self.window = window
        self.clock = clock
        self._locks: dict[str, asyncio.Lock] = {}

    async def ensure_indexes(self) -> None:
        # The line's last number is read at every send.
        await self.slots.create_index([("line", 1), ("n", -1)])

    async def reserve(self, line: str, per_minute: int) -> float:
        """Take the line's next send; return the wall-clock time (seconds) it may leave at.

        The caller waits until then, then sends. A reservation is never given back: a send
        that fails or is cancelled leaves its place unused, which only errs on the slow side.
        Raises PyMongoError when the database fails; nothing may be sent then.
        """
        # One reservation of a line at a time in this process: its replies take numbers in
        # arrival order, and only other replicas can race for a number.
        async with self._locks.setdefault(line, asyncio.Lock()):
            n = await self._last(line) + 1
            while True:
                earlier = None
                if n > per_minute:
                    doc = await self.slots.find_one({"_id": f"{line}:{n - per_minute}"}, {"at": 1})
                    earlier = float(doc["at"]) if doc is not None else None
                at = send_time(self.clock(), earlier, self.window)
                try:
                    await self.slots.insert_one({"_id": f"{line}:{n}", "line": line, "n": n, "at": at})
                    break
                except DuplicateKeyError:
                    n = max(n, await self._last(line)) + 1  # another replica took it
        if n % per_minute == 0:
            await self.slots.delete_many({"line": line, "n": {"$lte": n - 2 * per_minute}})
        return at

    async def _last(self, line: str) -> int:
        doc = await self.slots.find_one({"line": line}, {"n": 1}, sort=[("n", -1)])
        return int(doc["n"]) if doc is not None else 0
