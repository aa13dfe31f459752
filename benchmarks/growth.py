"""How the cost of reading grows with a year of data (`python -m benchmarks --growth`).

The database is filled in steps to each size of ``BENCH_GROWTH_SIZES`` (messages; default
10,000, 100,000, 1,000,000; the generated year of benchmarks/search.py, about ten messages a
thread, 85 % of threads closed with a consultation, the rest still waiting), and at each
size, through the store's HTTP API as a supervisor of every line (median of five, spread):

- the console's queue load, ``GET /api/threads?status=waiting``;
- opening a thread, ``GET /api/threads/{id}`` (a closed one from the middle of the year);
- statistics for the last 365 days, ``GET /api/stats``;
- a search for a rare word, ``POST /api/search`` (after the index is rebuilt over all);
- and, to show where the time goes, the queue load's query against the database alone
  (the same filter and sort as conversations/repository.py ``list_threads``) and a count of
  the threads (what any full scan costs at that size).

A step that would take longer than ``BENCH_GROWTH_BUDGET`` seconds (default 1,800), judged
by the write rate of the step before, is not made, and the report says so with that rate.
``BENCH_GROWTH_REPEAT`` (default 5) sets the repetitions; each figure is printed as soon as
it is measured, so a run stopped at a large size keeps what it measured there.

``BENCH_GROWTH_ONLY=search``: at each size only the searches, every kind of
benchmarks/search.py (not the console's reads, which take minutes each at 1,000,000 messages on
the stand-in). ``BENCH_GROWTH_INDEX`` says how the index gets the step's postings: ``rebuild``
(default; the store's rebuild over everything stored, as after an upgrade) or ``written``: the
postings of the step's generated messages and consultations, computed in memory by the
indexer's own functions (``message_postings``, ``consultation_postings``) month by month and
written by ``SearchIndex.add``, as the store's indexer writes them. The index holds the same
postings either way; ``written`` skips reading the year back from the database, which on the
stand-in is what makes a rebuild of 1,000,000 messages take hours.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient

from benchmarks.memory import cpu_used
from benchmarks.search import MINSK, Corpus, build_index, timed_searches, write
from conversations.contact_plan import NOT_OUT
from conversations.search import (
    INDEXED_DIRECTIONS,
    SearchIndex,
    SearchKey,
    consultation_postings,
    local_day,
    merge,
    message_postings,
)

REPEAT = int(os.environ.get("BENCH_GROWTH_REPEAT", "5"))
AT_REST = 30.0  # seconds the stack's CPU is measured with nothing to do, at each size


async def _timed(call: Any, repeat: int = REPEAT) -> list[float]:
    out = []
    for _ in range(repeat):
        began = time.perf_counter()
        await call()
        out.append(time.perf_counter() - began)
    return out


def show(have: int) -> Callable[[str, list[float]], None]:
    """Prints one figure of the step at ``have`` messages."""

    def line(what: str, times: list[float]) -> None:
        ms = [t * 1000 for t in times]
        print(
            f"growth   {have:>9,} | {what}: median {statistics.median(ms):.0f} ms "
            f"({min(ms):.0f}-{max(ms):.0f}, n={len(ms)})",
            flush=True,
        )

    return line


async def measure(
    store: str,
    db: Any,
    thread_id: str,
    queues: list[str],
    rare: str | None,
    done: Callable[[str, list[float]], None],
) -> dict[str, list[float]]:
    """The figures at the data stored now: ``thread_id`` is the thread opened, ``rare`` the word
    searched (None: no search). ``done`` is told each figure as soon as it is measured."""
    today = datetime.now(UTC).date()
    year = {"from": (today - timedelta(days=365)).isoformat(), "to": today.isoformat()}
    out: dict[str, list[float]] = {}

    async def timed(what: str, call: Any) -> None:
        out[what] = await _timed(call)
        done(what, out[what])

    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(f"{store}/api/session", json={"login": "sofia", "password": "sofia-demo"}) as r:
            assert r.status == 200, await r.text()
            csrf = (await r.json())["csrf_token"]

        async def get(path: str, params: dict[str, str] | None = None) -> None:
            async with http.get(f"{store}{path}", params=params) as r:
                await r.read()
                assert r.status == 200, (path, r.status)

        async def search_rare() -> None:
            async with http.post(
                f"{store}/api/search", json={"text": rare}, headers={"X-CSRF-Token": csrf}
            ) as r:
                await r.read()
                assert r.status == 200, r.status

        await timed(
            "queue load GET /api/threads?status=waiting", lambda: get("/api/threads", {"status": "waiting"})
        )
        await timed("thread open GET /api/threads/{id}", lambda: get(f"/api/threads/{thread_id}"))
        await timed("statistics, last 365 days GET /api/stats", lambda: get("/api/stats", year))
        if rare is not None:
            await timed("search, a rare word POST /api/search", search_rare)

    async def bare_queue() -> None:
        order = [("priority", DESCENDING), ("waiting_since", ASCENDING), ("_id", ASCENDING)]
        await (
            db["threads"]
            .find({"queue": {"$in": queues}, "status": "waiting"})
            .sort(order)
            .limit(201)
            .to_list()
        )

    async def bare_count() -> None:
        await db["threads"].count_documents({"status": "no-such-status"})

    async def bare_outbox() -> None:
        # What the store's outbox sweep asked of the messages every ``STORE_OUTBOX_SECONDS`` (5)
        # before it read its own list (conversations/repository.py ``outbox``): kept to show
        # what such a query costs the stand-in at each size.
        await (
            db["messages"]
            .find(
                {
                    "published": False,
                    "created_at": {"$lt": datetime.now(UTC)},
                    "delivery.status": {"$nin": list(NOT_OUT)},
                }
            )
            .sort("created_at", ASCENDING)
            .limit(100)
            .to_list()
        )

    await timed("database alone: the queue load's find", bare_queue)
    await timed("database alone: a scan of threads (count, no match)", bare_count)
    await timed("database alone: the outbox sweep's former find", bare_outbox)
    return out


async def write_index(db: Any, secret: str, corpus: Corpus) -> float:
    """The postings of ``corpus`` computed in memory by the indexer's functions, a month at a time
    (so each key of a month is written once), and written by ``SearchIndex.add``; seconds."""
    began = time.perf_counter()
    index, key = SearchIndex(db), SearchKey(secret.encode())
    months: dict[tuple[int, int], dict[str, set[str]]] = {}
    for m in corpus.messages:
        if m.get("direction") in INDEXED_DIRECTIONS:
            day = local_day(m["created_at"], MINSK)
            merge(months.setdefault((day.year, day.month), {}), message_postings(m, key, MINSK))
    for c in corpus.consultations:
        day = local_day(c["facts"]["at"], MINSK)
        merge(months.setdefault((day.year, day.month), {}), consultation_postings(c, key, MINSK))
    for month in sorted(months):
        await index.add(months.pop(month))
    return time.perf_counter() - began


async def at_rest(cpu: Callable[[], dict[str, float]], have: int, seconds: float = AT_REST) -> None:
    """The CPU the stack spends with nothing to do, at the data stored now: its periodic passes
    (the outbox sweep, the queue figures, held replies, the shift and skill checks, the
    dispatcher's sweeper), which read what they look for by queries an index serves on MongoDB."""
    before = cpu()
    await asyncio.sleep(seconds)  # a stretch of idle time is what is measured
    used = sorted(cpu_used(before, cpu()).items(), key=lambda kv: -kv[1])
    busy = ", ".join(f"{k} {100 * v / seconds:.0f}" for k, v in used if v > 0)
    print(f"growth   {have:>9,} | at rest for {seconds:.0f} s, CPU % of a core: {busy}", flush=True)


async def _run(
    store: str,
    mongo_url: str,
    database: str,
    secret: str,
    sizes: list[int],
    budget: float,
    with_search: bool,
    index_written: bool = False,
    only_search: bool = False,
    cpu: Callable[[], dict[str, float]] | None = None,
) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    db = client[database]
    have = 0
    write_rate = 0.0
    queues = sorted(await db["threads"].distinct("queue")) or ["lastrada-migration"]
    try:
        for size in sizes:
            step = size - have
            if write_rate and step / write_rate > budget:
                print(
                    f"growth   {size:,} messages: not measured: writing {step:,} more at the last step's "
                    f"{write_rate:.0f} messages/s (+ the index) would take {step / write_rate / 60:.0f} min, "
                    f"over the {budget / 60:.0f} min budget",
                    flush=True,
                )
                continue
            corpus = Corpus(step, seed=17 + size)
            wrote = await write(db, corpus)
            write_rate = len(corpus.messages) / wrote
            have += len(corpus.messages)
            built = 0.0
            if with_search:
                built = await (write_index(db, secret, corpus) if index_written else build_index(db, secret))
            queues = sorted(await db["threads"].distinct("queue"))
            threads = await db["threads"].count_documents({})
            waiting = await db["threads"].count_documents({"status": "waiting"})
            load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
            print(
                f"growth   {have:,} messages, {threads:,} threads ({waiting:,} waiting): written at "
                f"{write_rate:.0f} messages/s, index {'written' if index_written else 'rebuilt'} in "
                f"{built:.0f} s; load {load}",
                flush=True,
            )
            if only_search:
                for who, what, times, found, truncated in await timed_searches(store, corpus):
                    more = ", truncated" if truncated else ""
                    show(have)(f"search, {what} ({who}; {found} found{more})", times)
                continue
            closed = [t for t in corpus.threads if t.get("status") == "closed"]
            thread_id = closed[len(closed) // 2]["_id"]
            rare = corpus.rare if with_search else None
            await measure(store, db, thread_id, queues, rare, show(have))
            if cpu is not None:
                await at_rest(cpu, have)
    finally:
        await client.close()


def run(
    store: str, mongo_url: str, database: str, secret: str, cpu: Callable[[], dict[str, float]] | None = None
) -> None:
    sizes = [int(s) for s in os.environ.get("BENCH_GROWTH_SIZES", "10000,100000,1000000").split(",")]
    budget = float(os.environ.get("BENCH_GROWTH_BUDGET", "1800"))
    # BENCH_GROWTH_SEARCH=0: no search figure, so no index rebuild at each step (the slow part).
    with_search = os.environ.get("BENCH_GROWTH_SEARCH", "1") != "0"
    only = os.environ.get("BENCH_GROWTH_ONLY", "")
    index = os.environ.get("BENCH_GROWTH_INDEX", "rebuild")
    if only not in ("", "search") or index not in ("rebuild", "written"):
        raise SystemExit("BENCH_GROWTH_ONLY: '' or search; BENCH_GROWTH_INDEX: rebuild or written")
    if only and not with_search:
        raise SystemExit("BENCH_GROWTH_ONLY=search needs the search (BENCH_GROWTH_SEARCH=1)")
    asyncio.run(
        _run(
            store,
            mongo_url,
            database,
            secret,
            sorted(sizes),
            budget,
            with_search,
            index_written=index == "written",
            only_search=bool(only),
            cpu=cpu,
        )
    )
