"""The migration that gives threads their consultations, on a database as the previous code
wrote it: a thread closed, reopened and closed again becomes two consultations; the case form
the previous code kept (a later close without a consultation left it in place) goes to the
episode it describes; an open thread gets its current episode's number and start; a phone
consultation and a thread closed once are one consultation each; statistics then count
consultations by their start dates. Run twice, it changes nothing."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from conversations.identity import new_id, new_reply_token
from conversations.repository import Repository
from services.store import stats
from services.store.migrations import MIGRATIONS, migrate
from services.store.reports import Scope, StatsReader

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CASE = {"client_role": "survivor", "gender": "f", "age_group": "27-40", "comment": "she called back"}


def old_thread(status: str, created: datetime, **fields: Any) -> dict[str, Any]:
    """A thread document as the previous code stored it: no consultation field."""
    tid = new_id()
    return {
        "_id": tid,
        "key": f"old:{tid}",
        "channel": "email",
        "line": "113",
        "queue": "lastrada-migration",
        "organisations": ["lastrada"],
        "status": status,
        "priority": 0,
        "client": {"address": "c@example.org"},
        "reply_token": new_reply_token(),
        "assignee": None,
        "claim_seq": 1,
        "created_at": created,
        "waiting_since": created,
        **fields,
    }


def event(thread_id: str, name: str, at: datetime, by: str | None = None, **data: Any) -> dict[str, Any]:
    return {"_id": new_id(), "thread_id": thread_id, "name": name, "at": at, "by": by, "data": data}


def facts(at: datetime) -> dict[str, Any]:
    return stats.make_facts(CASE, at=at, line="113", channel="email", organisation="lastrada")


async def test_episodes_of_old_threads_become_consultations(repo: Repository) -> None:
    db = repo.db
    day = timedelta(days=1)
    # Closed with a case form, reopened a week later, closed as a duplicate: the previous code
    # kept the first case form and facts on the thread.
    twice = old_thread(
        "closed",
        T0,
        closed_at=T0 + 7 * day + timedelta(hours=1),
        closed_by="anna",
        outcome="no_consultation",
        no_consultation_reason="duplicate",
        case=CASE,
        facts=facts(T0),
    )
    # Closed twice with case forms: the second overwrote the first.
    overwritten = old_thread(
        "closed",
        T0,
        closed_at=T0 + 3 * day,
        closed_by="anna",
        outcome="consultation",
        case=CASE,
        facts=facts(T0),
    )
    # Closed once, then the client wrote again: open now.
    reopened = old_thread("waiting", T0, case=CASE, facts=facts(T0), waiting_since=T0 + 5 * day)
    # A phone consultation: born closed, no queue or close events.
    phone = old_thread("closed", T0 + day, channel="phone", closed_at=T0 + day, closed_by="anna", case=CASE)
    phone["facts"] = {**facts(T0 + day), "channel": "phone"}
    # Still waiting, never closed.
    fresh = old_thread("waiting", T0 + 2 * day)
    await db["threads"].insert_many([twice, overwritten, reopened, phone, fresh])
    await db["thread_events"].insert_many(
        [
            event(twice["_id"], "ThreadQueued", T0, queue="113-triage"),
            event(twice["_id"], "ThreadClaimed", T0 + timedelta(minutes=5), "anna"),
            event(twice["_id"], "ThreadClosed", T0 + timedelta(hours=1), "anna"),
            event(twice["_id"], "ThreadQueued", T0 + 7 * day, queue="lastrada-migration"),
            event(
                twice["_id"],
                "ThreadClosed",
                T0 + 7 * day + timedelta(hours=1),
                "anna",
                outcome="no_consultation",
                reason="duplicate",
            ),
            event(overwritten["_id"], "ThreadQueued", T0),
            event(overwritten["_id"], "ThreadClosed", T0 + timedelta(hours=2), "anna"),
            event(overwritten["_id"], "ThreadQueued", T0 + 2 * day),
            event(overwritten["_id"], "ThreadClosed", T0 + 3 * day, "boris"),
            event(reopened["_id"], "ThreadQueued", T0),
            event(reopened["_id"], "ThreadClosed", T0 + day, "anna"),
            event(reopened["_id"], "ThreadQueued", T0 + 5 * day),
            event(phone["_id"], "ConsultationRegistered", T0 + day, "anna", channel="phone"),
            event(fresh["_id"], "ThreadQueued", T0 + 2 * day),
        ]
    )
    # As a database of the version before this migration.
    await db["meta"].update_one({"_id": "schema"}, {"$set": {"version": 3}}, upsert=True)
    assert await migrate(db) == [v for v, _, _ in MIGRATIONS if v > 3]

    def brief(c: dict[str, Any]) -> tuple[Any, ...]:
        return (c["n"], c["outcome"], c["reason"], c["started_at"], c["facts"]["at"], c["consultants"])

    first, second = await repo.consultations_of(twice["_id"])
    assert brief(first) == (1, "consultation", None, T0, T0, ["anna"])
    assert brief(second) == (2, "no_consultation", "duplicate", T0 + 7 * day, T0 + 7 * day, ["anna"])
    assert first["case"] == CASE and first["facts"]["fields"]["gender"] == ["f"]
    assert second["case"] is None and second["facts"]["outcome"] == "no_consultation"

    lost, kept = await repo.consultations_of(overwritten["_id"])
    assert brief(lost) == (1, "consultation", None, T0, T0, ["anna"])
    assert lost["case"] is None and lost["facts"]["fields"] == {} and lost["facts"]["answers_lost"]
    assert brief(kept) == (2, "consultation", None, T0 + 2 * day, T0 + 2 * day, ["boris"])
    assert kept["case"] == CASE

    (earlier,) = await repo.consultations_of(reopened["_id"])
    assert brief(earlier) == (1, "consultation", None, T0, T0, ["anna"])
    (call,) = await repo.consultations_of(phone["_id"])
    assert (call["n"], call["channel"], call["started_at"]) == (1, "phone", T0 + day)
    assert await repo.consultations_of(fresh["_id"]) == []

    # Open threads know which consultation is open and since when.
    current = {t["_id"]: t["consultation"] async for t in db["threads"].find({"status": {"$ne": "closed"}})}
    assert (current[reopened["_id"]]["n"], current[reopened["_id"]]["started_at"]) == (2, T0 + 5 * day)
    assert (current[fresh["_id"]]["n"], current[fresh["_id"]]["started_at"]) == (1, T0 + 2 * day)

    # Statistics: 5 consultations in the window (one with its answers lost), the duplicate apart.
    query = stats.parse_query(
        {"from": "2026-03-01", "to": "2026-03-31", "by": "gender"},
        date(2026, 12, 7),
        ZoneInfo("Europe/Minsk"),
    )
    (tally,) = await StatsReader(repo).tally([query], Scope(["113"], None))
    table = stats.build_table(tally, None)
    assert table["total"]["count"] == 5
    assert {r["gender"]: r["count"] for r in table["rows"]} == {"f": 4, None: 1}
    assert table["no_consultation"]["rows"] == [{"reason": "duplicate", "count": 1}]

    # Again (a replica that started at the same time, or an interrupted run): nothing changes.
    before = [c async for c in db["consultations"].find({}).sort("_id")]
    step = next(s for v, _, s in MIGRATIONS if v == 4)
    await step(db)
    assert [c async for c in db["consultations"].find({}).sort("_id")] == before
    assert await migrate(db) == []
