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

from services.email_ingest.mime import Attachment
from shared.envelope import AttachmentRef, message_id_for, utcnow
from shared.mongo import InsertBatcher

Doc = dict[str, Any]

STORED = "stored"
REPLAYED = "replayed"
QUARANTINED = "quarantined"


@dataclass(frozen=True)
class Stored:
    """Outcome of :meth:`RawStore.store`: the document, and whether it was new."""

    doc: Doc
    created: bool


def fingerprint(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


class RawStore:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.raw = db["mail_raw"]
        self.attachments = db["mail_attachments"]
        # The mails of one fetch are stored with one write (group commit).
        self._inserts = InsertBatcher(self.raw)

    async def ensure_indexes(self) -> None:
        await self.raw.create_index([("mailbox", ASCENDING), ("sha256", ASCENDING)], name="fingerprint")
        await self.raw.create_index([("status", ASCENDING), ("stored_at", ASCENDING)], name="status")

    async def store(
        self,
        source_id: str,
        mailbox: str,
        uidvalidity: int,
        uid: int,
        raw: bytes,
        internaldate: datetime | None,
    ) -> Stored:
        """Insert the mail unless its source id is there; count the fetch either way."""
        doc = self.document(source_id, mailbox, uidvalidity, uid, raw, internaldate)
        if await self._inserts.insert(doc):
            return Stored(doc, True)
        existing = await self.raw.find_one_and_update({"_id": source_id}, {"$inc": {"fetches": 1}})
        assert existing is not None  # mail_raw is never deleted while its mail is unflagged
        return Stored(existing, False)

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
        self, source_id: str, mailbox: str, uidvalidity: int, uid: int, size: int
    ) -> None:
        await self.raw.update_one(
            {"_id": source_id},
            {
                "$setOnInsert": {
                    "mailbox": mailbox,
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
        self, source_id: str, parts: list[Attachment], max_bytes: int
    ) -> list[AttachmentRef]:
        """Keep each attachment once (stable id); bytes only when within ``max_bytes``."""
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
