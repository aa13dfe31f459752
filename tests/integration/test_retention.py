"""Retention on a schedule, per line, against the real database (services/store/retention.py).

Each test plays time forward by writing what a thread would hold after so many days (its
times in the past), then runs a pass as the store's scheduled job runs it.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
import yaml

from conversations.identity import new_id, new_reply_token, session_thread_key
from conversations.repository import Repository
from services.store.retention import Policy, Retention, RetentionJob, delete_free_text, policies
from shared.config import HotlineConfig, load_config
from shared.envelope import Channel, ChatFacts, InboundMessage, message_id_for, utcnow
from shared.lease import Lease
from shared.mongo import make_client
from shared.settings import DEFAULT_CONFIG_PATH
from tests.conftest import Gateway

CANARY = "Retention-Ж-" + uuid.uuid4().hex
CONFIG = load_config(DEFAULT_CONFIG_PATH)
CHAT_ID = "777000111"  # a Telegram user's chat: names the person


def config_with(line: str, **retention: int) -> HotlineConfig:
    """The example configuration with ``lines.<line>.retention`` set as an operator would."""
    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text(encoding="utf-8"))
    data["lines"][line]["retention"] = retention
    return HotlineConfig.model_validate(data)


async def thread_with_text(
    repo: Repository,
    *,
    line: str = "113",
    channel: str = "email",
    days_ago: float,
    closed: bool = True,
    message_days_ago: float | None = None,
) -> str:
    """A thread whose messages were written ``message_days_ago`` (default ``days_ago``) and
    which was closed ``days_ago`` (or left open)."""
    now = utcnow()
    closed_at = now - timedelta(days=days_ago)
    written = now - timedelta(days=message_days_ago if message_days_ago is not None else days_ago, hours=1)
    tid = new_id()
    telegram = channel == "telegram"
    key = session_thread_key(Channel.TELEGRAM, f"bot:{CHAT_ID}") if telegram else f"k:{tid}"
    thread: dict[str, Any] = {
        "_id": tid,
        "key": key,
        "channel": channel,
        "line": line,
        "queue": "113-triage" if line == "113" else "gp-dv",
        "organisations": ["lastrada"],
        "status": "closed" if closed else "waiting",
        "client": {"address": CHAT_ID if telegram else "she@example.org"},
        "subject": f"{CANARY} subject",
        "email": {"last_client_message_id": f"<1@{CANARY}.example.org>", "references": []},
        "reply_token": new_reply_token(),
        "created_at": written,
        "case": {"gender": "f", "comment": f"{CANARY} afraid"},
        "facts": {"at": written, "line": line, "fields": {"gender": ["f"]}},
    }
    if closed:
        thread.update(closed_at=closed_at)
        await repo.add_closed_threads([thread])
    else:
        await repo.threads.insert_one(thread)
    await repo.messages.insert_one(
        {
            "_id": new_id(),
            "source_id": f"src:{tid}",
            "thread_id": tid,
            "direction": "in",
            "channel": channel,
            "text": CANARY,
            "subject": CANARY,
            "email_message_id": f"<2@{CANARY}.example.org>",
            "created_at": written,
        }
    )
    return tid


async def holds_text(repo: Repository, tid: str) -> bool:
    thread = await repo.thread(tid)
    return CANARY in repr(thread) or any(CANARY in repr(m) for m in await repo.thread_messages(tid))


def chat_message(tid: str, text: str) -> InboundMessage:
    source = f"telegram:{uuid.uuid4().hex}"
    return InboundMessage(
        message_id=message_id_for(source),
        source_id=source,
        channel=Channel.TELEGRAM,
        line="113",
        received_at=utcnow(),
        sender=CHAT_ID,
        text=text,
        chat=ChatFacts(session=f"bot:{CHAT_ID}"),
    )


async def test_each_line_keeps_text_as_long_as_its_own_policy_says(repo: Repository) -> None:
    """The DV line keeps 30 days, the infoline the store's 365: a thread of each closed 40
    days ago; only the DV one is cleared, and its statistics facts stay."""
    config = config_with("dv", days=30)
    dv = await thread_with_text(repo, line="dv", days_ago=40)
    infoline = await thread_with_text(repo, line="113", days_ago=40)
    gone = await thread_with_text(repo, line="no-longer-configured", days_ago=400)
    chosen = policies(config, days=365, unclosed_days=365)
    assert Policy("dv", 30, 365) in chosen and Policy("113", 365, 365) in chosen

    out = await Retention(repo, config).run(chosen)

    assert out.threads == 2 and out.by_line["dv"] == 1 and out.by_line["(not configured)"] == 1
    assert not await holds_text(repo, dv) and not await holds_text(repo, gone)
    assert await holds_text(repo, infoline)
    cleared = await repo.thread(dv)
    assert cleared is not None and cleared["facts"]["fields"] == {"gender": ["f"]}
    assert cleared["case"] == {"gender": "f"}
    # What named the person or their mail program is gone too.
    assert cleared["client"]["address"] is None and "email" not in cleared and "key" not in cleared
    (message,) = await repo.thread_messages(dv)
    assert message["email_message_id"] is None


async def test_threads_never_closed_are_cleared_once_quiet_long_enough(repo: Repository) -> None:
    config = config_with("113", unclosed_days=90)
    quiet = await thread_with_text(repo, days_ago=100, closed=False)
    # Opened long ago, but the person wrote last week: the conversation is alive.
    alive = await thread_with_text(repo, days_ago=100, closed=False)
    await repo.messages.insert_one(
        {
            "_id": new_id(),
            "source_id": f"src2:{alive}",
            "thread_id": alive,
            "direction": "in",
            "text": "still here",
            "created_at": utcnow() - timedelta(days=7),
        }
    )
    recent = await thread_with_text(repo, days_ago=30, closed=False)

    out = await Retention(repo, config).run(policies(config, days=365, unclosed_days=365))

    assert out.unclosed == 1 and out.threads == 0
    assert not await holds_text(repo, quiet)
    assert await holds_text(repo, alive) and await holds_text(repo, recent)
    kept = await repo.thread(quiet)
    assert kept is not None and kept["status"] == "waiting" and kept["text_deleted_at"] is not None


async def test_a_note_written_after_a_pass_is_deleted_in_its_turn(repo: Repository) -> None:
    """A consultant's note (or a late message) in a thread retention already cleared: the
    thread loses its mark, the note is kept until it is as old as the policy, then goes."""
    tid = await thread_with_text(repo, days_ago=400)
    assert await delete_free_text(repo, utcnow() - timedelta(days=365)) == 1
    thread = await repo.thread(tid)
    assert thread is not None
    await repo.add_note(thread, "anna", f"late note {CANARY}")
    thread = await repo.thread(tid)
    assert thread is not None and "text_deleted_at" not in thread

    # The next day's pass: the note is a day old, the thread was closed 400 days ago.
    assert await delete_free_text(repo, utcnow() - timedelta(days=365)) == 0
    assert await holds_text(repo, tid)
    # A pass a year later (its cut-off after the note): the note goes, the thread is marked.
    assert await delete_free_text(repo, utcnow() + timedelta(minutes=1)) == 1
    assert not await holds_text(repo, tid)


async def test_a_telegram_client_who_writes_again_can_be_answered(repo: Repository) -> None:
    """Retention drops the Telegram chat a closed thread names; when the person writes again
    the thread reopens with the chat given back, so a reply reaches them, and the new text is
    cleared in its turn."""
    tid = await thread_with_text(repo, channel="telegram", days_ago=400)
    assert await delete_free_text(repo, utcnow() - timedelta(days=365)) == 1
    cleared = await repo.thread(tid)
    assert cleared is not None
    assert CHAT_ID not in repr(cleared) and cleared["client"]["address"] is None

    msg = chat_message(tid, f"again {CANARY}")
    accepted = await repo.accept_inbound(msg, cleared, {})
    assert accepted.reopened
    thread = await repo.thread(tid)
    assert thread is not None and thread["client"]["address"] == CHAT_ID
    assert thread["key"] == session_thread_key(Channel.TELEGRAM, f"bot:{CHAT_ID}")
    assert "text_deleted_at" not in thread


async def test_quarantined_mails_lose_their_bytes(repo: Repository) -> None:
    raw = repo.db["mail_raw"]
    old, recent = f"imap:q:{new_id()}", f"imap:q:{new_id()}"
    for source, days in ((old, 400), (recent, 3)):
        await raw.insert_one(
            {
                "_id": source,
                "raw": CANARY.encode(),
                "status": "quarantined",
                "reason": "too_many_parts",
                "client_key": "k" * 64,
                "stored_at": utcnow() - timedelta(days=days),
            }
        )
    out = await Retention(repo, CONFIG).run(policies(CONFIG, days=365, unclosed_days=365))
    assert out.quarantined == 1
    kept = {d["_id"] async for d in raw.find({"raw": {"$ne": None}})}
    assert kept == {recent}
    # The sender's key goes with the bytes: nothing is left to find for an erasure.
    linked = {d["_id"] async for d in raw.find({"client_key": {"$exists": True}})}
    assert linked == {recent}


async def test_a_raw_mail_no_message_holds_loses_its_bytes_after_every_period(repo: Repository) -> None:
    """A bounce of one of our replies (it quotes the reply and names the client) and a mail
    replayed from quarantine never become a message of their own: they are cleared, with their
    attachments, once older than the longest period; one whose message still holds its text
    stays with that message (its thread's retention clears both)."""
    raw, attachments = repo.db["mail_raw"], repo.db["mail_attachments"]
    bounce, replayed, recent, held = (f"imap:b:{new_id()}" for _ in range(4))
    for source, days, status in (
        (bounce, 400, "stored"),
        (replayed, 400, "replayed"),
        (recent, 3, "stored"),
        (held, 400, "stored"),
    ):
        await raw.insert_one(
            {
                "_id": source,
                "raw": CANARY.encode(),
                "status": status,
                "stored_at": utcnow() - timedelta(days=days),
            }
        )
        await attachments.insert_one(
            {"_id": new_id(), "source_id": source, "data": CANARY.encode(), "filename": f"{CANARY}.pdf"}
        )
    # An open thread's message, 400 days old, still holding its text.
    tid = await thread_with_text(repo, days_ago=400, closed=False, message_days_ago=1)
    await repo.messages.update_one({"thread_id": tid}, {"$set": {"source_id": held}})

    out = await Retention(repo, CONFIG).run(policies(CONFIG, days=365, unclosed_days=365))
    assert out.raw_mails == 2
    kept = {d["_id"] async for d in raw.find({"raw": {"$ne": None}})}
    assert kept == {recent, held}
    with_bytes = {d["source_id"] async for d in attachments.find({"data": {"$ne": None}})}
    assert with_bytes == {recent, held}
    cleared = [d async for d in attachments.find({"source_id": {"$in": [bounce, replayed]}})]
    assert all(d["filename"] is None and d["text_deleted"] is True for d in cleared)


async def test_one_replica_runs_each_pass(repo: Repository) -> None:
    """Three store replicas ask at once: one pass runs; asked again before the interval, none;
    once the interval has passed, one again."""
    tid = await thread_with_text(repo, days_ago=400)
    lease = Lease(repo.db["leases"], 60)

    def replica(name: str, hours: float) -> RetentionJob:
        return RetentionJob(
            repo,
            CONFIG,
            lease,
            name,
            days=365,
            unclosed_days=365,
            interval=timedelta(hours=hours),
            check_seconds=1,
        )

    replicas = [replica(f"store-{i}", 24) for i in range(3)]
    outcomes = await asyncio.gather(*(r.step() for r in replicas))
    ran = [o for o in outcomes if o is not None]
    assert len(ran) == 1 and ran[0].threads == 1
    assert not await holds_text(repo, tid)
    assert [await r.step() for r in replicas] == [None, None, None]  # not due for a day
    job = await repo.db["jobs"].find_one({"_id": "retention"})
    assert job is not None and job["threads"] == 1 and job["by"].startswith("store-")
    assert await lease.leases.find_one({"_id": "retention"}) is None  # released

    due_now = replica("store-0", 0)
    again = await due_now.step()
    assert again is not None and again.threads == 0


@pytest.mark.service_env({"STORE_RETENTION_INTERVAL_HOURS": "0.0003", "STORE_RETENTION_CHECK_SECONDS": "0.5"})
async def test_the_store_runs_retention_by_itself(gateway: Gateway) -> None:
    """Nobody runs a command: the store's own job clears an old thread."""
    client = make_client(gateway.urls.mongo_url)
    try:
        repo = Repository(client[gateway.database])
        tid = await thread_with_text(repo, days_ago=400)

        async def cleared() -> bool:
            thread = await repo.thread(tid)
            return thread is not None and "text_deleted_at" in thread

        async def loop() -> None:
            while not await cleared():  # noqa: ASYNC110 (the database sends no event)
                await asyncio.sleep(0.2)

        await asyncio.wait_for(loop(), 30)
        assert not await holds_text(repo, tid)
    finally:
        await client.close()
    assert "retention_done" in gateway.logs()
