"""The soak, short form (issue: nothing lost or doubled as the database fills up).

20,000 chat messages (conversations of ten) go through a dispatcher into one database. The
stored rate is measured twice, on the first 2,000 messages (an empty database) and on the
last 2,000 (18,000 already stored); the second must stay within half of the first, because
a query that scans a collection grows with it (what the stand-in did for every find before
its patch, docs/architecture.md). The ledger over all 20,000: 0 lost, 0 visibly duplicated,
every conversation answered automatically exactly once, nothing dead-lettered.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from conversations.repository import Repository
from tests.reliability.conftest import Dispatchers
from tests.reliability.ledger import Pipeline, chat_message, new_session, stored_counts

pytestmark = pytest.mark.slow

PER_CONVERSATION = 10
MEASURED = 2_000  # messages whose stored rate is measured, at the start and at the end
TOTAL = 20_000
IN_FLIGHT = 100  # publishes awaiting their confirm at once


async def send(pipeline: Pipeline, count: int) -> float:
    """Publish ``count`` messages (new conversations of ten) and return the stored rate:
    messages per second from the first publish until the dispatcher announced the last."""
    sessions = [new_session() for _ in range(count // PER_CONVERSATION)]
    messages = [chat_message(s, n) for n in range(PER_CONVERSATION) for s in sessions]
    began = time.monotonic()
    for start in range(0, len(messages), IN_FLIGHT):
        await asyncio.gather(*(pipeline.publish(m) for m in messages[start : start + IN_FLIGHT]))
    await pipeline.wait_all_seen(within=600)
    return count / (time.monotonic() - began)


async def test_soak_stored_rate_holds_as_the_database_fills_and_nothing_is_lost_or_doubled(
    dispatchers: tuple[Dispatchers, str, str], pipeline: Pipeline, repo: Repository
) -> None:
    d, _, _ = dispatchers
    d.start()
    empty = await send(pipeline, MEASURED)
    await send(pipeline, TOTAL - 2 * MEASURED)
    full = await send(pipeline, MEASURED)
    report = pipeline.ledger.report(await stored_counts(repo, pipeline.ledger))
    answers = await repo.messages.find({"author": "bot"}, {"thread_id": 1}).to_list()
    per_thread = {a["thread_id"] for a in answers}
    threads = TOTAL // PER_CONVERSATION
    print(
        f"soak: stored {empty:.0f} msg/s on an empty database, {full:.0f} msg/s with"
        f" {TOTAL - MEASURED} stored ({full / empty:.2f}x); ledger {report};"
        f" automatic answers {len(answers)} for {threads} conversations"
    )
    assert report["sent"] == TOTAL
    assert report["lost"] == 0 and report["visibly_duplicated"] == 0, report
    assert len(answers) == len(per_thread) == threads  # each conversation answered once
    assert await pipeline.dead_letter_count() == 0
    assert full >= 0.5 * empty, (empty, full)
