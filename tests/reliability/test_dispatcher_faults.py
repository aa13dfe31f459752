"""Faults F2-F5 and F13 (dispatcher side) of QUALITY.md 2, counted with the ledger:
lost and visibly duplicated must be 0, always."""

from __future__ import annotations

import asyncio
import random

import pytest

from conversations.identity import new_id, session_thread_key, thread_id_for
from conversations.repository import Repository
from deploy.local.stack import LocalStack
from shared import deadletters, topology
from shared.envelope import Channel, utcnow
from tests.reliability.conftest import Dispatchers
from tests.reliability.ledger import Pipeline, chat_message, new_session, stored_counts

pytestmark = pytest.mark.slow


async def assert_each_thread_answered(repo: Repository, threads: int) -> None:
    """Every conversation got its automatic first answer (an acknowledgement, or the
    out-of-hours notice), however its messages were duplicated or its dispatcher killed.
    (Twice is impossible: an answer's source id, unique, names its thread and kind.)"""
    answers = await repo.messages.find({"author": "bot"}, {"thread_id": 1}).to_list()
    assert len({a["thread_id"] for a in answers}) == threads


async def test_f3_every_message_published_two_to_five_times_is_stored_once(
    dispatchers: tuple[Dispatchers, str, str], pipeline: Pipeline, repo: Repository
) -> None:
    d, _, _ = dispatchers
    d.start()
    d.start()  # two replicas racing for the same duplicates
    sessions = [new_session() for _ in range(20)]
    messages = [chat_message(s, n) for s in sessions for n in range(6)]
    copies = [m for m in messages for _ in range(random.randint(2, 5))]
    random.shuffle(copies)
    for m in copies:
        await pipeline.publish(m)
    await pipeline.wait_all_seen()
    report = pipeline.ledger.report(await stored_counts(repo, pipeline.ledger))
    print("F3 ledger", report, "dedup hits", report["publishes"] - report["sent"])
    assert report["lost"] == 0 and report["visibly_duplicated"] == 0
    assert await repo.threads.count_documents({}) == len(sessions)
    assert await pipeline.dead_letter_count() == 0
    await assert_each_thread_answered(repo, len(sessions))


async def test_f2_f13_a_dispatcher_killed_mid_stream_loses_and_doubles_nothing(
    dispatchers: tuple[Dispatchers, str, str], pipeline: Pipeline, repo: Repository
) -> None:
    d, _, _ = dispatchers
    victim = d.start()
    d.start()
    messages = [chat_message(new_session(), n) for n in range(400)]
    for m in messages[:200]:
        await pipeline.publish(m)
    # Kill one replica while it holds unacknowledged work (prefetch 100), before or after its writes.
    await pipeline.wait_until(lambda: len(pipeline.ledger.events) >= 50)
    d.kill(victim)
    for m in messages[200:]:
        await pipeline.publish(m)
    await pipeline.wait_all_seen()
    report = pipeline.ledger.report(await stored_counts(repo, pipeline.ledger))
    print("F2 ledger", report)
    assert report["lost"] == 0 and report["visibly_duplicated"] == 0
    assert await repo.threads.count_documents({}) == 400
    assert await pipeline.dead_letter_count() == 0
    await assert_each_thread_answered(repo, 400)


async def test_f4_poison_is_dead_lettered_after_bounded_attempts_and_neighbours_pass(
    dispatchers: tuple[Dispatchers, str, str], pipeline: Pipeline, repo: Repository
) -> None:
    d, _, _ = dispatchers
    d.start()
    # A thread whose stored document is broken (no queue): every attempt to add to it fails.
    broken_session = new_session()
    await repo.threads.insert_one(
        {
            "_id": new_id(),
            "key": f"chat:{broken_session}",
            "status": "waiting",
            "channel": "chat",
            "created_at": utcnow(),
        }
    )
    poison = chat_message(broken_session, 1)
    neighbours = [chat_message(new_session(), n) for n in range(30)]
    for m in neighbours[:15]:
        await pipeline.publish(m)
    await pipeline.publish(poison)
    # And one that is not an envelope at all.
    await pipeline.publish(neighbours[0], raw=b"\x80 not json", kind="inbound_message")
    for m in neighbours[15:]:
        await pipeline.publish(m)
    del pipeline.ledger.sent[poison.message_id]  # the poison is expected not to be stored
    await pipeline.wait_all_seen()
    dead = await pipeline.dead_letters(2)
    report = pipeline.ledger.report(await stored_counts(repo, pipeline.ledger))
    reasons = {str(x["message_id"]): _death_reason(x["headers"]) for x in dead}
    logs = "".join(p.read_text() for p in d.processes.log_dir.glob("*.log"))
    attempts = sum(1 for line in logs.splitlines() if poison.message_id in line and "handler_failed" in line)
    print("F4 ledger", report, "dead letters", reasons, "poison attempts", attempts)
    assert report["lost"] == 0 and report["visibly_duplicated"] == 0
    # Poison is quarantined after the delivery limit; what is not an envelope, at once.
    assert reasons == {poison.message_id: "delivery_limit", neighbours[0].message_id: "rejected"}
    assert 1 < attempts <= topology.DELIVERY_LIMIT + 1


def _death_reason(headers: dict[str, object]) -> str:
    deaths = headers.get("x-death")
    assert isinstance(deaths, list) and deaths, headers
    reason = deaths[0]["reason"]
    return reason.decode() if isinstance(reason, bytes) else str(reason)


async def test_f5_database_down_consumers_hold_then_recover_alone(
    stack: LocalStack, dispatchers: tuple[Dispatchers, str, str], pipeline: Pipeline, repo: Repository
) -> None:
    d, _, _ = dispatchers
    d.start()
    before = [chat_message(new_session(), n) for n in range(20)]
    for m in before:
        await pipeline.publish(m)
    await pipeline.wait_all_seen()
    stack.kill_database()
    try:
        during = [chat_message(new_session(), n) for n in range(50)]
        for m in during:
            await pipeline.publish(m)
        # Nothing can be stored while the database is away; the dispatcher holds the messages
        # (unacknowledged) instead of dead-lettering them or crashing. Give it a short outage.
        await asyncio.sleep(8)  # the outage itself: there is no event to await while nothing happens
        assert set(m.message_id for m in during).isdisjoint(pipeline.ledger.events)
    finally:
        stack.start_database()
    await pipeline.wait_all_seen(within=120)
    report = pipeline.ledger.report(await stored_counts(repo, pipeline.ledger))
    print("F5 ledger", report)
    assert report["lost"] == 0 and report["visibly_duplicated"] == 0
    assert await pipeline.dead_letter_count() == 0
    assert all(p.poll() is None for p in d.processes.procs.values()), "a dispatcher crashed"


async def test_operator_lists_and_replays_a_dead_letter_once_its_cause_is_fixed(
    dispatchers: tuple[Dispatchers, str, str], pipeline: Pipeline, repo: Repository
) -> None:
    d, amqp_url, _ = dispatchers
    d.start()
    session = new_session()
    broken = {
        "_id": new_id(),
        "key": f"chat:{session}",
        "status": "waiting",
        "channel": "chat",
        "created_at": utcnow(),
    }
    await repo.threads.insert_one(broken)
    poison = chat_message(session, 1, text="SECRET-CANARY")
    await pipeline.publish(poison)
    # Quarantined after the delivery limit: wait until it is in the dead-letter queue.
    (seen,) = await pipeline.dead_letters(1, keep=True)
    assert seen["message_id"] == poison.message_id
    listed = await deadletters.run(amqp_url, "list", topology.DISPATCHER_INBOUND.name, None)
    assert [(x.message_id, x.reason, x.exchange) for x in listed] == [
        (poison.message_id, "delivery_limit", topology.INBOUND)
    ]
    assert "SECRET-CANARY" not in repr(listed)
    # The operator repairs the thread, then replays: the message is stored, the queue is empty.
    await repo.threads.update_one(
        {"_id": broken["_id"]},
        {
            "$set": {
                "queue": "gp-dv",
                "line": "dv",
                "organisations": ["gp"],
                "client": {"address": session},
                "priority": 0,
                "claim_seq": 0,
                "waiting_since": utcnow(),
            }
        },
    )
    replayed = await deadletters.run(amqp_url, "replay", topology.DISPATCHER_INBOUND.name, None)
    assert [x.message_id for x in replayed] == [poison.message_id]
    await pipeline.wait_all_seen()
    assert await repo.messages.count_documents({"source_id": poison.source_id}) == 1
    assert await deadletters.run(amqp_url, "list", topology.DISPATCHER_INBOUND.name, None) == []


async def test_a_conversation_claimed_while_its_first_answer_is_sent_stays_claimed(
    dispatchers: tuple[Dispatchers, str, str], pipeline: Pipeline, repo: Repository
) -> None:
    """A consultant takes each new conversation the moment its thread exists, while the
    dispatcher is still sending its automatic answer: no claim may be undone by the
    dispatcher writing the thread behind it."""
    d, _, _ = dispatchers
    d.start()
    sessions = [new_session() for _ in range(40)]
    thread_ids = [thread_id_for(session_thread_key(Channel.CHAT, s)) for s in sessions]

    async def take(thread_id: str) -> None:
        # Claimed as soon as the thread is there (each attempt is a database round trip).
        while await repo.claim(thread_id, "vera") is None:
            pass

    takers = [asyncio.create_task(take(t)) for t in thread_ids]
    for s in sessions:
        await pipeline.publish(chat_message(s, 0))
    await asyncio.wait_for(asyncio.gather(*takers), 60)
    await pipeline.wait_all_seen()
    threads = await repo.threads.find({"_id": {"$in": thread_ids}}).to_list()
    assert len(threads) == len(sessions)
    assert [(t["status"], t["assignee"]) for t in threads] == [("active", "vera")] * len(sessions)
    await assert_each_thread_answered(repo, len(sessions))
