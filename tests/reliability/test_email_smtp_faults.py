"""F10 (QUALITY.md 2): SMTP 4xx and 5xx, against a real
SMTP server (aiosmtpd) that misbehaves on purpose. Ledger: sends per reply."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from email import message_from_bytes

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.conftest import Gateway, free_ports
from tests.integration.email_support import queued_threads, restart_email_ingest
from tests.integration.helpers import Consultant, Mailbox, mail, new_message_id


class Faulty:
    """Answers each new Message-ID ``fault`` ``times`` times, then accepts it."""

    def __init__(self, fault: str, times: int) -> None:
        self.fault, self.times = fault, times
        self.attempts: Counter[str] = Counter()
        self.accepted: Counter[str] = Counter()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        mid = str(message_from_bytes(content).get("Message-ID", ""))
        self.attempts[mid] += 1
        if self.attempts[mid] <= self.times:
            return self.fault
        self.accepted[mid] += 1
        return "250 OK"


@pytest.mark.parametrize(
    ("fault", "times", "final", "sends"),
    [
        ("451 4.3.0 try again later", 2, "sent", 1),
        ("550 5.1.1 no such user", 99, "failed", 0),
    ],
)
async def test_f10_smtp_faults(gateway: Gateway, fault: str, times: int, final: str, sends: int) -> None:
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
        mid = next(k for k in handler.attempts if reply["id"] in k)
        # Ledger: what reached the server for this reply, all under one Message-ID.
        print(f"F10 {fault[:3]}: attempts={handler.attempts[mid]} accepted={handler.accepted[mid]}")
        assert handler.accepted[mid] == sends
        await sofia.close()
    finally:
        await asyncio.to_thread(controller.stop)
