"""The store's search indexer: folds what waits in ``search_pending`` into the postings.

Every message the repository stores, and every consultation it closes, is queued for the index
in the same moment (conversations/search.py). This task, in one store replica at a time (the
one holding the ``search_index`` lease, shared/lease.py), reads what waits, a batch at a
time, adds the postings and then removes the entries, so an entry is removed only once its
postings are written: a replica that dies half-way leaves them to the next pass, and adding a
posting twice changes nothing. A message is searchable a moment after it is stored (a pass
every :data:`EVERY` seconds, at once again while there is more).

A rebuild (asked for by the migration that brought the index, or by an operator) reads every
stored message and consultation in one pass each and adds their postings; a fresh one (the
migration that made the index follow retention) empties the postings first. It reads only
text still stored: what retention or an erasure cleared gives no posting.

What retention and erasure cleared leaves ``f:`` entries when it could not take its refs out
at once (conversations/search.py): applied here after the adds of the same step, so a message
added from a read taken just before its text went is taken out again.

Logs carry counts and times, never a word.

An operator asks for a fresh rebuild (after restoring a backup of the data, whose postings may
name text cleared or erased since) with the store's database settings (``STORE_MONGO_URL``,
``STORE_MONGO_DATABASE``); the running store does it in the background:

    python -m services.store.search_index rebuild
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from pymongo.errors import PyMongoError

from conversations.search import FORGET, SearchIndex, SearchKey, Terms
from shared.lease import Lease
from shared.logs import get_logger
from shared.mongo import make_client
from shared.supervise import Heartbeat

log = get_logger(__name__)

LEASE_KEY = "search_index"
EVERY = 2.0  # seconds between passes when nothing waits
BATCH = 1000  # entries read per step
REBUILD_CHUNK = 20_000  # documents whose postings are gathered before one write
MAX_PAUSE = 2.0  # seconds of rest between two steps of a long drain
LEASE_SECONDS = 60.0  # a holder that vanished loses the lease this long after its last pass
RELEASE_SECONDS = 2.0


class SearchIndexer:
    def __init__(
        self, index: SearchIndex, key: SearchKey, tz: ZoneInfo | None, lease: Lease | None, holder: str
    ) -> None:
        self.index = index
        self.key = key
        self.tz = tz or ZoneInfo("UTC")
        self.lease = lease
        self.holder = holder

    async def index_waiting(self, limit: int = BATCH) -> int:
        """One step: up to ``limit`` waiting entries indexed and removed; returns how many."""
        entries = await self.index.waiting(limit)
        if not entries:
            return 0
        adding = [e for e in entries if not e.startswith(FORGET)]
        postings = await self.index.postings_of(adding, self.key, self.tz)
        await self.index.add(postings)
        # After the adds: a message read before its text was cleared was just added, and goes.
        done = list(adding)
        terms = Terms(self.key, self.tz)
        for entry in entries:
            if entry.startswith(FORGET) and await self.index.forget_entry(entry, terms):
                done.append(entry)
        await self.index.indexed(done)
        return len(entries)

    async def drain(self, beat: Callable[[], None] = lambda: None) -> int:
        """Index everything waiting now (several steps); returns how many entries."""
        total = 0
        while True:
            began = time.monotonic()
            done = await self.index_waiting()
            total += done
            if done < BATCH:
                return total
            await self._still_here(beat)
            # A burst of messages leaves much to index: the index may lag a little, the
            # messages' own path must not. At most half of the database's time goes here.
            await asyncio.sleep(min(time.monotonic() - began, MAX_PAUSE))

    async def _still_here(self, beat: Callable[[], None]) -> None:
        """Between steps of a long run: keep the lease, and tell the supervisor work goes on."""
        if self.lease is not None:
            await self.lease.renew(LEASE_KEY, self.holder)
        beat()

    async def rebuild(self, beat: Callable[[], None] = lambda: None) -> int:
        """Add the postings of every stored message and consultation; returns how many
        posting keys were written."""
        began = time.monotonic()
        keys = 0
        async for postings in self.index.everything(self.key, self.tz, REBUILD_CHUNK):
            await self.index.add(postings)
            keys += len(postings)
            await self._still_here(beat)
        log.info("search_index_rebuilt", keys=keys, seconds=round(time.monotonic() - began, 1))
        return keys

    async def step(self, beat: Callable[[], None] = lambda: None) -> int:
        """One pass, if this replica holds the lease: a rebuild first when one is asked for,
        then what waits. Returns the entries indexed."""
        if self.lease is not None and not await self.lease.take(LEASE_KEY, self.holder):
            return 0
        request = await self.index.rebuild_request()
        if request is not None:
            if request.get("fresh"):
                await self.index.empty()
            await self.rebuild(beat)
            await self.index.rebuild_done(request)
        began = time.monotonic()
        done = await self.drain(beat)
        if done:
            log.info("search_indexed", entries=done, seconds=round(time.monotonic() - began, 2))
        return done

    async def run(self, heartbeat: Heartbeat, every: float = EVERY) -> None:
        """Pass after pass until cancelled. A failure (the database away) ends the task, and its
        supervisor starts it again after a pause: what waits stays waiting meanwhile. Cancelled
        (the store stopping), it gives the lease back, so a replica started next takes over at
        once rather than when the lease lapses."""
        try:
            while True:
                await self.step(heartbeat.beat)
                heartbeat.beat()
                await asyncio.sleep(every)  # a period: new entries are not announced
        finally:
            if self.lease is not None:
                try:
                    await asyncio.wait_for(self.lease.release(LEASE_KEY, self.holder), RELEASE_SECONDS)
                except (PyMongoError, TimeoutError) as exc:  # it lapses on its own
                    log.warning("search_index_lease_kept", error=type(exc).__name__)


class RebuildSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STORE_", extra="ignore")
    mongo_url: SecretStr = Field(description="MongoDB URL")
    mongo_database: str = Field(default="hotline", description="MongoDB database name")


async def _ask_for_rebuild(settings: RebuildSettings) -> None:
    client = make_client(settings.mongo_url.get_secret_value())
    try:
        await SearchIndex(client[settings.mongo_database]).request_rebuild(fresh=True)
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.store.search_index")
    parser.add_argument("command", choices=["rebuild"], help="empty the search index and read it again")
    parser.parse_args(argv)
    asyncio.run(_ask_for_rebuild(RebuildSettings()))
    print(
        "rebuild asked for: the store's indexer empties the search index and reads every stored "
        "message and consultation again (search_index_rebuilt in its log)"
    )


if __name__ == "__main__":
    main()
