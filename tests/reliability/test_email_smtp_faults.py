"""F10 (QUALITY.md 2): SMTP 4xx, 5xx and the connection dropped after DATA before the reply,
against a real SMTP server (aiosmtpd) that misbehaves on purpose, and email_ingest killed
(kill -9) while it waits for that reply. Ledger: sends per reply.

The client's mail and every reply carry the ledger's canary, which the reliability conftest
then finds 0 times in the services' logs (QUALITY.md 4: the failure paths of sending too)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from collections import Counter
from email import message_from_bytes
from typing import cast

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage
from aiosmtpd.smtp import SMTP, Envelope, Session

from shared import topology
from shared.envelope import Channel, DeliveryStatus, OutboundMessage, encode, utcnow
from shared.settings import parse_master_key
from shared.transit import TransitSeal
from tests.conftest import Gateway
from tests.integration.email_support import (
    SmtpRecorder,
    claimed_mail_thread,
    database,
    delivery,
    reply,
    restart_email_ingest,
    smtp_server,
    supervisor,
)
from tests.reliability.ledger import CANARY

DROP = "drop"


class Faulty:
    """Answers each new Message-ID ``fault`` ``times`` times, then accepts it. The fault
    ``drop`` takes the whole mail and then cuts the connection without any reply, as a
    server that crashed (or a NAT that forgot us) between the final "." and "250"."""

    def __init__(self, fault: str, times: int) -> None:
        self.fault, self.times = fault, times
        self.attempts: Counter[str] = Counter()
        self.accepted: Counter[str] = Counter()
        self.canaries = 0  # DATA that carried the canary: the log check then has something to find

    def fails(self, mid: str, content: bytes) -> bool:
        return self.attempts[mid] <= self.times

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        mid = str(message_from_bytes(content).get("Message-ID", ""))
        self.attempts[mid] += 1
        self.canaries += CANARY.encode() in content
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
            thread_id = await claimed_mail_thread(gateway, sofia, f"help {CANARY}")
            answer = await reply(sofia, thread_id, f"answer {CANARY}")
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
    assert handler.canaries >= data  # every DATA of the reply carried the canary


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
            thread_id = await claimed_mail_thread(gateway, sofia, f"help {CANARY}")
            handler.victim = gateway.processes.procs["email_ingest"].pid
            answer = await reply(sofia, thread_id, f"{marker}\n{CANARY}")
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
    assert handler.canaries >= data
    assert (outcome["status"], outcome["detail"]) == ("failed", "no reply after DATA; may have arrived")
    assert sorted(ledger) == ["data", "data"]


class KillsTheDatabase(SmtpRecorder):
    """Accepts every mail; the first DATA of a mail with ``marker`` in it kills the database
    (in the server's thread, as the 250 is written), so the sender learns "accepted" and then
    cannot record it."""

    def __init__(self, gateway: Gateway, loop: asyncio.AbstractEventLoop, marker: str) -> None:
        super().__init__()
        self.gateway, self.loop, self.marker = gateway, loop, marker.encode()
        self.killed = asyncio.Event()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        if self.marker in content and not self.killed.is_set():
            self.gateway.stack.kill_database()
            self.loop.call_soon_threadsafe(self.killed.set)
        return await super().handle_DATA(server, session, envelope)


@pytest.mark.slow
async def test_a_reply_accepted_just_before_the_database_fails_is_sent_once(gateway: Gateway) -> None:
    marker = f"answer-{uuid.uuid4().hex}"
    handler = KillsTheDatabase(gateway, asyncio.get_running_loop(), marker)
    with smtp_server(handler, "none") as port:
        restart_email_ingest(gateway, SMTP_HOST="127.0.0.1", SMTP_PORT=str(port))
        sofia = await supervisor(gateway)
        try:
            thread_id = await claimed_mail_thread(gateway, sofia, f"help {CANARY}")
            answer = await reply(sofia, thread_id, f"{marker}\n{CANARY}")
            await asyncio.wait_for(handler.killed.wait(), 60)
            try:
                # The length of the injected outage: long enough for the sender's record of
                # "accepted" to fail and be retried several times.
                await asyncio.sleep(6)
            finally:
                await asyncio.to_thread(gateway.stack.start_database)
            outcome = await delivery(sofia, thread_id, answer["id"], within=120)
        finally:
            await sofia.close()
    copies = [r for r in handler.received if answer["id"] in r.message_id]
    print(f"F10 database killed as the reply was accepted: copies received={len(copies)}")
    assert outcome["status"] == "sent"
    assert len(copies) == 1


class SlowToAnswer(SmtpRecorder):
    """Accepts every mail, a second after its DATA (a busy server): time enough for a second
    copy of the same reply to arrive while the first is being sent."""

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await asyncio.sleep(1)  # the server's own slowness, on its own loop
        return await super().handle_DATA(server, session, envelope)


async def test_a_reply_published_twice_is_sent_once(gateway: Gateway) -> None:
    handler = SlowToAnswer()
    with smtp_server(handler, "none") as port:
        restart_email_ingest(gateway, SMTP_HOST="127.0.0.1", SMTP_PORT=str(port))
        # email_ingest seals its reports (shared/transit.py).
        transit = TransitSeal(parse_master_key(gateway.env["email_ingest"]["EMAIL_INGEST_MASTER_KEY"]))
        connection = await aio_pika.connect(gateway.urls.amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            reports = await channel.declare_queue(exclusive=True)
            await reports.bind(topology.EVENTS, topology.delivery_key(DeliveryStatus.SENT.value))
            seen: asyncio.Queue[str] = asyncio.Queue()

            async def on_report(message: AbstractIncomingMessage) -> None:
                seen.put_nowait(json.loads(transit.open(message.body, message.type))["message_id"])

            await reports.consume(on_report, no_ack=True)
            out = OutboundMessage(
                message_id=uuid.uuid4().hex,
                thread_id=uuid.uuid4().hex,
                channel=Channel.EMAIL,
                line="113",
                recipient="client@example.org",
                text=f"answer {CANARY}",
                sent_at=utcnow(),
                subject="help",
                email_message_id=f"<{uuid.uuid4().hex}@hotline.test>",
            )
            # As a dispatcher does that publishes an answer again after failing to mark it
            # published: two publishes of one reply, at once.
            outbound = await channel.get_exchange(topology.OUTBOUND)
            for _ in range(2):
                await outbound.publish(
                    aio_pika.Message(encode(out), type=out.kind, message_id=out.message_id),
                    routing_key=topology.outbound_key(Channel.EMAIL, out.line),
                )
            # Each copy is reported once it is done (sent, or found sent by the other).
            for _ in range(2):
                assert await asyncio.wait_for(seen.get(), 60) == out.message_id
    copies = [r for r in handler.received if out.email_message_id and out.email_message_id in r.message_id]
    assert len(copies) == 1
