"""Authenticated threading (issue 20 item 4) through Dovecot, RabbitMQ, FerretDB and the four
services: a mail that claims a thread's sender and cites our Message-ID joins the thread only
when the mailbox's trusted mail server verified its sender.

The first test sends through the local SMTP relay playing the receiving server
(deploy/local/smtp_relay.py ``ReceivingChecks``): it verifies DKIM signatures for real (dkimpy)
and writes the Authentication-Results field, deleting any that came in under its name. The
others append each mail to Dovecot as the receiving server would deliver it, with that
server's field already on top (the test writes it), to cover results a DKIM check alone does
not give (SPF, DMARC). The verdict on single fields is tested in tests/unit/test_sender_auth.py."""

from __future__ import annotations

import uuid
from typing import Any

import aiosmtplib
import pytest
from playwright.async_api import Browser, expect

from deploy.local.smtp_relay import LmtpRelay, ReceivingChecks, listen
from tests.conftest import Gateway
from tests.dkim_signing import new_key, signed
from tests.integration.email_support import database, queued_threads, supervisor
from tests.integration.helpers import Consultant, Mailbox, mail, new_message_id

TRUSTED = "mx.hotline.test"
TRUSTED_ENV = {"EMAIL_INGEST_TRUSTED_AUTHSERV_ID": TRUSTED}
RECEIVED = "Received: from mx.hotline.test by imap.hotline.test with LMTP; Mon, 7 Dec 2026 10:00:00 +0000\r\n"


def received(raw: bytes, *fields: str) -> bytes:
    """``raw`` as the mailbox holds it after the receiving server: its Authentication-Results
    ``fields`` (topmost first) and the delivery's Received field above the sender's header."""
    head = "".join(f"Authentication-Results: {f}\r\n" for f in fields)
    return (RECEIVED + head).encode() + raw


def verified(domain: str) -> str:
    return (
        f"{TRUSTED}; spf=pass smtp.mailfrom=client@{domain}; dkim=pass header.d={domain};"
        f" dmarc=pass (p=reject) header.from={domain}"
    )


def forged(domain: str) -> str:
    return (
        f"{TRUSTED}; spf=fail smtp.mailfrom=client@{domain}; dkim=none;"
        f" dmarc=fail (p=none) header.from={domain}"
    )


async def _survivor_thread(
    gateway: Gateway, sofia: Consultant, db: Any, inbox: Mailbox, address: str
) -> tuple[str, str]:
    """The survivor's verified first mail, claimed and answered by Sofia: (thread id, our
    Message-ID of the answer)."""
    domain = address.split("@")[1]
    await inbox.append(
        received(mail(address, "h@demo.test", "Помогите", "first", new_message_id()), verified(domain))
    )
    return await _answered(sofia, db)


async def _answered(sofia: Consultant, db: Any) -> tuple[str, str]:
    """The one thread queued next, claimed and answered by Sofia: (thread id, our Message-ID of
    the answer)."""
    (thread_id,) = await queued_threads(sofia, 1)
    assert (await sofia.call("POST", f"/api/threads/{thread_id}/claim"))[0] == 200
    status, answer = await sofia.call(
        "POST", f"/api/threads/{thread_id}/messages", {"text": "Ответ"}, {"Idempotency-Key": uuid.uuid4().hex}
    )
    assert status == 202, answer
    ours = (await db["messages"].find_one({"_id": answer["id"]}))["email_message_id"]
    return thread_id, ours


@pytest.mark.service_env(TRUSTED_ENV)
async def test_through_a_receiving_server_that_checks_dkim_only_her_signed_mail_joins_her_thread(
    gateway: Gateway,
) -> None:
    """Her mail, signed by her provider, is verified by the receiving server and joins her
    thread. The abuser, who knows her address and our Message-ID, tries three ways: a mail
    with no signature carrying a made-up pass of the receiving server; a mail signed by a
    domain of his own; her signed mail with his words put in. Each starts a thread of its own,
    marked, and hers gets none of them."""
    her_key, her_txt = new_key()
    his_key, his_txt = new_key()
    published = {b"s1._domainkey.demo.test.": her_txt, b"s1._domainkey.evil.test.": his_txt}
    checks = ReceivingChecks(TRUSTED, published)
    relay = await listen("127.0.0.1", 0, LmtpRelay("127.0.0.1", gateway.stack.lmtp_port, checks=checks))
    port = relay.sockets[0].getsockname()[1]
    sofia = await supervisor(gateway)
    client, db = database(gateway)
    address = f"{gateway.client_mailbox}@demo.test"
    line = f"{gateway.line_mailbox}@demo.test"

    async def send(raw: bytes) -> None:
        await aiosmtplib.send(raw, hostname="127.0.0.1", port=port, sender=address, recipients=[line])

    try:
        await send(signed(mail(address, line, "Помогите", "first", new_message_id()), "demo.test", her_key))
        thread_id, ours = await _answered(sofia, db)

        def reply(text: str) -> bytes:
            return mail(address, line, "Re: Помогите", text, new_message_id(), ours, [ours])

        await send(signed(reply("second"), "demo.test", her_key))
        event = await sofia.wait_event(lambda e: e["name"] in {"MessageReceived", "ThreadQueued"})
        assert event["thread_id"] == thread_id

        made_up = f"Authentication-Results: {TRUSTED}; dkim=pass header.d=demo.test; dmarc=pass\r\n"
        await send(made_up.encode() + reply("I am fine, stop writing"))
        await send(signed(reply("I am fine, stop writing"), "evil.test", his_key))
        head, _, body = signed(reply("third"), "demo.test", her_key).partition(b"\r\n\r\n")
        await send(head + b"\r\n\r\n" + body.replace(b"third", b"stop it"))
        marked = await queued_threads(sofia, 3)
        assert thread_id not in marked
        assert await db["messages"].count_documents({"thread_id": thread_id, "direction": "in"}) == 2
        status, view = await sofia.call("GET", f"/api/threads/{thread_id}")
        assert [m["sender_auth"] for m in view["messages"] if m["direction"] == "in"] == [
            {"verdict": "verified", "detail": "dkim=pass (dkim aligned)"}
        ] * 2
        details = []
        for other in marked:
            status, view = await sofia.call("GET", f"/api/threads/{other}")
            assert status == 200 and view["sender_unverified"] is True
            (message,) = [m for m in view["messages"] if m["direction"] == "in"]
            assert message["sender_auth"]["verdict"] == "failed"
            details.append(message["sender_auth"]["detail"])
        # What the receiving server found: no signature (its made-up pass deleted), a pass for
        # a domain not hers, a signature broken by the change.
        assert sorted(details) == [f"dkim={r} (nothing aligned passed)" for r in ("fail", "none", "pass")]
    finally:
        relay.close()
        await relay.wait_closed()
        await sofia.close()
        await client.close()


@pytest.mark.service_env(TRUSTED_ENV)
async def test_a_forged_reply_starts_its_own_marked_thread_and_a_verified_one_joins(gateway: Gateway) -> None:
    sofia = await supervisor(gateway)
    client, db = database(gateway)
    inbox = Mailbox("127.0.0.1", gateway.urls.imap_port, gateway.line_mailbox)
    address = f"{gateway.client_mailbox}@demo.test"
    try:
        thread_id, ours = await _survivor_thread(gateway, sofia, db, inbox, address)
        # Her verified reply, citing our Message-ID: her thread.
        await inbox.append(
            received(
                mail(address, "h@demo.test", "Re: Помогите", "second", new_message_id(), ours, [ours]),
                verified("demo.test"),
            )
        )
        event = await sofia.wait_event(lambda e: e["name"] in {"MessageReceived", "ThreadQueued"})
        assert event["thread_id"] == thread_id
        # Her consultation is closed: an earlier consultation of hers from now on.
        status, _ = await sofia.call(
            "POST", f"/api/threads/{thread_id}/close", {"outcome": "no_consultation", "reason": "test"}
        )
        assert status == 200

        # The abuser writes as her, citing our Message-ID: the server says DMARC failed. A field
        # of another server claiming a pass sits above it (read as nothing).
        other_pass = "mx.hotline.test.evil.example; dmarc=pass header.from=demo.test"
        await inbox.append(
            received(
                mail(
                    address, "h@demo.test", "Re: Помогите", "I am fine, stop", new_message_id(), ours, [ours]
                ),
                other_pass,
                forged("demo.test"),
            )
        )
        # Only a field of another server, claiming a pass: no result of the trusted one.
        await inbox.append(
            received(
                mail(address, "h@demo.test", "Re: Помогите", "stop", new_message_id(), ours, [ours]),
                other_pass,
            )
        )
        marked = await queued_threads(sofia, 2)
        assert thread_id not in marked
        # Her thread got neither mail, and is still closed.
        assert await db["messages"].count_documents({"thread_id": thread_id, "direction": "in"}) == 2
        hers = await db["threads"].find_one({"_id": thread_id})
        assert hers["status"] == "closed" and hers["client_id"] and not hers.get("sender_unverified")
        for other in marked:
            doc = await db["threads"].find_one({"_id": other})
            # Marked, and no one's: not linked to her client record.
            assert doc["sender_unverified"] is True and doc["client_id"] is None
            status, view = await sofia.call("GET", f"/api/threads/{other}")
            assert status == 200 and view["sender_unverified"] is True
            (message,) = view["messages"][:1]
            assert message["sender_auth"]["verdict"] == "failed"
            # No automatic answer: it would go to her, at the abuser's word.
            assert [m for m in view["messages"] if m.get("author") == "bot"] == []
            # Her history is not shown with the abuser's thread.
            status, earlier = await sofia.call("GET", f"/api/threads/{other}/earlier")
            assert status == 200 and earlier == []
        status, view = await sofia.call("GET", f"/api/threads/{thread_id}")
        verdicts = [m["sender_auth"]["verdict"] for m in view["messages"] if m["direction"] == "in"]
        assert verdicts == ["verified", "verified"]
        # The listing carries the mark too.
        status, listed = await sofia.call("GET", "/api/threads?queue=113-triage&status=waiting")
        assert status == 200 and {t["id"] for t in listed if t.get("sender_unverified")} == marked
    finally:
        await sofia.close()
        await client.close()


@pytest.mark.service_env(TRUSTED_ENV)
async def test_a_mail_whose_sender_failed_gets_no_automatic_answer(gateway: Gateway) -> None:
    """A first mail whose From the trusted server did not confirm: the hotline writes nothing
    to the address it names (else anyone could make it write to a survivor); a verified one
    from another address is acknowledged as ever."""
    sofia = await supervisor(gateway)
    inbox = Mailbox("127.0.0.1", gateway.urls.imap_port, gateway.line_mailbox)
    try:
        for who, field in (("named", forged("demo.test")), ("real", verified("demo.test"))):
            raw = mail(
                f"{who}-{uuid.uuid4().hex[:6]}@demo.test", "h@demo.test", "Помогите", "x", new_message_id()
            )
            await inbox.append(received(raw, field))
            (thread_id,) = await queued_threads(sofia, 1)
            status, view = await sofia.call("GET", f"/api/threads/{thread_id}")
            assert status == 200
            answers = [m for m in view["messages"] if m.get("author") == "bot"]
            assert (bool(view.get("sender_unverified")), len(answers)) == (
                (True, 0) if who == "named" else (False, 1)
            )
    finally:
        await sofia.close()


async def test_a_mailbox_that_trusts_no_server_threads_by_from_as_before(gateway: Gateway) -> None:
    """No trusted server configured: nothing is checked (verdict unknown), and a mail that
    claims the sender joins the thread, whatever fields it carries: such a mailbox is open to
    the abuser's reply (docs/email.md says how to close it)."""
    sofia = await supervisor(gateway)
    client, db = database(gateway)
    inbox = Mailbox("127.0.0.1", gateway.urls.imap_port, gateway.line_mailbox)
    address = f"{gateway.client_mailbox}@demo.test"
    try:
        thread_id, ours = await _survivor_thread(gateway, sofia, db, inbox, address)
        await inbox.append(
            received(
                mail(address, "h@demo.test", "Re: Помогите", "x", new_message_id(), ours, [ours]),
                forged("demo.test"),
            )
        )
        event = await sofia.wait_event(lambda e: e["name"] in {"MessageReceived", "ThreadQueued"})
        assert event["thread_id"] == thread_id
        status, view = await sofia.call("GET", f"/api/threads/{thread_id}")
        assert status == 200
        verdicts = [m["sender_auth"]["verdict"] for m in view["messages"] if m["direction"] == "in"]
        assert verdicts == ["unknown", "unknown"] and not view.get("sender_unverified")
    finally:
        await sofia.close()
        await client.close()


@pytest.mark.service_env(TRUSTED_ENV)
async def test_the_console_marks_the_thread_and_each_mail(gateway: Gateway, browser: Browser) -> None:
    gateway.seed_demo_accounts()
    inbox = Mailbox("127.0.0.1", gateway.urls.imap_port, gateway.line_mailbox)
    address = f"{gateway.client_mailbox}@demo.test"
    await inbox.append(
        received(
            mail(address, "h@demo.test", "Verified one", "hello", new_message_id()), verified("demo.test")
        )
    )
    await inbox.append(
        received(mail(address, "h@demo.test", "Forged one", "hello", new_message_id()), forged("demo.test"))
    )
    page = await browser.new_page()
    await page.goto(gateway.store_url + "/")
    await page.get_by_label("Login").fill("anna")
    await page.get_by_label("Password").fill("anna-demo")
    await page.get_by_role("button", name="Log in").click()
    triage = page.locator('button[data-queue="113-triage"]')
    await expect(triage.locator(".badge")).to_have_text("2", timeout=20_000)
    await triage.click()
    forged_row = page.locator("#threads button").filter(has_text="Forged one")
    verified_row = page.locator("#threads button").filter(has_text="Verified one")
    await expect(forged_row.locator(".unverified-mark")).to_have_text("Sender not verified")
    await expect(verified_row.locator(".unverified-mark")).to_have_count(0)
    await forged_row.click()
    await expect(page.locator("#thread h2")).to_contain_text("Forged one")
    await expect(page.locator("#sender-unverified")).to_contain_text("Sender not verified")
    badge = page.locator("#thread .msg.in .sender-auth")
    await expect(badge).to_have_text("sender not verified")
    await expect(badge).to_have_attribute("data-verdict", "failed")
    await verified_row.click()
    await expect(page.locator("#thread h2")).to_contain_text("Verified one")
    await expect(page.locator("#sender-unverified")).to_have_count(0)
    await expect(page.locator("#thread .msg.in .sender-auth")).to_have_text("sender verified")
    # In Russian.
    await page.locator("header .lang-select").select_option("ru")
    await expect(page.locator("#thread .msg.in .sender-auth")).to_have_text("отправитель подтверждён")
    await expect(forged_row.locator(".unverified-mark")).to_have_text("Отправитель не подтверждён")
