"""The administration screen's API through the real services (services/store/administration.py):
accounts made, changed, reset and disabled by an organisation's supervisor and an
administrator, and what each may not do (played by the attacker: a consultant, another
organisation's supervisor); canned answers and the directory kept in the database, seen by
the console, the widget and the bot; every change in the change log, never a password."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.conftest import ROOT, Gateway
from tests.integration.helpers import Consultant
from tests.integration.test_access_matrix import add_user, start_chat
from tests.integration.test_telegram import Bot, bot  # noqa: F401 (the fixture)

NEW_PASSWORD = "nina-own-password-1"
SET_PASSWORD = "set-by-lena-0001"


def cli(gateway: Gateway, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.store.admin", *args],
        cwd=ROOT,
        text=True,
        capture_output=True,
        env={**os.environ, **gateway.env["store"]},
    )


@pytest.fixture
async def staff(gateway: Gateway) -> AsyncIterator[dict[str, Consultant]]:
    """olga (national administrator), lena (La Strada's supervisor), bella (BWC's supervisor), anna
    (La Strada consultant), logged in."""
    gateway.seed_demo_accounts()
    for args in (
        ("--login=olga", "--role=national_admin", "--lines=113,dv"),
        ("--login=lena", "--role=supervisor", "--organisation=lastrada", "--lines=113"),
        ("--login=bella", "--role=supervisor", "--organisation=bwc", "--lines=113"),
    ):
        login = args[0].split("=")[1]
        done = await asyncio.to_thread(
            add_user, gateway, "add-user", *args, "--password-stdin", password=f"{login}-password"
        )
        assert done.returncode == 0, done.stderr
    people: dict[str, Consultant] = {}
    try:
        for login in ("olga", "lena", "bella", "anna"):
            c = Consultant(gateway.store_url)
            await c.login(login, "anna-demo" if login == "anna" else f"{login}-password")
            people[login] = c
        yield people
    finally:
        for c in people.values():
            await c.close()


async def test_a_supervisor_manages_their_organisations_accounts_and_nothing_else(
    gateway: Gateway, staff: dict[str, Consultant]
) -> None:
    lena, bella, anna, olga = staff["lena"], staff["bella"], staff["anna"], staff["olga"]
    status, nina = await lena.call(
        "POST",
        "/api/admin/accounts",
        {"login": "nina", "name": "Nina", "lines": ["113"], "languages": ["en"], "password": SET_PASSWORD},
    )
    assert status == 201, nina
    assert (
        nina["organisation"] == "lastrada" and nina["role"] == "consultant" and nina["must_change_password"]
    )
    assert "password_hash" not in nina

    # The new account logs in, must choose its own password first, then works.
    person = Consultant(gateway.store_url)
    try:
        await person.login("nina", SET_PASSWORD)
        status, refused = await person.call("GET", "/api/threads")
        assert status == 403 and refused["title"] == "Change your password first"
        status, _ = await person.call(
            "PUT", "/api/me/password", {"current": "wrong-password", "new": NEW_PASSWORD}
        )
        assert status == 403
        status, _ = await person.call(
            "PUT", "/api/me/password", {"current": SET_PASSWORD, "new": NEW_PASSWORD}
        )
        assert status == 200
        assert (await person.call("GET", "/api/threads"))[0] == 200
        status, me = await person.call("GET", "/api/me")
        assert me["consultant"]["languages"] == ["en"] and not me["consultant"]["must_change_password"]
    finally:
        await person.close()

    # Lena sees her organisation's consultants and specialists only.
    status, accounts = await lena.call("GET", "/api/admin/accounts")
    assert status == 200 and {a["id"] for a in accounts} == {"anna", "sasha", "nina"}
    # Skills and languages she may give; roles above a consultant's, other lines, other
    # organisations she may not, nor touch another organisation's accounts (as if absent).
    status, changed = await lena.call(
        "PATCH", "/api/admin/accounts/nina", {"skills": ["legal"], "languages": ["en", "be"]}
    )
    assert status == 200 and changed["skills"] == ["legal"] and changed["languages"] == ["be", "en"]
    assert (await lena.call("PATCH", "/api/admin/accounts/nina", {"role": "supervisor"}))[0] == 403
    assert (await lena.call("PATCH", "/api/admin/accounts/nina", {"role": "admin"}))[0] == 403
    assert (await lena.call("PATCH", "/api/admin/accounts/nina", {"lines": ["113", "dv"]}))[0] == 403
    assert (await lena.call("PATCH", "/api/admin/accounts/nina", {"organisation": "bwc"}))[0] == 403
    for method, path, body in [
        ("PATCH", "/api/admin/accounts/boris", {"skills": ["legal"]}),
        ("POST", "/api/admin/accounts/boris/disable", None),
        ("POST", "/api/admin/accounts/boris/password", {"password": "x" * 12}),
        # Herself: a supervisor's account is not hers to change here (no role for herself).
        ("PATCH", "/api/admin/accounts/lena", {"role": "admin"}),
        ("PATCH", "/api/admin/accounts/olga", {"name": "x"}),
    ]:
        assert (await lena.call(method, path, body))[0] == 404, (method, path)
    status, _ = await lena.call(
        "POST",
        "/api/admin/accounts",
        {"login": "eve", "organisation": "bwc", "lines": ["113"], "password": "x" * 12},
    )
    assert status == 403
    status, _ = await lena.call(
        "POST",
        "/api/admin/accounts",
        {"login": "eve", "role": "admin", "lines": ["113"], "password": "x" * 12},
    )
    assert status == 403
    # Another organisation's supervisor cannot reach La Strada's accounts.
    for method, path, body in [
        ("PATCH", "/api/admin/accounts/nina", {"skills": []}),
        ("POST", "/api/admin/accounts/anna/disable", None),
        ("POST", "/api/admin/accounts/anna/password", {"password": "y" * 12}),
    ]:
        assert (await bella.call(method, path, body))[0] == 404, (method, path)
    assert {a["id"] for a in (await bella.call("GET", "/api/admin/accounts"))[1]} == {"boris", "kira"}
    # A consultant has no administration at all, not even of herself.
    for method, path, body in [
        ("GET", "/api/admin/accounts", None),
        ("PATCH", "/api/admin/accounts/anna", {"role": "admin"}),
        ("POST", "/api/admin/accounts", {"login": "eve", "lines": ["113"], "password": "x" * 12}),
        ("GET", "/api/admin/changes", None),
    ]:
        assert (await anna.call(method, path, body))[0] == 403, (method, path)
    status, me = await anna.call("GET", "/api/me")
    assert me["consultant"]["role"] == "consultant"
    # The administrator may do what Lena may not.
    status, changed = await olga.call("PATCH", "/api/admin/accounts/nina", {"lines": ["113", "dv"]})
    assert status == 200 and changed["lines"] == ["113", "dv"]
    assert (await olga.call("PATCH", "/api/admin/accounts/olga", {"role": "consultant"}))[0] == 409

    # A reset: her sessions end, the new password works once and must be changed.
    nina_again = Consultant(gateway.store_url)
    try:
        await nina_again.login("nina", NEW_PASSWORD)
        status, reset = await lena.call(
            "POST", "/api/admin/accounts/nina/password", {"password": SET_PASSWORD}
        )
        assert status == 200 and reset["must_change_password"]
        assert (await nina_again.call("GET", "/api/me"))[0] == 401
        await nina_again.login("nina", SET_PASSWORD)
        assert (await nina_again.call("GET", "/api/queues"))[0] == 403
    finally:
        await nina_again.close()

    # The change log says who changed what and when, never a password.
    status, changes = await lena.call("GET", "/api/admin/changes")
    assert status == 200
    assert [(c["by"], c["target"], c["action"]) for c in reversed(changes)] == [
        ("lena", "nina", "created"),
        ("nina", "nina", "own_password_changed"),
        ("lena", "nina", "updated"),
        ("olga", "nina", "updated"),
        ("lena", "nina", "password_reset"),
    ]
    assert all(c["at"] for c in changes)
    for secret in (SET_PASSWORD, NEW_PASSWORD, "argon2"):
        assert secret not in str(changes) and secret not in gateway.logs()
    # Lena's organisation's log only: Bella sees none of it.
    assert (await bella.call("GET", "/api/admin/changes"))[1] == []


async def test_disabling_on_the_screen_ends_sessions_and_returns_threads(
    gateway: Gateway, staff: dict[str, Consultant]
) -> None:
    lena, anna = staff["lena"], staff["anna"]
    await anna.open_events()
    async with aiohttp.ClientSession() as http:
        await start_chat(http, gateway, "Нужна помощь", line="113", region="minsk")
    queued = await anna.wait_event(lambda e: e["name"] == "ThreadQueued")
    status, held = await anna.call("POST", f"/api/threads/{queued['thread_id']}/claim")
    assert status == 200 and held["assignee"] == "anna"

    status, done = await lena.call("POST", "/api/admin/accounts/anna/disable")
    assert status == 200 and done["disabled"]
    assert (await anna.call("GET", "/api/me"))[0] == 401
    refused = Consultant(gateway.store_url)
    try:
        async with refused.http.post(
            f"{gateway.store_url}/api/session", json={"login": "anna", "password": "anna-demo"}
        ) as resp:
            assert resp.status == 401
    finally:
        await refused.close()
    status, thread = await lena.call("GET", f"/api/threads/{queued['thread_id']}")
    assert status == 200 and thread["status"] == "waiting" and thread["assignee"] is None
    status, history = await lena.call("GET", f"/api/threads/{queued['thread_id']}/history")
    assert (history[-1]["name"], history[-1]["by"], history[-1]["data"]["reason"]) == (
        "ThreadReleased",
        "lena",
        "disabled",
    )
    status, _ = await lena.call("POST", "/api/admin/accounts/anna/enable")
    assert status == 200
    await anna.login("anna", "anna-demo")


async def chat_directory(gateway: Gateway, entry: str) -> dict[str, object] | None:
    async with aiohttp.ClientSession() as http, http.get(f"{gateway.chat_url}/chat/info") as resp:
        info = await resp.json()
    d = info["directory"]
    entries = [*d["emergency"], *d["national"], *[e for es in d["regions"].values() for e in es]]
    return next((e for e in entries if e.get("id") == entry), None)


async def until_chat_directory(gateway: Gateway, entry: str, phone: str | None) -> None:
    """chat_ingest's cache follows the database within seconds (conversations/reference.py):
    asked until it does, within a bound."""
    for _ in range(60):
        found = await chat_directory(gateway, entry)
        if (found or {}).get("phone") == phone:
            return
        await asyncio.sleep(0.2)  # another process's cache: no event reaches the test
    raise AssertionError(f"chat_ingest still shows {found}")


async def test_canned_answers_and_the_directory_are_edited_in_the_database(
    gateway: Gateway, staff: dict[str, Consultant]
) -> None:
    olga, lena, bella, anna = staff["olga"], staff["lena"], staff["bella"], staff["anna"]
    # Seeded from the YAML at the first start.
    status, canned = await olga.call("GET", "/api/admin/canned")
    assert status == 200 and {c["id"] for c in canned} >= {"113-1", "113-2", "dv-1", "dv-2"}
    first = next(c for c in canned if c["id"] == "113-1")
    status, _ = await olga.call(
        "PUT", "/api/admin/canned/113-1", {"text": {**first["text"], "en": "Check the agency first."}}
    )
    assert status == 200
    status, config = await anna.call("GET", "/api/config")
    assert "Check the agency first." in [a["text"]["en"] for a in config["canned_answers"]["113"]]
    # An organisation's own answer: by its supervisor, for its consultants only.
    ours = {
        "line": "113",
        "title": {"en": "Our office"},
        "text": {"en": "La Strada's office hours are 9-18."},
    }
    status, added = await lena.call("POST", "/api/admin/canned", ours)
    assert status == 201 and added["organisation"] == "lastrada"
    assert "La Strada's office hours are 9-18." in str((await anna.call("GET", "/api/config"))[1])
    boris = Consultant(gateway.store_url)
    try:
        await boris.login("boris", "boris-demo")
        assert "La Strada's office hours" not in str((await boris.call("GET", "/api/config"))[1])
    finally:
        await boris.close()
    # Not hers: the line-wide answers, another organisation's; nor Bella's to touch Lena's.
    assert (await lena.call("PUT", "/api/admin/canned/113-1", {"text": {"en": "x"}}))[0] == 403
    assert (await lena.call("POST", "/api/admin/canned", {**ours, "organisation": "bwc"}))[0] == 403
    assert (await bella.call("PUT", f"/api/admin/canned/{added['id']}", {"text": {"en": "x"}}))[0] == 404
    assert (await bella.call("DELETE", f"/api/admin/canned/{added['id']}"))[0] == 404
    assert (await anna.call("POST", "/api/admin/canned", ours))[0] == 403

    # The directory: the administrator's; the widget and the bot answer from the database.
    status, entries = await olga.call("GET", "/api/admin/directory")
    police = next(e for e in entries if e["id"] == "police")
    assert police["phone"] == "102"
    assert (await lena.call("PUT", "/api/admin/directory/police", {"phone": "999"}))[0] == 403
    status, _ = await olga.call("PUT", "/api/admin/directory/police", {"phone": "112"})
    assert status == 200
    await until_chat_directory(gateway, "police", "112")
    names = {"ru": "Новый центр", "be": "Новы цэнтр", "en": "New centre"}
    status, _ = await olga.call(
        "POST",
        "/api/admin/directory",
        {"id": "brest_centre", "section": "region", "region": "brest", "name": {"en": "Only English"}},
    )
    assert status == 422  # a name in every language
    status, created = await olga.call(
        "POST",
        "/api/admin/directory",
        {"id": "brest_centre", "section": "region", "region": "brest", "name": names, "phone": "+375 16 000"},
    )
    assert status == 201, created
    await until_chat_directory(gateway, "brest_centre", "+375 16 000")
    # A case's external referral may name it at once.
    status, settings = await anna.call("GET", "/api/cases/settings")
    assert settings["directory"]["brest_centre"]["en"] == "New centre"

    status, changes = await olga.call("GET", "/api/admin/changes")
    assert [(c["kind"], c["target"], c["action"]) for c in reversed(changes) if c["kind"] != "account"] == [
        ("canned", "113-1", "updated"),
        ("canned", added["id"], "created"),
        ("directory", "police", "updated"),
        ("directory", "brest_centre", "created"),
    ]

    # The operator puts the file's directory back: the edits are gone, everywhere.
    done = await asyncio.to_thread(cli, gateway, "reseed", "--what", "directory")
    assert done.returncode == 0, done.stderr
    await until_chat_directory(gateway, "police", "102")
    assert await chat_directory(gateway, "brest_centre") is None


async def test_the_bot_answers_the_directory_as_the_database_keeps_it(
    gateway: Gateway,
    bot: Bot,  # noqa: F811
) -> None:
    gateway.seed_demo_accounts()
    done = await asyncio.to_thread(
        add_user, gateway, "add-user", "--login=olga", "--role=national_admin", "--lines=113,dv",
        "--password-stdin", password="olga-password",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    olga = Consultant(gateway.store_url)
    try:
        await olga.login("olga", "olga-password")
        names = {"ru": "Центр Бреста", "be": "Цэнтр Брэста", "en": "Brest centre"}
        body = {
            "id": "brest_centre",
            "section": "region",
            "region": "brest",
            "name": names,
            "phone": "+375 16 123",
        }
        assert (await olga.call("POST", "/api/admin/directory", body))[0] == 201
    finally:
        await olga.close()
    tg, chat = bot.telegram, 604
    for _ in range(40):  # the bot's replica follows the database within seconds
        assert await tg.post(tg.button(chat, "d:brest", lang="en")) == 200
        if "Brest centre: +375 16 123" in bot.api.sent(chat)[-1].body["text"]:
            break
        await asyncio.sleep(0.25)  # another process's cache: no event reaches the test
    else:
        raise AssertionError(bot.api.sent(chat)[-1].body["text"])
