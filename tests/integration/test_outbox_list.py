"""The outbox's list (conversations/repository.py ``outbox``): the sweep finds every outbound
message not yet published from a list of their ids, never by querying the messages (which on
the local stand-in reads every message stored, every few seconds). Against the real database:
a reply waits on the list until it is published, a held one stays but is not handed out, a
cancelled one leaves, an entry whose message is not (yet) stored is kept until it is old, and
the upgrade lists the replies that waited before it."""

from __future__ import annotations

from datetime import timedelta

from conversations.model import new_thread
from conversations.repository import OUTBOX_ORPHAN_AFTER, Repository
from services.store.migrations import MIGRATIONS
from shared.envelope import utcnow

LATER = timedelta(minutes=1)


async def a_thread(repo: Repository) -> dict:
    now = utcnow()
    doc = new_thread(
        f"chat:outbox-{now.timestamp()}",
        channel="chat",
        line="dv",
        queue="gp-dv",
        organisations=["gp"],
        client_address="session-1",
        created_at=now,
        waiting_since=now,
    )
    thread, _ = await repo.create_thread(doc)
    return thread


async def test_a_reply_waits_on_the_list_until_it_is_published(repo: Repository) -> None:
    thread = await a_thread(repo)
    first, _ = await repo.add_outbound(thread, "consultant:vera", "first", "src-1", "x.test")
    second, _ = await repo.add_outbound(thread, "consultant:vera", "second", "src-2", "x.test")

    waiting = await repo.outbox(utcnow() + LATER, 10)
    assert [m["_id"] for m in waiting] == [first["_id"], second["_id"]]  # oldest first
    assert [m["text"] for m in waiting] == ["first", "second"]  # opened, as the sweep sends them
    assert [m["_id"] for m in await repo.outbox(utcnow() + LATER, 1)] == [first["_id"]]
    # Not before the grace the sweep leaves to the path that stored it.
    assert await repo.outbox(first["created_at"], 10) == []

    await repo.mark_published(first["_id"])
    assert [m["_id"] for m in await repo.outbox(utcnow() + LATER, 10)] == [second["_id"]]
    assert await repo.outbox_entries.find_one({"_id": first["_id"]}) is None


async def test_held_replies_stay_listed_and_cancelled_ones_leave(repo: Repository) -> None:
    thread = await a_thread(repo)
    held, _ = await repo.add_outbound(
        thread, "consultant:vera", "held", "src-h", "x.test", held="quiet hours"
    )
    cancelled, _ = await repo.add_outbound(thread, "consultant:vera", "gone", "src-c", "x.test")
    # As retention and an undeliverable reply cancel one: published, with nothing sent.
    await repo.messages.update_one(
        {"_id": cancelled["_id"]}, {"$set": {"published": True, "delivery.status": "cancelled"}}
    )

    assert await repo.outbox(utcnow() + LATER, 10) == []
    assert await repo.outbox_entries.find_one({"_id": cancelled["_id"]}) is None
    # Held: never handed out by the sweep, but still listed for when the plan allows it.
    assert await repo.outbox_entries.find_one({"_id": held["_id"]}) is not None
    await repo.messages.update_one({"_id": held["_id"]}, {"$set": {"delivery.status": "queued"}})
    assert [m["_id"] for m in await repo.outbox(utcnow() + LATER, 10)] == [held["_id"]]


async def test_an_entry_whose_message_is_not_stored_is_kept_until_it_is_old(repo: Repository) -> None:
    now = utcnow()
    await repo.outbox_entries.insert_many(
        [
            {"_id": "on-its-way", "at": now - timedelta(seconds=30)},
            {"_id": "never-stored", "at": now - OUTBOX_ORPHAN_AFTER - LATER},
        ]
    )
    assert await repo.outbox(now, 10) == []
    left = [e["_id"] async for e in repo.outbox_entries.find({})]
    assert left == ["on-its-way"]  # its insert may still come: the list must not lose it


async def test_the_upgrade_lists_the_replies_that_waited_before_it(repo: Repository) -> None:
    thread = await a_thread(repo)
    waiting, _ = await repo.add_outbound(thread, "consultant:vera", "waited", "src-w", "x.test")
    sent, _ = await repo.add_outbound(thread, "consultant:vera", "sent", "src-s", "x.test")
    await repo.mark_published(sent["_id"])
    # A database from before the list: the replies are stored, the list is not.
    await repo.outbox_entries.delete_many({})
    assert await repo.outbox(utcnow() + LATER, 10) == []

    step = next(s for v, _, s in MIGRATIONS if v == 8)
    await step(repo.db)
    await step(repo.db)  # run again after a stop: nothing listed twice

    assert [m["_id"] for m in await repo.outbox(utcnow() + LATER, 10)] == [waiting["_id"]]
    assert await repo.outbox_entries.count_documents({}) == 1
