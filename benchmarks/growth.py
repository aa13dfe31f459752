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

from benchmarks.search import Corpus, build_index, write

REPEAT = int(os.environ.get("BENCH_GROWTH_REPEAT", "5"))


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

    await timed("database alone: the queue load's find", bare_queue)
    await timed("database alone: a scan of threads (count, no match)", bare_count)
    return out


async def _run(
    store: str, mongo_url: str, database: str, secret: str, sizes: list[int], budget: float, with_search: bool
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
            built = await build_index(db, secret) if with_search else 0.0
            queues = sorted(await db["threads"].distinct("queue"))
            threads = await db["threads"].count_documents({})
            waiting = await db["threads"].count_documents({"status": "waiting"})
            load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
            print(
                f"growth   {have:,} messages, {threads:,} threads ({waiting:,} waiting): written at "
                f"{write_rate:.0f} messages/s, index rebuilt in {built:.0f} s; load {load}",
                flush=True,
            )
            closed = [t for t in corpus.threads if t.get("status") == "closed"]
            thread_id = closed[len(closed) // 2]["_id"]
            rare = corpus.rare if with_search else None
            await measure(store, db, thread_id, queues, rare, show(have))
    finally:
        await client.close()


def run(store: str, mongo_url: str, database: str, secret: str) -> None:
    sizes = [int(s) for s in os.environ.get("BENCH_GROWTH_SIZES", "10000,100000,1000000").split(",")]
    budget = float(os.environ.get("BENCH_GROWTH_BUDGET", "1800"))
    # BENCH_GROWTH_SEARCH=0: no search figure, so no index rebuild at each step (the slow part).
    with_search = os.environ.get("BENCH_GROWTH_SEARCH", "1") != "0"
    asyncio.run(_run(store, mongo_url, database, secret, sorted(sizes), budget, with_search))
