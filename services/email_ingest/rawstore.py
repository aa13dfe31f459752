"""The raw-mail store: every fetched mail, kept once, before anything is published.

Collections (the service's own; nothing else writes them):

- ``mail_raw``: ``_id`` = source id (``imap:<mailbox>:<UIDVALIDITY>:<UID>``, unique by
  construction), ``mailbox``, ``uidvalidity``, ``uid``, ``sha256``, ``size``, ``raw``
  (the bytes as fetched), ``status`` (``stored``, or ``quarantined`` -> ``replayed``),
  ``reason`` (for quarantined mail), ``fetches`` (how often the server gave it to us:
  more than one means a re-fetch after a crash or a dropped connection), times.
  A stored mail is handed to the gateway, then flagged on the server; one fetched again
  (the service died between the two) is handed over again, and the dispatcher, keyed on
  its source id, stores it once. No write per mail records the hand-over: on FerretDB an
  update finds its document by a scan of the collection, raw bytes included.
- ``mail_attachments``: ``_id`` = a stable id derived from the source id and the part's
  position, so a re-fetch stores nothing twice; the bytes are kept only under the cap.

Sealed (conversations/vault.py, docs/privacy.md): a raw mail arrives before any thread
exists, so each gets a data key of its own, made here (``mail_raw.data_key``, the key's id).
``mail_raw.raw`` holds the bytes sealed under it, and so do ``mail_attachments.data`` and
``.filename`` for the mail's attachments: each field is one sealed value (BSON binary
subtype 6) in place of the clear one, so whatever clears the field (retention) clears the
ciphertext. Deleting the key (``Repository.erase_text`` for the mail's thread) makes the mail
and its attachments unreadable in every copy. A record stored before sealing (clear bytes,
no key) reads as it is. ``sha256`` stays the hash of the clear bytes (the resync check
below compares it): it says whether two stored mails are identical, nothing of what they
say, and confirms a guess only to someone who already holds the exact bytes as received.

Quarantined (conversations/rawmail.py): a mail that cannot be turned into a message keeps
``status`` ``quarantined`` with its ``reason``, its mailbox's ``line`` (the store shows it to
the supervisors of that line) and, when its headers give a sender, the sender's client key
(``client_key``, the HMAC conversations/clients.py keys people by, under
``EMAIL_INGEST_CLIENT_KEY_SECRET``), so erasing the person erases the mail.

A database document holds at most 16 MiB, hence ``max_mail_bytes`` is capped at 15 MiB;
a larger mail is recorded (facts only, ``quarantined``, ``too_large``) and left on the server.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bson import Binary
from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from conversations.clients import client_key, normalised_address
from conversations.rawmail import ATTACHMENT_DATA, ATTACHMENT_NAME, RAW, open_value
from conversations.rawmail import QUARANTINED as QUARANTINED
from conversations.vault import Vault
from services.email_ingest.mime import Attachment, sender_address
from shared.envelope import AttachmentRef, message_id_for, utcnow
from shared.mongo import InsertBatcher

Doc = dict[str, Any]

STORED = "stored"
REPLAYED = "replayed"


@dataclass(frozen=True)
class Stored:
    """Outcome of :meth:`RawStore.store`: the document, and whether it was new."""

    doc: Doc
    created: bool


def fingerprint(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


class RawStore:
    """The raw-mail store; with a ``vault`` (every service; a test of something else may go
    without) what it keeps is sealed; with a ``client_key_secret`` a quarantined mail is
    linked to its sender's client key."""

    def __init__(
        self, db: AsyncDatabase[Doc], vault: Vault | None = None, client_key_secret: bytes | None = None
    ) -> None:
        self.raw = db["mail_raw"]
        self.attachments = db["mail_attachments"]
        self.vault = vault
        self.client_key_secret = client_key_secret
        # The mails of one fetch are stored with one write (group commit).
        self._inserts = InsertBatcher(self.raw)

    async def ensure_indexes(self) -> None:
        await self.raw.create_index([("mailbox", ASCENDING), ("sha256", ASCENDING)], name="fingerprint")
        await self.raw.create_index([("status", ASCENDING), ("stored_at", ASCENDING)], name="status")
        # Retention's bound for raw mails of any status, and their attachments
        # (services/store/retention.py, clear_raw_mails).
        await self.raw.create_index([("stored_at", ASCENDING)], name="stored")
        await self.attachments.create_index([("source_id", ASCENDING)], name="source")

    async def store(
        self,
        source_id: str,
        mailbox: str,
        uidvalidity: int,
        uid: int,
        raw: bytes,
        internaldate: datetime | None,
    ) -> Stored:
        """Insert the mail, sealed under a new data key, unless its source id is there; count
        the fetch either way."""
        doc = self.document(source_id, mailbox, uidvalidity, uid, raw, internaldate)
        if self.vault is not None:
            doc["data_key"] = await self.vault.new_key()
            doc["raw"] = await self.vault.seal(doc["data_key"], {RAW: raw})
        if await self._inserts.insert(doc):
            return Stored(doc, True)
        if self.vault is not None:  # a re-fetch: the mail keeps the key it was stored under
            await self.vault.erase([doc["data_key"]])
        existing = await self.raw.find_one_and_update({"_id": source_id}, {"$inc": {"fetches": 1}})
        assert existing is not None  # mail_raw is never deleted while its mail is unflagged
        return Stored(existing, False)

    async def raw_bytes(self, doc: Doc) -> bytes | None:
        """The bytes of a ``mail_raw`` record as fetched; None when they were not kept (too
        large) or cleared by retention. Raises :class:`Erased` after its key was deleted."""
        value = await open_value(self.vault, doc.get("raw"), RAW)
        return bytes(value) if value is not None else None

    async def _key_of(self, doc: Doc) -> Binary | None:
        """The data key of a stored mail; a mail stored before sealing (no key) is given one
        now, for the attachments still to be stored (its raw bytes stay as they were)."""
        key = doc.get("data_key")
        if self.vault is None or isinstance(key, Binary):
            return key
        made: Binary = await self.vault.new_key()
        given = await self.raw.update_one(
            {"_id": doc["_id"], "data_key": {"$exists": False}}, {"$set": {"data_key": made}}
        )
        if given.modified_count:
            return made
        await self.vault.erase([made])  # another process gave it one first
        found = await self.raw.find_one({"_id": doc["_id"]}, {"data_key": 1})
        return found.get("data_key") if found is not None else None

    @staticmethod
    def document(
        source_id: str,
        mailbox: str,
        uidvalidity: int,
        uid: int,
        raw: bytes,
        internaldate: datetime | None,
    ) -> Doc:
        """The ``mail_raw`` record of a fetched mail, as first stored."""
        return {
            "_id": source_id,
            "mailbox": mailbox,
            "uidvalidity": uidvalidity,
            "uid": uid,
            "sha256": fingerprint(raw),
            "size": len(raw),
            "raw": Binary(raw),
            "status": STORED,
            "reason": None,
            "fetches": 1,
            "internaldate": internaldate,
            "stored_at": utcnow(),
        }

    async def record_too_large(
        self, source_id: str, mailbox: str, uidvalidity: int, uid: int, size: int, line: str | None = None
    ) -> None:
        await self.raw.update_one(
            {"_id": source_id},
            {
                "$setOnInsert": {
                    "mailbox": mailbox,
                    "line": line,
                    "uidvalidity": uidvalidity,
                    "uid": uid,
                    "size": size,
                    "raw": None,
                    "sha256": None,
                    "status": QUARANTINED,
                    "reason": "too_large",
                    "stored_at": utcnow(),
                },
                "$inc": {"fetches": 1},
            },
            upsert=True,
        )

    def sender_key(self, raw: bytes) -> str | None:
        """The client key of the raw mail's sender (its headers read alone), or None."""
        address = sender_address(raw) if self.client_key_secret is not None else ""
        if not address or self.client_key_secret is None:
            return None
        return client_key(self.client_key_secret, "email", normalised_address(address))

    async def quarantine(
        self,
        source_id: str,
        mailbox: str,
        uidvalidity: int,
        uid: int,
        size: int,
        reason: str,
        line: str | None = None,
        raw: bytes | None = None,
    ) -> None:
        """Mark the fetched mail ``quarantined`` with ``reason``, its mailbox's ``line`` and
        the client key of the sender its headers give (``raw``). When its record was never
        stored (the database refused it), its facts are recorded instead, without the bytes
        and without their hash (so a UIDVALIDITY change never takes a later copy for one
        already ingested): the mail stays on the server, as a mail too large does."""
        now = utcnow()
        facts: Doc = {"status": QUARANTINED, "reason": reason, "updated_at": now}
        if line is not None:
            facts["line"] = line
        key = self.sender_key(raw) if raw is not None else None
        if key is not None:
            facts["client_key"] = key
        await self.raw.update_one(
            {"_id": source_id},
            {
                "$set": facts,
                "$setOnInsert": {
                    "mailbox": mailbox,
                    "uidvalidity": uidvalidity,
                    "uid": uid,
                    "size": size,
                    "raw": None,
                    "sha256": None,
                    "fetches": 1,
                    "stored_at": now,
                },
            },
            upsert=True,
        )

    async def seen_under_other_uidvalidity(self, mailbox: str, sha256: str, uidvalidity: int) -> bool:
        """After a UIDVALIDITY change (RFC 3501 2.3.1.1) the same mails come back with new UIDs:
        the same bytes already stored under an older UIDVALIDITY are the same mail."""
        found = await self.raw.find_one(
            {"mailbox": mailbox, "sha256": sha256, "uidvalidity": {"$ne": uidvalidity}}, {"_id": 1}
        )
        return found is not None

    async def mark(self, source_id: str, status: str, reason: str | None = None) -> None:
        await self.raw.update_one(
            {"_id": source_id}, {"$set": {"status": status, "reason": reason, "updated_at": utcnow()}}
        )

    async def replay_failed(self, source_id: str, why: str) -> None:
        """Say on a quarantined mail why the replay a supervisor asked for did not publish it."""
        await self.raw.update_one(
            {"_id": source_id, "status": QUARANTINED},
            {"$set": {"last_replay": {"at": utcnow(), "outcome": why}}},
        )

    async def get(self, source_id: str) -> Doc | None:
        return await self.raw.find_one({"_id": source_id})

    async def quarantined(self, limit: int = 100) -> list[Doc]:
        """Quarantined mails for operators: facts only, never the bytes."""
        cursor = self.raw.find(
            {"status": QUARANTINED},
            {"raw": 0},
            sort=[("stored_at", ASCENDING)],
            limit=limit,
        )
        return [d async for d in cursor]

    async def store_attachments(
        self, mail: Doc, parts: list[Attachment], max_bytes: int
    ) -> list[AttachmentRef]:
        """Keep each attachment of the stored mail ``mail`` (its ``mail_raw`` record) once
        (stable id), name and bytes sealed under the mail's key; bytes only when within
        ``max_bytes``."""
        source_id = mail["_id"]
        key = await self._key_of(mail) if parts else None
        refs: list[AttachmentRef] = []
        for index, part in enumerate(parts):
            att_id = message_id_for(f"{source_id}#att{index}")
            keep = len(part.data) <= max_bytes
            doc: Doc = {
                "_id": att_id,
                "source_id": source_id,
                "filename": part.filename,
                "content_type": part.content_type,
                "size": len(part.data),
                "data": Binary(part.data) if keep else None,
                "stored_at": utcnow(),
            }
            if self.vault is not None and key is not None:
                doc["filename"] = await self.vault.seal(key, {ATTACHMENT_NAME: part.filename})
                if keep:
                    doc["data"] = await self.vault.seal(key, {ATTACHMENT_DATA: part.data})
            try:
                await self.attachments.insert_one(doc)
            except DuplicateKeyError:
                pass
            refs.append(
                AttachmentRef(
                    id=att_id,
                    filename=part.filename,
                    content_type=part.content_type,
                    size=len(part.data),
                    stored=keep,
                )
            )
        return refs
