"""Finding a record through the real store: by words, numbers, dates and case-form answers,
each person only within what they could open, cases only for the owning organisation's
specialists and supervisors; a message that arrives through the real intake becomes
searchable; what was searched for never reaches the logs."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

from conversations.cases import new_case, new_referral
from conversations.identity import new_id
from conversations.model import ThreadStatus, consultation_id, new_thread
from conversations.repository import Repository
from conversations.search import FOLD_AT, SearchIndex, SearchKey
from services.store.search_index import SearchIndexer
from services.store.stats import make_facts
from shared.mongo import make_client
from tests.conftest import Gateway
from tests.integration.chat_client import ChatClient
from tests.integration.helpers import Consultant, add_account, logged_in

MINSK = ZoneInfo("Europe/Minsk")
# Words only these tests use: a hit can only come from the records written here.
PASSPORT = "паспортъ"
CITY = "Варшавке"
PHONE_WORD = "zyxwvortex"


def at(day: str, hour: int = 12) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=MINSK).astimezone(UTC)


def thread(
    name: str, queue: str, organisations: list[str], line: str, day: str, counted: str | None
) -> dict[str, Any]:
    """A thread written as the store keeps it; closed with a consultation counted for
    ``counted`` (open when None)."""
    t = new_thread(
        f"search-test:{name}:{new_id()}",
        channel="email",
        line=line,
        queue=queue,
        organisations=organisations,
        client_address="client@example.test",
        created_at=at(day, 9),
        waiting_since=at(day, 9),
    )
    if counted is not None:
        case = {
            "client_role": "survivor",
            "gender": "female",
            "age_group": "27_40",
            "topics": ["work_abroad"],
        }
        t.update(status=ThreadStatus.CLOSED, closed_at=at(day, 18), closed_by="x", outcome="consultation")
        t["case"] = case
        t["facts"] = make_facts(case, at=at(day, 9), line=line, channel="email", organisation=counted)
    return t


def message(thread_id: str, text: str, day: str, direction: str = "in") -> dict[str, Any]:
    return {
        "_id": new_id(),
        "source_id": f"search-test:{new_id()}",
        "thread_id": thread_id,
        "direction": direction,
        "author": "client" if direction == "in" else "consultant:anna",
        "channel": "email",
        "text": text,
        "created_at": at(day, 10),
    }


def case(organisation: str, number: int, t: dict[str, Any], day: str) -> dict[str, Any]:
    referral = new_referral("social_worker", at(day, 20), "x", at(day, 12))
    return new_case(
        number=number,
        organisation=organisation,
        line=t["line"],
        kind="crisis_abroad",
        intake={},
        opened_by="x",
        at=at(day, 12),
        thread_id=t["_id"],
        consultation_id=consultation_id(t["_id"], 1),
        client_id=None,
        referral=referral,
    )


class World:
    """The records of the test, by name."""

    def __init__(self) -> None:
        self.t: dict[str, dict[str, Any]] = {}


async def write_world(gateway: Gateway) -> World:
    w = World()
    w.t = {
        # La Strada: a closed consultation (words in Russian) and an open thread (English).
        "lastrada": thread("lastrada", "lastrada-migration", ["lastrada"], "113", "2026-03-10", "lastrada"),
        "lastrada_open": thread(
            "lastrada_open", "lastrada-migration", ["lastrada"], "113", "2026-05-02", None
        ),
        # BWC: the same words, a day later.
        "bwc": thread("bwc", "bwc-migration", ["bwc"], "113", "2026-03-11", "bwc"),
        # The shared triage queue: a consultation BWC gave there (La Strada must not read it).
        "triage_bwc": thread("triage", "113-triage", ["lastrada", "bwc"], "113", "2026-03-12", "bwc"),
        # The DV line of Gender Perspectives.
        "gp": thread("gp", "gp-dv", ["gp"], "dv", "2026-03-10", "gp"),
    }
    client = make_client(gateway.urls.mongo_url)
    try:
        db = client[gateway.database]
        repo = Repository(db)
        closed = [t for t in w.t.values() if t["status"] == ThreadStatus.CLOSED]
        assert await repo.add_closed_threads(closed) == len(closed)
        await repo.threads.insert_one(w.t["lastrada_open"])
        messages = [
            message(
                w.t["lastrada"]["_id"],
                f"Мой {PASSPORT.upper()} забрали в {CITY}, номер {PHONE_WORD}",
                "2026-03-10",
            ),
            message(w.t["lastrada"]["_id"], "Позвоните в посольство", "2026-03-10", "out"),
            message(w.t["lastrada_open"]["_id"], "Passport kept by the employer in Gdansk", "2026-05-02"),
            message(w.t["bwc"]["_id"], f"{PASSPORT} остался в {CITY}", "2026-03-11"),
            message(w.t["triage_bwc"]["_id"], f"{PASSPORT} {CITY}", "2026-03-12"),
            message(w.t["gp"]["_id"], f"{PASSPORT} у мужа, {CITY}", "2026-03-10"),
        ]
        for m in messages:
            await repo.messages.insert_one(m)
            await repo.search.message_stored(m["_id"])
        cases = [case("lastrada", 1, w.t["lastrada"], "2026-03-10"), case("bwc", 1, w.t["bwc"], "2026-03-11")]
        await db["cases"].insert_many(cases)
        await add_account(repo, "lsup", "supervisor", "lastrada", ["113"])
        await add_account(repo, "lspec", "specialist", "lastrada", ["113"], ["social_worker"])
        await add_account(repo, "bspec", "specialist", "bwc", ["113"], ["social_worker"])
        # The store indexes on its own a moment later; here at once, with the store's key.
        await indexer(gateway, db).drain()
    finally:
        await client.close()
    return w


def indexer(gateway: Gateway, db: Any) -> SearchIndexer:
    """An indexer like the store's, with the store's key."""
    key = SearchKey(gateway.env["store"]["STORE_CLIENT_KEY_SECRET"].encode())
    return SearchIndexer(SearchIndex(db), key, MINSK, None, "test")


async def in_database(gateway: Gateway, act: Any) -> Any:
    client = make_client(gateway.urls.mongo_url)
    try:
        return await act(client[gateway.database])
    finally:
        await client.close()


async def login(gateway: Gateway, who: str) -> Consultant:
    return await logged_in(gateway.store_url, who)


async def search(c: Consultant, **criteria: Any) -> dict[str, Any]:
    status, body = await c.call("POST", "/api/search", criteria)
    assert status == 200, body
    return body


def threads(result: dict[str, Any]) -> set[str]:
    return {r["thread"]["id"] for r in result["records"]}


def references(result: dict[str, Any]) -> set[str]:
    return {c["reference"] for c in result["cases"]}


async def test_each_criterion_finds_only_what_the_person_could_open(gateway: Gateway) -> None:
    gateway.seed_demo_accounts()
    w = await write_world(gateway)
    ids = {name: t["_id"] for name, t in w.t.items()}
    anna, boris, vera, sofia = [await login(gateway, n) for n in ("anna", "boris", "vera", "sofia")]
    lsup, lspec, bspec = [await login(gateway, n) for n in ("lsup", "lspec", "bspec")]
    try:
        # Words: in any case, together, in another message of the thread, in our answer too.
        assert threads(await search(anna, text=PASSPORT)) == {ids["lastrada"]}
        assert threads(await search(anna, text=f"{PASSPORT.upper()} {CITY.lower()}")) == {ids["lastrada"]}
        assert threads(await search(anna, text=f"{PASSPORT} посольство")) == {ids["lastrada"]}
        assert threads(await search(anna, text="passport GDANSK")) == {ids["lastrada_open"]}
        assert threads(await search(anna, text=f"{PASSPORT} gdansk")) == set()
        # Each organisation its own; a shared queue's consultation belongs to who gave it.
        assert threads(await search(boris, text=PASSPORT)) == {ids["bwc"], ids["triage_bwc"]}
        assert threads(await search(vera, text=PASSPORT)) == {ids["gp"]}
        assert threads(await search(sofia, text=PASSPORT)) == {
            ids["lastrada"],
            ids["bwc"],
            ids["triage_bwc"],
            ids["gp"],
        }
        assert threads(await search(lsup, text=PASSPORT)) == {ids["lastrada"]}
        # Dates: a message's day.
        assert threads(await search(anna, text=PASSPORT, **{"from": "2026-03-11"})) == set()
        assert threads(await search(boris, text=PASSPORT, to="2026-03-11")) == {ids["bwc"]}

        # Numbers: a thread, a consultation; another organisation's give nothing.
        found = await search(anna, number=ids["lastrada"])
        assert threads(found) == {ids["lastrada"]} and found["cases"] == []
        found = await search(anna, number=f"{ids['lastrada']}:1")
        assert threads(found) == {ids["lastrada"]}
        assert found["records"][0]["consultation"]["case"]["gender"] == ["female"]
        for other in ("bwc", "triage_bwc", "gp"):
            assert (await search(anna, number=ids[other]))["records"] == []
            assert (await search(anna, number=f"{ids[other]}:1"))["records"] == []

        # Dates alone: consultations that started on those days, of one's own organisation.
        by_day = await search(anna, **{"from": "2026-03-10", "to": "2026-03-12"})
        assert [r["consultation"]["id"] for r in by_day["records"]] == [f"{ids['lastrada']}:1"]
        by_day = await search(boris, **{"from": "2026-03-10", "to": "2026-03-12"})
        assert {r["consultation"]["id"] for r in by_day["records"]} == {
            f"{ids['bwc']}:1",
            f"{ids['triage_bwc']}:1",
        }
        # Case-form answers, alone, with dates, with words.
        assert threads(await search(anna, answers={"gender": ["female"]})) == {ids["lastrada"]}
        assert threads(await search(anna, answers={"gender": ["male"]})) == set()
        assert threads(await search(anna, answers={"gender": "female"}, to="2026-03-09")) == set()
        both = await search(boris, answers={"gender": ["female"], "topics": ["work_abroad"]}, text=CITY)
        assert threads(both) == {ids["bwc"], ids["triage_bwc"]}
        assert threads(await search(vera, answers={"gender": ["female"]})) == {ids["gp"]}

        # Cases: only the owning organisation's specialists and supervisors.
        assert references(await search(lspec, number="LASTRADA-1")) == {"LASTRADA-1"}
        assert references(await search(lspec, number="1")) == {"LASTRADA-1"}
        assert references(await search(lsup, number="lastrada-1")) == {"LASTRADA-1"}
        assert references(await search(lspec, text=PASSPORT)) == {"LASTRADA-1"}
        assert references(await search(bspec, number="1")) == {"BWC-1"}
        assert references(await search(sofia, number="BWC-1")) == {"BWC-1"}
        for attacker in (lspec, lsup):
            assert (await search(attacker, number="BWC-1"))["cases"] == []
        assert (await search(bspec, number="LASTRADA-1"))["cases"] == []
        for consultant in (anna, boris):
            for number in ("LASTRADA-1", "BWC-1", "1"):
                assert (await search(consultant, number=number))["cases"] == []
            assert (await search(consultant, text=PASSPORT))["cases"] == []

        # A later message adds to the month's postings of a word already indexed.
        later = message(ids["lastrada"], f"{PASSPORT} вернули, спасибо {PHONE_WORD}x", "2026-03-20")
        await in_database(gateway, lambda db: db["messages"].insert_one(later))
        await in_database(gateway, lambda db: Repository(db).search.message_stored(later["_id"]))
        await in_database(gateway, lambda db: indexer(gateway, db).drain())
        assert threads(await search(anna, text=f"{PHONE_WORD}x")) == {ids["lastrada"]}
        assert threads(await search(anna, text=PASSPORT, **{"from": "2026-03-20"})) == {ids["lastrada"]}
        assert threads(await search(boris, text=f"{PHONE_WORD}x")) == set()
        # Once retention deleted a thread's text, its words no longer find it; its number does.
        deleted = {"$set": {"text_deleted_at": at("2026-04-01")}}
        await in_database(gateway, lambda db: db["threads"].update_one({"_id": ids["lastrada"]}, deleted))
        assert threads(await search(anna, text=PASSPORT)) == set()
        assert threads(await search(anna, number=ids["lastrada"])) == {ids["lastrada"]}

        # What cannot be searched is refused, naming the criterion.
        for bad, word in (
            ({}, "give"),
            ({"line": "dv"}, "line"),
            ({"text": "и в на"}, "text"),
            ({"answers": {"no_such_field": ["x"]}}, "answers"),
            ({"from": "2026-13-01"}, "from"),
            ({"text": "x" * 501}, "text"),
            ({"limit": 0, "text": PASSPORT}, "limit"),
        ):
            status, body = await anna.call("POST", "/api/search", bad)
            assert status == 422 and word in body["detail"], (bad, body)
        # A search changes nothing, but is a POST: it needs the CSRF token like any other.
        async with anna.http.post(f"{anna.base}/api/search", json={"text": PASSPORT}) as resp:
            assert resp.status == 403
    finally:
        for c in (anna, boris, vera, sofia, lsup, lspec, bspec):
            await c.close()
    # What people searched for never reaches the logs.
    logs = gateway.logs()
    for word in (PASSPORT, CITY.lower(), "gdansk", PHONE_WORD):
        assert word not in logs.lower()
    assert '"search"' in logs or "search" in logs


async def test_a_chat_message_becomes_searchable_through_the_stores_own_indexer(gateway: Gateway) -> None:
    gateway.seed_demo_accounts()
    vera = await login(gateway, "vera")
    anna = await login(gateway, "anna")
    word = "quetzalcoatlus" + new_id()[:6]
    async with aiohttp.ClientSession() as http:
        chat = ChatClient(http, gateway.chat_url)
        try:
            await chat.start(line="dv")
            frame = await chat.say(f"My neighbour {word} shouts at night")
            await chat.wait(lambda: frame in chat.acked)
            deadline = time.monotonic() + 30
            found: set[str] = set()
            while not found and time.monotonic() < deadline:
                found = threads(await search(vera, text=word))
                if not found:
                    await asyncio.sleep(0.5)  # the indexer's pass is periodic: nothing to await
            assert len(found) == 1
            # The DV line's thread is not the infoline consultant's to find.
            assert threads(await search(anna, text=word)) == set()
        finally:
            await chat.drop()
            await vera.close()
            await anna.close()
    assert word not in gateway.logs()


async def test_postings_take_appends_without_reading_and_fold_them_keeping_every_ref(
    repo: Repository,
) -> None:
    index = SearchIndex(repo.db)
    key = "tokentokenAA:2026-03"
    refs = [f"{1 + i % 28:02d}|{new_id()}" for i in range(FOLD_AT * 2 + 5)]
    await index.add({key: {refs[0]}})  # a new key: inserted
    for i, r in enumerate(refs[1:], 1):
        await index.add({key: {r, refs[i - 1]}})  # each also repeats the previous ref
    assert sorted(set(await index.refs([key]))) == sorted(refs)
    doc = await repo.db["search_postings"].find_one({"_id": key})
    assert doc is not None and len(doc["more"]) < FOLD_AT and len(doc["refs"].split()) >= FOLD_AT
    # Written by the index's first form (an array): still read.
    await repo.db["search_postings"].insert_one({"_id": "old:2026-01", "refs": ["01|a", "02|b"]})
    assert sorted(await index.refs(["old:2026-01", "missing:2026-01"])) == ["01|a", "02|b"]
    assert await index.months() == ["2026-03"]
