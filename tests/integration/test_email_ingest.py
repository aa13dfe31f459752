"""The e-mail channel against the real Dovecot, RabbitMQ and FerretDB (issue 3 items 1-4, 6):
the corpus through ingest, quarantine and replay, several mailboxes, UIDVALIDITY resync,
threading with the reply token, bounces."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from tests.conftest import ROOT, Gateway
from tests.integration.email_support import (
    config_with_mailboxes,
    database,
    queued_threads,
    restart_email_ingest,
    supervisor,
)
from tests.integration.helpers import Mailbox, imap_session, mail, new_message_id

CORPUS = ROOT / "tests" / "corpus" / "email"


def quarantine_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The operator's command, run as an operator would."""
    return subprocess.run(
        [sys.executable, "-m", "services.email_ingest.quarantine", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )


async def test_corpus_is_ingested_exactly_once_or_quarantined_with_its_reason(gateway: Gateway) -> None:
    expected = json.loads((CORPUS / "expected.json").read_text())
    sofia = await supervisor(gateway)
    client, db = database(gateway)
    inbox = Mailbox("127.0.0.1", gateway.urls.imap_port, gateway.line_mailbox)
    try:
        for name in sorted(expected):
            await inbox.append((CORPUS / f"{name}.eml").read_bytes())
        ingested = [n for n, e in expected.items() if e["outcome"] == "ingested"]
        threads = await queued_threads(sofia, len(ingested), within=180)
        assert len(threads) == len(ingested)

        # A quarantined mail is recorded as such by email_ingest, with no event a test could
        # await: read its records until every mail has one, quarantined ones marked.
        quarantined_count = len(expected) - len(ingested)

        async def final_records() -> list[dict[str, object]]:
            while True:
                records = [d async for d in db["mail_raw"].find({}, {"raw": 0})]
                marked = sum(1 for d in records if d["status"] == "quarantined")
                if len(records) >= len(expected) and marked >= quarantined_count:
                    return records
                await asyncio.sleep(0.2)

        raw = await asyncio.wait_for(final_records(), 60)
        assert len(raw) == len(expected)  # every mail kept once
        statuses = sorted(d["status"] for d in raw)
        quarantined = {d["reason"] for d in raw if d["status"] == "quarantined"}
        assert quarantined == {
            e["outcome"].split(":", 1)[1] for e in expected.values() if e["outcome"] != "ingested"
        }
        assert statuses.count("stored") == len(ingested)
        inbound = [
            m async for m in db["messages"].find({"direction": "in"}, {"source_id": 1, "thread_id": 1})
        ]
        assert len(inbound) == len(ingested)
        assert len({m["source_id"] for m in inbound}) == len(ingested)  # 0 duplicates
        assert {m["thread_id"] for m in inbound} == threads  # no mail merged into another's thread
        # Attachments are outside the broker, with their type and size; the capped one has no bytes.
        atts = [a async for a in db["mail_attachments"].find({}, {"data": 0})]
        assert {a["content_type"] for a in atts} >= {"application/pdf", "image/jpeg", "application/zip"}
        # Robots are recorded as such, so nothing answers them automatically.
        kinds = [m.get("email_kind") async for m in db["messages"].find({"direction": "in"})]
        assert kinds.count("bounce") == 2 and kinds.count("bulk") == 5
    finally:
        await sofia.close()
        await client.close()
    # The operator's view: facts only, and replay refuses what still cannot be read.
    env = {**os.environ, **gateway.env["email_ingest"]}
    listed = quarantine_cli(env, "list").stdout.splitlines()
    reasons = sorted(json.loads(line)["reason"] for line in listed)
    assert reasons == sorted(
        e["outcome"].split(":", 1)[1] for e in expected.values() if e["outcome"] != "ingested"
    )
    assert "anonymous" not in "".join(listed)
    too_many = next(
        json.loads(line)["source_id"] for line in listed if json.loads(line)["reason"] == "too_many_parts"
    )
    again = quarantine_cli(env, "replay", too_many)
    assert again.returncode == 1 and "too_many_parts" in again.stderr


async def test_a_quarantined_mail_is_replayed_once_after_a_fix(gateway: Gateway) -> None:
    sofia = await supervisor(gateway)
    client, db = database(gateway)
    inbox = Mailbox("127.0.0.1", gateway.urls.imap_port, gateway.line_mailbox)
    try:
        await inbox.append(mail("c@demo.test", "h@demo.test", "s", "first", new_message_id()))
        await queued_threads(sofia, 1)
        doc = await db["mail_raw"].find_one({})
        # As if an older parser had failed on it: quarantined, thread-less, kept.
        await db["messages"].delete_many({})
        await db["threads"].delete_many({})
        await db["mail_raw"].update_one(
            {"_id": doc["_id"]}, {"$set": {"status": "quarantined", "reason": "x"}}
        )
        env = {**os.environ, **gateway.env["email_ingest"]}
        run = quarantine_cli(env, "replay", doc["_id"])
        assert run.returncode == 0, run.stderr
        await queued_threads(sofia, 1)
        assert await db["messages"].count_documents({"source_id": doc["_id"]}) == 1
        assert (await db["mail_raw"].find_one({"_id": doc["_id"]}))["status"] == "replayed"
        run = quarantine_cli(env, "replay", doc["_id"])
        assert run.returncode == 1  # not quarantined any more: a second replay does nothing
    finally:
        await sofia.close()
        await client.close()


async def test_several_mailboxes_from_configuration(gateway: Gateway, tmp_path: Path) -> None:
    name = gateway.name
    boxes = {
        "infoline": {
            "line": "113",
            "imap_host": "127.0.0.1",
            "imap_port": gateway.urls.imap_port,
            "imap_tls": False,
            "user": f"{name}-a",
            "password_env": "HOTLINE_TEST_PW_A",
        },
        "dv": {
            "line": "dv",
            "organisation": "gp",
            "imap_host": "127.0.0.1",
            "imap_port": gateway.urls.imap_port,
            "imap_tls": False,
            "user": f"{name}-dv",
            "password_env": "HOTLINE_TEST_PW_DV",
        },
    }
    cfg = config_with_mailboxes(tmp_path / "hotline.yaml", boxes)
    gateway.processes.stop("email_ingest")
    env = {
        **gateway.env["email_ingest"],
        "EMAIL_INGEST_CONFIG_PATH": str(cfg),
        "HOTLINE_TEST_PW_A": f"{name}-a",
        "HOTLINE_TEST_PW_DV": f"{name}-dv",
    }
    gateway.env["email_ingest"] = env
    gateway.processes.start("email_ingest", env)
    gateway.processes.wait_ready(gateway.ports)
    sofia = await supervisor(gateway)
    client, db = database(gateway)
    try:
        for user in (gateway.line_mailbox, f"{name}-a", f"{name}-dv"):
            box = Mailbox("127.0.0.1", gateway.urls.imap_port, user)
            await box.append(mail("c@demo.test", f"{user}@demo.test", "s", f"to {user}", new_message_id()))
        await queued_threads(sofia, 3)
        threads = [t async for t in db["threads"].find({})]
        assert sorted(t["queue"] for t in threads) == ["113-triage", "113-triage", "gp-dv"]
        cursors = {c["_id"] async for c in db["imap_cursors"].find({})}
        assert {"infoline", "dv"} <= cursors and len(cursors) == 3
    finally:
        await sofia.close()
        await client.close()


async def test_uidvalidity_change_resyncs_without_duplicates(gateway: Gateway) -> None:
    user = gateway.line_mailbox
    async with imap_session("127.0.0.1", gateway.urls.imap_port, user) as imap:
        await imap.create("Watched")
        restart_email_ingest(gateway, IMAP_MAILBOX="Watched", IDLE_SECONDS="2", RECONNECT_MAX_SECONDS="2")
        sofia = await supervisor(gateway)
        client, db = database(gateway)
        try:
            raws = [mail("c@demo.test", "h@demo.test", "s", f"mail {i}", new_message_id()) for i in range(3)]
            for raw in raws:
                assert (await imap.append(raw, mailbox="Watched")).result == "OK"
            await queued_threads(sofia, 3)
            # The folder is recreated (a restore, a server migration): new UIDVALIDITY, same mails.
            await imap.delete("Watched")
            await imap.create("Watched")
            for raw in [*raws, mail("c@demo.test", "h@demo.test", "s", "new one", new_message_id())]:
                assert (await imap.append(raw, mailbox="Watched")).result == "OK"
            await queued_threads(sofia, 1)
            assert await db["messages"].count_documents({"direction": "in"}) == 4
            assert await db["threads"].count_documents({}) == 4
            cursor = await db["imap_cursors"].find_one({"_id": {"$regex": "/Watched$"}})
            assert cursor["resync"] is True and cursor["last_uid"] == 4
        finally:
            await sofia.close()
            await client.close()


async def test_threads_join_only_by_our_reference_and_the_same_sender(gateway: Gateway) -> None:
    sofia = await supervisor(gateway)
    client, db = database(gateway)
    inbox = Mailbox("127.0.0.1", gateway.urls.imap_port, gateway.line_mailbox)
    client_addr = f"{gateway.client_mailbox}@demo.test"
    try:
        await inbox.append(mail(client_addr, "h@demo.test", "Помогите", "first", new_message_id()))
        (thread_id,) = await queued_threads(sofia, 1)
        status, _ = await sofia.call("POST", f"/api/threads/{thread_id}/claim")
        assert status == 200
        status, reply = await sofia.call(
            "POST",
            f"/api/threads/{thread_id}/messages",
            {"text": "Ответ"},
            {"Idempotency-Key": uuid.uuid4().hex},
        )
        assert status == 202
        ours = (await db["messages"].find_one({"_id": reply["id"]}))["email_message_id"]
        token = (await db["threads"].find_one({"_id": thread_id}))["reply_token"]
        # A stranger citing our Message-ID, and a same-subject mail citing nothing: new threads.
        await inbox.append(
            mail("stranger@example.org", "h@demo.test", "Re: Помогите", "x", new_message_id(), ours, [ours])
        )
        await inbox.append(mail(client_addr, "h@demo.test", "Re: Помогите", "no refs", new_message_id()))
        await queued_threads(sofia, 2)
        # The client, citing only a Message-ID that carries the thread's token (a mailer that
        # rewrote References): the same thread.
        token_ref = f"<{uuid.uuid4().hex}.{token}@demo.test>"
        await inbox.append(mail(client_addr, "h@demo.test", "Re:", "second", new_message_id(), token_ref))
        event = await sofia.wait_event(lambda e: e["name"] in {"MessageReceived", "ThreadQueued"})
        assert event["thread_id"] == thread_id
        assert await db["messages"].count_documents({"thread_id": thread_id, "direction": "in"}) == 2
        # A bounce of our reply marks it failed, visibly.
        bounce = (
            "From: MAILER-DAEMON@demo.test\r\nSubject: Undelivered\r\n"
            'Content-Type: multipart/report; report-type=delivery-status; boundary="R"\r\n\r\n'
            "--R\r\nContent-Type: text/plain\r\n\r\nfailed\r\n--R\r\nContent-Type: message/delivery-status\r\n\r\n"  # noqa: E501
            "Reporting-MTA: dns; demo.test\r\n\r\nFinal-Recipient: rfc822; x@demo.test\r\nAction: failed\r\n"
            f"Status: 5.1.1\r\n\r\n--R\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {ours}\r\n\r\n--R--\r\n"  # noqa: E501
        ).encode()
        await inbox.append(bounce)
        delivered = await sofia.wait_event(
            lambda e: (
                e["name"] == "MessageDelivered"
                and e["message_id"] == reply["id"]
                and e["data"]["status"] == "failed"
            )
        )
        assert delivered["thread_id"] == thread_id
        status, thread = await sofia.call("GET", f"/api/threads/{thread_id}")
        mine = next(m for m in thread["messages"] if m["id"] == reply["id"])
        assert mine["delivery"]["status"] == "failed" and mine["delivery"]["detail"] == "bounced"
    finally:
        await sofia.close()
        await client.close()
