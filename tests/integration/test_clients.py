"""Clients through the real services (issue 16, item 4): the same e-mail address, or the same
Telegram user, over two threads is one client, found through a keyed hash, and the client's
records hold no address; a consultant links a widget chat to a known client and undoes it, both
in the event log, and the thread's consultations follow; earlier consultations are shown to the
organisation that gave them and to no other, however the other organisation's consultant asks;
threads stored before threads had clients get theirs once."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from playwright.async_api import Browser, expect

from conversations.clients import client_key
from conversations.model import new_thread
from conversations.repository import Repository
from tests.conftest import Gateway
from tests.fakes.telegram import FakeBotApi, Telegram
from tests.integration.chat_client import start_replica
from tests.integration.email_support import database
from tests.integration.helpers import Consultant, Mailbox, mail, new_message_id
from tests.integration.test_access_matrix import start_chat
from tests.integration.test_console_journey import LAPTOP, Watch, logged_in

CASE = {
    "client_role": "survivor",
    "gender": "f",
    "age_group": "27-40",
    "topics": ["work_abroad"],
    "region": "minsk",
}


@pytest.fixture
async def people(gateway: Gateway) -> AsyncIterator[dict[str, Consultant]]:
    """Anna (La Strada) and Boris (BWC), who share line 113's triage queue, and Sofia, the
    supervisor of every line, each logged in and listening to live events."""
    await asyncio.to_thread(gateway.seed_demo_accounts)
    out: dict[str, Consultant] = {}
    try:
        for login in ("anna", "boris", "sofia"):
            c = Consultant(gateway.store_url)
            await c.login(login, f"{login}-demo")
            await c.open_events()
            out[login] = c
        yield out
    finally:
        for c in out.values():
            await c.close()


async def mailed(gateway: Gateway, sofia: Consultant, sender: str, subject: str) -> str:
    """A mail from ``sender`` that continues nothing: a thread of its own (returned)."""
    inbox = Mailbox("127.0.0.1", gateway.urls.imap_port, gateway.line_mailbox)
    await inbox.append(mail(sender, "hotline@demo.test", subject, "help", new_message_id()))
    queued = await sofia.wait_event(lambda e: e["name"] == "ThreadQueued", within=60)
    return str(queued["thread_id"])


async def chatted(gateway: Gateway, sofia: Consultant, **choices: str) -> str:
    """A widget chat on line 113 (``choices``: its region, if any); its thread id."""
    async with aiohttp.ClientSession() as http:
        await start_chat(http, gateway, "здравствуйте", line="113", **choices)
    queued = await sofia.wait_event(lambda e: e["name"] == "ThreadQueued", within=60)
    return str(queued["thread_id"])


async def stored(
    gateway: Gateway, collection: str, query: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    client, db = database(gateway)
    try:
        return [d async for d in db[collection].find(query or {})]
    finally:
        await client.close()


async def ok(c: Consultant, method: str, path: str, body: Any = None, status: int = 200) -> Any:
    got, answer = await c.call(method, path, body)
    assert got == status, (method, path, got, answer)
    return answer


async def test_one_address_over_two_threads_is_one_client_and_no_client_record_holds_it(
    gateway: Gateway, people: dict[str, Consultant]
) -> None:
    sofia = people["sofia"]
    first = await mailed(gateway, sofia, "Olga Kowalska <Olga.K@Example.ORG>", "first")
    second = await mailed(gateway, sofia, "olga.k@example.org", "second")
    other = await mailed(gateway, sofia, "someone.else@example.org", "third")
    threads = {t["_id"]: t for t in await stored(gateway, "threads")}
    assert first != second
    assert threads[first]["client_id"] == threads[second]["client_id"] is not None
    assert threads[other]["client_id"] not in {None, threads[first]["client_id"]}
    # The console reads who the person is (no address in it) from the thread.
    assert (await ok(sofia, "GET", f"/api/threads/{second}"))["client_id"] == threads[first]["client_id"]

    clients = await stored(gateway, "clients")
    keys = await stored(gateway, "client_keys")
    assert sorted(c["_id"] for c in clients) == sorted(
        {threads[first]["client_id"], threads[other]["client_id"]}
    )
    assert all(set(c) == {"_id", "created_at"} for c in clients)
    assert all(set(k) == {"_id", "client_id"} for k in keys) and len(keys) == 2
    written = json.dumps(clients + keys, default=str).lower()
    assert "olga" not in written and "example.org" not in written and "someone" not in written
    # Keyed: the gateway's secret gives these keys; the plain hash of an address is none of them.
    secret = gateway.env["dispatcher"]["DISPATCHER_CLIENT_KEY_SECRET"].encode()
    assert {k["_id"] for k in keys} == {
        client_key(secret, "email", "olga.k@example.org"),
        client_key(secret, "email", "someone.else@example.org"),
    }
    plain = {
        hashlib.sha256(v.encode()).hexdigest()
        for v in ("olga.k@example.org", "email:olga.k@example.org", "someone.else@example.org")
    }
    assert not plain & {k["_id"] for k in keys}
    assert "DISPATCHER_CLIENT_KEY_SECRET" not in gateway.logs() and secret.decode() not in gateway.logs()
    assert "olga.k@example.org" not in gateway.logs().lower()


BOT_SECRET = "webhook-secret-" + "x" * 16
TOKENS = {"dvbot": "123456:TEST-dv", "migbot": "654321:TEST-migration"}


async def test_one_telegram_user_writing_to_two_bots_is_one_client(
    gateway: Gateway, people: dict[str, Consultant]
) -> None:
    sofia = people["sofia"]
    api = FakeBotApi(set(TOKENS.values()))
    await api.start()
    try:
        bots = {
            "dvbot": {"line": "dv", "token": TOKENS["dvbot"], "webhook_secret": BOT_SECRET},
            "migbot": {"line": "113", "token": TOKENS["migbot"], "webhook_secret": BOT_SECRET},
        }
        url = await asyncio.to_thread(
            start_replica,
            gateway,
            "chat_ingest_telegram",
            telegram_bots=json.dumps(bots),
            telegram_api_base=api.url,
        )
        async with aiohttp.ClientSession() as http:
            ids = []
            for update_id, (bot, chat) in enumerate((("dvbot", 4242), ("migbot", 4242), ("dvbot", 4343))):
                tg = Telegram(http, f"{url}/telegram/{bot}/webhook", BOT_SECRET)
                assert await tg.post(tg.text(chat, "мне нужна помощь", update_id=7000 + update_id)) == 200
                queued = await sofia.wait_event(lambda e: e["name"] == "ThreadQueued", within=60)
                ids.append(queued["thread_id"])
    finally:
        await api.stop()
    threads = {t["_id"]: t for t in await stored(gateway, "threads")}
    dv, migration, another = (threads[i] for i in ids)
    assert (dv["line"], migration["line"]) == ("dv", "113")
    assert dv["client_id"] == migration["client_id"] is not None
    assert another["client_id"] not in {None, dv["client_id"]}
    secret = gateway.env["dispatcher"]["DISPATCHER_CLIENT_KEY_SECRET"].encode()
    assert {k["_id"] for k in await stored(gateway, "client_keys")} == {
        client_key(secret, "telegram", "4242"),
        client_key(secret, "telegram", "4343"),
    }


async def test_a_chat_is_linked_to_a_known_client_and_unlinked_by_whom_may_see_both(
    gateway: Gateway, people: dict[str, Consultant]
) -> None:
    anna, boris, sofia = people["anna"], people["boris"], people["sofia"]
    mailed_id = await mailed(gateway, sofia, "nadia@example.org", "passport")
    known = await ok(anna, "POST", f"/api/threads/{mailed_id}/claim")  # now La Strada's own
    chat = await ok(anna, "GET", f"/api/threads/{await chatted(gateway, sofia, region='minsk')}")
    other_chat = await chatted(gateway, sofia, region="minsk")
    borises = await chatted(gateway, sofia, region="brest")  # BWC's queue
    assert chat["client_id"] is None and known["client_id"]

    linked = await ok(anna, "POST", f"/api/threads/{chat['id']}/client", {"thread": mailed_id})
    assert linked["client_id"] == known["client_id"]
    assert linked["client_link"]["by"] == "anna" and linked["client_link"]["previous"] is None
    # Once again: already so, nothing more is recorded.
    assert (await ok(anna, "POST", f"/api/threads/{chat['id']}/client", {"thread": mailed_id}))["client_id"]

    # Refused: itself, a body without a thread.
    await ok(anna, "POST", f"/api/threads/{chat['id']}/client", {"thread": chat["id"]}, status=422)
    await ok(anna, "POST", f"/api/threads/{chat['id']}/client", {}, status=422)
    # Boris may not see Anna's threads: neither as the thread linked nor as the one linked to.
    await ok(boris, "POST", f"/api/threads/{borises}/client", {"thread": mailed_id}, status=404)
    await ok(boris, "POST", f"/api/threads/{chat['id']}/client", {"thread": borises}, status=404)
    await ok(boris, "DELETE", f"/api/threads/{chat['id']}/client", status=404)
    # Nor may Anna take the client of Boris's thread.
    await ok(anna, "POST", f"/api/threads/{other_chat}/client", {"thread": borises}, status=404)

    unlinked = await ok(anna, "DELETE", f"/api/threads/{chat['id']}/client")
    assert unlinked["client_id"] is None and "client_link" not in unlinked
    await ok(anna, "DELETE", f"/api/threads/{chat['id']}/client", status=409)  # nothing to undo

    history = await ok(sofia, "GET", f"/api/threads/{chat['id']}/history")
    facts = [(e["name"], e["by"], e["data"]) for e in history if e["name"].startswith("Client")]
    assert facts == [
        (
            "ClientLinked",
            "anna",
            {"from_thread": mailed_id, "client_id": known["client_id"], "previous_client_id": None},
        ),
        ("ClientUnlinked", "anna", {"client_id": None, "previous_client_id": known["client_id"]}),
    ]


async def test_earlier_consultations_are_shown_to_the_organisation_that_gave_them_and_to_no_other(
    gateway: Gateway, people: dict[str, Consultant]
) -> None:
    anna, boris, sofia = people["anna"], people["boris"], people["sofia"]
    address = "irina@example.org"
    # La Strada answers the person's first mail, with a case form.
    first = await mailed(gateway, sofia, address, "first")
    await ok(anna, "POST", f"/api/threads/{first}/claim")
    await ok(anna, "POST", f"/api/threads/{first}/close", {"case": CASE})
    # BWC takes the second from the shared queue: La Strada's consultation is not its to see.
    second = await mailed(gateway, sofia, address, "second")
    await ok(boris, "POST", f"/api/threads/{second}/claim")
    assert await ok(boris, "GET", f"/api/threads/{second}/earlier") == []
    await ok(
        boris, "POST", f"/api/threads/{second}/close", {"outcome": "no_consultation", "reason": "duplicate"}
    )
    # La Strada takes the third: its own earlier consultation, and nothing of BWC's.
    third = await mailed(gateway, sofia, address, "third")
    await ok(anna, "POST", f"/api/threads/{third}/claim")
    (seen,) = await ok(anna, "GET", f"/api/threads/{third}/earlier")
    assert seen["thread_id"] == first and seen["organisation"] == "lastrada"
    assert (seen["channel"], seen["line"], seen["outcome"], seen["reason"]) == (
        "email",
        "113",
        "consultation",
        None,
    )
    assert seen["consultants"] == ["anna"] and seen["closed_by"] == "anna"
    assert seen["case"]["gender"] == ["f"] and seen["case"]["topics"] == ["work_abroad"]
    assert seen["started_at"] and seen["closed_at"]
    # The supervisor of the line sees both organisations', latest first (a mail's start is its
    # arrival, to the second: these two may share it), and the reason of the second.
    both = await ok(sofia, "GET", f"/api/threads/{third}/earlier")
    assert {(c["thread_id"], c["organisation"]) for c in both} == {(second, "bwc"), (first, "lastrada")}
    assert both[0]["started_at"] >= both[1]["started_at"]
    (duplicate,) = [c for c in both if c["thread_id"] == second]
    assert duplicate["outcome"] == "no_consultation" and duplicate["reason"] == "duplicate"
    assert duplicate["case"] == {}

    # Boris, as an attacker: his own thread shows only BWC's; La Strada's threads, by their ids
    # or by consultation ids, answer as if they did not exist; linking his thread to theirs fails.
    assert [c["organisation"] for c in await ok(boris, "GET", f"/api/threads/{second}/earlier")] == ["bwc"]
    for path in (
        f"/api/threads/{first}/earlier",
        f"/api/threads/{third}/earlier",
        f"/api/threads/{first}:1/earlier",
        f"/api/threads/{third}/earlier?organisation=lastrada",
    ):
        status, answer = await boris.call("GET", path)
        assert status == 404 and "lastrada" not in json.dumps(answer), (path, status, answer)
    await ok(boris, "POST", f"/api/threads/{second}/client", {"thread": third}, status=404)
    status, _ = await boris.call("GET", f"/api/consultations/{first}:1")
    assert status in {404, 405}

    # A widget chat Anna links to the person shows the person's consultations; undone, none.
    chat = await chatted(gateway, sofia, region="minsk")
    assert await ok(anna, "GET", f"/api/threads/{chat}/earlier") == []
    await ok(anna, "POST", f"/api/threads/{chat}/client", {"thread": third})
    assert [c["thread_id"] for c in await ok(anna, "GET", f"/api/threads/{chat}/earlier")] == [first]
    await ok(anna, "DELETE", f"/api/threads/{chat}/client")
    assert await ok(anna, "GET", f"/api/threads/{chat}/earlier") == []
    # Each look at a person's earlier consultations is recorded as a read of the thread.
    reads = await ok(sofia, "GET", f"/api/threads/{third}/reads")
    assert {(r["login"], r["what"]) for r in reads} >= {("anna", "earlier"), ("sofia", "earlier")}


async def test_a_widget_client_who_comes_back_is_linked_by_hand_and_counted_as_one_person(
    gateway: Gateway, people: dict[str, Consultant]
) -> None:
    anna, sofia = people["anna"], people["sofia"]
    first = await chatted(gateway, sofia, region="minsk")
    await ok(anna, "POST", f"/api/threads/{first}/claim")
    await ok(anna, "POST", f"/api/threads/{first}/close", {"case": CASE})
    # A new chat session a week later: "I wrote to you last week". Neither chat names anybody,
    # so the link makes the first chat's person a client, and the second chat that person.
    second = await chatted(gateway, sofia, region="minsk")
    await ok(anna, "POST", f"/api/threads/{second}/claim")
    linked = await ok(anna, "POST", f"/api/threads/{second}/client", {"thread": first})
    assert linked["client_id"] and linked["client_link"]["previous"] is None
    assert (await ok(anna, "GET", f"/api/threads/{first}"))["client_id"] == linked["client_id"]
    earlier = await ok(anna, "GET", f"/api/threads/{second}/earlier")
    assert [c["thread_id"] for c in earlier] == [first]
    await ok(anna, "POST", f"/api/threads/{second}/close", {"case": CASE})
    day = datetime.now(ZoneInfo("Europe/Minsk")).date().isoformat()
    result = await ok(sofia, "GET", f"/api/stats?from={day}&to={day}&line=113")
    assert result["total"]["count"] == 2 and result["total"]["people"] == 1


async def test_a_link_gives_the_threads_consultations_its_client(
    gateway: Gateway, people: dict[str, Consultant]
) -> None:
    anna, sofia = people["anna"], people["sofia"]
    known = await mailed(gateway, sofia, "lena@example.org", "mail")
    await ok(anna, "POST", f"/api/threads/{known}/claim")
    chat = await chatted(gateway, sofia, region="minsk")
    await ok(anna, "POST", f"/api/threads/{chat}/claim")
    await ok(anna, "POST", f"/api/threads/{chat}/close", {"case": CASE})
    (before,) = await stored(gateway, "consultations", {"thread_id": chat})
    assert before["client_id"] is None
    linked = await ok(anna, "POST", f"/api/threads/{chat}/client", {"thread": known})
    (after,) = await stored(gateway, "consultations", {"thread_id": chat})
    assert after["client_id"] == linked["client_id"] is not None
    await ok(anna, "DELETE", f"/api/threads/{chat}/client")
    (undone,) = await stored(gateway, "consultations", {"thread_id": chat})
    assert undone["client_id"] is None
    # The mail's own consultation, once closed, is the person's: the chat's is not any more.
    await ok(anna, "POST", f"/api/threads/{known}/close", {"case": CASE})
    status, answer = await anna.call("GET", f"/api/threads/{known}/earlier")
    assert status == 200 and [c["thread_id"] for c in answer] == [known]


async def test_the_console_shows_earlier_consultations_and_links_a_chat_in_russian_and_english(
    gateway: Gateway, people: dict[str, Consultant], browser: Browser
) -> None:
    anna, sofia = people["anna"], people["sofia"]
    known = await mailed(gateway, sofia, "vika@example.org", "visa")
    await ok(anna, "POST", f"/api/threads/{known}/claim")
    await ok(anna, "POST", f"/api/threads/{known}/close", {"case": CASE})
    await chatted(gateway, sofia, region="minsk")  # waits in La Strada's queue
    watch = Watch(gateway.store_url)
    ctx = await browser.new_context(viewport=LAPTOP, locale="ru-RU")
    try:
        page = await logged_in(ctx, gateway, "anna", watch, ("Логин", "Пароль", "Войти"))
        await page.locator('#queues button[data-queue="lastrada-migration"]').click()
        await page.get_by_role("button", name="Следующий").click()
        person = page.locator("#person")
        await expect(person.locator("summary")).to_have_text("Прежние обращения")
        await expect(person).to_contain_text("Кто это, неизвестно")
        await page.get_by_label("Тот же человек, что в").select_option(value=known)
        await page.get_by_role("button", name="Связать", exact=True).click()
        row = page.locator("#earlier li.earlier")
        await expect(row).to_have_count(1)
        await expect(row).to_contain_text("email · 113 · консультация · anna")
        await expect(person).to_contain_text("Связал(а) anna")
        # The language switch redraws the panel in English.
        await page.locator("header .lang-select").select_option("en")
        await page.locator("#threads button").first.click()
        await expect(person.locator("summary")).to_have_text("Earlier consultations")
        await page.get_by_role("button", name="Undo link").click()
        await expect(person).to_contain_text("Who this is is not known")
        await expect(page.locator("#earlier li.earlier")).to_have_count(0)
    finally:
        await ctx.close()
    assert watch.elsewhere == [] and watch.dialogs == []


async def test_threads_stored_before_threads_had_clients_get_theirs_once(repo: Repository) -> None:
    now = datetime.now(UTC)
    secret = b"k" * 32

    def stored_before(key: str, channel: str, address: str) -> dict[str, Any]:
        doc = new_thread(
            key,
            channel=channel,
            line="dv",
            queue="gp-dv",
            organisations=["gp"],
            client_address=address,
            created_at=now,
            waiting_since=now,
        )
        del doc["client_id"]
        return doc

    first = stored_before("email:one", "email", "Vera.P@Example.org")
    second = stored_before("email:two", "email", " vera.p@example.org")
    telegram = stored_before("telegram:dvbot:555", "telegram", "dvbot:555")
    chat = stored_before("chat:s1", "chat", "s1")
    await repo.threads.insert_many([first, second, telegram, chat])
    await repo.db["consultations"].insert_one(
        {"_id": f"{first['_id']}:1", "thread_id": first["_id"], "client_id": None}
    )

    assert await repo.clients.assign_existing(secret) == 3
    got = {t["_id"]: t async for t in repo.threads.find({})}
    assert got[first["_id"]]["client_id"] == got[second["_id"]]["client_id"] is not None
    # The same person as the dispatcher finds now, by the same key.
    assert got[telegram["_id"]]["client_id"] == await repo.clients.client_for(
        client_key(secret, "telegram", "555")
    )
    assert "client_id" not in got[chat["_id"]]
    consultation = await repo.db["consultations"].find_one({"thread_id": first["_id"]})
    assert consultation is not None and consultation["client_id"] == got[first["_id"]]["client_id"]
    # Once per database: a second start changes nothing.
    await repo.threads.insert_one(stored_before("email:three", "email", "late@example.org"))
    assert await repo.clients.assign_existing(secret) == 0
