"""Fault F1 of QUALITY.md 2, short form: RabbitMQ killed (-9), or stopped gracefully as an
upgrade would, under chat and mail traffic, then started again.

The ledger: every chat frame and every mail carries a unique id; at the end each is counted
as lost (sent, never stored) or visibly duplicated (stored twice). Both must be 0, and every
channel must flow again within 30 s of the broker's return without restarting any service:
a mail appended and a chat message sent after the restart are stored within that time, every
service's ``/readyz`` answers 200 again, and the service processes are the ones that started.
The canary that every message carries is found 0 times in the services' logs.

Replies too: a consultant answers a chat and a mail thread every second before, during and
after the outage. Each reply is accepted (202, stored; the outbox publishes it once the broker
is back), each chat reply is shown to its client, and each mail reply is in the client's
mailbox exactly once (its own Message-ID).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from email import message_from_bytes
from typing import Any

import aiohttp
import pytest

from conversations.identity import session_thread_key, thread_id_for
from deploy.local.services import ready
from services.chat_ingest.ws import session_id_for
from shared.envelope import Channel
from tests.conftest import Gateway
from tests.integration.chat_client import ChatClient
from tests.integration.email_support import database, supervisor
from tests.integration.helpers import Consultant, Mailbox, mail, new_message_id
from tests.reliability.ledger import CANARY

pytestmark = pytest.mark.slow

CHAT_CLIENTS = 3
OUTAGE_SECONDS = 6.0  # how long the broker stays away (the injected fault)
FLOWING_WITHIN = 30.0  # QUALITY.md F1 / issue: every channel flows again within this
RESEND_AT_ONCE = 6  # refused frames a client sends again every 2 s (3 a second, inside 5)


class Traffic:
    """Chat clients and a mail sender that keep writing while the broker goes away."""

    def __init__(self, gateway: Gateway, http: aiohttp.ClientSession, canary: str) -> None:
        self.gateway, self.http, self.canary = gateway, http, canary
        self.inbox = Mailbox("127.0.0.1", gateway.urls.imap_port, gateway.line_mailbox)
        self.clients: list[ChatClient] = []
        self.frames: dict[str, ChatClient] = {}  # frame id -> its client
        self.mails: list[str] = []  # Message-IDs appended to the line's mailbox
        self.stop = asyncio.Event()

    async def open(self) -> None:
        for _ in range(CHAT_CLIENTS):
            c = ChatClient(self.http, self.gateway.chat_url)
            await c.start(line="dv")
            self.clients.append(c)

    async def say(self, c: ChatClient) -> str:
        fid = uuid.uuid4().hex
        self.frames[fid] = c
        await c.say(f"ledger {self.canary} {fid}", fid)
        return fid

    async def send_mail(self) -> str:
        mid = new_message_id()
        sender = f"c{uuid.uuid4().hex[:8]}@client.example"
        await self.inbox.append(mail(sender, "line@demo.test", "help", f"ledger {self.canary}", mid))
        self.mails.append(mid)
        return mid

    async def chat_loop(self) -> None:
        while not self.stop.is_set():
            for c in self.clients:
                await self.say(c)
            # Pacing of the offered load (one message a second per client, well inside the
            # per-socket budget of 5 frames a second), not a wait for an event.
            await asyncio.sleep(1.0)

    async def mail_loop(self) -> None:
        while not self.stop.is_set():
            await self.send_mail()
            await asyncio.sleep(0.5)  # pacing of the offered load

    async def resend_refused(self) -> None:
        """What the widget does with messages the server could not take: send them again, a
        few at a time (inside the socket's frame budget); a closed socket is resumed."""
        for c in self.clients:
            if not c.connected:
                await c.resume()  # resends what is pending itself
                continue
            for fid, text in list(c.pending.items())[:RESEND_AT_ONCE]:
                assert c.ws is not None
                await c.ws.send_json({"type": "message", "id": fid, "text": text})

    async def stored(self) -> tuple[Counter[str], Counter[str]]:
        """(chat frame source id -> copies stored, mail Message-ID -> copies stored)."""
        client, db = database(self.gateway)
        try:
            chat = Counter[str]()
            email = Counter[str]()
            async for m in db["messages"].find({"direction": "in"}, {"source_id": 1, "email_message_id": 1}):
                if m.get("email_message_id"):
                    email[m["email_message_id"]] += 1
                else:
                    chat[m["source_id"]] += 1
            return chat, email
        finally:
            await client.close()

    def chat_source(self, fid: str) -> str:
        return f"chat:{session_id_for(self.frames[fid].token or '')}:{fid}"

    async def ledger(self) -> dict[str, int]:
        chat, email = await self.stored()
        sources = [self.chat_source(fid) for fid in self.frames]
        return {
            "chat_sent": len(sources),
            "chat_lost": sum(1 for s in sources if chat[s] == 0),
            "chat_duplicated": sum(1 for s in sources if chat[s] > 1),
            "mail_sent": len(self.mails),
            "mail_lost": sum(1 for m in self.mails if email[m] == 0),
            "mail_duplicated": sum(1 for m in self.mails if email[m] > 1),
        }

    async def until_stored(self, chat_frames: list[str], mails: list[str], within: float) -> float:
        """Seconds until these frames and mails are all stored (checked twice a second: the
        database is another process's, it offers nothing to await)."""
        began = time.monotonic()
        rounds = 0
        while True:
            chat, email = await self.stored()
            if all(chat[self.chat_source(f)] for f in chat_frames) and all(email[m] for m in mails):
                return time.monotonic() - began
            assert time.monotonic() - began < within, "not stored in time"
            if rounds % 4 == 0:
                await self.resend_refused()
            rounds += 1
            await asyncio.sleep(0.5)


class Replies:
    """A consultant answering one chat and one mail thread every second, whatever the broker does."""

    def __init__(self, gateway: Gateway, who: Consultant, chat: ChatClient) -> None:
        self.gateway, self.who, self.chat = gateway, who, chat
        self.client_box = Mailbox("127.0.0.1", gateway.urls.imap_port, gateway.client_mailbox)
        self.threads: dict[str, str] = {}  # channel -> claimed thread id
        self.sent: dict[str, list[str]] = {"chat": [], "email": []}  # channel -> reply ids
        self.refused: list[int] = []  # statuses other than 202
        self.stop = asyncio.Event()

    async def claim(self, traffic: Traffic) -> None:
        """Claim the chat client's thread, and the thread of a mail from the client's mailbox."""
        mid = new_message_id()
        client_address = f"{self.gateway.client_mailbox}@demo.test"
        await traffic.inbox.append(mail(client_address, "line@demo.test", "help", f"ledger {CANARY}", mid))
        await traffic.until_stored([], [mid], 60)
        session = session_id_for(self.chat.token or "")
        self.threads["chat"] = thread_id_for(session_thread_key(Channel.CHAT, session))
        mongo, db = database(self.gateway)
        try:
            found = await db["messages"].find_one({"email_message_id": mid}, {"thread_id": 1})
        finally:
            await mongo.close()
        assert found is not None
        self.threads["email"] = found["thread_id"]
        for thread_id in self.threads.values():
            status, body = await self.who.call("POST", f"/api/threads/{thread_id}/claim")
            assert status == 200, body

    async def loop(self) -> None:
        while not self.stop.is_set():
            for channel, thread_id in self.threads.items():
                status, body = await self.who.call(
                    "POST",
                    f"/api/threads/{thread_id}/messages",
                    {"text": f"answer {CANARY}"},
                    {"Idempotency-Key": uuid.uuid4().hex},
                )
                if status == 202:
                    self.sent[channel].append(body["id"])
                else:
                    self.refused.append(status)
            await asyncio.sleep(1.0)  # pacing of the consultant's replies

    async def ledger(self, within: float) -> dict[str, int]:
        """Wait until every reply reached its client (or ``within`` passed); count them."""
        chat_ids = self.sent["chat"]
        try:
            await self.chat.wait(lambda: all(r in self.chat.shown for r in chat_ids), within=within)
        except TimeoutError:
            pass  # counted as lost below
        mongo, db = database(self.gateway)
        try:
            wanted = {
                m["email_message_id"]
                async for m in db["messages"].find(
                    {"_id": {"$in": self.sent["email"]}}, {"email_message_id": 1}
                )
            }
        finally:
            await mongo.close()
        arrived: Counter[str] = Counter()
        began = time.monotonic()
        while time.monotonic() - began < within:
            raws = await self.client_box.wait_for_mail(1, within=within)
            arrived = Counter(str(message_from_bytes(r).get("Message-ID", "")) for r in raws)
            if all(arrived[m] for m in wanted):
                break
            await asyncio.sleep(1.0)  # another process's delivery: polled
        return {
            "replies_refused": len(self.refused),
            "chat_replies": len(chat_ids),
            "chat_replies_lost": sum(1 for r in chat_ids if r not in self.chat.shown),
            "mail_replies": len(wanted),
            "mail_replies_lost": sum(1 for m in wanted if arrived[m] == 0),
            "mail_replies_duplicated": sum(1 for m in wanted if arrived[m] > 1),
        }


async def all_ready(gateway: Gateway, within: float) -> float:
    began = time.monotonic()
    while not all(await asyncio.gather(*(asyncio.to_thread(ready, p) for p in gateway.ports.values()))):
        assert time.monotonic() - began < within, "a service did not become ready again"
        await asyncio.sleep(0.5)  # another process's readiness: polled
    return time.monotonic() - began


# The line's send rate is not under test here (test_email_send_limit.py): at the default 60 a
# minute, the acknowledgements of a longer outage's mail and the replies queue up for longer
# than the ledger waits, and a reply still waiting its turn would count as lost.
@pytest.mark.service_env({"STORE_OUTBOX_SECONDS": "1", "EMAIL_INGEST_SEND_PER_MINUTE": "600"})
@pytest.mark.parametrize("how", ["kill", "graceful"])
async def test_f1_broker_restart_under_chat_and_mail_loses_and_doubles_nothing(
    gateway: Gateway, how: str
) -> None:
    canary = CANARY
    pids = {key: p.pid for key, p in gateway.processes.procs.items()}
    sofia = await supervisor(gateway)
    async with aiohttp.ClientSession() as http:
        traffic = Traffic(gateway, http, canary)
        await traffic.open()
        # Flowing before the fault: a mail and a chat message are stored.
        first_chat, first_mail = await traffic.say(traffic.clients[0]), await traffic.send_mail()
        await traffic.until_stored([first_chat], [first_mail], 60)
        replies = Replies(gateway, sofia, traffic.clients[0])
        await replies.claim(traffic)
        loops = [asyncio.create_task(t) for t in (traffic.chat_loop(), traffic.mail_loop(), replies.loop())]
        try:
            if how == "kill":
                await asyncio.to_thread(gateway.stack.kill_rabbitmq)
            else:
                await asyncio.to_thread(gateway.stack.stop_rabbitmq)
            await asyncio.sleep(OUTAGE_SECONDS)  # the length of the injected outage
            await asyncio.to_thread(gateway.stack.start_rabbitmq)
            # The broker is back: a mail and a chat message sent now flow within the bound.
            probe_chat = await traffic.say(traffic.clients[-1])
            probe_mail = await traffic.send_mail()
            flowing = await traffic.until_stored([probe_chat], [probe_mail], FLOWING_WITHIN)
            readiness = await all_ready(gateway, FLOWING_WITHIN)
        finally:
            traffic.stop.set()
            replies.stop.set()
            await asyncio.gather(*loops)
        # Everything sent, before, during and after the outage, ends up stored once.
        await traffic.until_stored(list(traffic.frames), traffic.mails, 120)
        report: dict[str, Any] = await traffic.ledger()
        report |= await replies.ledger(120)
        for c in traffic.clients:
            await c.drop()
    await sofia.close()
    print(f"F1 ({how}) ledger: {report}; flowing again after {flowing:.1f} s, ready after {readiness:.1f} s")
    assert report["chat_lost"] == report["chat_duplicated"] == 0, report
    assert report["mail_lost"] == report["mail_duplicated"] == 0, report
    assert report["chat_sent"] > 20 and report["mail_sent"] > 5, report
    assert report["replies_refused"] == 0, (report, replies.refused)
    assert report["chat_replies"] > 5 and report["mail_replies"] > 5, report
    assert report["chat_replies_lost"] == report["mail_replies_lost"] == 0, report
    assert report["mail_replies_duplicated"] == 0, report
    # No service was restarted to get there.
    assert {key: p.pid for key, p in gateway.processes.procs.items()} == pids
    assert all(p.poll() is None for p in gateway.processes.procs.values())
    assert canary not in gateway.logs()
