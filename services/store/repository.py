"""Threads, messages, consultants and sessions in MongoDB.

The store owns this data model; the dispatcher writes inbound messages through the same
module so the rules live in one place. Only features both MongoDB 7 and FerretDB v1 have
are used: single-document atomic updates, unique indexes, no transactions.

Idempotency comes from unique indexes, never from reads-before-writes:
- ``threads.key`` is unique: the thread of a chat session or of a first mail is created
  once however many dispatchers race to create it;
- ``messages.source_id`` is unique: a redelivered inbound message, or a consultant's
  reply resent with the same Idempotency-Key, is stored once.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from shared.envelope import DeliveryStatus, InboundMessage, utcnow

Doc = dict[str, Any]


def new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Accepted:
    """What storing one inbound message did."""

    thread: Doc
    thread_created: bool
    message_stored: bool
    reopened: bool


class Repository:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.db = db
        self.threads: AsyncCollection[Doc] = db["threads"]
        self.messages: AsyncCollection[Doc] = db["messages"]
        self.consultants: AsyncCollection[Doc] = db["consultants"]
        self.sessions: AsyncCollection[Doc] = db["sessions"]

    async def ensure_indexes(self) -> None:
        await self.threads.create_index([("key", ASCENDING)], unique=True, name="key_unique")
        await self.threads.create_index(
            [
                ("queue", ASCENDING),
                ("status", ASCENDING),
                ("priority", DESCENDING),
                ("waiting_since", ASCENDING),
            ],
            name="queue_order",
        )
        await self.messages.create_index([("source_id", ASCENDING)], unique=True, name="source_unique")
        await self.messages.create_index(
            [("thread_id", ASCENDING), ("created_at", ASCENDING)], name="thread_messages"
        )
        await self.messages.create_index([("email_message_id", ASCENDING)], name="email_mid")
        await self.sessions.create_index([("expires_at", ASCENDING)], name="expiry")

    # --- threads -----------------------------------------------------------------------

    async def thread(self, thread_id: str) -> Doc | None:
        return await self.threads.find_one({"_id": thread_id})

    async def thread_by_key(self, key: str) -> Doc | None:
        return await self.threads.find_one({"key": key})

    async def create_thread(self, doc: Doc) -> tuple[Doc, bool]:
        """Insert ``doc`` unless a thread with its key exists; return (thread, created)."""
        try:
            await self.threads.insert_one(doc)
            return doc, True
        except DuplicateKeyError:
            existing = await self.thread_by_key(doc["key"])
            if existing is None:  # deleted between the two calls: try once more
                await self.threads.insert_one(doc)
                return doc, True
            return existing, False

    async def thread_for_email_reply(self, msg: InboundMessage) -> Doc | None:
        """The thread a mail replies to, if it names one of our messages AND comes from the
        thread's client. Anything else starts a new thread: a stranger's mail must never
        land in a survivor's thread (PRODUCT.md 3.1)."""
        if msg.email is None:
            return None
        refs = [*msg.email.in_reply_to, *msg.email.references]
        if not refs:
            return None
        ours = await self.messages.find_one({"email_message_id": {"$in": refs}, "direction": "out"})
        if ours is None:
            return None
        thread = await self.thread(ours["thread_id"])
        if thread is None or thread["client"]["address"].casefold() != msg.sender.casefold():
            return None
        return thread

    async def email_thread_by_reference(self, refs: list[str], tokens: list[str]) -> Doc | None:
        """The thread one of our replies (named in ``refs``) belongs to, else the thread whose
        reply token is in ``tokens``. Who may join it is the caller's decision."""
        if refs:
            ours = await self.messages.find_one(
                {"email_message_id": {"$in": refs[:50]}, "direction": "out"}, {"thread_id": 1}
            )
            if ours is not None:
                return await self.thread(ours["thread_id"])
        if tokens:
            return await self.threads.find_one({"reply_token": {"$in": tokens[:50]}, "channel": "email"})
        return None

    async def mark_bounced(self, email_message_ids: list[str], at: datetime, detail: str) -> list[Doc]:
        """Mark our replies named by a delivery-status report as failed, even if the SMTP server
        had accepted them (a bounce comes later). Returns the messages changed."""
        changed: list[Doc] = []
        cursor = self.messages.find({"email_message_id": {"$in": email_message_ids[:50]}, "direction": "out"})
        async for doc in cursor:
            updated = await self.messages.find_one_and_update(
                {"_id": doc["_id"], "delivery.bounced": {"$ne": True}},
                {"$set": {"delivery": {"status": "failed", "at": at, "detail": detail, "bounced": True}}},
                return_document=ReturnDocument.AFTER,
            )
            if updated is not None:
                changed.append(updated)
        return changed

    async def accept_inbound(self, msg: InboundMessage, thread_doc: Doc | None, new_thread: Doc) -> Accepted:
        """Store ``msg`` in ``thread_doc`` (or in ``new_thread``, created if its key is new).

        Safe to call again with the same message: nothing is stored twice.
        """
        created = False
        thread = thread_doc
        if thread is None:
            thread, created = await self.create_thread(new_thread)
        doc: Doc = {
            "_id": msg.message_id,
            "source_id": msg.source_id,
            "thread_id": thread["_id"],
            "direction": "in",
            "author": "client",
            "channel": msg.channel.value,
            "text": msg.text,
            "html": msg.html,
            "subject": msg.subject,
            "created_at": msg.received_at,
        }
        if msg.email is not None:
            doc["email_message_id"] = msg.email.header_message_id
            # E-mail extras: quoted history (folded by the console), attachments (by id),
            # and whether a robot or a backlog import sent it (never auto-answered).
            doc["quoted"] = msg.email.quoted or None
            doc["attachments"] = [a.model_dump() for a in msg.email.attachments]
            doc["email_kind"] = msg.email.kind
            doc["backlog"] = msg.email.backlog
        stored = True
        try:
            await self.messages.insert_one(doc)
        except DuplicateKeyError:
            stored = False
        # Always applied (idempotent), so a dispatcher killed between the two writes
        # leaves nothing half-done once the message is redelivered.
        update: Doc = {"$max": {"last_message_at": msg.received_at}}
        if msg.email is not None and msg.email.header_message_id:
            refs = [*msg.email.references]
            if msg.email.header_message_id not in refs:
                refs.append(msg.email.header_message_id)
            update["$set"] = {
                "email.last_client_message_id": msg.email.header_message_id,
                "email.references": refs[-20:],
            }
        await self.threads.update_one({"_id": thread["_id"]}, update)
        reopened = False
        if not created and thread.get("status") == "closed":
            # Conditional on the database's state, not on our read: two dispatchers racing
            # to reopen the same thread reopen it once.
            reopened_doc = await self.threads.find_one_and_update(
                {"_id": thread["_id"], "status": "closed", "closed_at": {"$lt": msg.received_at}},
                {"$set": {"status": "waiting", "waiting_since": msg.received_at, "assignee": None}},
                return_document=ReturnDocument.AFTER,
            )
            if reopened_doc is not None:
                thread, reopened = reopened_doc, True
        return Accepted(thread, created, stored, reopened)

    async def list_threads(
        self, queues: list[str], status: str | None, assignee: str | None, limit: int = 200
    ) -> list[Doc]:
        query: Doc = {"queue": {"$in": queues}}
        if status:
            query["status"] = status
        if assignee:
            query["assignee"] = assignee
        cursor = (
            self.threads.find(query)
            .sort([("priority", DESCENDING), ("waiting_since", ASCENDING)])
            .limit(limit)
        )
        return [t async for t in cursor]

    async def queue_summary(self, queues: list[str]) -> dict[str, Doc]:
        """Waiting count and oldest waiting time per queue.

        Two indexed queries per queue rather than one ``$group``: FerretDB v1 lacks the
        ``$min`` accumulator, and a hotline has a handful of queues.
        """
        summary: dict[str, Doc] = {}
        for queue in queues:
            query = {"queue": queue, "status": "waiting"}
            oldest = await self.threads.find_one(
                query, {"waiting_since": 1}, sort=[("waiting_since", ASCENDING)]
            )
            summary[queue] = {
                "waiting": await self.threads.count_documents(query),
                "oldest_waiting_since": oldest["waiting_since"] if oldest else None,
            }
        return summary

    async def claim_next(self, queue: str, login: str) -> Doc | None:
        """Atomically hand the highest-priority, longest-waiting thread of ``queue`` to ``login``."""
        now = utcnow()
        return await self.threads.find_one_and_update(
            {"queue": queue, "status": "waiting"},
            {"$set": {"status": "active", "assignee": login, "claimed_at": now, "updated_at": now}},
            sort=[("priority", DESCENDING), ("waiting_since", ASCENDING)],
            return_document=ReturnDocument.AFTER,
        )

    async def claim(self, thread_id: str, login: str) -> Doc | None:
        """Claim one thread; None when someone else holds it or it is closed."""
        now = utcnow()
        return await self.threads.find_one_and_update(
            {
                "_id": thread_id,
                "$or": [{"status": "waiting"}, {"assignee": login}],
                "status": {"$ne": "closed"},
            },
            {"$set": {"status": "active", "assignee": login, "claimed_at": now, "updated_at": now}},
            return_document=ReturnDocument.AFTER,
        )

    async def close(self, thread_id: str, login: str, case: Doc) -> Doc | None:
        now = utcnow()
        return await self.threads.find_one_and_update(
            {"_id": thread_id, "status": "active", "assignee": login},
            {
                "$set": {
                    "status": "closed",
                    "closed_at": now,
                    "closed_by": login,
                    "case": case,
                    "updated_at": now,
                }
            },
            return_document=ReturnDocument.AFTER,
        )

    # --- messages ------------------------------------------------------------------------

    async def thread_messages(self, thread_id: str) -> list[Doc]:
        cursor = self.messages.find({"thread_id": thread_id}).sort("created_at", ASCENDING)
        return [m async for m in cursor]

    async def add_reply(
        self, thread: Doc, login: str, text: str, idempotency_key: str, email_domain: str
    ) -> tuple[Doc, bool]:
        """Store a consultant's reply once per (consultant, Idempotency-Key); (doc, created)."""
        message_id = new_id()
        now = utcnow()
        doc: Doc = {
            "_id": message_id,
            "source_id": f"reply:{login}:{idempotency_key}",
            "thread_id": thread["_id"],
            "direction": "out",
            "author": f"consultant:{login}",
            "channel": thread["channel"],
            "text": text,
            "created_at": now,
            "delivery": {"status": DeliveryStatus.QUEUED.value, "at": now},
        }
        if thread["channel"] == "email":
            # Opaque: says nothing about the client; carries the thread's reply token so a
            # reply to it can be matched even if a client's mailer trims References.
            doc["email_message_id"] = f"<{message_id}.{thread['reply_token']}@{email_domain}>"
        try:
            await self.messages.insert_one(doc)
        except DuplicateKeyError:
            existing = await self.messages.find_one({"source_id": doc["source_id"]})
            assert existing is not None
            return existing, False
        await self.threads.update_one(
            {"_id": thread["_id"]}, {"$set": {"updated_at": now, "last_reply_at": now}}
        )
        return doc, True

    async def mark_published(self, message_id: str) -> None:
        await self.messages.update_one({"_id": message_id}, {"$set": {"published": True}})

    async def set_delivery(
        self, message_id: str, status: str, at: datetime, detail: str | None
    ) -> Doc | None:
        # A later report never overwrites a final one with an earlier state.
        return await self.messages.find_one_and_update(
            {"_id": message_id, "delivery.status": {"$ne": DeliveryStatus.SENT.value}},
            {"$set": {"delivery": {"status": status, "at": at, "detail": detail}}},
            return_document=ReturnDocument.AFTER,
        )

    # --- consultants and sessions --------------------------------------------------------

    async def consultant(self, login: str) -> Doc | None:
        return await self.consultants.find_one({"_id": login})

    async def upsert_consultant(self, doc: Doc) -> None:
        await self.consultants.replace_one({"_id": doc["_id"]}, doc, upsert=True)

    async def create_session(self, token_hash: str, login: str, csrf: str, expires_at: datetime) -> None:
        await self.sessions.insert_one(
            {"_id": token_hash, "login": login, "csrf": csrf, "expires_at": expires_at}
        )

    async def session(self, token_hash: str) -> Doc | None:
        return await self.sessions.find_one({"_id": token_hash, "expires_at": {"$gt": utcnow()}})

    async def delete_session(self, token_hash: str) -> None:
        await self.sessions.delete_one({"_id": token_hash})


def new_reply_token() -> str:
    return secrets.token_urlsafe(12)
