"""What people write is stored sealed (conversations/vault.py), on the real services and database.

The attacker holds the database's files, or a backup, and not the master key: they grep for
what a person wrote. The consultant, with the services, reads it as written.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from bson.binary import Binary
from pymongo.errors import EncryptionError

from conversations.identity import new_id
from conversations.repository import Repository
from conversations.vault import SEALED, Vault, key_id_of
from deploy.local.services import new_master_key
from deploy.local.stack import LocalStack
from services.store.retention import clear_thread
from shared.envelope import Channel, ChatFacts, InboundMessage, message_id_for, utcnow
from shared.mongo import make_client
from shared.settings import parse_master_key
from tests.conftest import ROOT, Gateway
from tests.integration.chat_client import ChatClient
from tests.integration.helpers import SEARCH_TERMS, Consultant

CANARY = "Sealed-Ж-" + uuid.uuid4().hex


@pytest.fixture
async def sealed(repo: Repository) -> AsyncIterator[Repository]:
    """``repo``'s database with a vault of its own (a fresh master key and key vault)."""
    vault = Vault(repo.db.client, f"{repo.db.name}_keys.data_keys", parse_master_key(new_master_key()))
    try:
        r = Repository(repo.db, vault)
        r.search.use(SEARCH_TERMS)
        yield r
    finally:
        await vault.close()
        await repo.db.client.drop_database(f"{repo.db.name}_keys")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def files_holding(root: Path, needle: bytes) -> list[str]:
    """The files under ``root`` that hold ``needle`` (as written, or as UTF-16 would)."""
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if needle in data or needle.decode().encode("utf-16-le") in data:
                found.append(str(path.relative_to(root)))
    return found


def backup_holding(gateway: Gateway, out: Path, needle: bytes) -> list[str]:
    """The files of a backup of the gateway's database (``deploy.backup dump`` into ``out``)
    that hold ``needle``."""
    env = {
        **os.environ,
        "HOTLINE_MONGO_URL": gateway.urls.mongo_url,
        "HOTLINE_MONGO_DATABASE": gateway.database,
    }
    subprocess.run(
        [sys.executable, "-m", "deploy.backup", "dump", "--out", str(out)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    assert any(out.iterdir())
    return files_holding(out, needle)


async def test_a_conversation_is_sealed_in_the_database_files_and_backups_and_read_as_written(
    gateway: Gateway, stack: LocalStack, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    gateway.seed_demo_accounts()
    vera = Consultant(gateway.store_url)
    await vera.login("vera", "vera-demo")
    await vera.open_events()
    chat = ChatClient(http, gateway.chat_url)
    try:
        await chat.start(line="dv", language="ru")
        await chat.say(f"Мне нужна помощь {CANARY}-client")
        thread_id = (await vera.wait_event(lambda e: e["name"] == "ThreadQueued"))["thread_id"]
        assert (await vera.call("POST", "/api/queues/gp-dv/next"))[0] == 200
        status, _ = await vera.call(
            "POST",
            f"/api/threads/{thread_id}/messages",
            {"text": f"Мы с вами {CANARY}-reply"},
            {"Idempotency-Key": uuid.uuid4().hex},
        )
        assert status == 202
        assert (await vera.call("POST", f"/api/threads/{thread_id}/notes", {"text": f"{CANARY}-note"}))[
            0
        ] == 201
        await chat.wait(lambda: any(CANARY in f.get("text", "") for f in chat.shown.values()))

        # The consultant reads every message as it was written.
        status, thread = await vera.call("GET", f"/api/threads/{thread_id}")
        assert status == 200
        texts = [m.get("text") for m in thread["messages"]]
        for part in ("client", "reply", "note"):
            assert any(f"{CANARY}-{part}" in (t or "") for t in texts), (part, texts)
        assert "data_key" not in thread
    finally:
        await chat.drop()
        await vera.close()

    # The database stores ciphertext only: no message, in no collection, holds the text.
    client = make_client(gateway.urls.mongo_url)
    try:
        db = client[gateway.database]
        stored = [m async for m in db["messages"].find({"thread_id": thread_id})]
        assert len(stored) >= 3 and all(isinstance(m.get(SEALED), Binary) for m in stored)
        for name in await db.list_collection_names():
            docs = [d async for d in db[name].find({})]
            assert CANARY not in repr(docs), name
    finally:
        await client.close()

    # The stand-in's files on disk (its SQLite databases and their logs) and a backup.
    assert files_holding(stack.root / "ferretdb", CANARY.encode()) == []
    assert await asyncio.to_thread(backup_holding, gateway, tmp_path / "backup", CANARY.encode()) == []


def chat_message(session: str, text: str) -> InboundMessage:
    source = f"chat:{uuid.uuid4().hex}"
    return InboundMessage(
        message_id=message_id_for(source),
        source_id=source,
        channel=Channel.CHAT,
        line="dv",
        received_at=utcnow(),
        sender=session,
        text=text,
        chat=ChatFacts(session=session),
    )


async def stored_thread(repo: Repository, text: str, subject: str | None = None) -> tuple[str, str]:
    """A chat thread holding ``text`` (and ``subject``, as a mail's thread would); (thread id,
    message id)."""
    session = new_id()
    new: dict[str, Any] = {
        "key": f"chat:{session}",
        "channel": "chat",
        "line": "dv",
        "queue": "gp-dv",
        "organisations": ["gp"],
        "status": "waiting",
        "client": {"address": session},
        "subject": subject,
        "created_at": utcnow(),
        "waiting_since": utcnow(),
    }
    msg = chat_message(session, text)
    accepted = await repo.accept_inbound(msg, None, new)
    return accepted.thread["_id"], msg.message_id


def key_env(gateway: Gateway, current: str, previous: str | None) -> dict[str, str]:
    env = {**os.environ, **gateway.env["store"], "STORE_MASTER_KEY": current}
    if previous is not None:
        env["STORE_PREVIOUS_MASTER_KEY"] = previous
    return env


def keys_command(gateway: Gateway, command: str, current: str, previous: str | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "services.store.keys", command],
        cwd=ROOT,
        env=key_env(gateway, current, previous),
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout


async def test_a_new_master_key_replaces_the_old_one_without_touching_the_text(gateway: Gateway) -> None:
    """The rotation command wraps every data key under the new master key: the text then
    opens with the new key alone, and the old key opens nothing any more."""
    old, new = gateway.env["store"]["STORE_MASTER_KEY"], new_master_key()
    client = make_client(gateway.urls.mongo_url)
    namespace = f"{gateway.database}_keys.data_keys"
    try:
        with_old = Vault(client, namespace, parse_master_key(old))
        repo = Repository(client[gateway.database], with_old)
        thread_id, message_id = await stored_thread(repo, f"{CANARY} rotated")
        before = await client[gateway.database]["messages"].find_one({"_id": message_id})
        assert before is not None

        assert "under" in keys_command(gateway, "status", old)
        out = await asyncio.to_thread(keys_command, gateway, "rotate", new, old)
        rewrapped = re.match(r"(\d+) data keys now wrapped by the current master key", out)
        assert rewrapped is not None and int(rewrapped.group(1)) >= 1, out
        status = await asyncio.to_thread(keys_command, gateway, "status", new, old)
        assert "(previous)" not in status and "(current)" in status

        after = await client[gateway.database]["messages"].find_one({"_id": message_id})
        assert after is not None and after[SEALED] == before[SEALED]  # the text was not touched
        with_new = Vault(client, namespace, parse_master_key(new))
        opened = await Repository(client[gateway.database], with_new).thread_messages(thread_id)
        assert [m["text"] for m in opened] == [f"{CANARY} rotated"]
        # A process that kept only the old key (its cache emptied) can read nothing: an error,
        # never text shown as erased.
        only_old = Vault(client, namespace, parse_master_key(old))
        with pytest.raises(EncryptionError):
            await only_old.open(after[SEALED])
        for v in (with_old, with_new, only_old):
            await v.close()
    finally:
        await client.close()


async def test_deleting_a_threads_key_leaves_its_text_unreadable_everywhere(
    repo: Repository, sealed: Repository
) -> None:
    vault = sealed.vault
    assert vault is not None
    gone, message_id = await stored_thread(sealed, f"{CANARY} erased")
    kept, _ = await stored_thread(sealed, f"{CANARY} kept")
    stored = await repo.messages.find_one({"_id": message_id})
    assert stored is not None and key_id_of(stored[SEALED]) is not None
    thread = await repo.thread(gone)
    assert thread is not None
    # A copy of the sealed value taken before (a backup) is no better than the database.
    copy = stored[SEALED]
    assert await sealed.erase_text([gone]) == 1

    (erased,) = await sealed.thread_messages(gone)
    assert erased.get("erased") is True and erased.get("text") is None
    assert await vault.open(copy) is None
    assert [m["text"] for m in await sealed.thread_messages(kept)] == [f"{CANARY} kept"]
    # A new message in the erased thread gets a new key, and reads.
    session = (await repo.thread(gone) or {})["key"].removeprefix("chat:")
    await sealed.accept_inbound(chat_message(session, "again"), await repo.thread(gone), {})
    texts = [m.get("text") for m in await sealed.thread_messages(gone)]
    assert texts == [None, "again"]
    # The client's address went with the key, and their new message gave it back, sealed
    # under the new key: replies reach them again.
    reopened = await repo.thread(gone)
    assert reopened is not None and set(reopened["client"]) == {"sealed"}
    assert (await sealed.open_thread(reopened))["client"]["address"] == session


async def test_a_threads_subject_is_sealed_under_its_key_and_opened_for_its_readers(
    repo: Repository, sealed: Repository
) -> None:
    """The first mail's subject is stored sealed as ``sealed_subject``, never in clear; every
    reader opens it (Repository.open_thread); a subject stored in clear before still reads;
    erasing the thread's key leaves it unreadable, and retention takes the sealed value away."""
    thread_id, _ = await stored_thread(sealed, "hello", subject=f"{CANARY}-subject")
    stored = await repo.thread(thread_id)
    assert stored is not None and "subject" not in stored
    assert key_id_of(stored["sealed_subject"]) == stored["data_key"].as_uuid()
    assert CANARY not in repr(stored)
    assert (await sealed.open_thread(stored))["subject"] == f"{CANARY}-subject"
    assert "sealed_subject" not in await sealed.open_thread(stored)
    # A thread stored before subjects were sealed reads as it is.
    legacy = {**stored, "subject": "in clear"}
    del legacy["sealed_subject"]
    assert (await sealed.open_thread(legacy))["subject"] == "in clear"

    await sealed.erase_text([thread_id])
    assert (await sealed.open_thread(stored))["subject"] is None
    await clear_thread(sealed, thread_id, utcnow() + timedelta(seconds=5), {})
    cleared = await repo.thread(thread_id)
    assert cleared is not None and "sealed_subject" not in cleared and cleared["subject"] is None


async def test_retention_deletes_the_keys_of_what_it_cleared_a_day_later(
    repo: Repository, sealed: Repository
) -> None:
    """A backup taken before retention cleared a thread holds its ciphertext; once the thread
    has stayed cleared for a day, its key goes too, so that backup opens nothing more of it."""
    vault = sealed.vault
    assert vault is not None
    tid, message_id = await stored_thread(sealed, f"{CANARY} cleared")
    kept, _ = await stored_thread(sealed, f"{CANARY} kept")
    backup = (await repo.messages.find_one({"_id": message_id}) or {})[SEALED]
    assert (await vault.open(backup) or {}).get("text") == f"{CANARY} cleared"
    assert await clear_thread(sealed, tid, utcnow() + timedelta(seconds=5), {}) == 1

    # Cleared just now: a writer may still be storing under the key, so it stays.
    assert await sealed.retire_keys(utcnow() - timedelta(days=1)) == 0
    assert await vault.open(backup) is not None
    await repo.threads.update_one({"_id": tid}, {"$set": {"text_deleted_at": utcnow() - timedelta(days=2)}})
    assert await sealed.retire_keys(utcnow() - timedelta(days=1)) == 1
    assert await vault.open(backup) is None
    assert "data_key" not in (await repo.thread(tid) or {})
    # Another thread, not cleared, keeps its key and its text.
    assert [m["text"] for m in await sealed.thread_messages(kept)] == [f"{CANARY} kept"]
    assert await sealed.retire_keys(utcnow() - timedelta(days=1)) == 0


async def test_a_note_sealed_under_a_key_retired_meanwhile_is_sealed_again(
    repo: Repository, sealed: Repository
) -> None:
    """A consultant's note to a cleared thread is sealed under the key the thread had when it
    was read; retention retires that key before the note is stored: the note is sealed again
    under the thread's new key and reads as written."""
    tid, _ = await stored_thread(sealed, "earlier")
    assert await clear_thread(sealed, tid, utcnow() + timedelta(seconds=5), {}) == 1
    await repo.threads.update_one({"_id": tid}, {"$set": {"text_deleted_at": utcnow() - timedelta(days=2)}})
    read = await repo.thread(tid)  # the writer's read: cleared, with its key
    assert read is not None and "data_key" in read
    note = {
        "_id": new_id(),
        "source_id": f"note:{new_id()}",
        "thread_id": tid,
        "direction": "note",
        "author": "consultant:vera",
        "channel": "chat",
        "text": f"{CANARY} note",
        "created_at": utcnow(),
    }
    stored = await sealed.seal_message(read, note)  # sealed under the key it read
    assert await sealed.retire_keys(utcnow() - timedelta(days=1)) == 1  # the key goes
    await repo.messages.insert_one(stored)
    await sealed.text_added(read, written=note)
    texts = [m.get("text") for m in await sealed.thread_messages(tid)]
    assert texts == [None, f"{CANARY} note"]
    thread = await repo.thread(tid)
    assert thread is not None and "text_deleted_at" not in thread and "data_key" in thread


def client_message(tid: str, text: str) -> dict[str, Any]:
    """A client's message of thread ``tid``, as the repository stores one (before sealing)."""
    return {
        "_id": new_id(),
        "source_id": f"chat:{new_id()}",
        "thread_id": tid,
        "direction": "in",
        "author": "client",
        "channel": "chat",
        "text": text,
        "created_at": utcnow(),
    }


async def test_a_cleared_thread_holding_a_message_not_cleared_keeps_its_key(
    repo: Repository, sealed: Repository
) -> None:
    """A message stored in a cleared thread whose mark was never lifted (its writer died between
    storing it and lifting the mark): retention keeps the key and lifts the mark, so the
    message reads and is cleared in its turn."""
    tid, _ = await stored_thread(sealed, "earlier")
    assert await clear_thread(sealed, tid, utcnow() + timedelta(seconds=5), {}) == 1
    thread = await repo.thread(tid)
    assert thread is not None
    await sealed.messages.insert_one(await sealed.seal_message(thread, client_message(tid, f"{CANARY} late")))
    await repo.threads.update_one({"_id": tid}, {"$set": {"text_deleted_at": utcnow() - timedelta(days=2)}})
    assert await sealed.retire_keys(utcnow() - timedelta(days=1)) == 0
    kept = await repo.thread(tid)
    assert kept is not None and "data_key" in kept and "text_deleted_at" not in kept
    assert f"{CANARY} late" in [m.get("text") for m in await sealed.thread_messages(tid)]


async def test_an_address_given_back_under_a_key_retired_meanwhile_is_sealed_again(
    repo: Repository, sealed: Repository
) -> None:
    """The person writes to a cleared thread; the writer read it with the key retention retires
    between the message's sealing and its storing: the message and the address it gives back
    are sealed under the thread's new key, so a reply still reaches them."""
    tid, _ = await stored_thread(sealed, "earlier")
    assert await clear_thread(sealed, tid, utcnow() + timedelta(seconds=5), {}) == 1
    await repo.threads.update_one({"_id": tid}, {"$set": {"text_deleted_at": utcnow() - timedelta(days=2)}})
    read = await repo.thread(tid)  # the writer's read: cleared, no address, with its key
    assert read is not None and "data_key" in read
    assert (await sealed.open_thread(read))["client"]["address"] is None
    written = client_message(tid, f"{CANARY} again")
    stored = await sealed.seal_message(read, written)
    assert await sealed.retire_keys(utcnow() - timedelta(days=1)) == 1  # the key goes now
    await repo.messages.insert_one(stored)
    await sealed.text_added(read, "s-again", "chat:s-again", written)
    thread = await repo.thread(tid)
    assert thread is not None and "data_key" in thread and "text_deleted_at" not in thread
    assert (await sealed.open_thread(thread))["client"]["address"] == "s-again"
    assert [m.get("text") for m in await sealed.thread_messages(tid)] == [None, f"{CANARY} again"]


async def test_a_message_that_arrives_while_the_person_is_erased_is_kept(
    repo: Repository, sealed: Repository
) -> None:
    """The person writes again in the seconds a supervisor erases their closed conversation:
    the writer read the thread before the erasure and sealed the message under the key the
    erasure then deleted. The message is sealed again under a new key, the thread gets their
    address back, and it reads as written; what was erased stays erased."""
    tid, _ = await stored_thread(sealed, f"{CANARY} before")
    await repo.threads.update_one({"_id": tid}, {"$set": {"status": "closed", "closed_at": utcnow()}})
    read = await repo.thread(tid)  # the writer's read, before the erasure
    assert read is not None and read["status"] == "closed"
    session = read["key"].removeprefix("chat:")
    written = client_message(tid, f"{CANARY} during")
    stored = await sealed.seal_message(read, written)
    # The erasure (services/store/erasure.py): cleared, then its keys deleted at once.
    await clear_thread(sealed, tid, utcnow() + timedelta(seconds=5), {"status": "closed"})
    assert await sealed.erase_text([tid]) == 1
    await repo.messages.insert_one(stored)
    await sealed.text_added(read, session, f"chat:{session}", written)
    assert [m.get("text") for m in await sealed.thread_messages(tid)] == [None, f"{CANARY} during"]
    thread = await repo.thread(tid)
    assert thread is not None and "text_deleted_at" not in thread
    assert (await sealed.open_thread(thread))["client"]["address"] == session


async def test_retention_deletes_the_keys_of_raw_mails_it_empties(sealed: Repository) -> None:
    """A quarantined mail and a bounce, older than the longest period: retention empties them
    and deletes their data keys, so a backup taken before the pass opens neither; a recent
    mail keeps its bytes and key."""
    from services.email_ingest.rawstore import RawStore
    from services.store.retention import Retention, policies
    from shared.config import load_config
    from shared.settings import DEFAULT_CONFIG_PATH

    assert sealed.vault is not None
    config = load_config(DEFAULT_CONFIG_PATH)
    store = RawStore(sealed.db, sealed.vault)
    raw = sealed.db["mail_raw"]
    old_quarantined, old_bounce, recent = (f"imap:r:{new_id()}" for _ in range(3))
    for uid, source in enumerate((old_quarantined, old_bounce, recent), start=1):
        await store.store(source, "box", 1, uid, f"From: a@b\r\n\r\n{source}".encode(), utcnow())
    await raw.update_one({"_id": old_quarantined}, {"$set": {"status": "quarantined"}})
    await raw.update_many(
        {"_id": {"$in": [old_quarantined, old_bounce]}},
        {"$set": {"stored_at": utcnow() - timedelta(days=400)}},
    )
    backup = {d["_id"]: d async for d in raw.find({})}  # taken before the pass

    out = await Retention(sealed, config).run(policies(config, days=365, unclosed_days=365))
    assert (out.quarantined, out.raw_mails) == (1, 1)
    for source in (old_quarantined, old_bounce):
        now = await raw.find_one({"_id": source})
        assert now is not None and now["raw"] is None and "data_key" not in now
        assert await sealed.vault.keys.find_one({"_id": backup[source]["data_key"]}) is None
        assert await sealed.vault.open(backup[source]["raw"]) is None  # the backup's copy: unreadable
    kept = await raw.find_one({"_id": recent})
    assert kept is not None and kept["raw"] is not None
    opened = await sealed.vault.open(kept["raw"])
    assert opened is not None and recent.encode() in opened["raw"]
