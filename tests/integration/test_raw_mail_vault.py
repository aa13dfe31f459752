"""Raw mails and their attachments are stored sealed under a data key of each mail's own
(services/email_ingest/rawstore.py, conversations/rawmail.py), on the real services and database.

The attacker holds the database's files, or a backup, and not the master key: they grep for
what a person wrote in a mail, its attachment's name and bytes. The consultant still
downloads the attachment; the operator still lists and replays quarantined mail; erasing the
thread's text makes the raw mail unreadable too; mails stored before sealing still read.
"""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from bson.binary import Binary

from conversations.rawmail import is_sealed
from conversations.repository import Repository
from conversations.vault import Vault
from deploy.local.stack import LocalStack
from services.email_ingest.rawstore import fingerprint
from shared.envelope import message_id_for, utcnow
from shared.mongo import make_client
from shared.settings import parse_master_key
from tests.conftest import Gateway
from tests.integration.email_support import database, queued_threads, supervisor
from tests.integration.helpers import Consultant, Mailbox, logged_in, new_message_id
from tests.integration.test_email_ingest import quarantine_cli
from tests.integration.test_vault import backup_holding, files_holding

# ASCII, so that it stands as written in a mail's 7-bit body and in the repr of bytes.
CANARY = "RawSealed-" + uuid.uuid4().hex


def base64_forms(needle: bytes) -> list[bytes]:
    """What ``needle`` looks like inside base64 text, at each of the three alignments (a
    backup, and the stand-in's files, hold binary fields as base64): the middle of each,
    which any base64 of bytes holding ``needle`` at that alignment contains."""
    forms = []
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + needle)
        forms.append(encoded[4 if shift else 0 : -4])
    return forms


def holding(root: Path, needle: bytes) -> list[str]:
    """The files under ``root`` holding ``needle`` as written or in base64."""
    return sorted({f for form in [needle, *base64_forms(needle)] for f in files_holding(root, form)})


def mail_with_attachment(text: str, name: str, data: bytes, subject: str = "a letter") -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "client@example.org", "hotline@demo.test", subject
    msg["Message-ID"] = new_message_id()
    msg.set_content(text)
    msg.add_attachment(data, maintype="text", subtype="plain", filename=name)
    return bytes(msg)


async def download(who: Consultant, thread_id: str) -> tuple[int, str | None, bytes]:
    """The thread's one attachment as the consultant downloads it: (status, name, bytes)."""
    status, thread = await who.call("GET", f"/api/threads/{thread_id}")
    assert status == 200, thread
    (att,) = [a for m in thread["messages"] for a in m.get("attachments") or []]
    async with who.http.get(f"{who.base}/api/threads/{thread_id}/attachments/{att['id']}") as resp:
        return resp.status, att.get("filename"), await resp.read()


def vault_of(gateway: Gateway, client: Any) -> Vault:
    key = parse_master_key(gateway.env["store"]["STORE_MASTER_KEY"])
    return Vault(client, f"{gateway.database}_keys.data_keys", key)


async def test_a_mail_and_its_attachment_are_sealed_yet_downloaded_listed_and_replayed(
    gateway: Gateway, stack: LocalStack, tmp_path: Path
) -> None:
    attachment = f"the report {CANARY}-bytes\n".encode()
    raw = mail_with_attachment(
        f"Help me {CANARY}-body", f"{CANARY}-name.txt", attachment, subject=f"{CANARY}-subject"
    )
    sofia = await supervisor(gateway)
    anna = await logged_in(gateway.store_url, "anna")
    client, db = database(gateway)
    env = {**os.environ, **gateway.env["email_ingest"]}
    try:
        await Mailbox("127.0.0.1", gateway.urls.imap_port, gateway.line_mailbox).append(raw)
        (thread_id,) = await queued_threads(sofia, 1)
        status, name, body = await download(anna, thread_id)
        assert (status, name, body) == (200, f"{CANARY}-name.txt", attachment)

        # Stored sealed: the raw mail under a key of its own, its attachment under the same.
        stored = await db["mail_raw"].find_one({})
        assert is_sealed(stored["raw"]) and isinstance(stored["data_key"], Binary)
        vault = vault_of(gateway, client)
        clear = (await vault.open(stored["raw"]) or {}).get("raw")
        assert isinstance(clear, bytes) and f"{CANARY}-body".encode() in clear
        assert stored["sha256"] == fingerprint(clear)  # the fingerprint of the clear bytes stays
        (att,) = [a async for a in db["mail_attachments"].find({})]
        assert is_sealed(att["data"]) and is_sealed(att["filename"])
        assert bytes(att["data"])[1:17] == bytes(stored["data_key"])  # a ciphertext names its key

        # The operator lists it (facts only) and replays it after a fix (as if an older parser
        # had failed on it: quarantined, thread-less, kept).
        await db["messages"].delete_many({})
        await db["threads"].delete_many({})
        await db["mail_raw"].update_one(
            {"_id": stored["_id"]}, {"$set": {"status": "quarantined", "reason": "x"}}
        )
        listed = (await asyncio.to_thread(quarantine_cli, env, "list")).stdout
        assert stored["_id"] in listed and CANARY not in listed
        run = await asyncio.to_thread(quarantine_cli, env, "replay", stored["_id"])
        assert run.returncode == 0, run.stderr
        (again,) = await queued_threads(sofia, 1)
        status, thread = await anna.call("GET", f"/api/threads/{again}")
        assert status == 200 and f"{CANARY}-body" in thread["messages"][0]["text"]
        # The thread's subject is sealed (threads.sealed_subject), yet the consultant's thread
        # view and list of threads show it.
        assert thread["subject"] == f"{CANARY}-subject" and "sealed_subject" not in thread
        status, listed = await anna.call("GET", "/api/threads?status=waiting")
        assert status == 200
        assert [t.get("subject") for t in listed if t["id"] == again] == [f"{CANARY}-subject"]
        stored_thread = await db["threads"].find_one({"_id": again})
        assert stored_thread is not None and isinstance(stored_thread.get("sealed_subject"), Binary)
        assert await download(anna, again) == (200, f"{CANARY}-name.txt", attachment)

        # No document of the gateway's database holds the words, the name or the bytes.
        for collection in await db.list_collection_names():
            docs = [d async for d in db[collection].find({})]
            assert CANARY not in repr(docs), collection
    finally:
        await sofia.close()
        await anna.close()
        await client.close()

    # The stand-in's files on disk and a backup.
    assert holding(stack.root / "ferretdb", CANARY.encode()) == []
    await asyncio.to_thread(backup_holding, gateway, tmp_path / "backup", CANARY.encode())
    assert holding(tmp_path / "backup", CANARY.encode()) == []


async def test_erasing_a_threads_text_makes_its_raw_mail_and_attachment_unreadable(gateway: Gateway) -> None:
    attachment = f"photo of {CANARY}".encode()
    raw = mail_with_attachment(f"erase me {CANARY}", "note.txt", attachment)
    sofia = await supervisor(gateway)
    anna = await logged_in(gateway.store_url, "anna")
    client = make_client(gateway.urls.mongo_url)
    db = client[gateway.database]
    vault = vault_of(gateway, client)
    try:
        await Mailbox("127.0.0.1", gateway.urls.imap_port, gateway.line_mailbox).append(raw)
        (thread_id,) = await queued_threads(sofia, 1)
        # Not downloaded before the erasure: the store would keep the unwrapped key for up to
        # a minute (conversations/vault.py, KEY_CACHE_MS); the first test downloads.
        stored = await db["mail_raw"].find_one({})
        copy = stored["raw"]  # as a backup taken before the erasure holds it
        assert f"erase me {CANARY}".encode() in (await vault.open(copy) or {}).get("raw", b"")

        # The thread's key and the raw mail's key.
        assert await Repository(db, vault).erase_text([thread_id]) == 2

        assert await vault.open(copy) is None
        assert "data_key" not in (await db["mail_raw"].find_one({"_id": stored["_id"]}) or {})
        status, _, body = await download(anna, thread_id)
        assert status == 404 and attachment not in body
        # Nor can the operator replay it.
        await db["mail_raw"].update_one({"_id": stored["_id"]}, {"$set": {"status": "quarantined"}})
        env = {**os.environ, **gateway.env["email_ingest"]}
        run = await asyncio.to_thread(quarantine_cli, env, "replay", stored["_id"])
        assert run.returncode == 1 and "erased" in run.stderr and CANARY not in run.stderr + run.stdout
    finally:
        await vault.close()
        await sofia.close()
        await anna.close()
        await client.close()


async def test_a_mail_stored_before_sealing_is_still_replayed_and_its_attachment_downloaded(
    gateway: Gateway,
) -> None:
    attachment = b"an older attachment"
    raw = mail_with_attachment("stored in clear, before sealing", "old.txt", attachment)
    ingest = gateway.env["email_ingest"]
    user, host, port = (ingest[f"EMAIL_INGEST_IMAP_{k}"] for k in ("USER", "HOST", "PORT"))
    mailbox = f"{user}@{host}:{port}/INBOX"  # as services/email_ingest/imap.py names it
    source_id = f"imap:{mailbox}:1:999999"
    sofia = await supervisor(gateway)
    anna = await logged_in(gateway.store_url, "anna")
    client, db = database(gateway)
    try:
        # As the intake stored mail before this version: clear bytes, no key.
        await db["mail_raw"].insert_one(
            {
                "_id": source_id,
                "mailbox": mailbox,
                "uidvalidity": 1,
                "uid": 999999,
                "sha256": fingerprint(raw),
                "size": len(raw),
                "raw": Binary(raw),
                "status": "quarantined",
                "reason": "x",
                "fetches": 1,
                "internaldate": None,
                "stored_at": utcnow(),
            }
        )
        await db["mail_attachments"].insert_one(
            {
                "_id": message_id_for(f"{source_id}#att0"),
                "source_id": source_id,
                "filename": "old.txt",
                "content_type": "text/plain",
                "size": len(attachment),
                "data": Binary(attachment),
                "stored_at": utcnow(),
            }
        )
        run = await asyncio.to_thread(quarantine_cli, {**os.environ, **ingest}, "replay", source_id)
        assert run.returncode == 0, run.stderr
        (thread_id,) = await queued_threads(sofia, 1)
        assert await download(anna, thread_id) == (200, "old.txt", attachment)
    finally:
        await sofia.close()
        await anna.close()
        await client.close()
