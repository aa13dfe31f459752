"""Which e-mail senders a line answered automatically lately: at most one automatic answer per
sender and line per period, so an auto-responder cannot loop with us (RFC 3834 2: a responder
"SHOULD NOT" answer the same sender more than once within a period of several days).

Its decision is the dispatcher's (services/dispatcher/dispatch.py); this module holds the record:

- ``answered_senders`` ``{_id: "<line>:<client key>", holder: <the answer's source id>, until}``.
  The client key is the keyed hash of the address (conversations/clients.py), never the address.
  A record is a lease (shared/lease.py): taken by a unique insert, and a lapsed one is deleted
  with ``delete_one`` before it is taken again, both exact on MongoDB 7 and on FerretDB v1, so
  two replicas never both answer one sender. The answer it was taken for takes it again (a
  redelivered message whose dispatcher died before sending): that is the same answer, sent once
  by its source id.
- Records expire by themselves: :meth:`AnsweredSenders.prune` (the dispatcher's sweeper) deletes
  the lapsed ones; a lapsed one still there is free to take. A TTL index would do the deleting on
  MongoDB, but FerretDB v1 refuses TTL indexes (code 238; shared/reviews/ferretdb.md section 3),
  so the sweep is the mechanism everywhere.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from shared.lease import Lease

COLLECTION = "answered_senders"


class AnsweredSenders:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.records: AsyncCollection[dict[str, Any]] = db[COLLECTION]

    async def ensure_indexes(self) -> None:
        await self.records.create_index([("until", ASCENDING)], name="expiry")

    async def take(self, line: str, client_key: str, answer_id: str, period: timedelta) -> bool:
        """True when automatic answer ``answer_id`` of ``line`` may go to the sender keyed
        ``client_key``: no other answer went to them within ``period``. Recorded before the
        answer is stored, so of two replicas answering one sender at once only one may."""
        lease = Lease(self.records, period.total_seconds())
        return await lease.take(f"{line}:{client_key}", answer_id)

    async def prune(self, now: datetime) -> int:
        """Delete the records whose period is over; returns how many."""
        return (await self.records.delete_many({"until": {"$lt": now}})).deleted_count
