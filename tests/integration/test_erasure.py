"""A person's copy of their data and its erasure, through the running store (services/store/erasure.py).

The person wrote twice by e-mail (two closed threads of one client) and has a closed case. Their
threads are written straight into the store's database, sealed under the services' master key
as the dispatcher seals them; everything else goes through the store's API.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from conversations.cases import CaseRepository, CaseStatus, new_case, new_referral
from conversations.identity import new_id, new_reply_token
from conversations.repository import Repository
from conversations.vault import SEALED, Vault
from services.store.stats import make_facts
from shared.config import load_config
from shared.envelope import utcnow
from shared.mongo import make_client
from shared.settings import DEFAULT_CONFIG_PATH, parse_master_key
from tests.conftest import Gateway
from tests.integration.helpers import Consultant, add_account

CANARY = "Erase-Ж-" + uuid.uuid4().hex
CLIENT = "client-" + uuid.uuid4().hex[:8]


async def person_thread(repo: Repository, days_ago: int) -> str:
    at = utcnow() - timedelta(days=days_ago)
    case = {"gender": "f", "comment": f"{CANARY} case answer"}
    tid = new_id()
    await repo.add_closed_threads(
        [
            {
                "_id": tid,
                "key": f"email:{tid}",
                "channel": "email",
                "line": "113",
                "queue": "113-triage",
                "organisations": ["lastrada", "bwc"],
                "status": "closed",
                "client": {"address": "she@example.org"},
                "client_id": CLIENT,
                "subject": f"{CANARY} subject",
                "reply_token": new_reply_token(),
                "created_at": at,
                "closed_at": at + timedelta(hours=1),
                "case": case,
                "facts": make_facts(case, at=at, line="113", channel="email", organisation="lastrada"),
            }
        ]
    )
    thread = await repo.thread(tid)
    assert thread is not None
    message = {
        "_id": new_id(),
        "source_id": f"imap:box:1:{tid}",
        "thread_id": tid,
        "direction": "in",
        "author": "client",
        "channel": "email",
        "text": f"{CANARY} she wrote",
        "subject": f"{CANARY} subject",
        "created_at": at,
    }
    await repo.messages.insert_one(await repo.seal_message(thread, message))
    await repo.add_note(thread, "anna", f"{CANARY} note")
    return tid


@pytest.fixture
async def person(gateway: Gateway) -> Any:
    gateway.seed_demo_accounts()
    client = make_client(gateway.urls.mongo_url)
    key = parse_master_key(gateway.env["store"]["STORE_MASTER_KEY"])
    vault = Vault(client, f"{gateway.database}_keys.data_keys", key)
    repo = Repository(client[gateway.database], vault)
    threads = [await person_thread(repo, 40), await person_thread(repo, 20)]
    await repo.clients.keys.insert_one({"_id": "hmac-of-her-address", "client_id": CLIENT})
    await repo.contact_plans.plans.insert_one({"_id": f"client:{CLIENT}", "write_first": True})
    # A reply the plan held, never sent: it must not go out once her text and address are gone.
    first = await repo.thread(threads[0])
    assert first is not None
    held, _ = await repo.add_outbound(
        first, "consultant:anna", f"{CANARY} held reply", f"held:{new_id()}", "x.test"
    )
    await repo.messages.update_one(
        {"_id": held["_id"]},
        {"$set": {"delivery": {"status": "held", "at": utcnow(), "detail": "quiet hours"}}},
    )
    case = new_case(
        number=1,
        organisation="lastrada",
        line="113",
        kind="crisis_abroad",
        intake={},
        opened_by="anna",
        at=utcnow() - timedelta(days=20),
        thread_id=threads[1],
        consultation_id=None,
        client_id=CLIENT,
        referral=new_referral("social_worker", utcnow(), "anna", utcnow()),
    )
    case.update(status=CaseStatus.CLOSED.value, closed_at=utcnow(), notes=[{"text": f"{CANARY} case note"}])
    # Stored as the store stores cases: its free text sealed under a key of its own.
    await CaseRepository(repo.db, vault, load_config(DEFAULT_CONFIG_PATH).cases.free_text_fields).insert(case)
    try:
        yield repo, threads, case["_id"]
    finally:
        await client.close()


async def logged_in(gateway: Gateway, who: str) -> Consultant:
    c = Consultant(gateway.store_url)
    await c.login(who, f"{who}-demo")
    return c


async def test_a_supervisor_gets_a_copy_of_everything_held_about_the_person(
    gateway: Gateway, person: Any
) -> None:
    repo, threads, case_id = person
    sofia, anna = await logged_in(gateway, "sofia"), await logged_in(gateway, "anna")
    try:
        status, _ = await anna.call("GET", f"/api/threads/{threads[0]}/person/export")
        assert status == 403  # a consultant answers no subject-access request
        async with sofia.http.get(f"{sofia.base}/api/threads/{threads[0]}/person/export") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Disposition"].startswith("attachment;")
            assert resp.headers["Cache-Control"] == "no-store"
            export = await resp.json()
    finally:
        await sofia.close()
        await anna.close()
    assert export["client_id"] == CLIENT and export["exported_by"] == "sofia"
    assert sorted(t["id"] for t in export["threads"]) == sorted(threads)
    for t in export["threads"]:
        texts = [m.get("text") for m in t["messages"]]
        assert f"{CANARY} she wrote" in texts and f"{CANARY} note" in texts
        assert "data_key" not in t and "key" not in t and all(SEALED not in m for m in t["messages"])
    stored_case = await repo.db["cases"].find_one({"_id": case_id})
    assert stored_case is not None and CANARY not in repr(stored_case)  # sealed where it is kept
    assert [c["id"] for c in export["cases"]] == [case_id]
    assert export["cases"][0]["notes"][0]["text"] == f"{CANARY} case note"
    # Each thread's read audit says who exported it.
    reads = [r async for r in repo.db["thread_reads"].find({"thread_id": {"$in": threads}, "what": "export"})]
    assert {r["thread_id"] for r in reads} == set(threads) and {r["login"] for r in reads} == {"sofia"}


async def test_erasure_leaves_no_text_anywhere_and_statistics_as_they_were(
    gateway: Gateway, person: Any
) -> None:
    repo, threads, case_id = person
    sofia, anna = await logged_in(gateway, "sofia"), await logged_in(gateway, "anna")
    # What a backup taken before the erasure holds: the sealed messages, as stored.
    backup = [m[SEALED] async for m in repo.messages.find({"thread_id": {"$in": threads}})]
    facts = {t: (await repo.thread(t) or {})["facts"] for t in threads}
    try:
        path = f"/api/threads/{threads[0]}/person/erase"
        assert (await anna.call("POST", path, {"confirm": "erase"}))[0] == 403
        status, answer = await sofia.call("POST", path, {})
        assert status == 422 and answer["invalid"] == ["confirm"]
        # A person still being helped is not erased.
        await repo.threads.update_one({"_id": threads[1]}, {"$set": {"status": "waiting"}})
        status, answer = await sofia.call("POST", path, {"confirm": "erase"})
        assert status == 409 and answer["threads"] == [threads[1]]
        await repo.threads.update_one({"_id": threads[1]}, {"$set": {"status": "closed"}})

        status, answer = await sofia.call("POST", path, {"confirm": "erase"})
        assert status == 200, answer
        # Two threads' keys and the case's.
        assert answer == {"threads": 2, "cases": 1, "data_keys_deleted": 3, "client_keys_forgotten": 1}
        status, history = await sofia.call("GET", f"/api/threads/{threads[1]}/history")
        assert status == 200 and any(e["name"] == "TextErased" and e["by"] == "sofia" for e in history)
    finally:
        await sofia.close()
        await anna.close()

    # Nothing of what she wrote, or of what was written about her, is left in the database.
    for name in await repo.db.list_collection_names():
        docs = [d async for d in repo.db[name].find({})]
        assert CANARY not in repr(docs), name
        assert "she@example.org" not in repr(docs), name
    # The backup's copies open to nothing: their keys are gone, even for someone holding the
    # master key and the key vault (a process of its own, with no keys cached).
    thief = Vault(
        repo.db.client,
        f"{gateway.database}_keys.data_keys",
        parse_master_key(gateway.env["store"]["STORE_MASTER_KEY"]),
    )
    assert [await thief.open(sealed) for sealed in backup] == [None] * len(backup)
    # Her address no longer recognises her; the threads still count as before.
    assert await repo.clients.keys.find_one({"client_id": CLIENT}) is None
    assert await repo.contact_plans.plans.find_one({"_id": f"client:{CLIENT}"}) is None
    # The held reply is cancelled, and out of the outbox's way.
    replies = [m async for m in repo.messages.find({"thread_id": threads[0], "direction": "out"})]
    assert [(m["delivery"]["status"], m["published"]) for m in replies] == [("cancelled", True)]
    assert [m["_id"] for m in await repo.outbox(utcnow() + timedelta(minutes=1), 10)] == []
    for t in threads:
        thread = await repo.thread(t)
        assert thread is not None and thread["facts"] == facts[t] and thread["client_id"] == CLIENT
    case = await repo.db["cases"].find_one({"_id": case_id})
    assert case is not None and case["notes"][0]["text"] is None


async def test_an_erasure_that_reaches_part_of_the_person_keeps_what_protects_the_rest(
    gateway: Gateway, person: Any
) -> None:
    """A supervisor of the infoline alone erases: the person's DV thread (another line, which she
    may not see) keeps its text, and the person's safe-contact plan and client key stay, since
    the DV line still helps her."""
    repo, threads, _ = person
    dv = await person_thread(repo, 10)
    await repo.threads.update_one(
        {"_id": dv}, {"$set": {"line": "dv", "queue": "gp-dv", "organisations": ["gp"]}}
    )
    await add_account(repo, "lida", "supervisor", "lastrada", ["113"])
    lida = await logged_in(gateway, "lida")
    try:
        status, answer = await lida.call(
            "POST", f"/api/threads/{threads[0]}/person/erase", {"confirm": "erase"}
        )
    finally:
        await lida.close()
    assert status == 200 and answer["threads"] == 2 and answer["client_keys_forgotten"] == 0, answer
    assert await repo.contact_plans.plans.find_one({"_id": f"client:{CLIENT}"}) is not None
    assert await repo.clients.keys.find_one({"client_id": CLIENT}) is not None
    assert [m.get("text") for m in await repo.thread_messages(dv) if m["direction"] == "in"] == [
        f"{CANARY} she wrote"
    ]
    for t in threads:
        assert all(m.get("text") is None for m in await repo.thread_messages(t))


async def test_a_thread_plan_still_holds_after_the_thread_is_linked_to_a_client(repo: Repository) -> None:
    tid = new_id()
    await repo.contact_plans.plans.insert_one({"_id": f"thread:{tid}", "write_first": True})
    linked = {"_id": tid, "client_id": "someone-without-a-plan"}
    plan = await repo.contact_plans.plan_for(linked)
    assert plan is not None and plan.write_first
    await repo.contact_plans.plans.insert_one({"_id": "client:someone-without-a-plan", "write_first": False})
    plan = await repo.contact_plans.plan_for(linked)
    assert plan is not None and not plan.write_first  # the person's own plan, once they have one


async def test_a_person_with_many_conversations_and_cases_is_read_whole(gateway: Gateway) -> None:
    """An erasure reaches all of a person's threads and cases, and forgets them only when it
    did: so what it reads of them has no page size (it read 500 threads and 200 cases)."""
    client = make_client(gateway.urls.mongo_url)
    try:
        db = client[gateway.database]
        repo, cases = Repository(db), CaseRepository(db)
        someone = "client-" + uuid.uuid4().hex[:8]
        at = utcnow()
        await db["threads"].insert_many(
            [
                {"_id": new_id(), "client_id": someone, "status": "closed", "created_at": at}
                for _ in range(501)
            ]
        )
        await db["cases"].insert_many(
            [{"_id": new_id(), "client_id": someone, "status": "closed", "opened_at": at} for _ in range(201)]
        )
        assert len(await repo.threads_of_client(someone)) == 501
        assert len(await cases.of_client(someone)) == 201
    finally:
        await client.close()
