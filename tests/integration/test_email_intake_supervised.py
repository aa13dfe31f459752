"""A mailbox's intake never stops silently (issue: supervised intake, per-mail isolation).

The watcher runs in this process, under the service's supervisor, against the session's real
Dovecot, FerretDB and RabbitMQ; the test takes the dispatcher's place on the inbound queue.
Where a test needs a failure nobody planned for (a parser bug met by one mail, a bug in the
synchronisation), it makes one pure function of ours raise: the servers stay real.
"""

from __future__ import annotations

import asyncio
import re
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import aiohttp
import pytest
import structlog
from aio_pika.abc import AbstractIncomingMessage
from aiohttp.test_utils import TestServer
from aioimaplib import IMAP4
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from conversations.vault import Vault
from deploy.local.services import new_master_key
from deploy.local.stack import LocalStack
from services.email_ingest import imap as imap_module
from services.email_ingest.app import create_app
from services.email_ingest.imap import ImapMetrics, Mailbox, MailboxWatcher
from services.email_ingest.inbound import Unencodable, source_id_for
from services.email_ingest.rawstore import QUARANTINED, RawStore
from services.email_ingest.settings import EmailIngestSettings
from shared import topology
from shared.broker import Broker, BrokerMetrics
from shared.envelope import Envelope, InboundMessage
from shared.health import Health
from shared.supervise import Supervisor
from shared.transit import for_master_keys
from tests.integration.helpers import Mailbox as DovecotMailbox
from tests.integration.helpers import imap_session, mail, new_message_id

CANARY = "CANARY-what-a-person-wrote"


@dataclass
class Intake:
    """One mailbox watched by a supervised watcher; what reaches the inbound queue."""

    stack: LocalStack
    name: str
    inbox: DovecotMailbox
    raw: RawStore
    supervisor: Supervisor
    registry: CollectorRegistry
    received: dict[str, InboundMessage] = field(default_factory=dict)  # header Message-ID -> envelope
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def on_inbound(self, envelope: Envelope, message: AbstractIncomingMessage) -> None:
        assert isinstance(envelope, InboundMessage) and envelope.email is not None
        self.received[envelope.email.header_message_id or ""] = envelope
        async with self.changed:
            self.changed.notify_all()

    async def wait_received(self, message_id: str, within: float = 60) -> InboundMessage:
        async def wait() -> None:
            async with self.changed:
                await self.changed.wait_for(lambda: message_id in self.received)

        await asyncio.wait_for(wait(), within)
        return self.received[message_id]

    async def append(self, subject: str) -> str:
        mid = new_message_id()
        await self.inbox.append(mail("client@example.org", "line@demo.test", subject, f"help {CANARY}", mid))
        return mid

    def failures(self, error: str) -> float:
        task = f"imap-watcher {self.name}"
        value = self.registry.get_sample_value("hotline_task_failures_total", {"task": task, "error": error})
        return value or 0.0


@asynccontextmanager
async def watched(
    stack: LocalStack,
    prepare: Callable[[DovecotMailbox], Awaitable[None]] | None = None,
    seed: Callable[[Intake, EmailIngestSettings], Awaitable[None]] | None = None,
    **overrides: Any,
) -> AsyncIterator[Intake]:
    """A watcher of a new mailbox, started once ``prepare`` (if given) has filled it and
    ``seed`` (if given) has written what an earlier process of the service left in its
    database; settings ``overrides``."""
    name = "w" + uuid.uuid4().hex[:8]
    user = f"{name}-line"
    inbox = DovecotMailbox("127.0.0.1", stack.imap_port, user)
    if prepare is not None:  # before anything that would need cleaning up
        await prepare(inbox)
    amqp = stack.add_vhost(name)
    settings = EmailIngestSettings(
        amqp_url=amqp,
        mongo_url=stack.mongo_url,
        mongo_database=name,
        from_address="hotline@demo.test",
        master_key=new_master_key(),
        **overrides,
    )
    box = Mailbox(f"{user}@test", "113", "127.0.0.1", stack.imap_port, False, user, user)
    # The watcher's client, and the test's own for what it reads: a read of the test's that
    # shared the watcher's pool could make the watcher open a second connection, and a
    # watcher stopped while PyMongo opens one leaves that socket to the garbage collector
    # (PyMongo closes it on an error, not on a cancellation), which fails the test.
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_url, tz_aware=True)
    reader: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_url, tz_aware=True)
    db = client[name]
    registry = CollectorRegistry()
    broker = Broker(
        amqp, 100, BrokerMetrics(registry), "intake test", for_master_keys(settings.master_keys())
    )
    await broker.connect()
    vault = Vault(client, settings.key_vault_namespace(name), settings.master_keys())
    raw = RawStore(db, vault)
    await raw.ensure_indexes()
    supervisor = Supervisor(registry, Health(registry), backoff_initial=0.2, backoff_max=2)
    intake = Intake(stack, box.name, inbox, RawStore(reader[name], vault), supervisor, registry)
    try:
        if seed is not None:
            await seed(intake, settings)
        await broker.consume(broker.topology.queues[topology.DISPATCHER_INBOUND.name], intake.on_inbound)
        watcher = MailboxWatcher(box, settings, broker, db["imap_cursors"], raw, ImapMetrics(registry))
        supervisor.start(f"imap-watcher {box.name}", watcher.run, interval=60, intake=True)
        yield intake
    finally:
        await supervisor.stop()
        await broker.stop_consuming(5)
        await broker.close()
        await client.drop_database(name)
        await client.drop_database(f"{name}_keys")
        await client.close()
        await reader.close()
        stack.delete_vhost(name)


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (LookupError(f"cannot carry {CANARY}"), "handover_error:LookupError"),  # a bug of ours
        (Unencodable("subject"), "unencodable:subject"),  # the envelope's own check
    ],
)
async def test_one_mail_that_cannot_be_handed_over_is_quarantined_and_the_next_one_flows(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch, failure: Exception, reason: str
) -> None:
    real = imap_module.to_envelope

    def to_envelope(parsed: Any, **kw: Any) -> InboundMessage:
        if parsed.subject == "POISON":  # what this one mail meets
            raise failure
        return real(parsed, **kw)

    monkeypatch.setattr(imap_module, "to_envelope", to_envelope)
    with structlog.testing.capture_logs() as logs:
        async with watched(stack) as intake:
            poison = await intake.append("POISON")
            good = await intake.append("after it")
            await intake.wait_received(good)
            # As below: the failed mail's quarantine record may land after the good one is out.
            deadline = asyncio.get_running_loop().time() + 30
            while not (quarantined := await intake.raw.quarantined()):
                assert asyncio.get_running_loop().time() < deadline, "the failed mail was never quarantined"
                await asyncio.sleep(0.05)
            problems = intake.supervisor.problems()
    assert poison not in intake.received
    assert [q.get("reason") for q in quarantined] == [reason]
    assert quarantined[0]["status"] == QUARANTINED
    assert problems == {} and intake.failures(type(failure).__name__) == 0  # the watcher never stopped
    assert any(e["event"] == "mail_quarantined" for e in logs)
    assert CANARY not in repr(logs)


async def test_a_mail_the_database_refuses_for_good_is_quarantined_and_the_next_one_flows(
    stack: LocalStack,
) -> None:
    """The service stored a mail with an attachment (sealed under the mail's data key), handed
    it over and stopped before flagging it on the server (F7); then the person who wrote it
    asked for their data to be erased, which deletes that key. Fetched again, the mail's
    attachment cannot be sealed under a key that no longer exists: the vault refuses it, and
    will every time. The mail is quarantined with that reason, the watcher never stops and
    the next mail becomes a thread."""
    message_id = new_message_id()
    refused = EmailMessage()
    refused["From"], refused["To"] = "client@example.org", "line@demo.test"
    refused["Subject"], refused["Message-ID"] = "with a photo", message_id
    refused.set_content(f"help {CANARY}")
    refused.add_attachment(CANARY.encode() * 100, "application", "octet-stream", filename="photo.bin")
    raw = refused.as_bytes()

    async def prepare(inbox: DovecotMailbox) -> None:
        await inbox.append(raw)

    async def seed(intake: Intake, settings: EmailIngestSettings) -> None:
        # What the stopped process left, written through a vault of its own (as that process
        # had): the running watcher's vault has never seen the key.
        async with imap_session("127.0.0.1", stack.imap_port, intake.inbox.user) as imap:
            selected = await imap.select("INBOX")
        (uidvalidity,) = {
            int(m.group(1))
            for line in selected.lines
            if isinstance(line, bytes) and (m := re.search(rb"UIDVALIDITY (\d+)", line))
        }
        database = intake.raw.raw.database
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_url, tz_aware=True)
        vault = Vault(client, settings.key_vault_namespace(database.name), settings.master_keys())
        try:
            earlier = RawStore(client[database.name], vault)
            stored = await earlier.store(
                source_id_for(intake.name, uidvalidity, 1), intake.name, uidvalidity, 1, raw, None
            )
            assert stored.created
            await vault.erase([stored.doc["data_key"]])  # the erasure, as the store does it
        finally:
            await vault.close()
            await client.close()

    with structlog.testing.capture_logs() as logs:
        async with watched(stack, prepare, seed) as intake:
            good = await intake.append("after it")
            await intake.wait_received(good)
            # Fetched in one batch, the two mails are kept by tasks side by side: the good one
            # can be handed over before the refused one's quarantine record is written (the
            # batch is flagged only once both are done). That record is written by another
            # task into the database, with nothing to await: read until it is there (bounded).
            deadline = asyncio.get_running_loop().time() + 30
            while not (quarantined := await intake.raw.quarantined()):
                assert asyncio.get_running_loop().time() < deadline, "the refused mail was never quarantined"
                await asyncio.sleep(0.05)
            problems = intake.supervisor.problems()
            reconnects = intake.registry.get_sample_value(
                "hotline_imap_reconnects_total", {"reason": "database"}
            )
    assert message_id not in intake.received
    assert [(q["uid"], q["reason"]) for q in quarantined] == [(1, "database_refused:EncryptionError")]
    assert problems == {} and not reconnects  # the mailbox never waited on it
    assert any(e["event"] == "mail_quarantined" for e in logs)
    assert CANARY not in repr(logs)


async def test_a_watcher_that_meets_a_bug_is_restarted_and_the_mail_is_read(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = MailboxWatcher._sync
    calls = 0

    async def sync(self: MailboxWatcher, imap: IMAP4, uidvalidity: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 2:  # not the first synchronisation: the one after the first mail
            raise ZeroDivisionError(CANARY)
        return await real(self, imap, uidvalidity)

    monkeypatch.setattr(MailboxWatcher, "_sync", sync)
    with structlog.testing.capture_logs() as logs:
        async with watched(stack) as intake:
            first = await intake.append("first")
            await intake.wait_received(first)
            second = await intake.append("second")
            await intake.wait_received(second)
            failures = intake.failures("ZeroDivisionError")
    assert failures == 1
    (failed,) = [e for e in logs if e["event"] == "task_failed"]
    assert failed["error"] == "ZeroDivisionError" and "test_email_intake_supervised.py" in failed["where"]
    assert CANARY not in repr(logs)


@pytest.mark.slow
async def test_a_database_outage_costs_no_repeated_mailbox_logins(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    logins: list[str] = []
    real_login = IMAP4.login

    async def login(self: IMAP4, user: str, password: str) -> Any:
        logins.append(user)
        return await real_login(self, user, password)

    monkeypatch.setattr(IMAP4, "login", login)
    async with watched(stack) as intake:
        user = intake.inbox.user
        first = await intake.append("before")
        await intake.wait_received(first)
        await asyncio.to_thread(stack.kill_database)
        try:
            during = await intake.append("during")  # wakes the watcher, whose database is gone
            before = logins.count(user)  # the append above logs in as this user too
            # The length of the injected outage: long enough for several reconnects of a
            # watcher that would log in again each time (every ~4 s before this change).
            await asyncio.sleep(15)
            logins_during_outage = logins.count(user) - before
        finally:
            await asyncio.to_thread(stack.start_database)
        await intake.wait_received(during, within=90)
        logins_after = logins.count(user) - before
    assert logins_during_outage == 0, logins_during_outage
    assert logins_after == 1  # one login once the database answers again


async def test_a_mail_that_arrives_while_a_batch_is_handled_is_not_left_for_the_next_idle(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second mail is appended while the first is being parsed: the server announces it
    in the response to one of the batch's commands, not during IDLE. It must be read at once,
    not after the IDLE period (300 s by default)."""
    loop = asyncio.get_running_loop()
    parsing_first, second_appended = asyncio.Event(), threading.Event()
    real = imap_module._parse

    def parse(raw: bytes) -> Any:  # runs in the watcher's worker thread
        if b"Subject: first" in raw:
            loop.call_soon_threadsafe(parsing_first.set)
            second_appended.wait(30)
        return real(raw)

    monkeypatch.setattr(imap_module, "_parse", parse)
    async with watched(stack) as intake:
        first = await intake.append("first")
        await asyncio.wait_for(parsing_first.wait(), 60)
        second = await intake.append("second")
        second_appended.set()
        await intake.wait_received(first)
        await intake.wait_received(second, within=30)


async def test_readyz_names_a_mailbox_watcher_while_it_is_restarting(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service itself (create_app, its /readyz over HTTP): while its one mailbox watcher
    fails at every synchronisation and waits to be restarted, email_ingest is not ready and
    says which watcher; once the synchronisation works again it is ready again."""
    failing = True
    failed = asyncio.Event()
    real = MailboxWatcher._sync

    async def sync(self: MailboxWatcher, imap: IMAP4, uidvalidity: int) -> int:
        if failing:
            failed.set()
            raise ZeroDivisionError(CANARY)
        return await real(self, imap, uidvalidity)

    monkeypatch.setattr(MailboxWatcher, "_sync", sync)
    name = "r" + uuid.uuid4().hex[:8]
    user = f"{name}-line"
    settings = EmailIngestSettings(
        amqp_url=stack.add_vhost(name),
        mongo_url=stack.mongo_url,
        mongo_database=name,
        from_address="hotline@demo.test",
        master_key=new_master_key(),
        imap_host="127.0.0.1",
        imap_port=stack.imap_port,
        imap_tls=False,
        imap_user=user,
        imap_password=user,
        smtp_port=stack.smtp_port,
        smtp_security="none",
        reconnect_max_seconds=2,  # the supervisor's backoff ceiling: the recovery comes soon
    )
    check = f"task:imap-watcher {user}@127.0.0.1:{stack.imap_port}/INBOX"

    async def readiness(server: TestServer, session: aiohttp.ClientSession, status: int) -> dict[str, Any]:
        """Ask /readyz until it answers ``status`` (the state of a task is read, not pushed)."""
        async with asyncio.timeout(60):
            while True:
                async with session.get(server.make_url("/readyz")) as resp:
                    body: dict[str, Any] = await resp.json()
                    if resp.status == status:
                        return body
                await asyncio.sleep(0.05)

    try:
        with structlog.testing.capture_logs() as logs:
            async with TestServer(create_app(settings)) as server, aiohttp.ClientSession() as session:
                await asyncio.wait_for(failed.wait(), 60)
                down = await readiness(server, session, 503)
                failing = False
                up = await readiness(server, session, 200)
    finally:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_url)
        await client.drop_database(name)
        await client.drop_database(f"{name}_keys")
        await client.close()
        stack.delete_vhost(name)
    assert down["missing"] == [check], down
    assert down["checks"]["database"] is True and down["checks"]["broker"] is True
    task = check.removeprefix("task:")
    assert down["details"]["tasks"][task]["state"] == "restarting"
    assert up["checks"][check] is True and up["details"]["tasks"][task]["state"] == "running"
    assert any(e["event"] == "task_failed" and e["task"] == task for e in logs)
    assert CANARY not in repr(logs)
