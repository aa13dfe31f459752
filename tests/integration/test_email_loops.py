"""Loop safety of automatic answers (issue 20 item 3), against the real Dovecot, the local SMTP
relay, RabbitMQ and FerretDB: our automatic answers are marked ``Auto-Submitted: auto-replied``
(RFC 3834 5) and a consultant's reply is not; mail marked as a robot's gets no automatic
answer; a sender gets at most one automatic answer per line and period for mail that starts
a thread, recorded once for every dispatcher (conversations/answered_senders.py); and two
auto-responders that answer every mail of ours end up quiet after a small, exact number of
mails, each of their mails a thread or a message a consultant sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import make_msgid, parseaddr
from typing import Any

import aiohttp
import aiosmtplib
import pytest

from conversations.repository import Repository
from services.email_ingest.imap import parse_fetch
from shared.envelope import utcnow
from tests.conftest import Gateway
from tests.integration.email_support import database, supervisor
from tests.integration.helpers import Consultant, Mailbox, imap_session, mail, new_message_id

# --- the record shared by the dispatchers -----------------------------------------------------


async def test_one_answer_per_sender_and_period_whoever_asks_first(repo: Repository) -> None:
    senders = repo.answered_senders
    hour = timedelta(hours=1)
    # Ten dispatchers answer the same sender at once: one may.
    taken = await asyncio.gather(*(senders.take("113", "k1", f"auto:{n}", hour) for n in range(10)))
    assert taken.count(True) == 1
    winner = f"auto:{taken.index(True)}"
    # The winner's own answer may go again (a redelivery: the same answer, sent once by its id);
    # another answer may not, on that line; on another line it may.
    assert await senders.take("113", "k1", winner, hour)
    assert not await senders.take("113", "k1", "auto:later", hour)
    assert await senders.take("dv", "k1", "auto:dv", hour)
    # A period that is over frees the sender, and the sweep deletes what has lapsed.
    assert await senders.take("113", "k2", "auto:a", timedelta(0))
    assert await senders.take("113", "k2", "auto:b", hour)
    assert await senders.prune(utcnow() + 2 * hour) == 3
    assert await senders.records.count_documents({}) == 0
    # Keyed by the keyed hash the caller gives, never by an address.
    assert await senders.take("113", "k3", "auto:c", hour)
    assert [d["_id"] async for d in senders.records.find({})] == ["113:k3"]


# --- what the gateway sees and sends ----------------------------------------------------------


class Events:
    """Every live event a consultant's console receives, kept, to be counted at any time."""

    def __init__(self, who: Consultant) -> None:
        self.who = who
        self.seen: list[dict[str, Any]] = []
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        assert self.who.events is not None
        async for msg in self.who.events:
            assert msg.type is aiohttp.WSMsgType.TEXT, msg
            frame = json.loads(msg.data)
            if frame.get("type") == "event":
                async with self._changed:
                    self.seen.append(frame)
                    self._changed.notify_all()

    def threads_queued(self) -> set[str]:
        return {e["thread_id"] for e in self.seen if e["name"] == "ThreadQueued"}

    def messages_received(self) -> set[str]:
        return {e["message_id"] for e in self.seen if e["name"] == "MessageReceived"}

    async def until(self, done: Callable[[], bool], within: float) -> None:
        async def wait() -> None:
            async with self._changed:
                await self._changed.wait_for(done)

        await asyncio.wait_for(wait(), within)

    @contextlib.asynccontextmanager
    async def kept(self) -> AsyncIterator[Events]:
        self._task = asyncio.create_task(self._read())
        try:
            yield self
        finally:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def bot_messages(db: Any) -> list[dict[str, Any]]:
    return [m async for m in db["messages"].find({"direction": "out", "author": "bot"})]


ROBOT_HEADERS = [
    ("Auto-Submitted", "auto-replied"),
    ("Auto-Submitted", "auto-generated"),
    ("Precedence", "bulk"),
    ("Precedence", "junk"),
    ("Precedence", "list"),
    ("Precedence", "auto_reply"),
    ("X-Autoreply", "yes"),
    ("List-Id", "<news.example.org>"),
    ("List-Unsubscribe", "<mailto:leave@example.org>"),
]


async def test_mail_marked_as_a_robots_gets_no_automatic_answer(gateway: Gateway) -> None:
    sofia = await supervisor(gateway)
    client, db = database(gateway)
    inbox = Mailbox("127.0.0.1", gateway.urls.imap_port, gateway.line_mailbox)
    robots = []
    for n, (name, value) in enumerate(ROBOT_HEADERS):
        msg = message_from_bytes(
            mail(f"robot{n}@example.org", "h@demo.test", "s", "auto", new_message_id()), policy=policy.default
        )
        msg[name] = value
        robots.append(msg.as_bytes())
    # One mail from a person beside them: it is answered, so "no answer" is not for lack of one.
    person = mail("person@example.org", "h@demo.test", "s", "help", new_message_id())
    try:
        async with Events(sofia).kept() as events:
            await inbox.append_all([*robots, person])
            # Each one is a thread; its automatic answer, if any, is stored before it is announced.
            await events.until(lambda: len(events.threads_queued()) == len(robots) + 1, within=60)
        answered = {m["thread_id"] for m in await bot_messages(db)}
        person_thread = await db["messages"].find_one({"direction": "in", "email_kind": "person"})
        assert answered == {person_thread["thread_id"]}
        kinds = sorted([m.get("email_kind") async for m in db["messages"].find({"direction": "in"})])
        assert kinds == sorted(["auto_reply"] * 4 + ["bulk"] * 5 + ["person"])
    finally:
        await sofia.close()
        await client.close()


# --- two auto-responders against the gateway -------------------------------------------------


@dataclass
class AutoResponder:
    """A mailbox with an automatic responder, as mail providers offer: it answers every mail it
    receives (an "out of office"), by SMTP through the local relay, addressed to the mail's
    Reply-To or From: the line's public address, which ``line_mailbox`` stands for here (in
    production that address is the line's mailbox). ``marks_itself``: a well-behaved one,
    which says ``Auto-Submitted: auto-replied`` and cites the mail it answers (RFC 3834 3.1.5,
    5); otherwise it does neither, so each of its answers looks to us like a person's new mail.
    Neither looks at how our mail is marked: each answers everything."""

    user: str
    imap_port: int
    smtp_port: int
    line_mailbox: str
    marks_itself: bool
    received: list[EmailMessage] = field(default_factory=list)
    sent: int = 0
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def address(self) -> str:
        return f"{self.user}@demo.test"

    async def run(self) -> None:
        last = 0
        async with imap_session("127.0.0.1", self.imap_port, self.user) as imap:
            while True:
                assert (await imap.select("INBOX")).result == "OK"
                resp = await imap.uid("fetch", f"{last + 1}:*", "(UID BODY.PEEK[])")
                for uid, raw in parse_fetch(resp.lines):
                    if uid > last:
                        last = uid
                        await self._answer(message_from_bytes(raw, policy=policy.default))
                # Wait for the next mail (IDLE), re-checking at least every few seconds.
                idle = await imap.idle_start(timeout=5)
                await imap.wait_server_push(timeout=10)
                if imap.has_pending_idle():
                    imap.idle_done()
                await asyncio.wait_for(idle, 10)

    async def _answer(self, incoming: EmailMessage) -> None:
        reply = EmailMessage()
        reply["From"] = self.address
        reply["To"] = parseaddr(str(incoming.get("Reply-To") or incoming["From"]))[1]
        reply["Subject"] = "Out of office"
        reply["Message-ID"] = make_msgid(domain="responder.example")
        if self.marks_itself:
            reply["Auto-Submitted"] = "auto-replied"
            reply["In-Reply-To"] = str(incoming["Message-ID"])
            reply["References"] = str(incoming["Message-ID"])
        reply.set_content("I am away until next month.")
        await aiosmtplib.send(
            reply, hostname="127.0.0.1", port=self.smtp_port, recipients=[f"{self.line_mailbox}@demo.test"]
        )
        async with self.changed:
            self.received.append(incoming)
            self.sent += 1
            self.changed.notify_all()

    async def until_answered(self, count: int, within: float) -> None:
        async def wait() -> None:
            async with self.changed:
                await self.changed.wait_for(lambda: self.sent >= count)

        await asyncio.wait_for(wait(), within)


@contextlib.asynccontextmanager
async def running(*responders: AutoResponder) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(r.run()) for r in responders]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest.mark.slow
async def test_two_auto_responders_end_quiet_after_a_bounded_number_of_mails(gateway: Gateway) -> None:
    name = gateway.name
    smtp, imap = gateway.urls.smtp_port, gateway.urls.imap_port
    polite = AutoResponder(f"{name}-polite", imap, smtp, gateway.line_mailbox, marks_itself=True)
    blind = AutoResponder(f"{name}-blind", imap, smtp, gateway.line_mailbox, marks_itself=False)
    line_address = f"{gateway.line_mailbox}@demo.test"
    sofia = await supervisor(gateway)
    client, db = database(gateway)
    inbox = Mailbox("127.0.0.1", imap, gateway.line_mailbox)
    try:
        async with Events(sofia).kept() as events, running(polite, blind):
            # Someone writes from each address (whose provider then answers our mail by itself).
            for who in (polite, blind):
                await inbox.append(
                    mail(who.address, line_address, f"from {who.user}", "help", new_message_id())
                )
            await events.until(lambda: len(events.threads_queued()) == 2, within=60)
            firsts = {}
            for thread_id in events.threads_queued():
                status, thread = await sofia.call("GET", f"/api/threads/{thread_id}")
                assert status == 200, thread
                firsts[thread["subject"]] = thread_id
            # A consultant answers the blind responder's first thread, once.
            blind_first = firsts[f"from {blind.user}"]
            assert (await sofia.call("POST", f"/api/threads/{blind_first}/claim"))[0] == 200
            status, body = await sofia.call(
                "POST",
                f"/api/threads/{blind_first}/messages",
                {"text": "We are here."},
                {"Idempotency-Key": uuid.uuid4().hex},
            )
            assert status == 202, body

            # What the rules allow, for each sender: one automatic answer in the period (to the
            # mail that started its first thread); the consultant's reply; nothing to a robot.
            automatic_per_sender = 1
            to_polite = automatic_per_sender
            to_blind = automatic_per_sender + 1  # and the consultant's reply
            # Each responder answers each of those. The polite one's answers cite ours and
            # come from the thread's address: they join its thread, marked as a robot's. Each
            # of the blind one's starts a thread of its own, whose sender had its answer.
            threads = 2 + to_blind
            joined = to_polite
            await polite.until_answered(to_polite, within=60)
            await blind.until_answered(to_blind, within=60)
            await events.until(
                lambda: len(events.threads_queued()) >= threads and len(events.messages_received()) >= joined,
                within=60,
            )
            # Quiet: every mail either side sent is in, and handled (a mail's automatic answer is
            # stored before its thread is announced); we stored nothing more to send, and each
            # mail of ours reached its responder, which answered it. So no mail is on its way.
            outbound = [m async for m in db["messages"].find({"direction": "out"})]
            assert len(outbound) == to_polite + to_blind
            assert len(await bot_messages(db)) == 2 * automatic_per_sender
            assert await db["messages"].count_documents({"direction": "in"}) == 2 + to_polite + to_blind
            assert (len(polite.received), len(blind.received)) == (to_polite, to_blind)
            assert len(events.threads_queued()) == threads
            assert await db["threads"].count_documents({}) == threads

        # Our automatic answers say so; the consultant's reply does not.
        marks = sorted(str(m.get("Auto-Submitted", "")) for m in [*polite.received, *blind.received])
        assert marks == ["", "auto-replied", "auto-replied"]
        # The consultant sees each first mail as a thread: the two people's, and each mail of the
        # blind responder (the polite one's are robot messages in its first thread).
        polite_first = firsts[f"from {polite.user}"]
        status, thread = await sofia.call("GET", f"/api/threads/{polite_first}")
        assert status == 200 and [m["direction"] for m in thread["messages"]] == ["in", "out", "in"]
        kinds = [m.get("email_kind") async for m in db["messages"].find({"direction": "in"})]
        assert kinds.count("auto_reply") == to_polite and kinds.count("person") == 2 + to_blind
        limited = [line for line in gateway.logs().splitlines() if "auto_answer_limited" in line]
        assert len(limited) == to_blind
    finally:
        await sofia.close()
        await client.close()
