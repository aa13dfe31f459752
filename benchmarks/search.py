"""Finding a record (QUALITY.md 1: search within one organisation, 100k messages stored, <= 1 s),
on the running local stack and services of `make bench`:

- a generated year of the two hotlines is written into the store's database: BENCH_SEARCH_MESSAGES
  messages (default 100,000) in threads of about ten, spread over La Strada, BWC, the shared
  triage queue and Gender Perspectives' DV line, most closed with a consultation and a case form;
  words drawn from a vocabulary of 30,000 with a Zipf law, as language is;
- the search index is built from them by the store's own rebuild (what migration 5 does on an
  existing database), timed;
- each kind of search is asked through ``POST /api/search`` as a consultant of one organisation
  (and as a supervisor of whole lines), five times: median and spread, against the 1 s ceiling;
- the reference: one query for a word the way a database without this index must ask it (a
  filter on the messages' text, which reads the whole collection on the stand-in), once.

The store's other background work (outbox sweep, metrics, the case checks) runs meanwhile, as in
production: the figures are measured with it.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
from pymongo import AsyncMongoClient

from conversations.identity import new_id
from conversations.model import Outcome, ThreadStatus, closed_consultation, new_thread
from conversations.search import SearchIndex, SearchKey
from services.store.search_index import SearchIndexer
from services.store.stats import make_facts

MINSK = ZoneInfo("Europe/Minsk")
CEILING_MS = 1000
REPEAT = 5
# (queue, organisations, line, counted for, share of threads)
PLACES = [
    ("lastrada-migration", ["lastrada"], "113", "lastrada", 0.40),
    ("bwc-migration", ["bwc"], "113", "bwc", 0.33),
    ("113-triage", ["lastrada", "bwc"], "113", "bwc", 0.05),
    ("gp-dv", ["gp"], "dv", "gp", 0.22),
]
GENDERS = (["female"] * 7) + (["male"] * 2) + ["other"]
TOPICS = ["work_abroad", "study_abroad", "au_pair", "crisis_abroad", "safe_travel", "marriage_abroad"]
AGES = ["under_18", "18_26", "27_40", "41_59", "60_plus"]
SYLLABLES = (
    "ба ва га да жа за ка ла ма на па ра са та фа ха ца ча ша "
    "бо во го до ко ло мо но по ро со то ру ку ми ни ли ве не"
).split()


def vocabulary(rnd: random.Random, size: int) -> list[str]:
    """``size`` distinct made-up words of two to four syllables."""
    out: set[str] = set()
    while len(out) < size:
        out.add("".join(rnd.choice(SYLLABLES) for _ in range(rnd.randint(2, 4))))
    return sorted(out)


class Corpus:
    """The generated year: documents to write, and what the searches will ask for."""

    def __init__(self, messages: int, seed: int = 17) -> None:
        rnd = random.Random(seed)  # noqa: S311 - generated test data, not a secret
        words = vocabulary(rnd, 30_000)
        rnd.shuffle(words)
        # Zipf: the n-th word is used about 1/n as often as the first.
        cum: list[float] = []
        total = 0.0
        for n in range(len(words)):
            total += 1 / (n + 1) ** 1.05
            cum.append(total)
        now = datetime.now(UTC)
        self.threads: list[dict[str, Any]] = []
        self.consultations: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []
        self.words = words
        weights = [p[4] for p in PLACES]
        while len(self.messages) < messages:
            queue, orgs, line, counted, _ = rnd.choices(PLACES, weights)[0]
            started = now - timedelta(minutes=rnd.randrange(365 * 24 * 60))
            t = new_thread(
                f"bench-search:{new_id()}",
                channel=rnd.choice(["email", "chat", "telegram"]),
                line=line,
                queue=queue,
                organisations=orgs,
                client_address="client@example.test",
                created_at=started,
                waiting_since=started,
            )
            count = max(1, min(30, int(rnd.expovariate(1 / 10))))
            at = started
            for i in range(count):
                at += timedelta(minutes=rnd.randint(1, 30))
                text = " ".join(rnd.choices(words, cum_weights=cum, k=max(3, int(rnd.gauss(30, 15)))))
                self.messages.append(
                    {
                        "_id": new_id(),
                        "source_id": f"bench-search:{new_id()}",
                        "thread_id": t["_id"],
                        "direction": "in" if i % 2 == 0 else "out",
                        "author": "client" if i % 2 == 0 else "consultant:anna",
                        "channel": t["channel"],
                        "text": text,
                        "created_at": at,
                        "published": True,
                    }
                )
            if rnd.random() < 0.85 and at < now - timedelta(hours=1):
                case = {
                    "client_role": "survivor",
                    "gender": rnd.choice(GENDERS),
                    "age_group": rnd.choice(AGES),
                    "topics": sorted(rnd.sample(TOPICS, rnd.randint(1, 2))),
                }
                t.update(status=ThreadStatus.CLOSED, closed_at=at, closed_by="bench", outcome="consultation")
                t["case"] = case
                t["facts"] = make_facts(
                    case, at=started, line=line, channel=t["channel"], organisation=counted
                )
                self.consultations.append(
                    closed_consultation(
                        t, outcome=Outcome.CONSULTATION, reason=None, case=case, facts=t["facts"]
                    )
                )
            self.threads.append(t)
        # Words to search for, by how many threads use them: one a handful, two of middling
        # use together, one thousands.
        used: dict[str, set[str]] = {}
        for m in self.messages:
            for w in m["text"].split():
                used.setdefault(w, set()).add(m["thread_id"])
        by_use = sorted(used, key=lambda w: (len(used[w]), w))
        share = len(self.threads)

        def near(threads: float) -> str:
            return min(by_use, key=lambda w: (abs(len(used[w]) - threads), w))

        self.rare = near(8)
        self.middle = (near(share / 20), near(share / 30))
        self.frequent = by_use[-1]
        lastrada = [c for c in self.consultations if c["facts"]["organisation"] == "lastrada"]
        self.lastrada_consultation = lastrada[len(lastrada) // 2]["_id"]
        first = (now - timedelta(days=40)).astimezone(MINSK).date().replace(day=1)
        last = (first + timedelta(days=31)).replace(day=1) - timedelta(days=1)
        self.month = (first.isoformat(), last.isoformat())


async def write(db: Any, corpus: Corpus) -> float:
    """Write the corpus; returns the seconds it took."""
    began = time.perf_counter()
    for name, docs in (
        ("threads", corpus.threads),
        ("consultations", corpus.consultations),
        ("messages", corpus.messages),
    ):
        for start in range(0, len(docs), 1000):
            await db[name].insert_many(docs[start : start + 1000], ordered=False)
    return time.perf_counter() - began


async def build_index(db: Any, secret: str) -> float:
    began = time.perf_counter()
    await SearchIndexer(SearchIndex(db), SearchKey(secret.encode()), MINSK, None, "bench").rebuild()
    return time.perf_counter() - began


async def timed_searches(store: str, corpus: Corpus) -> list[tuple[str, str, list[float], int, bool]]:
    """(who, what, seconds of each repetition, records found, truncated) per kind of search."""
    first, last = corpus.month
    kinds: list[tuple[str, str, dict[str, Any]]] = [
        ("anna", "a rare word", {"text": corpus.rare}),
        ("anna", "two words together", {"text": " ".join(corpus.middle)}),
        ("anna", "a word in thousands of threads", {"text": corpus.frequent}),
        ("anna", "a word within one month", {"text": corpus.middle[0], "from": first, "to": last}),
        ("anna", "one month of consultations", {"from": first, "to": last}),
        ("anna", "case-form answers and a month", {"answers": {"gender": ["male"]}, "from": first}),
        ("anna", "a consultation number", {"number": corpus.lastrada_consultation}),
        ("sofia", "a word, supervisor of all lines", {"text": corpus.middle[0]}),
        (
            "sofia",
            "answers, every organisation",
            {"answers": {"topics": ["au_pair"], "age_group": ["60_plus"]}},
        ),
    ]
    out = []
    sessions: dict[str, tuple[aiohttp.ClientSession, str]] = {}
    try:
        for who in ("anna", "sofia"):
            http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
            async with http.post(f"{store}/api/session", json={"login": who, "password": f"{who}-demo"}) as r:
                assert r.status == 200, await r.text()
                sessions[who] = (http, (await r.json())["csrf_token"])
        for who, what, body in kinds:
            http, csrf = sessions[who]
            times: list[float] = []
            found, truncated = 0, False
            for _ in range(REPEAT):
                began = time.perf_counter()
                async with http.post(f"{store}/api/search", json=body, headers={"X-CSRF-Token": csrf}) as r:
                    result = await r.json()
                    assert r.status == 200, result
                times.append(time.perf_counter() - began)
                found, truncated = len(result["records"]) + len(result["cases"]), result["truncated"]
            out.append((who, what, times, found, truncated))
    finally:
        for http, _ in sessions.values():
            await http.close()
    return out


async def steady_indexing(db: Any, corpus: Corpus, count: int = 2000) -> tuple[int, float]:
    """Store ``count`` more messages as the repository does (each queued for the index) and
    time the store's indexer until none waits."""
    index = SearchIndex(db)
    rnd = random.Random(5)  # noqa: S311 - generated test data, not a secret
    now = datetime.now(UTC)
    docs = []
    for _ in range(count):
        source = rnd.choice(corpus.messages)
        docs.append({**source, "_id": new_id(), "source_id": f"bench-search:{new_id()}", "created_at": now})
    began = time.perf_counter()
    for start in range(0, count, 500):
        await db["messages"].insert_many(docs[start : start + 500])
        for d in docs[start : start + 500]:
            await index.message_stored(d["_id"])
    for _ in range(3000):
        if not await db["search_pending"].count_documents({}, limit=1):
            break
        await asyncio.sleep(0.2)  # the indexer reports nothing: its queue is watched
    return count, time.perf_counter() - began


async def scan_reference(db: Any, word: str) -> float:
    """One query for ``word`` as a database without the index asks it: a filter on the text."""
    began = time.perf_counter()
    await db["messages"].find({"text": {"$regex": f"\\b{word}\\b"}}, {"thread_id": 1}).to_list()
    return time.perf_counter() - began


async def stats_year(store: str) -> list[float]:
    """Statistics for the last 365 days as a supervisor of every line, ``REPEAT`` times."""
    today = datetime.now(UTC).date()
    year = {"from": (today - timedelta(days=365)).isoformat(), "to": today.isoformat()}
    times = []
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(f"{store}/api/session", json={"login": "sofia", "password": "sofia-demo"}) as r:
            assert r.status == 200
        for _ in range(REPEAT):
            began = time.perf_counter()
            async with http.get(f"{store}/api/stats", params=year) as r:
                await r.read()
                assert r.status == 200, r.status
            times.append(time.perf_counter() - began)
    return times


async def _run(store: str, mongo_url: str, database: str, secret: str, messages: int) -> dict[str, Any]:
    corpus = Corpus(messages)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    try:
        db = client[database]
        wrote = await write(db, corpus)
        print(
            f"search   corpus: {len(corpus.messages)} messages in {len(corpus.threads)} threads, "
            f"{len(corpus.consultations)} consultations, written in {wrote:.0f} s"
        )
        built = await build_index(db, secret)
        print(
            f"search   index rebuilt from them (migration 5's rebuild) in {built:.0f} s = "
            f"{len(corpus.messages) / built:.0f} messages/s"
        )
        queued, took = await steady_indexing(db, corpus)
        print(
            f"search   {queued} new messages queued at once -> all indexed by the store's own indexer: "
            f"{took:.1f} s = {queued / took:.0f} messages/s (it rests between steps: intake goes first)"
        )
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"search   machine load average (1, 5, 15 min) before the searches: {load}")
        results = await timed_searches(store, corpus)
        ms = 1000
        for who, what, times, found, truncated in results:
            median = statistics.median(times) * ms
            more = " (truncated)" if truncated else ""
            over = "" if median <= CEILING_MS else "  OVER"
            print(
                f"search   {what} ({who}): median {median:.0f} ms, spread {min(times) * ms:.0f}-"
                f"{max(times) * ms:.0f} ms over {len(times)}; {found} found{more} "
                f"(ceiling {CEILING_MS} ms){over}"
            )
        scanned = await scan_reference(db, corpus.rare)
        print(
            f"search   reference: the rare word as a filter on the messages' text (no index): "
            f"{scanned:.1f} s, once"
        )
        stats = await stats_year(store)
        return {
            "messages": len(corpus.messages),
            "consultations": len(corpus.consultations),
            "searches": results,
            "scan_reference": scanned,
            "stats_year": stats,
        }
    finally:
        await client.close()


def run(
    store: str, mongo_url: str, database: str, secret: str, messages: int | None = None
) -> dict[str, Any]:
    """Measure and print (see the module doc); returns the figures."""
    messages = messages or int(os.environ.get("BENCH_SEARCH_MESSAGES", "100000"))
    return asyncio.run(_run(store, mongo_url, database, secret, messages))
