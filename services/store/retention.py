"""Retention: delete what people wrote once it is no longer needed, keep what statistics count.

The store runs it on a schedule (:class:`RetentionJob`, every ``STORE_RETENTION_INTERVAL_HOURS``,
one replica at a time); an operator can also run one pass by hand:

    python -m services.store.retention            # each line's own periods
    python -m services.store.retention --days 90  # one period for every line, this time

How long is per line (``lines.<id>.retention`` in the configuration, else the store's
settings, ``STORE_RETENTION_DAYS`` and ``STORE_RETENTION_UNCLOSED_DAYS``):

- ``days``: what was written in a thread is deleted once the thread has been closed that
  long *and* the text itself is that old. A note or a message that arrives in a closed thread
  after a pass (a late reply, a consultant's note) is deleted in its turn, ``days`` after it
  arrived;
- ``unclosed_days``: a thread nobody closed (the person stopped writing, nobody answered) is
  cleared once no message arrived in it for that long.

What is deleted (QUALITY.md 4, data minimisation): the text, HTML, subject, quoted history and
attachment names of messages and notes, the Message-IDs the client's mail program wrote (they
may name its host); the raw mails (``mail_raw.raw``) and attachment bytes
(``mail_attachments.data``) they came from; the thread's subject (in clear, or sealed as
``sealed_subject``), its client's address or
Telegram chat (``client.address``, or sealed as ``client.sealed``; and ``key``, which names the
chat) and its mail headers;
every case-form answer that is not a categorical code, in the thread and in its
consultations. Kept: the thread, its times, channel, line and queue, and ``facts`` (the
categorical answers statistics count), so statistics count the same before and after.

The keys go too: each pass (scheduled or by hand: both hold the vault) deletes the data key
of each thread a pass cleared at least a day before and that is still cleared, with the keys
of its raw mails (``Repository.retire_keys``). Then a backup of the data
taken before the clearing no longer opens that text either, with or without the master key.

The search index follows (conversations/search.py): before a message's text is cleared, what
it gave the index is computed from it, and taken out once it is cleared; so a thread is found
by no word it no longer holds. That is why a pass needs the master key and the search terms
(the store's client key secret and time zone), by hand too.

Each thread is cleared with conditional updates and marked ``text_deleted_at`` last, and
only when nothing it holds is left to clear; a pass that stops half-way is finished by the
next. Whatever stores text in a thread removes the mark (conversations/repository.py,
:meth:`Repository.text_added`), and a pass that marks a thread looks again afterwards, so a
message stored while the pass ran is not left behind by the mark. ``text_cleared_to`` records
how far a thread's text was cleared (search finds nothing older in it).

Mails the e-mail intake quarantined (never read by a person, waiting for an operator) lose
their bytes after the longest ``days`` of any line; every other raw mail that no message holds
(a bounce of one of our replies, one replayed from quarantine) loses them, with its
attachments, after the longest ``days`` or ``unclosed_days``. Cases closed before the same cut-off lose
their free text too (conversations/cases.py, :meth:`CaseRepository.delete_free_text`): notes,
the intake's text answers, the notes of services and follow-ups and the results of external
referrals; their kinds, dates, amounts, categorical answers and history stay.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict
from pymongo.errors import PyMongoError

from conversations.cases import CaseRepository
from conversations.model import ThreadStatus
from conversations.repository import SEALED_SUBJECT, Repository
from conversations.search import SEARCHED_FIELDS, SearchKey, Terms
from conversations.vault import Vault
from services.store.stats import categorical
from shared.config import HotlineConfig, load_config
from shared.envelope import utcnow
from shared.lease import Lease
from shared.logs import get_logger
from shared.mongo import make_client
from shared.settings import DEFAULT_CONFIG_PATH, VaultSettings
from shared.supervise import Heartbeat, PassFailures

log = get_logger(__name__)

Doc = dict[str, Any]
Beat = Callable[[], Awaitable[None]]

# Quarantined mails: status of mail_raw (services/email_ingest/rawstore.py), not imported:
# the store does not depend on the e-mail service.
QUARANTINED = "quarantined"
# A thread's data key is deleted this long after retention cleared it, once no writer that read
# it before can still be storing under it (Repository.retire_keys).
RETIRE_KEYS_AFTER = timedelta(days=1)
OPEN_STATUSES = [s.value for s in ThreadStatus if s is not ThreadStatus.CLOSED]


async def _nothing() -> None:
    return None


@dataclass(frozen=True)
class Policy:
    """How long one line (``line``; None: threads of lines no longer configured) keeps text."""

    line: str | None
    days: int
    unclosed_days: int


def policies(
    config: HotlineConfig, days: int, unclosed_days: int, override: int | None = None
) -> list[Policy]:
    """Each configured line's periods (its own, else the settings'), and one for threads of
    lines no longer configured. ``override`` (the command's ``--days``) replaces ``days``."""
    found = [
        Policy(
            line,
            override or cfg.retention.days or days,
            cfg.retention.unclosed_days or unclosed_days,
        )
        for line, cfg in config.lines.items()
    ]
    return [*found, Policy(None, override or days, unclosed_days)]


@dataclass
class Outcome:
    threads: int = 0  # closed threads cleared
    unclosed: int = 0  # threads never closed, cleared
    cases: int = 0
    quarantined: int = 0  # quarantined raw mails emptied
    raw_mails: int = 0  # other raw mails past every period (bounces, replayed)
    keys: int = 0  # data keys deleted of threads cleared before RETIRE_KEYS_AFTER
    by_line: dict[str, int] = field(default_factory=dict)

    def as_log(self) -> Doc:
        return {
            "threads": self.threads,
            "unclosed": self.unclosed,
            "cases": self.cases,
            "quarantined": self.quarantined,
            "raw_mails": self.raw_mails,
            "keys": self.keys,
        }


class Retention:
    """One pass over a database: :meth:`run`."""

    def __init__(self, repo: Repository, config: HotlineConfig) -> None:
        self.repo = repo
        self.config = config

    async def run(
        self, policies: list[Policy], now: datetime | None = None, beat: Beat = _nothing
    ) -> Outcome:
        now = now or utcnow()
        out = Outcome()
        configured = [p.line for p in policies if p.line is not None]
        for p in policies:
            where: Doc = {"line": p.line} if p.line is not None else {"line": {"$nin": configured}}
            closed = await delete_free_text(self.repo, now - timedelta(days=p.days), where, beat)
            unclosed = await delete_unclosed_free_text(
                self.repo, now - timedelta(days=p.unclosed_days), where, beat
            )
            out.threads += closed
            out.unclosed += unclosed
            out.by_line[p.line or "(not configured)"] = closed + unclosed
        longest = max(p.days for p in policies)
        cut = now - timedelta(days=longest)
        out.cases = await CaseRepository(self.repo.db).delete_free_text(
            cut, self.config.cases.free_text_fields
        )
        # The sender's key of a quarantined mail (conversations/rawmail.py) goes with its bytes:
        # it linked them to a person for an erasure, and nothing is left to erase.
        out.quarantined = await _clear_raw(
            self.repo, {"status": QUARANTINED, "stored_at": {"$lt": cut}, "raw": {"$ne": None}}
        )
        # Every other raw mail older than the longest period that no message still holds: a
        # bounce of one of our replies (a delivery report quotes the reply and names the
        # client), one replayed or never read. Those of a thread go with its text.
        everything = max(longest, *(p.unclosed_days for p in policies))
        out.raw_mails = await clear_raw_mails(self.repo, now - timedelta(days=everything))
        if self.repo.vault is not None:
            # The keys of what an earlier pass cleared: a backup taken before it opens no more.
            out.keys = await self.repo.retire_keys(now - RETIRE_KEYS_AFTER)
        return out


async def clear_raw_mails(repo: Repository, stored_before: datetime) -> int:
    """Clear the raw mails stored before ``stored_before`` that still hold their bytes, with
    their attachments; return how many."""
    db = repo.db
    old = {"stored_at": {"$lt": stored_before}, "raw": {"$ne": None}}
    sources = [m["_id"] async for m in db["mail_raw"].find(old, {"_id": 1})]
    if not sources:
        return 0
    # A mail whose message still holds its text stays with it (its thread's retention).
    held = repo.messages.find(
        {"source_id": {"$in": sources}, "text_deleted": {"$exists": False}}, {"source_id": 1}
    )
    kept = {m["source_id"] async for m in held}
    sources = [s for s in sources if s not in kept]
    if not sources:
        return 0
    await db["mail_attachments"].update_many(
        {"source_id": {"$in": sources}, "text_deleted": {"$exists": False}},
        {"$set": {"data": None, "filename": None, "text_deleted": True}},
    )
    return await _clear_raw(repo, {"_id": {"$in": sources}, "raw": {"$ne": None}})


async def _clear_raw(repo: Repository, query: Doc) -> int:
    """Empty the raw mails ``query`` finds and delete their data keys (each raw mail has its
    own: services/email_ingest/rawstore.py), so that no backup taken before this pass opens
    them any more; the sender's key of a quarantined mail goes too (it linked the bytes to a
    person for an erasure). Returns how many were emptied."""
    db = repo.db
    docs = [d async for d in db["mail_raw"].find(query, {"_id": 1, "data_key": 1})]
    if not docs:
        return 0
    done = await db["mail_raw"].update_many(
        {"_id": {"$in": [d["_id"] for d in docs]}, "raw": {"$ne": None}},
        {"$set": {"raw": None, "text_deleted": True}, "$unset": {"client_key": "", "data_key": ""}},
    )
    keys = [d["data_key"] for d in docs if d.get("data_key") is not None]
    if keys and repo.vault is not None:
        await repo.vault.erase(keys)
    return done.modified_count


async def delete_free_text(
    repo: Repository, closed_before: datetime, where: Doc | None = None, beat: Beat = _nothing
) -> int:
    """Clear the text of threads closed before ``closed_before`` (and among them, of their
    messages stored before it); return how many threads are now fully cleared."""
    query: Doc = {
        "status": ThreadStatus.CLOSED.value,
        "closed_at": {"$lt": closed_before},
        "text_deleted_at": {"$exists": False},
        **(where or {}),
    }
    cleared = 0
    async for t in repo.threads.find(query, {"_id": 1}, batch_size=200):
        cleared += await clear_thread(repo, t["_id"], closed_before, {"status": ThreadStatus.CLOSED.value})
        await beat()
    return cleared


async def delete_unclosed_free_text(
    repo: Repository, quiet_since: datetime, where: Doc | None = None, beat: Beat = _nothing
) -> int:
    """Clear threads never closed in which no message arrived since ``quiet_since``; return
    how many."""
    query: Doc = {
        "status": {"$in": OPEN_STATUSES},
        "created_at": {"$lt": quiet_since},
        "text_deleted_at": {"$exists": False},
        **(where or {}),
    }
    cleared = 0
    async for t in repo.threads.find(query, {"_id": 1}, batch_size=200):
        recent = await repo.messages.find_one(
            {"thread_id": t["_id"], "created_at": {"$gte": quiet_since}}, {"_id": 1}
        )
        if recent is None:
            cleared += await clear_thread(repo, t["_id"], quiet_since, {"status": {"$in": OPEN_STATUSES}})
        await beat()
    return cleared


async def clear_thread(repo: Repository, tid: str, before: datetime, still: Doc) -> int:
    """Clear what thread ``tid`` holds that was written before ``before``; mark the thread
    (1) when nothing is left to clear, else leave it for a later pass (0). ``still``: the
    thread's state the pass chose it for (a thread reopened meanwhile is left alone)."""
    db = repo.db
    stored: Doc = {"thread_id": tid, "created_at": {"$lt": before}, "text_deleted": {"$exists": False}}
    sources: list[str] = []
    attachments: list[str] = []
    fields = {**SEARCHED_FIELDS, "source_id": 1, "attachments": 1}
    messages = [m async for m in repo.messages.find(stored, fields)]
    for m in messages:
        if isinstance(m.get("source_id"), str):
            sources.append(m["source_id"])
        attachments += [a["id"] for a in m.get("attachments") or [] if isinstance(a, dict) and "id" in a]
    # The search index follows: what these messages gave it is computed now, while their text
    # and key exist, and taken out once they are cleared (conversations/search.py). Only the
    # messages read here are cleared: one stored meanwhile is left to a later pass, as is its
    # place in the index.
    forgetting = await repo.search.before_clearing(tid, messages, before)
    old: Doc = {"_id": {"$in": [m["_id"] for m in messages]}, "text_deleted": {"$exists": False}}
    # A reply not yet gone (held by a safe-contact plan, or waiting for the broker) goes nowhere
    # now: its text and the address are being deleted.
    await repo.messages.update_many(
        {**old, "direction": "out", "published": False},
        {"$set": {"published": True, "delivery.status": "cancelled", "delivery.detail": "text deleted"}},
    )
    # The client's own Message-IDs first (they may name their host); ours are opaque.
    await repo.messages.update_many({**old, "direction": "in"}, {"$set": {"email_message_id": None}})
    await repo.messages.update_many(
        old,
        {
            "$set": {
                "text": None,
                "html": None,
                "subject": None,
                "quoted": None,
                "attachments": [],
                "sealed": None,
                "text_deleted": True,
            }
        },
    )
    await repo.search.after_clearing(forgetting)
    if sources:
        await db["mail_raw"].update_many(
            {"_id": {"$in": sources}}, {"$set": {"raw": None, "text_deleted": True}}
        )
    if attachments:
        await db["mail_attachments"].update_many(
            {"_id": {"$in": attachments}},
            {"$set": {"data": None, "filename": None, "text_deleted": True}},
        )
    # Files a consultant uploaded to the thread and never sent (services/store/reply_files.py).
    await db["mail_attachments"].update_many(
        {"thread_id": tid, "stored_at": {"$lt": before}, "text_deleted": {"$exists": False}},
        {"$set": {"data": None, "filename": None, "text_deleted": True}},
    )
    # Each consultation's case form that ended before the cut-off.
    async for c in repo.consultations.find({"thread_id": tid}, {"case": 1, "closed_at": 1}):
        ended = c.get("closed_at")
        if isinstance(c.get("case"), dict) and (ended is None or ended < before):
            await repo.consultations.update_one(
                {"_id": c["_id"]}, {"$set": {"case": _categorical(c["case"])}}
            )
    await repo.threads.update_one({"_id": tid}, {"$max": {"text_cleared_to": before}})
    if await repo.messages.find_one({"thread_id": tid, "text_deleted": {"$exists": False}}, {"_id": 1}):
        return 0  # newer text: the thread is cleared in full in a later pass
    thread = await repo.threads.find_one({"_id": tid, **still}, {"case": 1})
    if thread is None:
        return 0
    done = await repo.threads.update_one(
        {"_id": tid, **still},
        {
            "$set": {
                "subject": None,
                "case": _categorical(thread.get("case")),
                "client": {"address": None},  # in clear or sealed (client.sealed)
                "text_deleted_at": utcnow(),
            },
            "$unset": {"key": "", "email": "", SEALED_SUBJECT: ""},
        },
    )
    if not done.modified_count:
        return 0
    # A message stored while this pass ran, after the look above: its writer removed a mark
    # that was not there yet, so take the mark back; the next pass clears it in its turn.
    if await repo.messages.find_one({"thread_id": tid, "text_deleted": {"$exists": False}}, {"_id": 1}):
        await repo.threads.update_one({"_id": tid}, {"$unset": {"text_deleted_at": ""}})
        return 0
    return 1


async def delete_case_free_text(repo: Repository, config: HotlineConfig, closed_before: datetime) -> int:
    """Clear the free text of cases closed before ``closed_before``; return how many."""
    return await CaseRepository(repo.db).delete_free_text(closed_before, config.cases.free_text_fields)


def _categorical(case: Any) -> Doc:
    """The answers of a case form that are categorical codes (free text dropped)."""
    return {k: v for k, v in (case if isinstance(case, dict) else {}).items() if categorical(v) is not None}


JOB_ID = "retention"
# Renewed after every thread a pass clears: lapses only when its replica is gone.
LEASE_SECONDS = 300


class RetentionJob:
    """Retention on a schedule, across the store's replicas.

    Every ``check_seconds`` a replica asks whether a pass is due (the ``jobs`` document
    ``retention`` records when the last one finished); the one that holds the ``retention``
    lease (shared/lease.py) runs it, renewing the lease as it goes, and records its end. A
    replica that dies half-way loses the lease; another one runs the pass again, which
    finishes what was left (each step is idempotent).
    """

    def __init__(
        self,
        repo: Repository,
        config: HotlineConfig,
        lease: Lease,
        holder: str,
        *,
        days: int,
        unclosed_days: int,
        interval: timedelta,
        check_seconds: float,
    ) -> None:
        self.retention = Retention(repo, config)
        self.jobs = repo.db["jobs"]
        self.lease = lease
        self.holder = holder
        self.policies = policies(config, days, unclosed_days)
        self.interval = interval
        self.check_seconds = check_seconds

    async def due(self, now: datetime) -> bool:
        last = await self.jobs.find_one({"_id": JOB_ID})
        done = (last or {}).get("finished_at")
        return done is None or done + self.interval <= now

    async def step(self, heartbeat: Heartbeat | None = None) -> Outcome | None:
        """One pass if it is due and this replica holds the lease; None otherwise."""
        now = utcnow()
        if not await self.due(now) or not await self.lease.take(JOB_ID, self.holder):
            return None
        try:
            if not await self.due(now):  # another replica finished one meanwhile
                return None

            async def still_here() -> None:
                await self.lease.renew(JOB_ID, self.holder)
                if heartbeat is not None:
                    heartbeat.beat()

            began = utcnow()
            out = await self.retention.run(self.policies, now, still_here)
            finished = utcnow()
            await self.jobs.update_one(
                {"_id": JOB_ID},
                {"$set": {"started_at": began, "finished_at": finished, "by": self.holder, **out.as_log()}},
                upsert=True,
            )
            log.info("retention_done", seconds=round((finished - began).total_seconds(), 1), **out.as_log())
            return out
        finally:
            with contextlib.suppress(PyMongoError):
                await self.lease.release(JOB_ID, self.holder)

    async def run(self, heartbeat: Heartbeat) -> None:
        """Until cancelled: a pass when one is due. A database away is waited out (one
        warning); another database error is logged with its place and the next pass tries
        again; anything else ends the task, and the supervisor logs and restarts it."""
        failures = PassFailures("retention_pass_failed")
        while True:
            try:
                await self.step(heartbeat)
            except PyMongoError as exc:
                failures.failed(exc)
            else:
                failures.passed()
            heartbeat.beat()
            # Jittered, so replicas started together do not ask together.
            await asyncio.sleep(self.check_seconds * random.uniform(0.8, 1.0))  # noqa: S311


class RetentionSettings(VaultSettings):
    """The store's settings a pass by hand needs: it opens what it clears (the master key) to
    take it out of the search index (the client key secret and time zone, as the indexer's)."""

    model_config = SettingsConfigDict(env_prefix="STORE_", extra="ignore")
    mongo_url: SecretStr = Field(description="MongoDB URL")
    mongo_database: str = Field(default="hotline", description="MongoDB database name")
    client_key_secret: SecretStr = Field(
        min_length=32, description="Secret of the keyed hashes, the search index's among them"
    )
    stats_timezone: str = Field(
        default="Europe/Minsk", description="Time zone that decides a consultation's day, month and year"
    )
    retention_days: int = Field(
        default=365, ge=1, description="Free text of threads closed longer ago is deleted"
    )
    retention_unclosed_days: int = Field(
        default=365, ge=1, description="Free text of threads never closed and quiet this long is deleted"
    )
    config_path: Path = Field(
        default=DEFAULT_CONFIG_PATH,
        description="Hotline configuration (YAML): lines, which case answers are text",
    )


async def _run(days: int | None, settings: RetentionSettings) -> Outcome:
    config = load_config(settings.config_path)
    client = make_client(settings.mongo_url.get_secret_value())
    vault = Vault(client, settings.key_vault_namespace(settings.mongo_database), settings.master_keys())
    try:
        repo = Repository(client[settings.mongo_database], vault)
        secret = settings.client_key_secret.get_secret_value().encode()
        repo.search.use(Terms(SearchKey(secret), ZoneInfo(settings.stats_timezone)))
        chosen = policies(config, settings.retention_days, settings.retention_unclosed_days, days)
        return await Retention(repo, config).run(chosen)
    finally:
        await vault.close()
        await client.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.store.retention")
    parser.add_argument("--days", type=int, help="one period for every line (default: each line's own)")
    args = parser.parse_args(argv)
    if args.days is not None and args.days < 1:
        raise SystemExit("--days must be at least 1")
    out = asyncio.run(_run(args.days, RetentionSettings()))
    print(
        f"free text deleted from {out.threads} closed threads, {out.unclosed} threads never closed, "
        f"{out.cases} cases and {out.quarantined} quarantined mails"
    )


if __name__ == "__main__":
    main()
