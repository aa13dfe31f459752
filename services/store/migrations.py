"""Schema migrations of the database, applied in order when the store starts.

The database records the last applied migration in ``meta/schema``. Every migration is
idempotent (several store replicas may start at once, and a migration interrupted half-way is
simply run again), so the upgrade path is: back up (``python -m deploy.backup dump``), deploy
the new images, let the store migrate on start. A new migration is appended here, never edited.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from conversations.model import EventName, Outcome, closed_consultation, open_consultation
from conversations.search import SearchIndex
from services.store import stats
from shared import html
from shared.envelope import utcnow
from shared.logs import get_logger

log = get_logger(__name__)

Db = AsyncDatabase[dict[str, Any]]


async def _claims_are_counted(db: Db) -> None:
    # Claims became unique records claims/<thread>:<n>; a thread counts its claims from 0.
    await db["threads"].update_many({"claim_seq": {"$exists": False}}, {"$set": {"claim_seq": 0}})


async def _messages_have_a_received_time(db: Db) -> None:
    # Stored time (created_at) orders a thread; the source's own time is kept beside it.
    async for doc in db["messages"].find(
        {"direction": "in", "received_at": {"$exists": False}}, {"created_at": 1}
    ):
        await db["messages"].update_one({"_id": doc["_id"]}, {"$set": {"received_at": doc["created_at"]}})


async def _html_is_sanitised_once(db: Db) -> None:
    # E-mail HTML of another sanitiser version (before the version was kept: none) is
    # sanitised again, once, with the budget, and keeps the current version; a thread view
    # then shows it as stored (api.message_view). Done here rather than on the first view
    # because a view must not wait on the sanitiser, and because one store replica does it
    # for all. Each message off the event loop: the store answers meanwhile. A change of
    # html.VERSION appends a migration that runs this step again.
    async for doc in db["messages"].find(
        {"html": {"$ne": None}, "html_sanitiser": {"$ne": html.VERSION}}, {"html": 1}
    ):
        if not isinstance(doc.get("html"), str):
            continue
        clean = await asyncio.to_thread(html.sanitise, doc["html"])
        await db["messages"].update_one(
            {"_id": doc["_id"]}, {"$set": {"html": clean, "html_sanitiser": html.VERSION}}
        )


def _episodes(
    thread: dict[str, Any], events: list[dict[str, Any]]
) -> list[tuple[Any, dict[str, Any] | None]]:
    """(start, close event) of each closed episode of ``thread``, from its event log: an
    episode opens at the first ``ThreadQueued`` (a new thread, or a reopen) after the last
    close and ends at the next ``ThreadClosed``. A closed thread without a logged close (a
    phone consultation) is one episode that started when it was created."""
    episodes: list[tuple[Any, dict[str, Any] | None]] = []
    start = None
    for e in events:
        if e["name"] == EventName.THREAD_QUEUED:
            start = start or e["at"]
        elif e["name"] == EventName.THREAD_CLOSED:
            episodes.append((start or thread["created_at"], e))
            start = None
    if thread.get("status") == "closed" and not episodes:
        episodes.append((thread["created_at"], None))
    return episodes


def _episode_documents(
    t: dict[str, Any], episodes: list[tuple[Any, dict[str, Any] | None]], facts: dict[str, Any], closed: bool
) -> list[dict[str, Any]]:
    """The consultation documents of ``t``'s closed episodes. Each episode's outcome is its
    close event's (the thread's own for the last one, if closed). The thread's case form and
    facts belong to the episode they describe: the last one if they are a contact without
    consultation's, else the last episode closed as a consultation (the previous code kept a
    consultation's case when a later episode closed without one)."""
    outcomes = [
        Outcome(((e or {}).get("data") or {}).get("outcome") or Outcome.CONSULTATION) for _, e in episodes
    ]
    reasons = [((e or {}).get("data") or {}).get("reason") for _, e in episodes]
    if closed and episodes and t.get("outcome"):
        outcomes[-1] = Outcome(t["outcome"])
        reasons[-1] = t.get("no_consultation_reason") or reasons[-1]
    if facts.get("outcome") == Outcome.NO_CONSULTATION:
        holders = [len(episodes) - 1] if closed and episodes else []
    else:
        holders = [i for i, o in enumerate(outcomes) if o is Outcome.CONSULTATION][-1:]
    organisation = facts.get("organisation")
    where = {"line": t["line"], "channel": t["channel"], "organisation": organisation}
    docs = []
    for i, (start, event) in enumerate(episodes):
        outcome, reason = outcomes[i], reasons[i]
        case = None
        if i in holders:
            episode_facts = {**facts, "at": start}
            case = t.get("case") if outcome is Outcome.CONSULTATION else None
        elif outcome is Outcome.NO_CONSULTATION:
            episode_facts = stats.no_consultation_facts(reason or "unknown", at=start, **where)
        else:
            # Its case form was overwritten by a later close: counted, with its answers lost.
            episode_facts = {**stats.make_facts({}, at=start, **where), "answers_lost": True}
        episode = {
            **t,
            "consultation": open_consultation(i + 1, start, t["queue"]),
            "closed_at": event["at"] if event else t.get("closed_at"),
            "closed_by": event.get("by") if event else t.get("closed_by"),
        }
        docs.append(
            closed_consultation(
                episode,
                outcome=outcome,
                reason=reason if outcome is Outcome.NO_CONSULTATION else None,
                case=case,
                facts=episode_facts,
            )
        )
    return docs


async def _consultations_are_episodes(db: Db) -> None:
    # A thread holds consultations (PRODUCT.md 3.5). Each closed episode of an existing
    # thread becomes a consultation document; the thread's latest case form and facts go to
    # its last one (dated by that episode's start). An earlier episode's case form was
    # overwritten by the later close: it becomes a consultation with no answers (or a
    # contact without consultation, as its close event says), so it is counted, not lost.
    # An open thread gets its current episode's number and start. A thread already carrying
    # a consultation number is done: running this again changes nothing.
    async for t in db["threads"].find({"consultation.n": {"$exists": False}}):
        # (A document missing a field every writer set is read as well as it can be.)
        t.setdefault("created_at", t.get("waiting_since") or utcnow())
        t.setdefault("queue", None)
        events = [
            e
            async for e in db["thread_events"]
            .find(
                {"thread_id": t["_id"], "name": {"$in": [EventName.THREAD_QUEUED, EventName.THREAD_CLOSED]}}
            )
            .sort("at", 1)
        ]
        episodes = _episodes(t, events)
        closed = t.get("status") == "closed"
        facts = t.get("facts") if isinstance(t.get("facts"), dict) else None
        if facts is not None:
            for doc in _episode_documents(t, episodes, facts, closed):
                await db["consultations"].replace_one({"_id": doc["_id"]}, doc, upsert=True)
        if closed:
            n = max(len(episodes), 1)
            start = episodes[-1][0] if episodes else t["created_at"]
        else:
            n = len(episodes) + 1
            opened = [e["at"] for e in events if e["name"] == EventName.THREAD_QUEUED]
            after = [
                at for at in opened if not episodes or episodes[-1][1] is None or at > episodes[-1][1]["at"]
            ]
            start = after[0] if after else t.get("waiting_since") or t["created_at"]
        await db["threads"].update_one(
            {"_id": t["_id"]}, {"$set": {"consultation": open_consultation(n, start, t["queue"])}}
        )


async def _records_are_searchable(db: Db) -> None:
    # Finding a record reads a keyed word index (conversations/search.py) that new messages and
    # consultations join as they are stored. Those stored before are read by the store's
    # indexer in the background, which needs the key (from the settings, never the database):
    # here the rebuild is only asked for, so a start does not wait on a pass over every message.
    await SearchIndex(db).request_rebuild()


async def _index_follows_retention(db: Db) -> None:
    # The index now loses what retention or an erasure clears (conversations/search.py); what
    # they cleared before still has postings, and nothing can tell which (the words are gone).
    # So the indexer empties the postings and reads again what is stored, in the background.
    await SearchIndex(db).request_rebuild(fresh=True)


async def _seeing_all_is_a_role(db: Db) -> None:
    # A supervisor or admin without an organisation saw every organisation's work; now only a
    # national administrator does, and an account of another role without an organisation is
    # refused at log-in (auth.may_log_in). Those accounts keep what they had, under its name.
    found = await db["consultants"].update_many(
        {"role": {"$in": ["supervisor", "admin"]}, "organisation": None},
        {"$set": {"role": "national_admin"}},
    )
    if found.modified_count:
        log.info("accounts_made_national_admin", count=found.modified_count)


async def _outbox_is_listed(db: Db) -> None:
    # The outbox sweep reads a list of the outbound messages not yet published (the collection
    # ``outbox``) instead of querying the messages: those waiting from before are listed, once.
    listed = 0
    async for m in db["messages"].find({"direction": "out", "published": False}, {"created_at": 1}):
        try:
            await db["outbox"].insert_one({"_id": m["_id"], "at": m.get("created_at") or utcnow()})
            listed += 1
        except DuplicateKeyError:
            pass  # listed already (a migration run again after a stop)
    if listed:
        log.info("outbox_listed", count=listed)


MIGRATIONS: list[tuple[int, str, Callable[[Db], Awaitable[None]]]] = [
    (1, "threads count their claims", _claims_are_counted),
    (2, "inbound messages keep their source time", _messages_have_a_received_time),
    (3, "e-mail HTML is sanitised once, with the budget, and keeps its version", _html_is_sanitised_once),
    (4, "a thread holds its consultations, one per episode", _consultations_are_episodes),
    (5, "stored messages and consultations are indexed for search", _records_are_searchable),
    (6, "the search index holds only text still stored", _index_follows_retention),
    (7, "seeing every organisation is the national administrator's role", _seeing_all_is_a_role),
    (8, "the outbox lists the replies not yet handed to the broker", _outbox_is_listed),
]


async def schema_version(db: Db) -> int:
    doc = await db["meta"].find_one({"_id": "schema"})
    return int(doc["version"]) if doc else 0


async def migrate(db: Db) -> list[int]:
    """Apply every migration newer than the database's version; returns those applied."""
    applied = []
    current = await schema_version(db)
    for version, title, step in MIGRATIONS:
        if version <= current:
            continue
        log.info("migration_started", version=version, title=title)
        await step(db)
        await db["meta"].update_one(
            {"_id": "schema"}, {"$max": {"version": version}, "$set": {"migrated_at": utcnow()}}, upsert=True
        )
        applied.append(version)
    return applied
