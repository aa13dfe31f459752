"""The search index follows retention and erasure (conversations/search.py): once a message's
text is cleared, by retention (closed threads, threads never closed) or a person's erasure, no
word it held finds its thread and no posting names it; a message cleared while the indexer is
adding it is taken out again; a rebuild brings nothing back, and the upgrade's fresh rebuild
drops what was cleared before."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from typing import Any

import pytest

from conversations.repository import Repository
from conversations.search import SearchIndex, SearchKey, Terms
from conversations.vault import Vault
from services.store.retention import Policy, Retention, clear_thread, delete_free_text
from services.store.search_index import SearchIndexer
from shared.config import load_config
from shared.envelope import utcnow
from shared.mongo import make_client
from shared.settings import DEFAULT_CONFIG_PATH, parse_master_key
from tests.conftest import ROOT, Gateway
from tests.integration.helpers import SEARCH_TERMS, until
from tests.integration.test_search import MINSK, indexer, login, message, search, thread, threads

CONFIG = load_config(DEFAULT_CONFIG_PATH)
# The store's own retention job stays off: each test runs the pass it means.
NO_SCHEDULED_RETENTION = pytest.mark.service_env({"STORE_RETENTION_INTERVAL_HOURS": "0"})


def distinctive() -> str:
    """A word no other record holds."""
    return "ксилофонъ" + uuid.uuid4().hex[:8]


def days_ago(n: int) -> str:
    return (utcnow() - timedelta(days=n)).astimezone(MINSK).date().isoformat()


async def targets(db: Any) -> set[str]:
    """Every thread a posting names (by a word; a consultation is named by its categorical
    answers, which statistics keep, as ``<thread>:<n>``)."""
    out: set[str] = set()
    async for doc in db["search_postings"].find({}):
        if str(doc["_id"]).startswith("~"):  # the index's own documents (months, rebuild)
            continue
        refs = doc.get("refs")
        parts = [*(refs if isinstance(refs, list) else str(refs or "").split())]
        for more in doc.get("more") or []:
            parts += str(more).split()
        out |= {target for p in parts if ":" not in (target := p.partition("|")[2])}
    return out


def store_terms(gateway: Gateway) -> Terms:
    return Terms(SearchKey(gateway.env["store"]["STORE_CLIENT_KEY_SECRET"].encode()), MINSK)


async def index_settled(db: Any) -> None:
    """The store's indexer has done the rebuild asked for (at its first start, by its
    migrations: a clearing then takes its refs out at once rather than leaving them to it)."""

    async def settled() -> bool:
        return not await SearchIndex(db).rebuild_requested()

    await until(settled)


@NO_SCHEDULED_RETENTION
async def test_retention_takes_cleared_threads_out_of_the_index(gateway: Gateway) -> None:
    """A closed thread past its period and a thread nobody closed, quiet as long: both found by
    their word, both cleared by a retention pass; then the word finds neither, no posting names
    them, and a rebuild brings neither back. A recent thread with the same word stays found."""
    gateway.seed_demo_accounts()
    word = distinctive()
    client = make_client(gateway.urls.mongo_url)
    anna = await login(gateway, "anna")
    try:
        db = client[gateway.database]
        await index_settled(db)
        repo = Repository(db)
        repo.search.use(store_terms(gateway))
        closed = thread("closed", "lastrada-migration", ["lastrada"], "113", days_ago(400), "lastrada")
        unclosed = thread("unclosed", "lastrada-migration", ["lastrada"], "113", days_ago(400), None)
        recent = thread("recent", "lastrada-migration", ["lastrada"], "113", days_ago(3), "lastrada")
        await repo.add_closed_threads([closed, recent])
        await repo.threads.insert_one(unclosed)
        for t, day in ((closed, days_ago(400)), (unclosed, days_ago(400)), (recent, days_ago(3))):
            for m in (
                message(t["_id"], f"{word} забрали", day),
                message(t["_id"], f"ответ {word}", day, "out"),
            ):
                await repo.messages.insert_one(m)
                await repo.search.message_stored(m["_id"])
        await indexer(gateway, db).drain()
        ids = {closed["_id"], unclosed["_id"], recent["_id"]}
        assert threads(await search(anna, text=word)) == ids
        assert ids <= await targets(db)

        out = await Retention(repo, CONFIG).run([Policy(None, 365, 365)])

        assert (out.threads, out.unclosed) == (1, 1)
        assert threads(await search(anna, text=word)) == {recent["_id"]}
        left = await targets(db)
        assert closed["_id"] not in left and unclosed["_id"] not in left and recent["_id"] in left
        assert await db["search_pending"].count_documents({}) == 0  # nothing left for the indexer
        # A rebuild reads only the text still stored.
        await indexer(gateway, db).rebuild()
        left = await targets(db)
        assert closed["_id"] not in left and unclosed["_id"] not in left and recent["_id"] in left
        assert threads(await search(anna, text=word)) == {recent["_id"]}
    finally:
        await anna.close()
        await client.close()


async def test_a_word_of_the_same_day_still_held_keeps_its_ref(repo: Repository) -> None:
    """Retention clears what was written before its cut-off: a message written later the same
    day keeps the thread found by its own words, and only by those."""
    index = SearchIndexer(repo.search, SEARCH_TERMS.key, MINSK, None, "test")
    gone, kept = distinctive(), distinctive()
    t = thread("same-day", "lastrada-migration", ["lastrada"], "113", days_ago(400), "lastrada")
    await repo.add_closed_threads([t])
    early = message(t["_id"], f"{gone} {kept}", days_ago(400))
    late = {**message(t["_id"], kept, days_ago(400)), "created_at": early["created_at"] + timedelta(hours=2)}
    for m in (early, late):
        await repo.messages.insert_one(m)
        await repo.search.message_stored(m["_id"])
    await index.drain()
    assert await clear_thread(repo, t["_id"], early["created_at"] + timedelta(hours=1), {}) == 0

    day = early["created_at"]
    assert await found(repo.search, SEARCH_TERMS, gone, day) == set()
    assert await found(repo.search, SEARCH_TERMS, kept, day) == {t["_id"]}
    # The next pass takes the rest.
    assert await delete_free_text(repo, utcnow()) == 1
    assert await targets(repo.db) == set()


async def found(index: SearchIndex, terms: Terms, word: str, at: Any) -> set[str]:
    """The threads the postings of ``word`` name in ``at``'s month (what a search reads)."""
    month = at.astimezone(terms.tz).strftime("%Y-%m")
    return {r.partition("|")[2] for r in await index.refs([f"{terms.key.word(word)}:{month}"])}


class ClearedWhileIndexing(SearchIndex):
    """The store's index, with retention clearing the thread just after the indexer read the
    message and before it writes its postings (the race a lease cannot prevent)."""

    def __init__(self, repo: Repository, thread_id: str) -> None:
        super().__init__(repo.db, repo.vault, SEARCH_TERMS)
        self.repo = repo
        self.thread_id = thread_id
        self.cleared = 0

    async def postings_of(self, entries: Any, key: Any, tz: Any) -> dict[str, set[str]]:
        read = await super().postings_of(entries, key, tz)
        if not self.cleared:
            self.cleared = await clear_thread(self.repo, self.thread_id, utcnow() + timedelta(seconds=5), {})
        return read


async def test_a_message_cleared_while_its_entry_waited_is_not_left_in_the_index(
    repo: Repository,
) -> None:
    word = distinctive()
    t = thread("racing", "lastrada-migration", ["lastrada"], "113", days_ago(400), "lastrada")
    await repo.add_closed_threads([t])
    m = message(t["_id"], word, days_ago(400))
    await repo.messages.insert_one(m)
    await repo.search.message_stored(m["_id"])

    racing = ClearedWhileIndexing(repo, t["_id"])
    await SearchIndexer(racing, SEARCH_TERMS.key, MINSK, None, "test").drain()
    assert racing.cleared == 1
    # The indexer's next pass (a moment later in the store) takes out what it added from its read.
    await SearchIndexer(repo.search, SEARCH_TERMS.key, MINSK, None, "test").drain()

    assert await found(repo.search, SEARCH_TERMS, word, m["created_at"]) == set()
    assert await targets(repo.db) == set()
    assert await repo.search.waiting(10) == []


async def test_the_upgrades_fresh_rebuild_drops_what_was_cleared_before(repo: Repository) -> None:
    """Postings of text cleared before the index followed retention: a fresh rebuild (migration
    6) empties the index and reads again what is stored."""
    word = distinctive()
    index = SearchIndexer(repo.search, SEARCH_TERMS.key, MINSK, None, "test")
    cleared = thread("old-cleared", "lastrada-migration", ["lastrada"], "113", days_ago(400), "lastrada")
    live = thread("live", "lastrada-migration", ["lastrada"], "113", days_ago(3), "lastrada")
    await repo.add_closed_threads([cleared, live])
    for t, day in ((cleared, days_ago(400)), (live, days_ago(3))):
        m = message(t["_id"], word, day)
        await repo.messages.insert_one(m)
        await repo.search.message_stored(m["_id"])
    await index.drain()
    # As retention cleared text before: the message emptied, its postings left.
    await repo.messages.update_many(
        {"thread_id": cleared["_id"]}, {"$set": {"text": None, "text_deleted": True}}
    )
    assert cleared["_id"] in await targets(repo.db)

    await repo.search.request_rebuild(fresh=True)
    await index.step()

    assert await targets(repo.db) == {live["_id"]}
    assert not await repo.search.rebuild_requested()


@NO_SCHEDULED_RETENTION
async def test_an_erased_persons_threads_are_found_by_no_word(gateway: Gateway) -> None:
    gateway.seed_demo_accounts()
    word = distinctive()
    someone = "client-" + uuid.uuid4().hex[:8]
    client = make_client(gateway.urls.mongo_url)
    key = parse_master_key(gateway.env["store"]["STORE_MASTER_KEY"])
    vault = Vault(client, f"{gateway.database}_keys.data_keys", key)
    sofia = await login(gateway, "sofia")
    try:
        db = client[gateway.database]
        await index_settled(db)
        repo = Repository(db, vault)
        ids = []
        for day in (days_ago(40), days_ago(2)):
            t = thread("erased", "lastrada-migration", ["lastrada"], "113", day, "lastrada")
            t["client_id"] = someone
            await repo.add_closed_threads([t])
            stored = await repo.thread(t["_id"])
            assert stored is not None
            m = message(t["_id"], f"{word} написала", day)
            await repo.messages.insert_one(await repo.seal_message(stored, m))
            await repo.search.message_stored(m["_id"])
            ids.append(t["_id"])
        # Someone else wrote the word too, and is not erased.
        other = thread("other", "lastrada-migration", ["lastrada"], "113", days_ago(2), "lastrada")
        await repo.add_closed_threads([other])
        m = message(other["_id"], word, days_ago(2))
        await repo.messages.insert_one(m)
        await repo.search.message_stored(m["_id"])
        sealed_index = SearchIndex(db, vault)
        await SearchIndexer(sealed_index, store_terms(gateway).key, MINSK, None, "test").drain()
        assert threads(await search(sofia, text=word)) == {*ids, other["_id"]}

        status, answer = await sofia.call("POST", f"/api/threads/{ids[0]}/person/erase", {"confirm": "erase"})
        assert status == 200 and answer["threads"] == 2, answer

        assert threads(await search(sofia, text=word)) == {other["_id"]}
        left = await targets(db)
        assert not set(ids) & left and other["_id"] in left
        assert await db["search_pending"].count_documents({}) == 0

        # An operator's rebuild (as after restoring a backup) reads only what is still stored.
        await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "services.store.search_index", "rebuild"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            env={**os.environ, **gateway.env["store"]},
        )
        await index_settled(db)
        left = await targets(db)
        assert not set(ids) & left and other["_id"] in left
        assert threads(await search(sofia, text=word)) == {other["_id"]}
    finally:
        await sofia.close()
        await client.close()


async def test_clearing_searched_text_without_the_terms_is_refused(repo: Repository) -> None:
    """A tool that clears text without the search terms would leave its words findable."""
    bare = Repository(repo.db)
    t = thread("bare", "lastrada-migration", ["lastrada"], "113", days_ago(400), "lastrada")
    await bare.add_closed_threads([t])
    await bare.messages.insert_one(message(t["_id"], distinctive(), days_ago(400)))
    with pytest.raises(RuntimeError, match="search terms"):
        await clear_thread(bare, t["_id"], utcnow(), {})
    (kept,) = await bare.thread_messages(t["_id"])
    assert kept.get("text") is not None  # refused before anything was cleared
