"""A mail that cannot be fully read still reaches a person (issue 20, item 1), through the real
Dovecot, RabbitMQ and FerretDB: its sender's address recovered where the mail gives one, the
thread marked with what is wrong where it does not, and no reply (automatic or a consultant's)
sent to nowhere."""

from __future__ import annotations

import base64
import uuid
from typing import Any

from tests.conftest import Gateway
from tests.integration.email_support import database, queued_threads, supervisor
from tests.integration.helpers import Mailbox, logged_in, new_message_id

TEXT = "Помогите, пожалуйста"


def encoded(text: str) -> str:
    return "=?UTF-8?B?" + base64.b64encode(text.encode()).decode() + "?="


def raw_mail(headers: str, body: str = TEXT, subject: str = "s") -> bytes:
    return (
        f"{headers}\r\nTo: hotline@demo.test\r\nSubject: {subject}\r\nMessage-ID: {new_message_id()}\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body}\r\n"
    ).encode()


async def test_damaged_mails_become_threads_marked_with_what_is_wrong(gateway: Gateway) -> None:
    sofia = await supervisor(gateway)
    anna = await logged_in(gateway.store_url, "anna")
    client, db = database(gateway)
    inbox = Mailbox("127.0.0.1", gateway.urls.imap_port, gateway.line_mailbox)
    cut_short = (
        "From: parts@example.org\r\nTo: hotline@demo.test\r\nSubject: cut\r\n"
        f"Message-ID: {new_message_id()}\r\nContent-Type: multipart/mixed; boundary=P\r\n\r\n"
        f"--P\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{TEXT} cut\r\n"
        "--P\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
        'Content-Disposition: attachment; filename="a.pdf"\r\n\r\nJVBERi0xLjQK1\r\n--P--\r\n'
    ).encode()
    try:
        await inbox.append_all(
            [
                # The whole "Name <address>" in one encoded word.
                raw_mail("From: " + encoded("Вера Петрова <vera@example.org>"), f"{TEXT} encoded"),
                # No address anywhere a reply may go (Return-Path is for bounces only).
                raw_mail("Return-Path: <bounces@lists.example>", f"{TEXT} nobody"),
                cut_short,
            ]
        )
        ids = await queued_threads(sofia, 3)
        threads: dict[str, dict[str, Any]] = {}
        for thread_id in ids:
            status, thread = await sofia.call("GET", f"/api/threads/{thread_id}")
            assert status == 200, thread
            word = next(w for w in ("encoded", "nobody", "cut") if w in thread["messages"][0]["text"])
            threads[word] = thread

        encoded_thread = threads["encoded"]
        assert encoded_thread["client"]["address"] == "vera@example.org"
        assert "cannot_reply" not in encoded_thread
        assert "email_problems" not in encoded_thread["messages"][0]

        nobody = threads["nobody"]
        client_messages = [m for m in nobody["messages"] if m["author"] == "client"]
        assert client_messages[0]["email_problems"] == ["no_sender"]
        assert nobody["cannot_reply"] == "no_sender" and not nobody["client"].get("address")
        # No automatic answer went to nowhere: the thread holds the client's mail alone, while
        # the mail with an address got the line's (if the line answers at all).
        assert [m["author"] for m in nobody["messages"]] == ["client"]
        bot_answers = [m for m in encoded_thread["messages"] if m["author"] == "bot"]
        assert bot_answers and bot_answers[0]["direction"] == "out"

        cut = threads["cut"]
        assert cut["messages"][0]["email_problems"] == ["unreadable_part"]
        assert "cannot_reply" not in cut

        # The consultant who takes it reads the text; the reply is refused with the reason.
        assert (await anna.call("POST", f"/api/threads/{nobody['id']}/claim"))[0] == 200
        status, refused = await anna.call(
            "POST",
            f"/api/threads/{nobody['id']}/messages",
            {"text": "answer"},
            {"Idempotency-Key": uuid.uuid4().hex},
        )
        assert status == 409 and refused["title"] == "Cannot reply: no usable sender address"
        assert await db["messages"].count_documents({"thread_id": nobody["id"], "direction": "out"}) == 0
        # A mail whose part could not be read is answered as any other.
        assert (await anna.call("POST", f"/api/threads/{cut['id']}/claim"))[0] == 200
        status, accepted = await anna.call(
            "POST",
            f"/api/threads/{cut['id']}/messages",
            {"text": "answer"},
            {"Idempotency-Key": uuid.uuid4().hex},
        )
        assert status == 202, accepted
        # None of the three is in quarantine.
        assert await db["mail_raw"].count_documents({"status": "quarantined"}) == 0
    finally:
        await anna.close()
        await sofia.close()
        await client.close()
