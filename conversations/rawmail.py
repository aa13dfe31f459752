"""Raw mails and their attachments as the e-mail intake stores them, sealed.

A mail is stored (``mail_raw``, services/email_ingest/rawstore.py) before any thread exists,
so it has a data key of its own (``mail_raw.data_key``; conversations/vault.py), and its
attachments (``mail_attachments``) are sealed under the same key. Each sealed field holds
one sealed value in place of the clear one: ``mail_raw.raw``, ``mail_attachments.data`` and
``mail_attachments.filename``. This module is how every reader opens them (the intake's
quarantine command, the store's attachment download), and how the repository finds the keys
of a thread's mails to erase them.

Quarantine (docs/email.md): a mail that cannot be turned into a message keeps ``status``
``quarantined`` with its ``reason``, the ``line`` of its mailbox, and, when its sender's
address could be read, ``client_key``: the keyed hash that names the person
(conversations/clients.py), so that erasing the person erases the mail too
(:func:`erase_quarantined`). A supervisor asks for a replay (:func:`request_replay`): one
``mail_replays`` document per mail (``_id`` = its source id), which the intake takes
(:func:`take_replay_requests`), replays as its ``quarantine replay`` command does, and
answers on the mail (``status`` ``replayed``, or ``last_replay`` with why it still cannot).
"""

from __future__ import annotations

from typing import Any

from bson.binary import Binary
from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from conversations.vault import ENCRYPTED_SUBTYPE, Vault
from shared.envelope import utcnow

Doc = dict[str, Any]

RAW_MAILS = "mail_raw"
ATTACHMENTS = "mail_attachments"
REPLAYS = "mail_replays"
QUARANTINED = "quarantined"
# What a supervisor sees of a quarantined mail: facts, never its bytes, subject or sender.
QUARANTINE_FACTS = {
    "_id": 1,
    "mailbox": 1,
    "line": 1,
    "reason": 1,
    "size": 1,
    "stored_at": 1,
    "fetches": 1,
    "last_replay": 1,
    "text_deleted": 1,
}
# The name of the one field inside each sealed value (a sealed value is a document).
RAW, ATTACHMENT_DATA, ATTACHMENT_NAME = "raw", "data", "filename"


class Erased(Exception):
    """The data key of a raw mail was deleted: what it sealed can never be read again."""


def is_sealed(value: object) -> bool:
    return isinstance(value, Binary) and value.subtype == ENCRYPTED_SUBTYPE


async def open_value(vault: Vault | None, value: object, name: str) -> Any:
    """A field of ``mail_raw`` or ``mail_attachments`` as it was before sealing (``name``:
    :data:`RAW`, :data:`ATTACHMENT_DATA` or :data:`ATTACHMENT_NAME`). A clear value (stored
    before sealing) is returned as it is (bytes for binary data), and so is None (cleared by
    retention, or never kept). Raises :class:`Erased` when its data key was deleted,
    ``RuntimeError`` for a sealed value without a vault, and what :meth:`Vault.open` raises
    for any other failure (a master key that does not unwrap the data key)."""
    if not is_sealed(value):
        return bytes(value) if isinstance(value, Binary) else value
    if vault is None:
        raise RuntimeError("a sealed raw mail needs the vault to be read")
    assert isinstance(value, Binary)
    opened = await vault.open(value)
    if opened is None:
        raise Erased
    return opened.get(name)


async def quarantined_mails(db: AsyncDatabase[Doc], limit: int = 1000) -> list[Doc]:
    """The quarantined mails, oldest first, as :data:`QUARANTINE_FACTS` (never their bytes),
    each with ``replay_requested`` (a replay asked for and not yet taken)."""
    cursor = db[RAW_MAILS].find(
        {"status": QUARANTINED}, QUARANTINE_FACTS, sort=[("stored_at", ASCENDING)], limit=limit
    )
    mails = [d async for d in cursor]
    asked = {r["_id"] async for r in db[REPLAYS].find({}, {"_id": 1})}
    for mail in mails:
        mail["replay_requested"] = mail["_id"] in asked
    return mails


async def quarantined_mail(db: AsyncDatabase[Doc], source_id: str) -> Doc | None:
    """One quarantined mail's facts (:data:`QUARANTINE_FACTS`), or None."""
    return await db[RAW_MAILS].find_one({"_id": source_id, "status": QUARANTINED}, QUARANTINE_FACTS)


async def request_replay(db: AsyncDatabase[Doc], source_id: str, by: str) -> bool:
    """Ask the intake to replay the mail; False when a replay of it is already asked for."""
    try:
        await db[REPLAYS].insert_one({"_id": source_id, "by": by, "at": utcnow()})
    except DuplicateKeyError:
        return False
    return True


async def take_replay_requests(db: AsyncDatabase[Doc], limit: int = 100) -> list[str]:
    """The source ids of the replays asked for, each taken by one process only: the request is
    deleted first, and only the process whose delete removed it replays the mail (a delete's
    count is exact on MongoDB and on FerretDB v1). A process that dies after taking one loses
    the request, never the mail: the mail stays quarantined and can be asked for again."""
    taken: list[str] = []
    async for request in db[REPLAYS].find({}, {"_id": 1}, limit=limit):
        gone = await db[REPLAYS].delete_one({"_id": request["_id"]})
        if gone.deleted_count:
            taken.append(request["_id"])
    return taken


async def erase_quarantined(db: AsyncDatabase[Doc], vault: Vault | None, client_keys: list[str]) -> int:
    """Erase the quarantined mails whose sender has one of ``client_keys`` (a person's erasure,
    services/store/erasure.py): each loses its bytes and its attachments, and its data key is
    deleted, so a backup taken before cannot open them either. The records stay, facts only.
    Returns how many data keys were deleted."""
    if not client_keys:
        return 0
    query = {"client_key": {"$in": client_keys}, "status": QUARANTINED}
    mails = [m async for m in db[RAW_MAILS].find(query, {"_id": 1, "data_key": 1})]
    if not mails:
        return 0
    sources = [m["_id"] for m in mails]
    await db[ATTACHMENTS].update_many(
        {"source_id": {"$in": sources}}, {"$set": {"data": None, "filename": None, "text_deleted": True}}
    )
    await db[RAW_MAILS].update_many(
        {"_id": {"$in": sources}},
        {"$set": {"raw": None, "text_deleted": True}, "$unset": {"data_key": "", "client_key": ""}},
    )
    keys = [m["data_key"] for m in mails if m.get("data_key") is not None]
    if not keys or vault is None:
        return 0
    return await vault.erase(keys)
