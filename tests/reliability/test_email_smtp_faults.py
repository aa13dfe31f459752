"""F10 (QUALITY.md 2): SMTP 4xx, 5xx and the connection dropped after DATA before the reply,
against a real SMTP server (aiosmtpd) that misbehaves on purpose. Ledger: sends per reply."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from email import message_from_bytes
from typing import cast

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.conftest import Gateway, free_ports
from tests.integration.email_support import queued_threads, restart_email_ingest
from tests.integration.helpers import Consultant, Mailbox, mail, new_message_id

DROP = "drop"


class Faulty:
    """Answers each new Message-ID ``fault`` ``times`` times, then accepts it. The fault
    ``drop`` takes the whole mail and then cuts the connection without any reply, as a
    server that crashed (or a NAT that forgot us) between the final "." and "250"."""

    def __init__(self, fault: str, times: int) -> None:
        self.fault, self.times = fault, times
        self.attempts: Counter[str] = Counter()
        self.accepted: Counter[str] = Counter()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        mid = str(message_from_bytes(content).get("Message-ID", ""))
        self.attempts[mid] += 1
        if self.attempts[mid] <= self.times:
            if self.fault == DROP:
                # abort(): the socket is gone before aiosmtpd writes the reply below.
                cast(asyncio.Transport, server.transport).abort()
                return "250 OK (never heard)"
            return self.fault
        self.accepted[mid] += 1
        return "250 OK"


@pytest.mark.parametrize(
    ("fault", "times", "final", "sends", "received"),
    [
        ("451 4.3.0 try again later", 2, "sent", 1, 3),
        ("550 5.1.1 no such user", 99, "failed", 0, 1),
        # Dropped once after DATA: one resend, which is accepted.
        (DROP, 1, "sent", 1, 2),
        # Dropped every time: at most one resend, then shown failed (it may have arrived).
        (DROP, 99, "failed", 0, 2),
    ],
)
async def test_f10_smtp_faults(
    gateway: Gateway, fault: str, times: int, final: str, sends: int, received: int
) -> None:
    handler = Faulty(fault, times)
    (port,) = free_ports(1)
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        restart_email_ingest(
            gateway,
            SMTP_HOST="127.0.0.1",
            SMTP_PORT=str(port),
            SMTP_RETRY_SECONDS="0.2",
        )
        gateway.seed_demo_accounts()
        sofia = Consultant(gateway.store_url)
        await sofia.login("sofia", "sofia-demo")
        await sofia.open_events()
        inbox = Mailbox("127.0.0.1", gateway.urls.imap_port, gateway.line_mailbox)
        await inbox.append(mail("c@example.org", "h@demo.test", "s", "help", new_message_id()))
        (thread_id,) = await queued_threads(sofia, 1)
        assert (await sofia.call("POST", f"/api/threads/{thread_id}/claim"))[0] == 200
        status, reply = await sofia.call(
            "POST",
            f"/api/threads/{thread_id}/messages",
            {"text": "answer"},
            {"Idempotency-Key": uuid.uuid4().hex},
        )
        assert status == 202
        event = await sofia.wait_event(
            lambda e: (
                e["name"] == "MessageDelivered"
                and e["message_id"] == reply["id"]
                and e["data"]["status"] != "queued"
            ),
            within=60,
        )
        assert event["data"]["status"] == final
        status, thread = await sofia.call("GET", f"/api/threads/{thread_id}")
        ours = next(m for m in thread["messages"] if m["id"] == reply["id"])
        assert ours["delivery"]["status"] == final
        # Ledger: what reached the server for this reply, all under one Message-ID.
        (mid,) = [k for k in handler.attempts if reply["id"] in k]
        print(
            f"F10 {fault[:4]}x{times}: sends per reply (DATA received)={handler.attempts[mid]} "
            f"accepted={handler.accepted[mid]} final={final} message_ids=1"
        )
        assert handler.attempts[mid] == received
        assert handler.accepted[mid] == sends
        await sofia.close()
    finally:
        await asyncio.to_thread(controller.stop)
