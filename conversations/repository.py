"""Threads, messages, consultants and sessions in MongoDB: the only door to them.

Every service reaches this data through this module (the store's API, the dispatcher writing
inbound messages, chat_ingest's sessions), so the rules live in one place. Only features both
MongoDB 7 and FerretDB v1 have are used: single-document atomic updates, unique indexes, no transactions.

Idempotency comes from unique indexes, never from reads-before-writes:
- ``threads.key`` is unique: the thread of a chat session or of a first mail is created
  once however many dispatchers race to create it;
- ``messages.source_id`` is unique: a redelivered inbound message, or a consultant's
  reply resent with the same Idempotency-Key, is stored once.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from bson.binary import Binary
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from conversations import client_left
from conversations.answered_senders import AnsweredSenders
from conversations.clients import ClientRepository
from conversations.contact_plan import NOT_OUT, ContactPlans
from conversations.email_threading import our_message_ids
from conversations.identity import new_id, session_thread_key, thread_id_for
from conversations.model import Outcome, ThreadStatus, address_kept, closed_consultation
from conversations.rawmail import ATTACHMENTS, RAW_MAILS
from conversations.search import SearchIndex
from conversations.vault import SEALED, Vault, open_attachment_names, seal_fields
from shared.envelope import DeliveryStatus, InboundMessage, utcnow
from shared.mongo import InsertBatcher

Doc = dict[str, Any]


# How long a claim may stay half-done (claim stored, thread not yet updated) before others
# complete it: far longer than the two writes take, far shorter than a client's patience.
STALE_CLAIM_SECONDS = 10
# The outbox's list (Repository.outbox): messages read by one query; how old an entry whose
# message is not stored (its insert failed, or the request was retried under another id) is
# before it is deleted, far longer than any insert takes.
OUTBOX_READ = 500
OUTBOX_ORPHAN_AFTER = timedelta(hours=1)


def _consultation_of(thread: Doc) -> Doc:
    """The document of the consultation ``thread`` (closed) has just ended, from what the
    close stored on the thread."""
    outcome = Outcome(thread.get("outcome") or Outcome.CONSULTATION)
    return closed_consultation(
        thread,
        outcome=outcome,
        reason=thread.get("no_consultation_reason") if outcome is Outcome.NO_CONSULTATION else None,
        case=thread.get("case") if outcome is Outcome.CONSULTATION else None,
        facts=thread.get("facts") or {},
    )


def _closed_by(login: str, outcome: str) -> Doc:
    """The fields every close sets: closed now by ``login``, with its ``outcome``."""
    now = utcnow()
    return {"status": "closed", "closed_at": now, "closed_by": login, "outcome": outcome, "updated_at": now}


class IdempotencyKeyReused(Exception):
    """An Idempotency-Key already used for a reply to another thread or with another text."""


@dataclass(frozen=True)
class Accepted:
    """What storing one inbound message did."""

    thread: Doc
    thread_created: bool
    message_stored: bool
    reopened: bool


# What a message holds that a person wrote: sealed under its thread's data key
# (conversations/vault.py). Attachment names are sealed as ``attachment_names``.
MESSAGE_TEXT = ("text", "html", "subject", "quoted", "attachment_names")
# A thread's subject (its first mail's), sealed under the thread's data key in place of
# ``subject``; :meth:`Repository.open_thread` puts it back.
SEALED_SUBJECT = "sealed_subject"


class Repository:
    def __init__(self, db: AsyncDatabase[Doc], vault: Vault | None = None) -> None:
        """``vault``: what seals the text people wrote; every service that stores or reads
        text has one. None only for tools that never touch text (reports, retention's
        command, account administration): text they stored would not be sealed."""
        self.db = db
        self.vault = vault
        self.threads: AsyncCollection[Doc] = db["threads"]
        self.messages: AsyncCollection[Doc] = db["messages"]
        # The outbox's list: the id of each outbound message until it is published (:meth:`outbox`).
        self.outbox_entries: AsyncCollection[Doc] = db["outbox"]
        self.consultants: AsyncCollection[Doc] = db["consultants"]
        self.sessions: AsyncCollection[Doc] = db["sessions"]
        self.thread_events: AsyncCollection[Doc] = db["thread_events"]
        self.claims: AsyncCollection[Doc] = db["claims"]
        self.login_failures: AsyncCollection[Doc] = db["login_failures"]
        self.keys: AsyncCollection[Doc] = db["keys"]
        self.clients = ClientRepository(db)
        self.contact_plans = ContactPlans(db)
        # The e-mail senders each line answered automatically lately (one answer per period).
        self.answered_senders = AnsweredSenders(db)
        # What is stored waits there for the store's search indexer (conversations/search.py).
        self.search = SearchIndex(db, vault)
        # Closed consultations, one per episode of a thread (conversations.model.closed_consultation).
        self.consultations: AsyncCollection[Doc] = db["consultations"]
        # Inbound messages, new threads and thread events written concurrently are stored
        # in one write per collection (group commit).
        self._inbound_inserts = InsertBatcher(self.messages)
        self._thread_inserts = InsertBatcher(self.threads)
        self._event_inserts = InsertBatcher(self.thread_events)

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
        # Outbound messages not yet handed to the broker: the sweep now reads its own list
        # (``outbox_at`` below); this index serves migration 8's one pass that made the list.
        await self.messages.create_index([("published", ASCENDING), ("created_at", ASCENDING)], name="outbox")
        await self.outbox_entries.create_index([("at", ASCENDING)], name="outbox_at")
        await self.sessions.create_index([("expires_at", ASCENDING)], name="expiry")
        await self.login_failures.create_index([("expires_at", ASCENDING)], name="expiry")
        await self.thread_events.create_index(
            [("thread_id", ASCENDING), ("at", ASCENDING)], name="thread_events"
        )
        # Service figures read some kinds of event over a window of time (store/service_figures.py).
        await self.thread_events.create_index([("name", ASCENDING), ("at", ASCENDING)], name="by_name")
        await self.threads.create_index([("assignee", ASCENDING), ("status", ASCENDING)], name="held")
        # Statistics read closed threads' facts by date (services/store/stats.py).
        await self.threads.create_index([("facts.at", ASCENDING)], name="facts_at")
        # Statistics count consultations by their start date (facts.at); a thread's episodes
        # in order; a person's earlier consultations, latest first.
        await self.consultations.create_index([("facts.at", ASCENDING)], name="facts_at")
        await self.consultations.create_index([("thread_id", ASCENDING), ("n", ASCENDING)], name="thread")
        await self.consultations.create_index(
            [("client_id", ASCENDING), ("started_at", DESCENDING)], name="client"
        )
        # Threads by status: a list of closed threads, latest closed first, page by page (the
        # order of list_threads); retention's closed before a date; the sweeper's held and
        # waiting threads (a bounded set, not the closed ones). tests/integration/
        # test_query_indexes.py holds every query shape against these declarations.
        await self.threads.create_index(
            [("status", ASCENDING), ("queue", ASCENDING), ("closed_at", DESCENDING), ("_id", ASCENDING)],
            name="by_status",
        )
        # A person's threads: a subject-access export, an erasure (services/store/erasure.py).
        await self.threads.create_index([("client_id", ASCENDING)], name="client")
        await self.clients.keys.create_index([("client_id", ASCENDING)], name="client")
        if self.vault is not None:
            await self.vault.ensure_indexes()
        # Files consultants upload to a thread (services/store/reply_files.py): cleared with it.
        await self.db[ATTACHMENTS].create_index([("thread_id", ASCENDING)], name="thread")
        # Retention deletes the data keys of threads it cleared (a later pass; retire_keys).
        await self.threads.create_index([("text_deleted_at", ASCENDING)], name="text_deleted")
        # A client's mail that names only our reply's token (email_thread_by_reference).
        await self.threads.create_index([("reply_token", ASCENDING)], name="reply_token")
        # Ending a person's sessions (an account disabled, a password reset).
        await self.sessions.create_index([("login", ASCENDING)], name="login")
        await self.contact_plans.ensure_indexes()
        await self.answered_senders.ensure_indexes()

    # --- threads -----------------------------------------------------------------------

    async def thread(self, thread_id: str) -> Doc | None:
        return await self.threads.find_one({"_id": thread_id})

    async def threads_of_client(self, client_id: str) -> list[Doc]:
        """Every thread of a client (the ``client`` index): an erasure or an export must reach
        them all, so there is no page here."""
        return [t async for t in self.threads.find({"client_id": client_id})]

    async def thread_by_key(self, key: str) -> Doc | None:
        return await self.threads.find_one({"_id": thread_id_for(key)})

    async def create_thread(self, doc: Doc) -> tuple[Doc, bool]:
        """Insert ``doc`` unless a thread with its key exists; return (thread, created).

        The thread's id is derived from its key, so racing creators collide on the primary key.
        """
        doc["_id"] = thread_id_for(doc["key"])
        if await self._thread_inserts.insert(doc):
            return doc, True
        # A thread stored with another id (before ids were derived from keys) is found by
        # its key: a scan, but only on this rare path.
        existing = await self.thread_by_key(doc["key"]) or await self.threads.find_one({"key": doc["key"]})
        if existing is None:  # deleted between the two calls: try once more
            await self.threads.insert_one(doc)
            return doc, True
        return existing, False

    async def add_closed_threads(self, docs: list[Doc]) -> int:
        """Insert closed threads written elsewhere (the demo's sample year); those whose key is
        already there are left as they are, so running it again adds nothing. Returns how many
        were added. Each is one consultation, written with it (``outcome``, ``case`` and
        ``facts`` as the thread holds them)."""
        if not docs:
            return 0
        try:
            result = await self.threads.insert_many(docs, ordered=False)
            added = len(result.inserted_ids)
        except BulkWriteError as exc:
            added = int(exc.details.get("nInserted", 0))
        consultations = [_consultation_of(d) for d in docs]
        try:
            await self.consultations.insert_many(consultations, ordered=False)
        except BulkWriteError:
            pass  # those already there: a second run
        for c in consultations:
            await self.search.consultation_stored(c["_id"])
        return added

    async def register_consultation(self, thread: Doc) -> tuple[Doc, bool]:
        """Store a thread born closed (a phone consultation) and its consultation; (thread,
        created). A thread already there under its key is returned as it is (a retry)."""
        try:
            await self.threads.insert_one(thread)
        except DuplicateKeyError:
            existing = await self.thread_by_key(thread["key"])
            if existing is None:
                raise
            thread, created = existing, False
        else:
            created = True
        await self._record_consultation(thread)
        return thread, created

    async def email_thread_by_reference(self, refs: list[str], tokens: list[str]) -> Doc | None:
        """The thread one of our replies (named in ``refs``) belongs to, else the thread whose
        reply token is in ``tokens``. Who may join it is the caller's decision."""
        # Our Message-IDs start with the stored message's id: one primary-key lookup each.
        for message_id, ref in list(our_message_ids(refs).items())[:20]:
            ours = await self.messages.find_one({"_id": message_id}, {"thread_id": 1, "email_message_id": 1})
            if ours is not None and ours.get("email_message_id") == ref:
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
        # The headers a reply to a mail needs (In-Reply-To, References).
        reply_headers: Doc | None = None
        if msg.email is not None and msg.email.header_message_id:
            refs = [*msg.email.references]
            if msg.email.header_message_id not in refs:
                refs.append(msg.email.header_message_id)
            reply_headers = {"last_client_message_id": msg.email.header_message_id, "references": refs[-20:]}
        if thread is None:
            if reply_headers is not None:
                new_thread["email"] = reply_headers
            if self.vault is not None:
                # The new thread's data key, made with it: no second write to the thread; the
                # subject is sealed under it before the thread is first written.
                new_thread["data_key"] = await self.vault.new_key()
                new_thread = await self.seal_thread(new_thread)
            thread, created = await self.create_thread(new_thread)
            if not created and self.vault is not None:
                await self.vault.erase([new_thread["data_key"]])  # another dispatcher's thread
        doc: Doc = {
            "_id": msg.message_id,
            "source_id": msg.source_id,
            "thread_id": thread["_id"],
            "direction": "in",
            "author": "client",
            "channel": msg.channel.value,
            "text": msg.text,
            "html": msg.html,
            # Sanitised at ingest; the console shows it as stored while this is current.
            "html_sanitiser": msg.html_sanitiser,
            "subject": msg.subject,
            # Stored time orders a thread: a source's own time (a mail's arrival on the IMAP
            # server, to the second) can fall before an answer the gateway already sent.
            "created_at": utcnow(),
            "received_at": msg.received_at,
        }
        if msg.email is not None:
            doc["email_message_id"] = msg.email.header_message_id
            # What the mailbox's trusted mail server said of the sender (shown per message).
            auth = msg.email.sender_auth
            doc["sender_auth"] = auth.model_dump() if auth is not None else None
            # E-mail extras: quoted history (folded by the console), attachments (by id),
            # and whether a robot or a backlog import sent it (never auto-answered).
            doc["quoted"] = msg.email.quoted or None
            doc["attachments"] = [a.model_dump() for a in msg.email.attachments]
            doc["email_kind"] = msg.email.kind
            doc["backlog"] = msg.email.backlog
            if msg.email.problems:  # what could not be read of it (the console names each)
                doc["email_problems"] = list(msg.email.problems)
        # Stored and queued for the search index side by side (each write is idempotent).
        sealed = await self.seal_message(thread, doc)
        stored, _ = await asyncio.gather(
            self._inbound_inserts.insert(sealed), self.search.message_stored(doc["_id"])
        )
        if reply_headers is not None and not created:
            # A mail joining a thread: its headers replace the thread's. Always applied
            # (idempotent), so a dispatcher killed between the two writes leaves nothing
            # half-done once the mail is redelivered. A new thread was created with them, and a
            # chat message changes nothing in its thread: one write per message.
            await self.threads.update_one(
                {"_id": thread["_id"]},
                {"$set": {f"email.{k}": v for k, v in reply_headers.items()}},
            )
        if stored and not created:
            session = msg.chat.session if msg.chat is not None else None
            await self.text_added(
                thread, msg.sender, session_thread_key(msg.channel, session) if session else None, doc
            )
        reopened = False
        backlog = msg.email is not None and msg.email.backlog
        if not created and thread.get("status") == "closed" and not backlog:
            # A message stored after the close (by our clock: a mail's own time is to the
            # second and can fall before it) reopens the thread: nobody has read it. On a
            # redelivery its first storing time counts, so a dispatcher that died between the
            # two writes reopens the thread now. Conditional on the database's state, not on
            # our read: two dispatchers racing to reopen the same thread reopen it once.
            stored_at = doc["created_at"]
            if not stored:
                first = await self.messages.find_one({"source_id": msg.source_id}, {"created_at": 1})
                stored_at = (first or {}).get("created_at", stored_at)
            reopened_doc = await self.threads.find_one_and_update(
                {"_id": thread["_id"], "status": "closed", "closed_at": {"$lt": stored_at}},
                {
                    "$set": {
                        "status": "waiting",
                        "waiting_since": msg.received_at,
                        "assignee": None,
                        # The message opens the thread's next consultation.
                        "consultation.started_at": msg.received_at,
                        "consultation.queues": [thread["queue"]],
                        "consultation.consultants": [],
                    },
                    "$inc": {"consultation.n": 1},
                    # Retention cleared its text before: the new text is cleared in its turn
                    # once the thread has been closed long enough again.
                    "$unset": {"text_deleted_at": ""},
                },
                return_document=ReturnDocument.AFTER,
            )
            if reopened_doc is not None:
                thread, reopened = reopened_doc, True
        return Accepted(thread, created, stored, reopened)

    async def list_threads(
        self,
        queues: list[str],
        status: str | None,
        assignee: str | None,
        limit: int = 200,
        skip: int = 0,
        hidden: Doc | None = None,
    ) -> list[Doc]:
        """One page of threads: open ones in the order "next" hands them out (priority, then
        longest waiting), closed ones latest closed first; ``_id`` breaks ties, so pages
        neither repeat nor skip a thread while the list stands still. Threads matching
        ``hidden`` (a filter) are left out."""
        query: Doc = {"queue": {"$in": queues}}
        if hidden is not None:
            query["$nor"] = [hidden]
        if status:
            query["status"] = status
        if assignee:
            query["assignee"] = assignee
        order = (
            [("closed_at", DESCENDING), ("_id", ASCENDING)]
            if status == "closed"
            else [("priority", DESCENDING), ("waiting_since", ASCENDING), ("_id", ASCENDING)]
        )
        cursor = self.threads.find(query).sort(order).skip(skip).limit(limit)
        return [t async for t in cursor]

    async def queue_summary(self, queues: list[str]) -> dict[str, Doc]:
        """Waiting count and oldest waiting time per queue.

        One pass over the waiting threads (two fields each) for all the queues: FerretDB v1
        has no ``$min`` accumulator, and there it answers each query with a scan of the
        threads, so one query per queue and figure cost ten scans where one will do. The
        waiting threads are few, except during a backlog import, where this keeps the
        console's refresh and the metrics from competing with the import.
        """
        summary: dict[str, Doc] = {q: {"waiting": 0, "oldest_waiting_since": None} for q in queues}
        cursor = self.threads.find(
            {"status": "waiting", "queue": {"$in": queues}}, {"_id": 0, "queue": 1, "waiting_since": 1}
        )
        async for doc in cursor:
            row = summary.get(doc.get("queue", ""))
            if row is None:
                continue
            row["waiting"] += 1
            since = doc.get("waiting_since")
            if since is not None and (
                row["oldest_waiting_since"] is None or since < row["oldest_waiting_since"]
            ):
                row["oldest_waiting_since"] = since
        return summary

    async def active_counts(self, login: str) -> dict[str, int]:
        """How many active threads ``login`` holds, per channel."""
        counts: dict[str, int] = {}
        async for t in self.threads.find({"status": "active", "assignee": login}, {"channel": 1}):
            counts[t["channel"]] = counts.get(t["channel"], 0) + 1
        return counts

    async def claim_next(
        self, queue: str, login: str, full_channels: list[str] | None = None, passed: Doc | None = None
    ) -> Doc | None:
        """Hand the highest-priority, longest-waiting thread of ``queue`` to ``login``.

        ``full_channels``: channels in which ``login`` is at capacity; their threads are passed
        over so the consultant gets the next one they can take. Threads matching ``passed`` (a
        filter: kept for colleagues with a skill, services/store/skills.py) are passed over too.
        """
        query: Doc = {"queue": queue, "status": "waiting"}
        if passed is not None:
            query["$nor"] = [passed]
        if full_channels:
            query["channel"] = {"$nin": full_channels}
        for _ in range(5):  # others may take the candidates first; look again a few times
            cursor = (
                self.threads.find(query)
                .sort([("priority", DESCENDING), ("waiting_since", ASCENDING)])
                .limit(20)
            )
            candidates = [t async for t in cursor]
            if not candidates:
                return None
            for thread in candidates:
                claimed = await self._take(thread, login)
                if claimed is not None:
                    return claimed
        return None

    async def claim(self, thread_id: str, login: str) -> Doc | None:
        """Claim one thread; None when someone else holds it or it is closed."""
        thread = await self.thread(thread_id)
        if thread is None:
            return None
        if thread["status"] == "active" and thread.get("assignee") == login:
            return thread
        if thread["status"] != "waiting":
            return None
        return await self._take(thread, login)

    async def take_over(self, thread: Doc, login: str) -> Doc | None:
        """Make ``login`` (a supervisor) the holder of open ``thread``, whoever holds it now;
        None if it changed since it was read (claimed, released or closed meanwhile).
        Decided as a claim is (:meth:`_take`: the unique claim record), and only while the
        thread is still open."""
        if thread["status"] not in ("waiting", "active"):
            return None
        return await self._take(thread, login, {"$in": ["waiting", "active"]})

    async def _take(self, thread: Doc, login: str, status: Any = None) -> Doc | None:
        """Make ``login`` the holder of ``thread`` (read as waiting), or None if another won.

        Who holds a thread is decided by a unique insert, not by a conditional update: the
        n-th claim of a thread is the document ``claims/<thread>:<n>``, and only one insert
        of it can succeed. That holds on every MongoDB-compatible server, including those
        whose conditional updates are not atomic under concurrency (FerretDB v1 is one).
        """
        seq = int(thread.get("claim_seq", 0)) + 1
        now = utcnow()
        try:
            await self.claims.insert_one(
                {"_id": f"{thread['_id']}:{seq}", "thread_id": thread["_id"], "login": login, "at": now}
            )
        except DuplicateKeyError:
            await self._complete_stale_claim(thread, seq)
            return None
        # ``status``: what the thread must still be for the record to take effect (a take-over:
        # open); a claim's record is the whole decision.
        where: Doc = {"_id": thread["_id"]} if status is None else {"_id": thread["_id"], "status": status}
        return await self.threads.find_one_and_update(
            where,
            {
                "$set": {
                    "status": "active",
                    "assignee": login,
                    "claim_seq": seq,
                    "claimed_at": now,
                    "updated_at": now,
                }
            },
            return_document=ReturnDocument.AFTER,
        )

    async def _complete_stale_claim(self, thread: Doc, seq: int) -> None:
        """A claim whose winner died before updating the thread would block it forever: after
        a grace period, anyone who finds it completes it for its winner (the claim time-out
        then gives the thread back if they never answer)."""
        claim = await self.claims.find_one({"_id": f"{thread['_id']}:{seq}"})
        if claim is None or claim["at"] > utcnow() - timedelta(seconds=STALE_CLAIM_SECONDS):
            return
        # Threads stored before claims were counted have no claim_seq: null matches them.
        previous: Any = seq - 1 if seq > 1 else {"$in": [0, None]}
        await self.threads.update_one(
            {"_id": thread["_id"], "claim_seq": previous, "status": "waiting"},
            {
                "$set": {
                    "status": "active",
                    "assignee": claim["login"],
                    "claim_seq": seq,
                    "claimed_at": claim["at"],
                }
            },
        )

    async def release(self, thread_id: str, holder: str | None = None) -> Doc | None:
        """Give an active thread back to its queue (by its holder, or by anyone when None).

        It keeps its place: ``waiting_since`` is not reset, so it is taken again first.
        """
        query: Doc = {"_id": thread_id, "status": "active"}
        if holder is not None:
            query["assignee"] = holder
        doc = await self.threads.find_one_and_update(
            query,
            # An offer of it to a colleague ends with it (services/store/shift.py).
            {
                "$set": {"status": "waiting", "assignee": None, "updated_at": utcnow()},
                "$unset": {"handoff": ""},
            },
            return_document=ReturnDocument.AFTER,
        )
        return await self._back_to_shared(doc)

    async def _back_to_shared(self, doc: Doc | None) -> Doc | None:
        """A released thread that was claimed from a shared queue (:meth:`adopt`) goes back
        there, where every organisation may take it; else it stays where it is. Conditional:
        if someone of the adopting organisation took it again meanwhile, it stays with them."""
        origin = (doc or {}).get("adopted_from")
        if doc is None or not isinstance(origin, dict):
            return doc
        back = await self.threads.find_one_and_update(
            {"_id": doc["_id"], "status": "waiting", "queue": doc["queue"]},
            {
                "$set": {"queue": origin["queue"], "organisations": origin["organisations"]},
                "$unset": {"adopted_from": ""},
            },
            return_document=ReturnDocument.AFTER,
        )
        return back if back is not None else doc

    async def release_all(self, login: str) -> list[Doc]:
        """Every thread ``login`` holds goes back to its queue (they went offline)."""
        released = []
        async for t in self.threads.find({"status": "active", "assignee": login}, {"_id": 1}):
            doc = await self.release(t["_id"], login)
            if doc is not None:
                released.append(doc)
        return released

    async def transfer(self, thread_id: str, queue: str, organisations: list[str], line: str) -> Doc | None:
        """Move an open thread to another queue (possibly another organisation), waiting."""
        return await self.threads.find_one_and_update(
            {"_id": thread_id, "status": {"$ne": "closed"}},
            {
                "$set": {
                    "queue": queue,
                    "organisations": organisations,
                    "line": line,
                    "status": "waiting",
                    "assignee": None,
                    "updated_at": utcnow(),
                },
                # Moved on purpose: a later release leaves it in its new queue.
                "$unset": {"adopted_from": "", "handoff": ""},
                "$push": {"consultation.queues": queue},
            },
            return_document=ReturnDocument.AFTER,
        )

    async def adopt(self, thread: Doc, login: str, queue: str, organisation: str) -> Doc | None:
        """Move ``thread``, which ``login`` holds, from its shared queue into ``queue`` of their
        own ``organisation``, remembering where it came from (a release gives it back there);
        None when it is no longer theirs or no longer there."""
        origin = {"queue": thread["queue"], "organisations": thread.get("organisations", [])}
        return await self.threads.find_one_and_update(
            {"_id": thread["_id"], "status": "active", "assignee": login, "queue": thread["queue"]},
            {
                "$set": {
                    "queue": queue,
                    "organisations": [organisation],
                    "adopted_from": origin,
                    "updated_at": utcnow(),
                },
                "$push": {"consultation.queues": queue},
            },
            return_document=ReturnDocument.AFTER,
        )

    async def bump_priority(self, thread_id: str, priority: int) -> None:
        await self.threads.update_one({"_id": thread_id}, {"$max": {"priority": priority}})

    async def release_unanswered(self, claimed_before: datetime) -> list[Doc]:
        """Active threads claimed before ``claimed_before`` whose holder has not replied since
        go back to their queue. Each update is conditional, so replicas sweeping at once
        release a thread once."""
        released = []
        query: Doc = {"status": "active", "claimed_at": {"$lt": claimed_before}}
        async for t in self.threads.find(query, {"claimed_at": 1, "last_reply_at": 1, "assignee": 1}):
            replied = t.get("last_reply_at")
            if replied is not None and replied >= t["claimed_at"]:
                continue
            doc = await self.threads.find_one_and_update(
                {
                    "_id": t["_id"],
                    "status": "active",
                    "assignee": t["assignee"],
                    "claimed_at": t["claimed_at"],
                },
                {
                    "$set": {"status": "waiting", "assignee": None, "updated_at": utcnow()},
                    "$unset": {"handoff": ""},
                },
                return_document=ReturnDocument.AFTER,
            )
            doc = await self._back_to_shared(doc)
            if doc is not None:
                released.append(doc)
        return released

    async def escalate_waiting_crises(
        self, waiting_before: datetime, urgent: int, escalated: int
    ) -> list[Doc]:
        """Urgent threads waiting since before ``waiting_before`` are raised to ``escalated``."""
        out = []
        query: Doc = {"status": "waiting", "priority": urgent, "waiting_since": {"$lt": waiting_before}}
        async for t in self.threads.find(query, {"_id": 1}):
            doc = await self.threads.find_one_and_update(
                {"_id": t["_id"], "status": "waiting", "priority": urgent},
                {"$set": {"priority": escalated, "escalated_at": utcnow()}},
                return_document=ReturnDocument.AFTER,
            )
            if doc is not None:
                out.append(doc)
        return out

    # --- a chat whose client left (conversations/client_left.py) ----------------------------

    async def mark_client_left(self, thread_id: str, marker: Doc) -> Doc | None:
        """Mark an open thread as one whose client left (``marker``, the ``client_left``
        field); None when it is closed or already so marked. A stronger mark replaces a weaker
        one, never the reverse (``client_left.at_least``). Conditional, so replicas marking at
        once mark it once."""
        query: Doc = {"_id": thread_id, "status": {"$in": ["waiting", "active"]}}
        if marker["why"] == client_left.SILENT:
            query["client_left"] = {"$exists": False}
        else:
            query["client_left.why"] = {"$nin": client_left.at_least(marker["why"])}
        return await self.threads.find_one_and_update(
            query, {"$set": {"client_left": marker}}, return_document=ReturnDocument.AFTER
        )

    async def client_wrote(self, thread_id: str, at: datetime) -> bool:
        """The client wrote at ``at``: a ``client_left`` marker from before then goes (True)."""
        res = await self.threads.update_one(
            {"_id": thread_id, "client_left.at": {"$lt": at}}, {"$unset": {"client_left": ""}}
        )
        return res.modified_count > 0

    async def forget_client_left(self, thread_id: str) -> Doc | None:
        """A closed thread drops its ``client_left`` marker; the thread as it is now."""
        return await self.threads.find_one_and_update(
            {"_id": thread_id, "status": "closed"},
            {"$unset": {"client_left": ""}},
            return_document=ReturnDocument.AFTER,
        )

    async def open_threads_of(self, channels: list[str]) -> list[Doc]:
        """Waiting and held threads of ``channels``: what the silence rule looks at (a bounded
        set, found by the by_status index), with the fields it needs."""
        cursor = self.threads.find(
            {"status": {"$in": ["waiting", "active"]}, "channel": {"$in": channels}},
            {"queue": 1, "line": 1, "status": 1, "waiting_since": 1, "client_left": 1},
        )
        return [t async for t in cursor]

    async def last_client_message_at(self, thread_id: str) -> datetime | None:
        """When the client's latest message in the thread was stored (thread_messages index)."""
        doc = await self.messages.find_one(
            {"thread_id": thread_id, "direction": "in"},
            {"created_at": 1},
            sort=[("created_at", DESCENDING)],
        )
        return doc["created_at"] if doc is not None else None

    async def latest_client_messages(self, thread_ids: list[str], since: datetime) -> dict[str, datetime]:
        """When each of ``thread_ids`` last had a client message stored at or after ``since``
        (threads without one are absent): one query for many threads (thread_messages index)."""
        latest: dict[str, datetime] = {}
        if not thread_ids:
            return latest
        cursor = self.messages.find(
            {"thread_id": {"$in": thread_ids}, "direction": "in", "created_at": {"$gte": since}},
            {"thread_id": 1, "created_at": 1},
        )
        async for m in cursor:
            if m["thread_id"] not in latest or m["created_at"] > latest[m["thread_id"]]:
                latest[m["thread_id"]] = m["created_at"]
        return latest

    async def record_event(self, thread_id: str, name: str, by: str | None = None, **data: Any) -> None:
        """Keep a fact about a thread with its time, for wait and response-time reports."""
        await self._event_inserts.insert(
            {"_id": new_id(), "thread_id": thread_id, "name": name, "at": utcnow(), "by": by, "data": data}
        )

    async def thread_history(self, thread_id: str) -> list[Doc]:
        cursor = self.thread_events.find({"thread_id": thread_id}).sort("at", ASCENDING)
        return [e async for e in cursor]

    async def set_auto_answered(self, thread_id: str, kind: str, period: str) -> None:
        await self.threads.update_one({"_id": thread_id}, {"$set": {f"auto.{kind}": period}})

    async def close(self, thread_id: str, login: str, case: Doc, facts: Doc | None = None) -> Doc | None:
        """Close an active thread held by ``login``, and its current consultation, with the
        case form; ``facts`` are the categorical answers statistics count
        (services/store/stats.py), kept by retention. The thread keeps its latest case form
        for its view; the consultation keeps its own."""
        fields = {**_closed_by(login, Outcome.CONSULTATION), "case": case}
        if facts is not None:
            fields["facts"] = facts
        closed = await self.threads.find_one_and_update(
            {"_id": thread_id, "status": "active", "assignee": login},
            # A reason left by an earlier close without a consultation no longer describes it.
            {"$set": fields, "$unset": {"no_consultation_reason": ""}},
            return_document=ReturnDocument.AFTER,
        )
        return await self._finish_close(closed, thread_id, login)

    async def close_without_consultation(
        self, thread_id: str, login: str, reason: str, facts: Doc
    ) -> Doc | None:
        """Close an active thread held by ``login``, and its current consultation, as a
        contact without a consultation for ``reason`` (a configured id): no case form is
        written, and ``facts`` (stats.py) count it apart from consultations. An earlier
        consultation of the thread keeps its own case form in its own document."""
        fields = {
            **_closed_by(login, Outcome.NO_CONSULTATION),
            "no_consultation_reason": reason,
            "facts": facts,
        }
        closed = await self.threads.find_one_and_update(
            {"_id": thread_id, "status": "active", "assignee": login},
            {"$set": fields, "$unset": {"case": ""}},
            return_document=ReturnDocument.AFTER,
        )
        return await self._finish_close(closed, thread_id, login)

    async def _finish_close(self, closed: Doc | None, thread_id: str, login: str) -> Doc | None:
        """Write the consultation of a thread just closed. Two writes, so a close retried after
        the second failed finds the thread closed by the same person with its consultation
        missing, and completes it (instead of refusing)."""
        if closed is None:
            thread = await self.thread(thread_id)
            if (
                thread is None
                or thread.get("status") != "closed"
                or thread.get("closed_by") != login
                or await self.consultations.find_one({"_id": _consultation_of(thread)["_id"]}, {"_id": 1})
            ):
                return None
            closed = thread
        await self._record_consultation(closed)
        return closed

    async def _record_consultation(self, thread: Doc) -> None:
        doc = _consultation_of(thread)
        await self.consultations.replace_one({"_id": doc["_id"]}, doc, upsert=True)
        await self.search.consultation_stored(doc["_id"])

    async def consultations_of(self, thread_id: str) -> list[Doc]:
        """A thread's closed consultations, in order."""
        cursor = self.consultations.find({"thread_id": thread_id}).sort("n", ASCENDING)
        return [c async for c in cursor]

    # --- messages ------------------------------------------------------------------------

    async def thread_messages(self, thread_id: str) -> list[Doc]:
        """A thread's messages in order, as they were written (opened)."""
        cursor = self.messages.find({"thread_id": thread_id}).sort("created_at", ASCENDING)
        return await self.open_messages([m async for m in cursor])

    async def add_reply(
        self,
        thread: Doc,
        login: str,
        text: str,
        idempotency_key: str,
        email_domain: str,
        held: str | None = None,
        attachments: list[Doc] | None = None,
        organisation: str | None = None,
    ) -> tuple[Doc, bool]:
        """Store a consultant's reply once per (consultant, Idempotency-Key); (doc, created).
        ``organisation``: the consultant's, in whose name an e-mail reply leaves.
        ``attachments``: the files it carries (services/store/reply_files.py), by reference.
        ``held``: why the client's safe-contact plan forbids it now (conversations/
        contact_plan.py): then it is stored held, and no outbox pass publishes it.

        A key names one reply: the same key again with the same thread and text is a retry and
        gets the stored reply back; with another thread or text it is a client's mistake and
        raises :class:`IdempotencyKeyReused` (the stored reply must neither stand in for the
        new one nor reach the other thread's client).
        """
        doc, created = await self.add_outbound(
            thread,
            f"consultant:{login}",
            text,
            f"reply:{login}:{idempotency_key}",
            email_domain,
            held,
            attachments,
            organisation,
        )
        files = [a.get("id") for a in doc.get("attachments") or []]
        if not created and (
            doc["thread_id"] != thread["_id"]
            or doc.get("text") != text
            or files != [a["id"] for a in attachments or []]
        ):
            raise IdempotencyKeyReused
        if created:
            await self.threads.update_one(
                {"_id": thread["_id"]},
                # Who answered belongs to the consultation the reply is part of.
                {
                    "$set": {"last_reply_at": doc["created_at"]},
                    "$addToSet": {"consultation.consultants": login},
                },
            )
        return doc, created

    async def add_outbound(
        self,
        thread: Doc,
        author: str,
        text: str,
        source_id: str,
        email_domain: str,
        held: str | None = None,
        attachments: list[Doc] | None = None,
        organisation: str | None = None,
    ) -> tuple[Doc, bool]:
        """Store an outbound message once per ``source_id``; (doc, created). ``held`` and
        ``organisation``: see :meth:`add_reply`."""
        message_id = new_id()
        now = utcnow()
        delivery: Doc = {"status": DeliveryStatus.QUEUED.value, "at": now}
        if held is not None:
            delivery = {"status": DeliveryStatus.HELD.value, "at": now, "detail": held}
        doc: Doc = {
            "_id": message_id,
            "source_id": source_id,
            "thread_id": thread["_id"],
            "direction": "out",
            "author": author,
            "channel": thread["channel"],
            "text": text,
            "created_at": now,
            "delivery": delivery,
            # In the outbox until published (services/store/outbound.py): a reply stored while
            # the broker was away is published by the store's outbox sweeper once it is back.
            "published": False,
        }
        if attachments:
            doc["attachments"] = [dict(a) for a in attachments]
        if organisation is not None:
            doc["organisation"] = organisation
        if thread["channel"] == "email":
            # Opaque: says nothing about the client; carries the thread's reply token so a
            # reply to it can be matched even if a client's mailer trims References.
            doc["email_message_id"] = f"<{message_id}.{thread['reply_token']}@{email_domain}>"
        sealed = await self.seal_message(thread, doc)
        # On the outbox's list before it is stored, so no stored message is missing from it.
        await self.outbox_entries.insert_one({"_id": message_id, "at": now})
        try:
            await self.messages.insert_one(sealed)
        except DuplicateKeyError:
            existing = await self.messages.find_one({"source_id": source_id})
            assert existing is not None
            doc, created = await self.open_message(existing), False
        else:
            created = True
        await self.search.message_stored(doc["_id"])  # again on a retry: harmless
        if created:
            await self.text_added(thread, written=doc)
        return doc, created

    async def add_note(self, thread: Doc, login: str, text: str) -> Doc:
        """An internal note: shown to consultants, never sent to the client."""
        doc: Doc = {
            "_id": new_id(),
            "source_id": f"note:{new_id()}",
            "thread_id": thread["_id"],
            "direction": "note",
            "author": f"consultant:{login}",
            "channel": thread["channel"],
            "text": text,
            "created_at": utcnow(),
        }
        await self.messages.insert_one(await self.seal_message(thread, doc))
        await self.text_added(thread, written=doc)
        return doc

    async def data_key(self, thread: Doc) -> Binary | None:
        """The id of ``thread``'s data key, made now if it has none yet (a thread stored
        before text was sealed, or whose text retention cleared); None without a vault.
        Conditional: two writers racing to make one keep the first, and the other's key is
        deleted unused."""
        if self.vault is None:
            return None
        if isinstance(thread.get("data_key"), Binary):
            return cast(Binary, thread["data_key"])
        key = await self.vault.new_key()
        done = await self.threads.update_one(
            {"_id": thread["_id"], "data_key": {"$exists": False}}, {"$set": {"data_key": key}}
        )
        if done.modified_count:
            thread["data_key"] = key
            return key
        await self.vault.erase([key])
        current = await self.threads.find_one({"_id": thread["_id"]}, {"data_key": 1})
        found = (current or {}).get("data_key")
        if not isinstance(found, Binary):
            raise LookupError("thread without a data key")
        thread["data_key"] = found
        return found

    async def erase_text(self, thread_ids: list[str]) -> int:
        """Make everything written in these threads unreadable at once, here and in every
        backup: their data keys are deleted (conversations/vault.py), and the keys of the raw
        mails their messages came from, with those mails' attachments (each raw mail has one
        of its own: it was stored before the thread existed; conversations/rawmail.py). The
        threads, their times and statistics facts stay; a message stored later gets a new
        key. Returns how many keys were deleted."""
        if self.vault is None:
            raise RuntimeError("erasing text needs the vault")
        keys = []
        for tid in thread_ids:
            # What the key sealed of the thread goes with it: the client's address, whose
            # sealed copy no key opens now (the next message from them gives it back).
            thread = await self.threads.find_one_and_update(
                {"_id": tid, "data_key": {"$exists": True}},
                {"$unset": {"data_key": "", "client.sealed": ""}},
            )
            if thread is not None:
                keys.append(thread["data_key"])
        sources = [
            m["source_id"]
            async for m in self.messages.find(
                {"thread_id": {"$in": thread_ids}, "direction": "in"}, {"source_id": 1}
            )
        ]
        raw_mails = self.db[RAW_MAILS]
        sealed = {"_id": {"$in": sources}, "data_key": {"$exists": True}}
        keys += [m["data_key"] async for m in raw_mails.find(sealed, {"data_key": 1})]
        await raw_mails.update_many(sealed, {"$unset": {"data_key": ""}})
        return await self.vault.erase(keys)

    async def retire_keys(self, cleared_before: datetime) -> int:
        """Delete the data keys of threads retention cleared before ``cleared_before`` and that
        are still cleared (no text stored since), with the keys of the raw mails their messages
        came from: a backup of the data taken before the clearing no longer opens their text
        either. Returns how many keys were deleted.

        Why only after a while: a writer reads a thread and then stores a message sealed under
        its key; one that read the thread before the clearing sees no mark and would not know
        the key went. Long after, no such writer is left, and one that read the thread marked
        seals its message again if the key went meanwhile (:meth:`text_added`). A thread that
        holds a message not cleared (stored by a writer whose mark-lifting never ran: it died
        in between, or read the thread just before the clearing) keeps its key and loses its
        mark, so the message is cleared in its turn. Each thread's keys are deleted as soon as
        it is taken, so a pass that stops half-way leaves no key behind unrecorded."""
        if self.vault is None:
            raise RuntimeError("deleting keys needs the vault")
        query: Doc = {"text_deleted_at": {"$lt": cleared_before}, "data_key": {"$exists": True}}
        deleted = 0
        async for t in self.threads.find(query, {"data_key": 1}):
            live = {"thread_id": t["_id"], "text_deleted": {"$exists": False}}
            if await self.messages.find_one(live, {"_id": 1}) is not None:
                await self.threads.update_one({"_id": t["_id"]}, {"$unset": {"text_deleted_at": ""}})
                continue
            # Conditional: a thread written to since (its mark gone) keeps its key.
            retired = await self.threads.find_one_and_update(
                {"_id": t["_id"], "text_deleted_at": {"$lt": cleared_before}, "data_key": t["data_key"]},
                {"$unset": {"data_key": ""}},
            )
            if retired is None:
                continue
            keys = [t["data_key"]]
            sources = [
                m["source_id"]
                async for m in self.messages.find(
                    {"thread_id": t["_id"], "direction": "in"}, {"source_id": 1}
                )
            ]
            raw_mails = self.db[RAW_MAILS]
            sealed = {"_id": {"$in": sources}, "data_key": {"$exists": True}, "raw": None}
            keys += [m["data_key"] async for m in raw_mails.find(sealed, {"data_key": 1})]
            await raw_mails.update_many(sealed, {"$unset": {"data_key": ""}})
            deleted += await self.vault.erase(keys)
        return deleted

    async def seal_message(self, thread: Doc, doc: Doc) -> Doc:
        """The stored form of message ``doc``: what a person wrote sealed under the thread's
        key (:data:`MESSAGE_TEXT`), attachments listed by id, type and size only."""
        if self.vault is None:
            return doc
        out = dict(doc)
        attachments = out.get("attachments")
        if isinstance(attachments, list) and attachments:
            listed = [a if isinstance(a, dict) else {} for a in attachments]
            out["attachment_names"] = [a.get("filename") for a in listed]
            out["attachments"] = [{k: v for k, v in a.items() if k != "filename"} for a in listed]
        return await seal_fields(self.vault, await self.data_key(thread), out, MESSAGE_TEXT)

    async def seal_thread(self, doc: Doc) -> Doc:
        """The stored form of a new thread ``doc`` (with its ``data_key``): its subject sealed
        as ``sealed_subject``, no ``subject`` left in clear, and its client's address (a mail
        address, a chat session, a Telegram chat) sealed as ``client.sealed``. A thread without
        a subject (a chat, a mail without one) keeps ``subject: None``: nothing to hide, no
        cipher operation."""
        key = doc.get("data_key")
        if self.vault is None or not isinstance(key, Binary):
            return doc
        out = dict(doc)
        if doc.get("subject") is not None:
            del out["subject"]
            out[SEALED_SUBJECT] = await self.vault.seal(key, {"subject": doc["subject"]})
        address = (doc.get("client") or {}).get("address")
        if address:
            out["client"] = {"sealed": await self.vault.seal(key, {"address": address})}
        return out

    async def open_thread(self, doc: Doc) -> Doc:
        """``doc`` with its subject in clear as ``subject`` and its client's address as
        ``client.address`` (see :meth:`seal_thread`); a thread stored before they were sealed
        is returned as it is. What a deleted data key sealed reads as None. Without a vault
        the sealed values are only taken away."""
        sealed = doc.get(SEALED_SUBJECT)
        client = doc.get("client") or {}
        if sealed is None and client.get("sealed") is None:
            return doc
        out = {k: v for k, v in doc.items() if k != SEALED_SUBJECT}
        if sealed is not None:
            out["subject"] = (await self._open(sealed)).get("subject")
        if client.get("sealed") is not None:
            out["client"] = {"address": (await self._open(client["sealed"])).get("address")}
        return out

    async def _open(self, sealed: Any) -> Doc:
        opened = None
        if self.vault is not None and isinstance(sealed, Binary):
            opened = await self.vault.open(sealed)
        return opened or {}

    async def open_threads(self, docs: list[Doc]) -> list[Doc]:
        return [await self.open_thread(d) for d in docs]

    async def open_message(self, doc: Doc) -> Doc:
        """A stored message as it was written (see :meth:`seal_message`)."""
        if self.vault is None:
            return doc
        return open_attachment_names(await self.vault.open_fields(doc))

    async def open_messages(self, docs: list[Doc]) -> list[Doc]:
        return [await self.open_message(d) for d in docs]

    async def text_added(
        self, thread: Doc, sender: str | None = None, key: str | None = None, written: Doc | None = None
    ) -> None:
        """Text was stored in ``thread``: if retention had cleared it (services/store/retention.py),
        take its mark away, so the new text is cleared in its turn, and give it back what a
        reply needs: the client's address or chat (``sender``) and, for a chat, its ``key``.
        A write only for such a thread (as read by the caller): a chat message in a live
        thread costs none.

        ``written``: the message just stored (as written), sealed under the data key ``thread``
        had when it was read. Retention deletes the key of a thread it cleared
        (:meth:`retire_keys`, only while the thread is marked): if that happened between the
        read and the write, the message is sealed again under the thread's new key, so
        nothing a person wrote is lost to a key deleted under it. An erasure deletes the keys of
        closed threads at once (services/store/erasure.py): for a thread read closed, the
        thread is read again after the write, and a clearing or a key deletion that happened
        meanwhile is handled the same way (one read, for a message to a closed thread only)."""
        used = thread.get("data_key")
        if written is not None and thread.get("status") == ThreadStatus.CLOSED:
            now = await self.threads.find_one({"_id": thread["_id"]})
            if now is not None and (
                now.get("data_key") != used or "text_deleted_at" in now or not address_kept(now)
            ):
                thread = now
        if "text_deleted_at" not in thread and address_kept(thread):
            return
        update: Doc = {"$unset": {"text_deleted_at": ""}}
        address_key = None
        if sender is not None:
            client: Doc = {"address": sender}
            if self.vault is not None:
                # Under the key the thread has now (the caller's copy may name one retired).
                address_key = await self.data_key(await self._key_holder(thread["_id"]))
                if address_key is not None:
                    client = {"sealed": await self.vault.seal(address_key, {"address": sender})}
            update["$set"] = {"client": client, **({"key": key} if key is not None else {})}
        await self.threads.update_one({"_id": thread["_id"]}, update)
        if self.vault is None:
            return
        current = await self._key_holder(thread["_id"])
        if written is not None and current.get("data_key") != used:
            # The message's key was retired meanwhile: seal it again under the thread's key now.
            resealed = await self.seal_message(current, dict(written))
            await self.messages.update_one({"_id": written["_id"]}, {"$set": {SEALED: resealed[SEALED]}})
        if address_key is not None and current.get("data_key") != address_key and sender is not None:
            key_now = await self.data_key(current)
            assert key_now is not None
            sealed = await self.vault.seal(key_now, {"address": sender})
            await self.threads.update_one({"_id": thread["_id"]}, {"$set": {"client": {"sealed": sealed}}})

    async def _key_holder(self, thread_id: str) -> Doc:
        """The thread's id and its data key as stored now (none if it has none)."""
        current = await self.threads.find_one({"_id": thread_id}, {"data_key": 1})
        return {
            "_id": thread_id,
            **({"data_key": current["data_key"]} if current and "data_key" in current else {}),
        }

    async def mark_published(self, message_id: str) -> None:
        await self.messages.update_one({"_id": message_id}, {"$set": {"published": True}})
        await self.outbox_entries.delete_one({"_id": message_id})

    async def message(self, message_id: str) -> Doc | None:
        """One message as it was written (opened)."""
        doc = await self.messages.find_one({"_id": message_id})
        return await self.open_message(doc) if doc is not None else None

    async def outbox(self, stored_before: datetime, limit: int) -> list[Doc]:
        """Outbound messages stored before ``stored_before`` and not yet published, oldest
        first; not those held by a safe-contact plan or cancelled (they must not go).

        Read from the outbox's list (``outbox``: an id per outbound message, written before the
        message and deleted once it is published), then the messages by ``_id``: a pass reads
        the few messages waiting, never the whole collection. (On MongoDB the index ``outbox``
        would serve a query of the messages as well; on the local stand-in every query but one
        by ``_id`` reads every message stored, and the sweep asks every few seconds.) Entries
        of messages published since (or cancelled, which publishes nothing) are deleted here; an
        entry whose message is not there is deleted once :data:`OUTBOX_ORPHAN_AFTER` old, so a
        message whose insert is on its way is never taken off the list."""
        entries = [e async for e in self.outbox_entries.find({"at": {"$lt": stored_before}}).sort("at", 1)]
        found: dict[str, Doc] = {}
        ids = [e["_id"] for e in entries]
        for start in range(0, len(ids), OUTBOX_READ):
            async for m in self.messages.find({"_id": {"$in": ids[start : start + OUTBOX_READ]}}):
                found[m["_id"]] = m
        orphan_before = utcnow() - OUTBOX_ORPHAN_AFTER
        done = [
            e["_id"]
            for e in entries
            if (e["_id"] in found and found[e["_id"]].get("published"))
            or (e["_id"] not in found and e["at"] < orphan_before)
        ]
        for start in range(0, len(done), OUTBOX_READ):
            await self.outbox_entries.delete_many({"_id": {"$in": done[start : start + OUTBOX_READ]}})
        waiting = [
            m
            for m in found.values()
            if m.get("published") is False and (m.get("delivery") or {}).get("status") not in NOT_OUT
        ]
        waiting.sort(key=lambda m: (m["created_at"], m["_id"]))
        return await self.open_messages(waiting[:limit])

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

    async def shared_key(self, name: str) -> bytes:
        """A random 32-byte key every replica shares, made by the first one that asks.

        Racing replicas insert under the same ``_id``; the one insert that succeeds decides.
        """
        doc = await self.keys.find_one({"_id": name})
        if doc is None:
            try:
                await self.keys.insert_one({"_id": name, "key": secrets.token_bytes(32), "at": utcnow()})
            except DuplicateKeyError:
                pass
            doc = await self.keys.find_one({"_id": name})
            assert doc is not None
        return bytes(doc["key"])

    # --- failed log-ins (services/store/auth.py LoginThrottle) ------------------------------

    async def failure_counters(self, counter_ids: list[str]) -> list[Doc]:
        """The failure counters named (keyed hashes); one primary-key read each, which FerretDB
        v1 answers from its index, where an ``$in`` would scan the collection."""
        found = [await self.login_failures.find_one({"_id": i}) for i in counter_ids]
        return [d for d in found if d is not None]

    async def add_login_failure(self, counter_id: str, next_at: datetime, expires_at: datetime) -> None:
        """Count one failure; ``$max`` keeps the longest wait when replicas record at once."""
        update = {"$inc": {"failures": 1}, "$max": {"next_at": next_at, "expires_at": expires_at}}
        try:
            await self.login_failures.update_one({"_id": counter_id}, update, upsert=True)
        except DuplicateKeyError:  # two first failures raced to create it: count into the winner
            await self.login_failures.update_one({"_id": counter_id}, update)

    async def forget_login_failures(self, counter_id: str) -> None:
        await self.login_failures.delete_one({"_id": counter_id})

    async def prune_login_failures(self, now: datetime) -> int:
        """Delete the counters nobody has added to for their whole memory (FerretDB v1 has no
        TTL indexes, so expiry is this delete)."""
        res = await self.login_failures.delete_many({"expires_at": {"$lt": now}})
        return res.deleted_count


class ChatRepository:
    """What chat_ingest reads and writes: chat sessions, a client's waiting replies, queue
    positions, Telegram chat choices and processed Telegram updates.

    Threads and messages stay the dispatcher's and the store's to write; chat_ingest only
    reads them, through the same collections and rules as :class:`Repository`.
    """

    def __init__(self, db: AsyncDatabase[Doc], vault: Vault | None = None) -> None:
        self.vault = vault  # opens the replies a client is shown again on resume
        self.threads: AsyncCollection[Doc] = db["threads"]
        self.messages: AsyncCollection[Doc] = db["messages"]
        self.sessions: AsyncCollection[Doc] = db["chat_sessions"]
        self.telegram_chats: AsyncCollection[Doc] = db["telegram_chats"]
        self.telegram_updates: AsyncCollection[Doc] = db["telegram_updates"]
        # The ids of a Telegram chat's messages the bot may still delete ("not safe now").
        self.telegram_trail: AsyncCollection[Doc] = db["telegram_trail"]

    async def ensure_indexes(self) -> None:
        # The expiry fields the sweep deletes by. On MongoDB 7 a TTL index (expireAfterSeconds)
        # could delete these documents by itself; FerretDB, the local stand-in, rejects TTL
        # indexes (code 238, ../shared/reviews/ferretdb.md section 3), so chat_ingest's sweep
        # (:meth:`delete_expired`) is the mechanism everywhere.
        await self.sessions.create_index([("expires_at", ASCENDING)], name="expiry")
        await self.telegram_chats.create_index([("expires_at", ASCENDING)], name="expiry")
        await self.telegram_updates.create_index([("at", ASCENDING)], name="claimed_at")
        await self.telegram_trail.create_index([("expires_at", ASCENDING)], name="expiry")
        await self.telegram_trail.create_index(
            [("chat", ASCENDING), ("sent_at", ASCENDING)], name="chat_sent"
        )

    # --- web chat sessions ---------------------------------------------------------------

    async def create_session(self, session_id: str, facts: Doc, expires_at: datetime) -> None:
        """Remember a started chat (its line and pre-chat choices) so any replica can resume
        it, until ``expires_at`` unless it is used again."""
        await self.sessions.insert_one(
            {"_id": session_id, **facts, "started_at": utcnow(), "ended": False, "expires_at": expires_at}
        )

    async def session(self, session_id: str) -> Doc | None:
        """A chat that was started, not ended and not expired; None for an unknown, ended or
        expired token (an expired one the sweep has not deleted yet is refused all the same)."""
        doc = await self.sessions.find_one({"_id": session_id, "ended": False})
        if doc is None or (doc.get("expires_at") is not None and doc["expires_at"] <= utcnow()):
            return None
        return doc

    async def keep_sessions(self, session_ids: list[str], expires_at: datetime) -> None:
        """Sessions in use (resumed, or with a socket attached): their expiry moves to ``expires_at``."""
        for i in range(0, len(session_ids), 1000):  # bounded $in lists
            await self.sessions.update_many(
                {"_id": {"$in": session_ids[i : i + 1000]}, "ended": False},
                {"$set": {"expires_at": expires_at}},
            )

    async def live_sessions(self, session_ids: list[str]) -> set[str]:
        """Those of ``session_ids`` still open (not ended, not deleted): a replica closes the
        sockets it holds of any other."""
        live: set[str] = set()
        for i in range(0, len(session_ids), 1000):  # bounded $in lists
            cursor = self.sessions.find(
                {"_id": {"$in": session_ids[i : i + 1000]}, "ended": False}, {"_id": 1}
            )
            live.update([doc["_id"] async for doc in cursor])
        return live

    async def end_session(self, session_id: str, expires_at: datetime) -> None:
        """The client ended the chat: its token can never resume it again; the document goes
        at ``expires_at``."""
        await self.sessions.update_one(
            {"_id": session_id}, {"$set": {"ended": True, "ended_at": utcnow(), "expires_at": expires_at}}
        )

    async def delete_expired(
        self, now: datetime, updates_before: datetime, later: datetime
    ) -> dict[str, int]:
        """One sweep: delete chat sessions, Telegram chat choices and kept Telegram message ids
        whose expiry passed, and Telegram update claims older than ``updates_before``; documents
        written before expiry existed get ``later`` as theirs. Returns the numbers deleted by
        collection."""
        deleted: dict[str, int] = {}
        for coll in (self.sessions, self.telegram_chats, self.telegram_trail):
            await coll.update_many({"expires_at": None}, {"$set": {"expires_at": later}})
            deleted[coll.name] = (await coll.delete_many({"expires_at": {"$lt": now}})).deleted_count
        gone = await self.telegram_updates.delete_many({"at": {"$lt": updates_before}})
        deleted[self.telegram_updates.name] = gone.deleted_count
        return deleted

    async def thread_by_key(self, key: str) -> Doc | None:
        return await self.threads.find_one({"_id": thread_id_for(key)})

    async def thread(self, thread_id: str) -> Doc | None:
        return await self.threads.find_one({"_id": thread_id})

    async def waiting_replies(self, thread_id: str) -> list[Doc]:
        """Replies to the client not yet shown to them, oldest first (the resume backlog); not
        those a safe-contact plan holds, nor cancelled ones (conversations/contact_plan.py)."""
        cursor = self.messages.find(
            {
                "thread_id": thread_id,
                "direction": "out",
                "delivery.status": {"$nin": [DeliveryStatus.SENT.value, *NOT_OUT]},
            }
        ).sort("created_at", ASCENDING)
        return await self.open_messages([m async for m in cursor])

    async def published_unshown(self, thread_ids: list[str]) -> dict[str, list[Doc]]:
        """Of many threads, in one query (thread_messages index), the replies handed to the
        broker but not yet shown: thread id -> those replies, oldest first; threads without any
        are absent. (One not yet handed over comes through the outbox, live.)"""
        if not thread_ids:
            return {}
        cursor = self.messages.find(
            {
                "thread_id": {"$in": thread_ids},
                "direction": "out",
                "published": True,
                "delivery.status": {"$nin": [DeliveryStatus.SENT.value, *NOT_OUT]},
            }
        )
        waiting: dict[str, list[Doc]] = {}
        for doc in await self.open_messages([m async for m in cursor]):
            waiting.setdefault(doc["thread_id"], []).append(doc)
        for docs in waiting.values():
            docs.sort(key=lambda d: d["created_at"])
        return waiting

    async def open_messages(self, docs: list[Doc]) -> list[Doc]:
        if self.vault is None:
            return docs
        return [open_attachment_names(await self.vault.open_fields(d)) for d in docs]

    async def position(self, thread: Doc) -> int | None:
        """1-based place of a waiting thread in its queue, in the order "next" hands them out
        (priority, then longest waiting); None when it is not waiting."""
        if thread.get("status") != "waiting":
            return None
        priority = thread.get("priority", 0)
        ahead = await self.threads.count_documents(
            {
                "queue": thread["queue"],
                "status": "waiting",
                "_id": {"$ne": thread["_id"]},
                "$or": [
                    {"priority": {"$gt": priority}},
                    {"priority": priority, "waiting_since": {"$lt": thread["waiting_since"]}},
                ],
            }
        )
        return ahead + 1

    async def already_sent(self, message_id: str) -> bool:
        """Whether a reply was reported shown or sent (a redelivered reply is not sent again)."""
        doc = await self.messages.find_one(
            {"_id": message_id, "delivery.status": DeliveryStatus.SENT.value}, {"_id": 1}
        )
        return doc is not None

    async def waiting_order(self, queue: str) -> list[str]:
        """Ids of the waiting threads of ``queue`` in the order "next" hands them out."""
        cursor = self.threads.find({"queue": queue, "status": "waiting"}, {"_id": 1}).sort(
            [("priority", DESCENDING), ("waiting_since", ASCENDING)]
        )
        return [t["_id"] async for t in cursor]

    async def thread_states(self, thread_ids: list[str]) -> dict[str, Doc]:
        """Status and queue of each of ``thread_ids`` (one query for many clients)."""
        cursor = self.threads.find({"_id": {"$in": thread_ids}}, {"status": 1, "queue": 1})
        return {t["_id"]: t async for t in cursor}

    # --- Telegram -------------------------------------------------------------------------

    async def telegram_chat(self, key: str) -> Doc:
        return await self.telegram_chats.find_one({"_id": key}) or {"_id": key}

    async def set_telegram_chat(self, key: str, fields: Doc, expires_at: datetime) -> None:
        """Remember a Telegram chat's choices until ``expires_at`` (moved on by every update)."""
        await self.telegram_chats.update_one(
            {"_id": key}, {"$set": {**fields, "expires_at": expires_at}}, upsert=True
        )

    async def forget_telegram_chat(self, key: str) -> None:
        await self.telegram_chats.delete_one({"_id": key})

    async def begin_update(self, update_key: str, stale_after: float) -> str:
        """Claim a Telegram update for processing: ``new`` (go on), ``done`` (a redelivery of one
        that was handled: answer 200 and do nothing) or ``busy`` (another request handles it
        now). A claim older than ``stale_after`` seconds was abandoned and is taken over."""
        now = utcnow()
        try:
            await self.telegram_updates.insert_one({"_id": update_key, "state": "busy", "at": now})
            return "new"
        except DuplicateKeyError:
            pass
        taken = await self.telegram_updates.find_one_and_update(
            {
                "_id": update_key,
                "state": "busy",
                "at": {"$lt": datetime.fromtimestamp(now.timestamp() - stale_after, now.tzinfo)},
            },
            {"$set": {"at": now}},
        )
        if taken is not None:
            return "new"
        doc = await self.telegram_updates.find_one({"_id": update_key})
        return "done" if doc is not None and doc.get("state") == "done" else "busy"

    async def finish_update(self, update_key: str) -> None:
        await self.telegram_updates.update_one({"_id": update_key}, {"$set": {"state": "done"}})

    async def abandon_update(self, update_key: str) -> None:
        await self.telegram_updates.delete_one({"_id": update_key, "state": "busy"})

    async def remember_telegram_message(
        self, chat: str, message_id: int, sent_at: datetime, expires_at: datetime, keep: int
    ) -> None:
        """Keep the id of a message of Telegram chat ``chat`` (sent at ``sent_at`` by Telegram's
        clock) until ``expires_at``, when the Bot API no longer lets the bot delete it; at most
        the ``keep`` newest of a chat are kept. A repeat (a redelivered update) is kept once."""
        await self.telegram_trail.update_one(
            {"_id": f"{chat}:{message_id}"},
            {
                "$setOnInsert": {
                    "chat": chat,
                    "message_id": message_id,
                    "sent_at": sent_at,
                    "expires_at": expires_at,
                }
            },
            upsert=True,
        )
        if await self.telegram_trail.count_documents({"chat": chat}) > keep:
            cursor = (
                self.telegram_trail.find({"chat": chat}, {"_id": 1}).sort("sent_at", DESCENDING).skip(keep)
            )
            await self.telegram_trail.delete_many({"_id": {"$in": [d["_id"] async for d in cursor]}})

    async def telegram_messages(self, chat: str, sent_after: datetime) -> list[int]:
        """The ids kept of chat ``chat``'s messages sent after ``sent_after``, oldest first."""
        cursor = self.telegram_trail.find({"chat": chat, "sent_at": {"$gt": sent_after}}, {"message_id": 1})
        return [d["message_id"] async for d in cursor.sort("sent_at", ASCENDING)]

    async def forget_telegram_messages(self, chat: str) -> None:
        """The chat's messages are deleted (or can no longer be): their ids go."""
        await self.telegram_trail.delete_many({"chat": chat})
