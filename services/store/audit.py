"""Who read which thread or case, and when (QUALITY.md 4: every read of a thread by a person;
issue 17: every read of a case).

One record per read, written before the thread or case is sent, so a read that is not recorded
is never answered. Records hold the reader's login, the thread or case id, the route and the
time: no client data, no IP address.
"""

from __future__ import annotations

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from conversations.identity import new_id
from conversations.repository import Doc
from shared.envelope import utcnow


class ReadAudit:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.reads: AsyncCollection[Doc] = db["thread_reads"]
        self.case_reads: AsyncCollection[Doc] = db["case_reads"]

    async def ensure_indexes(self) -> None:
        await self.reads.create_index([("thread_id", ASCENDING), ("at", ASCENDING)], name="thread_reads")
        await self.reads.create_index([("login", ASCENDING), ("at", ASCENDING)], name="reader_reads")
        await self.case_reads.create_index([("case_id", ASCENDING), ("at", ASCENDING)], name="case_reads")
        await self.case_reads.create_index([("login", ASCENDING), ("at", ASCENDING)], name="reader_reads")

    async def record(self, thread_id: str, login: str, what: str) -> None:
        await self.reads.insert_one(
            {"_id": new_id(), "thread_id": thread_id, "login": login, "what": what, "at": utcnow()}
        )

    async def of_thread(self, thread_id: str, limit: int = 500) -> list[Doc]:
        cursor = self.reads.find({"thread_id": thread_id}).sort("at", DESCENDING).limit(limit)
        return [r async for r in cursor]

    async def record_case(self, case_id: str, login: str, what: str) -> None:
        await self.case_reads.insert_one(
            {"_id": new_id(), "case_id": case_id, "login": login, "what": what, "at": utcnow()}
        )

    async def of_case(self, case_id: str, limit: int = 500) -> list[Doc]:
        cursor = self.case_reads.find({"case_id": case_id}).sort("at", DESCENDING).limit(limit)
        return [r async for r in cursor]
