"""Quarantined mail for supervisors (issue 20 item 1, issue 19): the console lists it with its
reason and never its content, a replay asked for there is done by the e-mail intake (once in a
thread), and erasing a person erases their quarantined mails too. Real Dovecot, RabbitMQ,
FerretDB and Chromium."""

from __future__ import annotations

import asyncio
import base64
import re
import uuid
from typing import Any

from playwright.async_api import Browser, expect

from conversations.clients import client_key
from tests.conftest import Gateway
from tests.integration.email_support import database, queued_threads, supervisor
from tests.integration.helpers import Mailbox, logged_in, mail, new_message_id


def too_many_parts(sender: str, text: str) -> bytes:
    """A mail beyond what the intake reads (600 parts): quarantined, and still so on replay."""
    parts = "".join(f"--B\r\nContent-Type: text/plain\r\n\r\n{text}\r\n" for _ in range(600))
    head = f"From: {sender}\r\nSubject: {text}\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
    return f"{head}{parts}--B--\r\n".encode()


async def quarantined(db: Any, count: int) -> list[dict[str, Any]]:
    """The quarantine records once there are ``count``: the intake writes them with no event a
    test could await, so they are read until they are there."""

    async def loop() -> list[dict[str, Any]]:
        while True:
            found = [d async for d in db["mail_raw"].find({"status": "quarantined"}, {"raw": 0})]
            if len(found) >= count:
                return found
            await asyncio.sleep(0.2)

    return await asyncio.wait_for(loop(), 60)


async def test_a_supervisor_sees_quarantined_mail_without_its_content_and_replays_it(
    gateway: Gateway, browser: Browser
) -> None:
    sofia = await supervisor(gateway)
    client, db = database(gateway)
    inbox = Mailbox("127.0.0.1", gateway.urls.imap_port, gateway.line_mailbox)
    secret = f"canary-{uuid.uuid4().hex[:8]}"
    page = await browser.new_page()
    try:
        # A mail the intake of an older version quarantined as no_sender (its From all in one
        # encoded word), which this version reads: as it was left, kept and thread-less.
        whole = base64.b64encode("Вера <vera@example.org>".encode()).decode()
        raw = mail(f"=?UTF-8?B?{whole}?=", "h@demo.test", secret, f"{secret} readable", new_message_id())
        await inbox.append(raw)
        (first,) = await queued_threads(sofia, 1)
        readable = await db["mail_raw"].find_one({}, {"raw": 0})
        await db["messages"].delete_many({"thread_id": first})
        await db["threads"].delete_many({"_id": first})
        await db["mail_raw"].update_one(
            {"_id": readable["_id"]}, {"$set": {"status": "quarantined", "reason": "no_sender"}}
        )
        # A mail beyond our limits, quarantined now.
        await inbox.append(too_many_parts("parts@example.org", secret))
        (unreadable,) = [d for d in await quarantined(db, 2) if d["_id"] != readable["_id"]]
        assert unreadable["reason"] == "too_many_parts" and unreadable["line"] == "113"

        await page.goto(gateway.store_url + "/")
        await page.get_by_label("Login").fill("sofia")
        await page.get_by_label("Password").fill("sofia-demo")
        await page.get_by_role("button", name="Log in").click()
        await expect(page.locator("#live")).to_have_class("on")
        await page.locator("#supervisor-toggle").click()
        rows = page.locator("#sup-quarantine-list li[data-source]")
        await expect(rows).to_have_count(2)
        await expect(page.locator(f'li[data-source="{unreadable["_id"]}"]')).to_contain_text("too many parts")
        await expect(page.locator(f'li[data-source="{readable["_id"]}"]')).to_contain_text("no_sender")
        # Facts only: neither the subject nor the text nor the sender is on the screen.
        shown = await page.locator("#sup-quarantine").inner_text()
        assert secret not in shown and "vera@example.org" not in shown

        # Replay: the unreadable one first, then the readable one, so that by the time the
        # readable one is a thread the intake has answered both (one pass takes them in order).
        await page.locator(f'li[data-source="{unreadable["_id"]}"] button.replay').click()
        # The list drawn again says the replay is asked for, or, when the intake was quicker
        # than that, how it went.
        await expect(page.locator(f'li[data-source="{unreadable["_id"]}"]')).to_contain_text(
            re.compile(r"replay asked for|last replay: still unreadable")
        )
        await page.locator(f'li[data-source="{readable["_id"]}"] button.replay').click()
        queued = await sofia.wait_event(lambda e: e["name"] == "ThreadQueued", within=60)
        # The replayed mail is a thread again, once, with the address recovered; the other one
        # says why it still cannot be read, and stays.
        await expect(page.locator(f'li[data-source="{readable["_id"]}"]')).to_have_count(0)
        await expect(page.locator(f'li[data-source="{unreadable["_id"]}"]')).to_contain_text(
            "last replay: still unreadable: too_many_parts"
        )
        assert await db["messages"].count_documents({"source_id": readable["_id"]}) == 1
        status, thread = await sofia.call("GET", f"/api/threads/{queued['thread_id']}")
        assert status == 200 and thread["client"]["address"] == "vera@example.org"
        assert (await db["mail_raw"].find_one({"_id": readable["_id"]}))["status"] == "replayed"
        # A replay asked for again is refused: the mail is not in quarantine any more.
        status, _ = await sofia.call("POST", "/api/quarantine/replay", {"source_id": readable["_id"]})
        assert status == 404
    finally:
        await page.close()
        await sofia.close()
        await client.close()


async def test_quarantine_is_for_supervisors_of_its_line_only(gateway: Gateway) -> None:
    sofia = await supervisor(gateway)
    anna = await logged_in(gateway.store_url, "anna")
    vera = await logged_in(gateway.store_url, "vera")
    client, db = database(gateway)
    inbox = Mailbox("127.0.0.1", gateway.urls.imap_port, gateway.line_mailbox)
    try:
        await inbox.append(too_many_parts("parts@example.org", "x"))
        (doc,) = await quarantined(db, 1)
        status, listed = await sofia.call("GET", "/api/quarantine")
        assert status == 200 and [m["source_id"] for m in listed] == [doc["_id"]]
        for consultant in (anna, vera):
            assert (await consultant.call("GET", "/api/quarantine"))[0] == 403
            replay = await consultant.call("POST", "/api/quarantine/replay", {"source_id": doc["_id"]})
            assert replay[0] == 403
        # A supervisor of the DV line only does not see the 113 line's mail.
        await db["consultants"].update_one({"_id": "sofia"}, {"$set": {"lines": ["dv"]}})
        dv_only = await logged_in(gateway.store_url, "sofia")
        try:
            status, listed = await dv_only.call("GET", "/api/quarantine")
            assert status == 200 and listed == []
            replay = await dv_only.call("POST", "/api/quarantine/replay", {"source_id": doc["_id"]})
            assert replay[0] == 404
        finally:
            await dv_only.close()
    finally:
        await vera.close()
        await anna.close()
        await sofia.close()
        await client.close()


async def test_erasing_a_person_erases_their_quarantined_mails(gateway: Gateway) -> None:
    sofia = await supervisor(gateway)
    anna = await logged_in(gateway.store_url, "anna")
    client, db = database(gateway)
    inbox = Mailbox("127.0.0.1", gateway.urls.imap_port, gateway.line_mailbox)
    person, stranger = "Person@Example.org", "other@example.org"
    try:
        await inbox.append(mail(person, "h@demo.test", "s", "a first mail", new_message_id()))
        (thread_id,) = await queued_threads(sofia, 1)
        await inbox.append(too_many_parts(person, "theirs"))
        await inbox.append(too_many_parts(stranger, "not theirs"))
        records = await quarantined(db, 2)
        secret = gateway.env["dispatcher"]["DISPATCHER_CLIENT_KEY_SECRET"].encode()
        keys = {d["_id"]: d.get("client_key") for d in records}
        theirs = next(s for s, k in keys.items() if k == client_key(secret, "email", person.lower()))
        other = next(s for s, k in keys.items() if k == client_key(secret, "email", stranger))
        their_key = (await db["mail_raw"].find_one({"_id": theirs}))["data_key"]
        key_vault = client[f"{gateway.database}_keys"]["data_keys"]
        assert await key_vault.count_documents({"_id": their_key}) == 1

        # The person's thread is closed, then the person erased.
        assert (await anna.call("POST", f"/api/threads/{thread_id}/claim"))[0] == 200
        closed = await anna.call(
            "POST", f"/api/threads/{thread_id}/close", {"outcome": "no_consultation", "reason": "test"}
        )
        assert closed[0] == 200, closed
        status, erased = await sofia.call(
            "POST", f"/api/threads/{thread_id}/person/erase", {"confirm": "erase"}
        )
        assert status == 200, erased

        gone = await db["mail_raw"].find_one({"_id": theirs})
        assert gone["raw"] is None and "data_key" not in gone and "client_key" not in gone
        kept = await db["mail_raw"].find_one({"_id": other})
        assert kept["raw"] is not None and kept.get("data_key") is not None
        # Its key is deleted from the key vault: a copy of the sealed bytes opens no more.
        assert await key_vault.count_documents({"_id": their_key}) == 0
    finally:
        await anna.close()
        await sofia.close()
        await client.close()
