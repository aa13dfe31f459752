"""Retention against the real database: old threads lose their free text, keep their facts,
and statistics count them as before."""

from __future__ import annotations

import uuid
from datetime import timedelta
from zoneinfo import ZoneInfo

from conversations.identity import new_id, new_reply_token
from conversations.repository import Repository
from services.store.reports import Scope, StatsReader
from services.store.retention import delete_free_text
from services.store.stats import Query, build_table, make_facts
from shared.envelope import Channel, ChatFacts, InboundMessage, message_id_for, utcnow

CANARY = "Canary-Ж-" + uuid.uuid4().hex


async def closed_thread(repo: Repository, closed_days_ago: float, status: str = "closed") -> str:
    now = utcnow()
    at = now - timedelta(days=closed_days_ago, hours=1)
    case = {"gender": "f", "topics": ["work_abroad", "au_pair"], "comment": f"{CANARY} she is afraid"}
    tid = new_id()
    # Closed (or closed and reopened) with a consultation, as the store keeps them.
    await repo.add_closed_threads(
        [
            {
                "_id": tid,
                "key": f"k:{tid}",
                "channel": "email",
                "line": "113",
                "queue": "113-triage",
                "organisations": ["lastrada"],
                "status": status,
                "client": {"address": "c@example.org"},
                "subject": f"{CANARY} subject",
                "reply_token": new_reply_token(),
                "created_at": at,
                "closed_at": now - timedelta(days=closed_days_ago),
                "case": case,
                "facts": make_facts(case, at=at, line="113", channel="email", organisation="lastrada"),
            }
        ]
    )
    source = f"imap:box:1:{tid}"
    await repo.db["mail_raw"].insert_one({"_id": source, "raw": CANARY.encode()})
    await repo.db["mail_attachments"].insert_one(
        {"_id": f"att-{tid}", "data": CANARY.encode(), "filename": "a.pdf"}
    )
    await repo.messages.insert_one(
        {
            "_id": new_id(),
            "source_id": source,
            "thread_id": tid,
            "direction": "in",
            "text": CANARY,
            "html": f"<p>{CANARY}</p>",
            "subject": CANARY,
            "quoted": CANARY,
            "created_at": at,
            "attachments": [
                {
                    "id": f"att-{tid}",
                    "filename": f"{CANARY}.pdf",
                    "content_type": "x",
                    "size": 1,
                    "stored": True,
                }
            ],
        }
    )
    note = await repo.add_note({"_id": tid, "channel": "email"}, "anna", f"note {CANARY}")
    # Written while the thread was open, as notes are.
    await repo.messages.update_one({"_id": note["_id"]}, {"$set": {"created_at": at}})
    return tid


async def test_old_threads_lose_their_free_text_and_keep_their_statistics(repo: Repository) -> None:
    old = [await closed_thread(repo, 400) for _ in range(3)]
    recent = await closed_thread(repo, 10)
    reopened = await closed_thread(repo, 400, status="waiting")
    tz = ZoneInfo("Europe/Minsk")
    today = utcnow().astimezone(tz).date()
    query = Query(today - timedelta(days=800), today, tz, ("topics",))
    reader = StatsReader(repo)
    before = build_table((await reader.tally([query], Scope(["113"], None)))[0], None)

    assert await delete_free_text(repo, utcnow() - timedelta(days=365)) == 3
    assert await delete_free_text(repo, utcnow() - timedelta(days=365)) == 0  # done once

    for tid in old:
        thread = await repo.thread(tid)
        assert thread is not None and thread["text_deleted_at"] is not None
        assert thread["case"] == {"gender": "f", "topics": ["work_abroad", "au_pair"]}
        assert thread["facts"]["fields"] == {"gender": ["f"], "topics": ["work_abroad", "au_pair"]}
        for m in await repo.thread_messages(tid):
            assert m["text"] is None and m.get("html") is None and m.get("subject") is None
            assert m.get("quoted") is None and m.get("attachments") == []
    # Only the recent thread and the reopened one still hold the text: 2 threads' worth.
    holders = {
        tid
        for tid in [*old, recent, reopened]
        if CANARY in repr(await repo.thread(tid))
        or any(CANARY in repr(m) for m in await repo.thread_messages(tid))
    }
    assert holders == {recent, reopened}
    # Each consultation's case form lost its free text with its thread's; the reopened
    # thread's earlier consultation keeps it until the thread is closed long enough.
    holders = {c["thread_id"] async for c in repo.consultations.find({}) if CANARY in repr(c)}
    assert holders == {recent, reopened}
    for tid in old:
        (episode,) = await repo.consultations_of(tid)
        assert episode["case"] == {"gender": "f", "topics": ["work_abroad", "au_pair"]}
    raw_left = [d async for d in repo.db["mail_raw"].find({"raw": {"$ne": None}})]
    assert len(raw_left) == 2
    after = build_table((await reader.tally([query], Scope(["113"], None)))[0], None)
    assert after == before and after["total"]["count"] == 5


async def test_text_that_arrives_after_a_pass_is_cleared_in_its_turn(repo: Repository) -> None:
    """A client writes again in a thread whose text retention cleared: the thread reopens, and
    once closed long enough again the new text goes too (it was kept forever before)."""
    tid = await closed_thread(repo, 400)
    assert await delete_free_text(repo, utcnow() - timedelta(days=365)) == 1
    thread = await repo.thread(tid)
    assert thread is not None and "text_deleted_at" in thread
    source = f"chat:{tid}:again"
    msg = InboundMessage(
        message_id=message_id_for(source),
        source_id=source,
        channel=Channel.CHAT,
        line="113",
        received_at=utcnow(),
        sender=tid,
        text=f"again {CANARY}",
        chat=ChatFacts(session=tid),
    )
    accepted = await repo.accept_inbound(msg, thread, {})
    assert accepted.reopened and "text_deleted_at" not in accepted.thread
    # Closed again (as a consultant's close leaves it), then retention's next pass.
    await repo.threads.update_one({"_id": tid}, {"$set": {"status": "closed", "closed_at": utcnow()}})
    assert await delete_free_text(repo, utcnow() + timedelta(minutes=1)) == 1
    assert not any(CANARY in repr(m) for m in await repo.thread_messages(tid))
