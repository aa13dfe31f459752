"""F10 (QUALITY.md 2): SMTP 4xx, 5xx and the connection dropped after DATA before the reply,
against a real SMTP server (aiosmtpd) that misbehaves on purpose, and email_ingest killed
(kill -9) while it waits for that reply. Ledger: sends per reply."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections import Counter
from email import message_from_bytes
from typing import cast

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.conftest import Gateway
from tests.integration.email_support import (
    claimed_mail_thread,
    database,
    delivery,
    reply,
    restart_email_ingest,
    smtp_server,
    supervisor,
)

DROP = "drop"


class Faulty:
    """Answers each new Message-ID ``fault`` ``times`` times, then accepts it. The fault
    ``drop`` takes the whole mail and then cuts the connection without any reply, as a
    server that crashed (or a NAT that forgot us) between the final "." and "250"."""

    def __init__(self, fault: str, times: int) -> None:
        self.fault, self.times = fault, times
        self.attempts: Counter[str] = Counter()
        self.accepted: Counter[str] = Counter()

    def fails(self, mid: str, content: bytes) -> bool:
        return self.attempts[mid] <= self.times

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        mid = str(message_from_bytes(content).get("Message-ID", ""))
        self.attempts[mid] += 1
        if self.fails(mid, content):
            if self.fault == DROP:
                self.on_drop()
                # abort(): the socket is gone before aiosmtpd writes the reply below.
                cast(asyncio.Transport, server.transport).abort()
                return "250 OK (never heard)"
            return self.fault
        self.accepted[mid] += 1
        return "250 OK"

    def on_drop(self) -> None:
        """What else happens while the mail hangs unanswered."""

    def sends(self, message_id: str) -> tuple[int, int]:
        """(DATA received, accepted) under the reply's one Message-ID."""
        (mid,) = [k for k in self.attempts if message_id in k]
        return self.attempts[mid], self.accepted[mid]


class KillsTheSender(Faulty):
    """Drops the connection of every DATA of a mail with ``marker`` in its text, after kill -9
    of the email_ingest process that sent it, while it waits for the reply. Other mail (the
    first-contact acknowledgement) is accepted."""

    def __init__(self, loop: asyncio.AbstractEventLoop, marker: str) -> None:
        super().__init__(DROP, 99)
        self.victim = 0  # pid of the email_ingest process to kill
        self.loop, self.kills = loop, asyncio.Queue[int]()
        self.marker = marker.encode()

    def fails(self, mid: str, content: bytes) -> bool:
        return self.marker in content

    def on_drop(self) -> None:
        os.kill(self.victim, signal.SIGKILL)  # in the server's thread, while DATA hangs
        self.loop.call_soon_threadsafe(self.kills.put_nowait, self.victim)


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
    with smtp_server(handler, "none") as port:
        restart_email_ingest(gateway, SMTP_HOST="127.0.0.1", SMTP_PORT=str(port), SMTP_RETRY_SECONDS="0.2")
        sofia = await supervisor(gateway)
        try:
            thread_id = await claimed_mail_thread(gateway, sofia)
            answer = await reply(sofia, thread_id)
            assert (await delivery(sofia, thread_id, answer["id"]))["status"] == final
        finally:
            await sofia.close()
    # Ledger: what reached the server for this reply, all under one Message-ID.
    data, accepted = handler.sends(answer["id"])
    print(
        f"F10 {fault[:4]}x{times}: sends per reply (DATA received)={data} "
        f"accepted={accepted} final={final} message_ids=1"
    )
    assert (data, accepted) == (received, sends)


@pytest.mark.slow
async def test_f10_at_most_one_resend_holds_when_the_sender_is_killed_waiting_for_the_reply(
    gateway: Gateway,
) -> None:
    """Each DATA of the reply hangs unanswered and the email_ingest that sent it is killed; the
    next process takes the reply over from the broker. The first takeover may resend once
    (the first copy may not have arrived); the second must not send a third copy: it counts
    the two unconfirmed DATA in the database and shows the reply failed."""
    marker = f"answer-{uuid.uuid4().hex}"
    handler = KillsTheSender(asyncio.get_running_loop(), marker)
    with smtp_server(handler, "none") as port:
        restart_email_ingest(gateway, SMTP_HOST="127.0.0.1", SMTP_PORT=str(port))
        sofia = await supervisor(gateway)
        client, db = database(gateway)
        try:
            thread_id = await claimed_mail_thread(gateway, sofia)
            handler.victim = gateway.processes.procs["email_ingest"].pid
            answer = await reply(sofia, thread_id, marker)
            for _ in range(2):
                killed = await asyncio.wait_for(handler.kills.get(), 60)
                process = gateway.processes.procs.pop("email_ingest")
                assert process.pid == killed and await asyncio.to_thread(process.wait) == -signal.SIGKILL
                # The next one takes the reply over as it starts (it may die before it is ready).
                gateway.processes.start("email_ingest", gateway.env["email_ingest"])
                handler.victim = gateway.processes.procs["email_ingest"].pid
            await asyncio.to_thread(gateway.processes.wait_ready, gateway.ports)
            outcome = await delivery(sofia, thread_id, answer["id"])
            ledger = [d["kind"] async for d in db["smtp_data_attempts"].find({"message_id": answer["id"]})]
        finally:
            await sofia.close()
            await client.close()
    data, accepted = handler.sends(answer["id"])
    print(
        f"F10 kill -9 while DATA hangs, twice: sends per reply (DATA received)={data} "
        f"accepted={accepted} processes=3 final={outcome['status']} message_ids=1"
    )
    assert (data, accepted) == (2, 0)
    assert (outcome["status"], outcome["detail"]) == ("failed", "no reply after DATA; may have arrived")
    assert sorted(ledger) == ["data", "data"]
