"""Queue semantics against the real database (FerretDB here, MongoDB in production):
atomic claims, ordering, capacity counts, time-outs, escalation, one thread per key."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from conversations.model import ESCALATED, NORMAL, URGENT, new_thread
from conversations.repository import Repository
from shared.envelope import utcnow


def thread_doc(
    queue: str = "gp-dv", *, priority: int = NORMAL, waited: float = 0, channel: str = "chat", key=None
):
    now = utcnow()
    return new_thread(
        key or f"test:{uuid.uuid4().hex}",
        channel=channel,
        line="dv",
        queue=queue,
        organisations=["gp"],
        priority=priority,
        client_address="s",
        created_at=now,
        waiting_since=now - timedelta(seconds=waited),
    )


async def test_fifty_concurrent_claims_of_one_thread_have_one_winner(repo: Repository) -> None:
    doc, _ = await repo.create_thread(thread_doc())
    results = await asyncio.gather(*(repo.claim(doc["_id"], f"c{i}") for i in range(50)))
    winners = [r["assignee"] for r in results if r is not None]
    assert len(winners) == 1
    assert (await repo.thread(doc["_id"]))["assignee"] == winners[0]


async def test_concurrent_next_never_hands_one_thread_to_two(repo: Repository) -> None:
    ids = {(await repo.create_thread(thread_doc(waited=i)))[0]["_id"] for i in range(10)}
    results = await asyncio.gather(*(repo.claim_next("gp-dv", f"c{i}") for i in range(30)))
    claimed = [r["_id"] for r in results if r is not None]
    assert sorted(claimed) == sorted(ids)  # each of the 10 exactly once
    assert sum(r is None for r in results) == 20


async def test_next_takes_the_most_urgent_then_the_longest_waiting(repo: Repository) -> None:
    old, _ = await repo.create_thread(thread_doc(waited=600))
    older, _ = await repo.create_thread(thread_doc(waited=900))
    urgent, _ = await repo.create_thread(thread_doc(priority=URGENT, waited=10))
    order = [(await repo.claim_next("gp-dv", "vera"))["_id"] for _ in range(3)]
    assert order == [urgent["_id"], older["_id"], old["_id"]]
    assert await repo.claim_next("gp-dv", "vera") is None


async def test_a_consultant_at_capacity_in_chat_gets_an_email_next(repo: Repository) -> None:
    chat, _ = await repo.create_thread(thread_doc(channel="chat", waited=100))
    mail, _ = await repo.create_thread(thread_doc(channel="email", waited=50))
    got = await repo.claim_next("gp-dv", "vera", full_channels=["chat"])
    assert got["_id"] == mail["_id"]
    assert await repo.active_counts("vera") == {"email": 1}
    assert (await repo.thread(chat["_id"]))["status"] == "waiting"


async def test_one_hundred_concurrent_creations_of_one_key_make_one_thread(repo: Repository) -> None:
    key = f"chat:{uuid.uuid4().hex}"
    results = await asyncio.gather(*(repo.create_thread(thread_doc(key=key)) for _ in range(100)))
    assert sum(created for _, created in results) == 1
    assert len({doc["_id"] for doc, _ in results}) == 1
    assert await repo.threads.count_documents({"key": key}) == 1


async def test_unanswered_claim_returns_to_the_queue_keeping_its_place(repo: Repository) -> None:
    silent, _ = await repo.create_thread(thread_doc(waited=300))
    answered, _ = await repo.create_thread(thread_doc(waited=200))
    fresh, _ = await repo.create_thread(thread_doc(waited=100))
    for t in (silent, answered, fresh):
        await repo.claim(t["_id"], "vera")
    past = utcnow() - timedelta(minutes=30)
    await repo.threads.update_many(
        {"_id": {"$in": [silent["_id"], answered["_id"]]}}, {"$set": {"claimed_at": past}}
    )
    await repo.threads.update_one({"_id": answered["_id"]}, {"$set": {"last_reply_at": utcnow()}})

    released = await repo.release_unanswered(utcnow() - timedelta(minutes=15))
    assert [t["_id"] for t in released] == [silent["_id"]]
    back = await repo.thread(silent["_id"])
    assert back["status"] == "waiting" and back["assignee"] is None
    assert back["waiting_since"] == silent["waiting_since"].replace(
        microsecond=back["waiting_since"].microsecond
    )
    assert (await repo.thread(answered["_id"]))["status"] == "active"
    assert (await repo.thread(fresh["_id"]))["status"] == "active"
    # A second sweep (another replica) finds nothing more to do.
    assert await repo.release_unanswered(utcnow() - timedelta(minutes=15)) == []


async def test_offline_consultant_gives_everything_back(repo: Repository) -> None:
    threads = [(await repo.create_thread(thread_doc()))[0] for _ in range(3)]
    for t in threads:
        await repo.claim(t["_id"], "vera")
    released = await repo.release_all("vera")
    assert sorted(t["_id"] for t in released) == sorted(t["_id"] for t in threads)
    assert await repo.active_counts("vera") == {}


async def test_crisis_waiting_too_long_is_escalated_once(repo: Repository) -> None:
    crisis, _ = await repo.create_thread(thread_doc(priority=URGENT, waited=20 * 60))
    recent, _ = await repo.create_thread(thread_doc(priority=URGENT, waited=60))
    calm, _ = await repo.create_thread(thread_doc(priority=NORMAL, waited=60 * 60))
    cutoff = utcnow() - timedelta(minutes=10)
    escalated = await repo.escalate_waiting_crises(cutoff, URGENT, ESCALATED)
    assert [t["_id"] for t in escalated] == [crisis["_id"]]
    assert (await repo.thread(crisis["_id"]))["priority"] == ESCALATED
    assert (await repo.thread(recent["_id"]))["priority"] == URGENT
    assert (await repo.thread(calm["_id"]))["priority"] == NORMAL
    assert await repo.escalate_waiting_crises(cutoff, URGENT, ESCALATED) == []


async def test_transfer_moves_to_another_organisation_and_waits(repo: Repository) -> None:
    doc, _ = await repo.create_thread(thread_doc(queue="113-triage"))
    await repo.claim(doc["_id"], "anna")
    moved = await repo.transfer(doc["_id"], "bwc-migration", ["bwc"], "113")
    assert (moved["queue"], moved["organisations"], moved["status"], moved["assignee"]) == (
        "bwc-migration",
        ["bwc"],
        "waiting",
        None,
    )


async def test_every_change_is_kept_with_its_time(repo: Repository) -> None:
    doc, _ = await repo.create_thread(thread_doc())
    await repo.record_event(doc["_id"], "ThreadQueued", queue="gp-dv")
    await repo.record_event(doc["_id"], "ThreadClaimed", "vera")
    await repo.record_event(doc["_id"], "ThreadClosed", "vera")
    history = await repo.thread_history(doc["_id"])
    assert [e["name"] for e in history] == ["ThreadQueued", "ThreadClaimed", "ThreadClosed"]
    assert all(e["at"] <= utcnow() for e in history)
    assert history[1]["by"] == "vera"


async def test_a_claim_left_half_done_by_a_crash_is_completed_not_stuck(repo: Repository) -> None:
    doc, _ = await repo.create_thread(thread_doc())
    # The winner of claim 1 stored its claim, then died before updating the thread.
    long_ago = utcnow() - timedelta(minutes=5)
    await repo.claims.insert_one(
        {"_id": f"{doc['_id']}:1", "thread_id": doc["_id"], "login": "ghost", "at": long_ago}
    )
    assert await repo.claim(doc["_id"], "vera") is None
    thread = await repo.thread(doc["_id"])
    assert (thread["status"], thread["assignee"], thread["claim_seq"]) == ("active", "ghost", 1)
    # The claim time-out then gives it back, and the next claim is an ordinary one.
    await repo.threads.update_one({"_id": doc["_id"]}, {"$set": {"claimed_at": long_ago}})
    assert [t["_id"] for t in await repo.release_unanswered(utcnow() - timedelta(minutes=1))] == [doc["_id"]]
    assert (await repo.claim(doc["_id"], "vera"))["assignee"] == "vera"


async def test_queue_summary_counts_waiting_threads_and_their_oldest_wait(repo: Repository) -> None:
    for waited in (30, 600, 90):
        await repo.create_thread(thread_doc("gp-dv", waited=waited))
    await repo.create_thread(thread_doc("gp-legal", waited=45))
    claimed, _ = await repo.create_thread(thread_doc("gp-legal", waited=3600))
    assert await repo.claim(claimed["_id"], "vera") is not None  # active: neither counted nor oldest
    closed, _ = await repo.create_thread(thread_doc("gp-dv", waited=7200))
    await repo.threads.update_one({"_id": closed["_id"]}, {"$set": {"status": "closed"}})
    await repo.create_thread(thread_doc("113-triage", waited=10_000))  # a queue not asked for

    now = utcnow()
    summary = await repo.queue_summary(["gp-dv", "gp-legal", "lastrada-migration"])

    assert set(summary) == {"gp-dv", "gp-legal", "lastrada-migration"}
    assert summary["gp-dv"]["waiting"] == 3
    assert summary["gp-legal"]["waiting"] == 1
    assert summary["lastrada-migration"] == {"waiting": 0, "oldest_waiting_since": None}
    assert 590 <= (now - summary["gp-dv"]["oldest_waiting_since"]).total_seconds() <= 700
    assert 40 <= (now - summary["gp-legal"]["oldest_waiting_since"]).total_seconds() <= 150
