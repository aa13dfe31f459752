"""E-mail figures of QUALITY.md 1, on the running local stack and services of `make bench`:

- mail appended on the IMAP server -> thread visible in the queue (a console event), p50 / p95,
  one mail at a time (IDLE push, not polling);
- backlog import: N mails of ~20 KiB that arrived during a 48-hour outage (so never
  answered automatically) waiting while email_ingest is down, then imported, in mails/s,
  against a bare aioimaplib UID FETCH of the same mails in the same run;
- the bound the database puts on any import: after the import, the same fetch with each
  mail's raw-mail record written (the first thing email_ingest must do with a mail, before
  parsing or handing it over), three writes in flight, nothing else.

Environment: BENCH_EMAIL_SAMPLES (latency samples, default 40), BENCH_EMAIL_BACKLOG (mails,
default 10000, as QUALITY.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import aiohttp
from aioimaplib import IMAP4
from pymongo import AsyncMongoClient

from benchmarks.memory import cpu_used
from services.email_ingest.imap import parse_fetch
from services.email_ingest.rawstore import RawStore
from tests.integration.helpers import imap_session

FETCH_BATCH = 50  # as email_ingest's default fetch_batch


def _mail(size: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"client-{uuid.uuid4().hex[:8]}@example.org"
    msg["To"] = "line@demo.test"
    msg["Subject"] = "benchmark"
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@client.example>"
    # ~size bytes of text in lines, as a long letter would be.
    line = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\n"
    msg.set_content(line * max(1, size // len(line)))
    return msg.as_bytes()


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


class _Queue:
    """The consultant's live events: counts ThreadQueued as it arrives."""

    def __init__(self, http: aiohttp.ClientSession, store: str) -> None:
        self.http, self.store = http, store
        self.queued = 0
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        async with self.http.post(
            f"{self.store}/api/session", json={"login": "sofia", "password": "sofia-demo"}
        ) as r:
            assert r.status == 200
        ws = await self.http.ws_connect(f"{self.store}/api/events")
        await ws.receive_json()

        async def listen() -> None:
            async for msg in ws:
                if json.loads(msg.data).get("name") == "ThreadQueued":
                    self.queued += 1
                    async with self._changed:
                        self._changed.notify_all()

        self._task = asyncio.create_task(listen())

    async def until(self, cond: Callable[[], bool], within: float) -> None:
        async def wait() -> None:
            async with self._changed:
                await self._changed.wait_for(cond)

        await asyncio.wait_for(wait(), within)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()


def _imap(port: int, user: str) -> contextlib.AbstractAsyncContextManager[IMAP4]:
    return imap_session("127.0.0.1", port, user, command_timeout=120)


async def latency(store: str, imap_port: int, user: str, samples: int) -> list[float]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        queue = _Queue(http, store)
        await queue.open()
        out = []
        try:
            async with _imap(imap_port, user) as imap:
                for _ in range(samples):
                    target = queue.queued + 1
                    raw = _mail(2_000)
                    assert (await imap.append(raw, mailbox="INBOX")).result == "OK"
                    began = time.perf_counter()  # the mail is on the server from here
                    await queue.until(lambda t=target: queue.queued >= t, 30)  # type: ignore[misc]
                    out.append(time.perf_counter() - began)
        finally:
            queue.close()
        return out


async def fill(imap_port: int, user: str, count: int) -> None:
    """The mails that arrived during a 48-hour outage (their server arrival time says so)."""
    arrived = datetime.now(UTC) - timedelta(hours=48)
    async with _imap(imap_port, user) as imap:
        for _ in range(count):
            assert (await imap.append(_mail(20 * 1024), mailbox="INBOX", date=arrived)).result == "OK"


async def _unflagged(imap: IMAP4) -> list[int]:
    await imap.select("INBOX")
    found = await imap.uid_search("UNKEYWORD", "$HotlineIngested", charset=None)
    return sorted(int(t) for line in found.lines[:-1] for t in line.split() if t.isdigit())


async def bare_fetch(imap_port: int, user: str) -> tuple[list[int], float]:
    """Ceiling: UID FETCH BODY.PEEK[] of every mail not yet flagged, in batches as email_ingest.
    Returns the UIDs fetched and the seconds it took."""
    async with _imap(imap_port, user) as imap:
        uids = await _unflagged(imap)
        began = time.perf_counter()
        got: list[int] = []
        for i in range(0, len(uids), FETCH_BATCH):
            chunk = ",".join(str(u) for u in uids[i : i + FETCH_BATCH])
            resp = await imap.uid("fetch", chunk, "(UID BODY.PEEK[])")
            got += [uid for uid, _ in parse_fetch(resp.lines)]
        return got, time.perf_counter() - began


async def fetch_and_keep(imap_port: int, user: str, uids: list[int], mongo_url: str) -> tuple[int, float]:
    """The database's bound: the bare fetch, each batch's raw-mail records then written with
    one unordered insert (into a scratch database with the raw-mail store's indexes, dropped
    afterwards), up to three writes in flight while the next batch is fetched. No parsing,
    no hand-over, no flags: what any import has to do at least, done as fast as the
    database takes it."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    scratch = f"bench_bound_{uuid.uuid4().hex[:8]}"
    store = RawStore(client[scratch])
    in_flight = asyncio.Semaphore(3)
    writes: list[asyncio.Task[None]] = []

    async def keep(mails: list[tuple[int, bytes]]) -> None:
        try:
            docs = [RawStore.document(f"b:{uid}", "bound", 1, uid, raw, None) for uid, raw in mails]
            await store.raw.insert_many(docs, ordered=False)
        finally:
            in_flight.release()

    try:
        async with _imap(imap_port, user) as imap:
            await store.ensure_indexes()
            await imap.select("INBOX")
            began = time.perf_counter()
            got = 0
            for i in range(0, len(uids), FETCH_BATCH):
                chunk = ",".join(str(u) for u in uids[i : i + FETCH_BATCH])
                mails = parse_fetch((await imap.uid("fetch", chunk, "(UID BODY.PEEK[])")).lines)
                got += len(mails)
                await in_flight.acquire()
                writes.append(asyncio.create_task(keep(mails)))
            await asyncio.gather(*writes)
            return got, time.perf_counter() - began
    finally:
        await client.drop_database(scratch)
        await client.close()


async def backlog_import(store: str, count: int, start: Callable[[], None]) -> float:
    """Seconds from starting email_ingest to ``count`` new threads visible in the queue."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        queue = _Queue(http, store)
        await queue.open()
        try:
            began = time.perf_counter()
            await asyncio.to_thread(start)
            await queue.until(lambda: queue.queued >= count, max(600, count))
            return time.perf_counter() - began
        finally:
            queue.close()


def run(
    store: str,
    imap_port: int,
    user: str,
    mongo_url: str,
    stop: Callable[[], None],
    start: Callable[[], None],
    samples: int | None = None,
    count: int | None = None,
    cpu: Callable[[], dict[str, float]] | None = None,
) -> dict[str, Any]:
    """Measure and print; ``stop``/``start`` stop and start email_ingest; ``cpu`` gives the CPU
    seconds each process of the stack has used so far. Returns the figures: ``p95_ms``,
    ``import_rate``, ``fetch_rate`` (the ceiling), ``bound_rate``, ``cpu_ms_per_mail`` (by
    process, during the import)."""
    samples = samples or int(os.environ.get("BENCH_EMAIL_SAMPLES", "40"))
    count = count or int(os.environ.get("BENCH_EMAIL_BACKLOG", "10000"))
    lat = asyncio.run(latency(store, imap_port, user, samples))
    ms = 1000
    print(
        f"e-mail   appended on IMAP -> thread visible, {samples} mails one at a time: "
        f"p50 {statistics.median(lat) * ms:.0f} ms, p95 {_pct(lat, 95) * ms:.0f} ms (target p95 <= 2000 ms)"
    )
    stop()
    asyncio.run(fill(imap_port, user, count))
    fetched, fetch_s = asyncio.run(bare_fetch(imap_port, user))
    cpu_before = cpu() if cpu is not None else {}
    took = asyncio.run(backlog_import(store, count, start))
    used = cpu_used(cpu_before, cpu()) if cpu is not None else {}
    per_mail = {k: 1000 * v / count for k, v in sorted(used.items(), key=lambda kv: -kv[1]) if v > 0}
    # After the import, so its scratch writes cannot slow the import down.
    kept, keep_s = asyncio.run(fetch_and_keep(imap_port, user, fetched, mongo_url))
    ceiling = len(fetched) / fetch_s
    bound = kept / keep_s
    rate = count / took
    mails = len(fetched)
    print(f"ceiling  bare aioimaplib UID FETCH of the same {mails} mails of ~20 KiB: {ceiling:.0f} mails/s")
    print(
        f"bound    the same fetch, each raw mail kept in the database and nothing else: "
        f"{bound:.0f} mails/s = {bound / ceiling:.2f} x the bare fetch"
    )
    print(
        f"e-mail   backlog import of {count} mails of ~20 KiB (start -> all threads visible): "
        f"{rate:.0f} mails/s = {rate / ceiling:.2f} x the bare fetch "
        f"(target >= 200 mails/s and >= 0.5 x)"
    )
    if per_mail:
        print(
            "e-mail   CPU ms per mail imported (email_ingest started to all threads visible): "
            + ", ".join(f"{k} {v:.2f}" for k, v in per_mail.items())
            + f"; the cores {100 * sum(used.values()) / took / (os.cpu_count() or 1):.0f} % busy",
            flush=True,
        )
    return {
        "p95_ms": _pct(lat, 95) * ms,
        "import_rate": rate,
        "fetch_rate": ceiling,
        "bound_rate": bound,
        "cpu_ms_per_mail": per_mail,
    }
