"""Leases in the database: which one of several processes may do a thing now.

A lease is a document keyed by what it guards, naming its holder and when it lapses. Taken by
a unique insert; a lapsed one is removed with ``delete_one`` before it is taken again. Both
are exact on MongoDB 7 and on the FerretDB v1 stand-in with or without its patch
(reviews/ferretdb.md section 2: a unique insert and delete_one's count are the exact
primitives there), so a lease never has two holders. A holder renews its lease while it
works and releases it when done; one that vanishes loses it ``seconds`` after its last renewal.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from shared.envelope import utcnow


class Lease:
    def __init__(self, leases: AsyncCollection[dict[str, Any]], seconds: float) -> None:
        self.leases = leases
        self.seconds = seconds

    async def take(self, key: str, holder: str) -> bool:
        """True when ``holder`` holds the lease on ``key`` now (new, already its own, or lapsed)."""
        if await self._insert(key, holder):
            return True
        current = await self.leases.find_one({"_id": key})
        if current is not None and current.get("holder") == holder:
            await self.renew(key, holder)
            return True
        lapsed = await self.leases.delete_one({"_id": key, "until": {"$lt": utcnow()}})
        return lapsed.deleted_count == 1 and await self._insert(key, holder)

    async def _insert(self, key: str, holder: str) -> bool:
        try:
            await self.leases.insert_one({"_id": key, "holder": holder, "until": self._until()})
        except DuplicateKeyError:
            return False
        return True

    async def renew(self, key: str, holder: str) -> None:
        await self.leases.update_one({"_id": key, "holder": holder}, {"$set": {"until": self._until()}})

    async def release(self, key: str, holder: str) -> None:
        await self.leases.delete_one({"_id": key, "holder": holder})

    def _until(self) -> datetime:
        return utcnow() + timedelta(seconds=self.seconds)
