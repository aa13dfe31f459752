"""The local server stack (deploy/local/stack.py) runs real servers that do what the suite relies on.

One stack for the module (start ~5 s, stop ~6 s), on free ports in a tmp dir. The last test stops it
and checks every port is released; should the tests run in another order, the ``local_stack`` fixture
starts it again.
"""

from __future__ import annotations

import asyncio
import imaplib
import smtplib
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from email.message import EmailMessage

import aio_pika
import pymongo
import pytest
from pymongo.errors import DuplicateKeyError

from deploy.local.stack import REPO_ROOT, LocalStack, StackPorts
from tests.integration.helpers import imap_session


@pytest.fixture(scope="module")
def module_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(tmp_path_factory.mktemp("stack"), StackPorts.free(), name="t") as stack:
        yield stack


@pytest.fixture
def local_stack(module_stack: LocalStack) -> LocalStack:
    module_stack.start()  # a no-op while it runs
    return module_stack


def accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_demo_ports_are_the_documented_ones() -> None:
    ports = StackPorts.demo()
    assert (ports.amqp, ports.rabbit_mgmt, ports.mongo, ports.imap, ports.smtp) == (
        5672,
        15672,
        27017,
        1143,
        1025,
    )
    assert (ports.lmtp, ports.amqp_dist) == (24024, 25672)


def test_free_ports_are_distinct_and_unused() -> None:
    values = list(asdict(StackPorts.free()).values())
    assert len(set(values)) == len(values)
    assert not any(accepts_connections(port) for port in values)


async def test_rabbitmq_accepts_amqp_and_declares_quorum_queues(local_stack: LocalStack) -> None:
    name = unique("quorum")
    connection = await aio_pika.connect(local_stack.amqp_url)
    async with connection:
        channel = await connection.channel()  # publisher confirms are on by default
        queue = await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
        # Really a quorum queue (Raft-replicated), not a classic one that ignored the argument.
        listed = await asyncio.to_thread(
            local_stack.rabbitmqctl, "list_queues", "--quiet", "--no-table-headers", "name", "type"
        )
        assert f"{name}\tquorum" in listed.splitlines()
        await channel.default_exchange.publish(
            aio_pika.Message(b"ping", delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=name,
        )
        async with queue.iterator() as messages:
            async for message in messages:
                async with message.process():
                    assert message.body == b"ping"
                break
        await queue.delete(if_unused=False, if_empty=False)


async def test_add_vhost_gives_a_working_isolated_vhost(local_stack: LocalStack) -> None:
    vhost = unique("test-vhost")
    url = await asyncio.to_thread(local_stack.add_vhost, vhost)
    assert url.endswith(f"/{vhost}")
    try:
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()
            await channel.declare_queue("work", durable=True, arguments={"x-queue-type": "quorum"})
        ctl = local_stack.rabbitmqctl
        in_vhost = await asyncio.to_thread(ctl, "list_queues", "-p", vhost, "--quiet", "name")
        in_default = await asyncio.to_thread(ctl, "list_queues", "-p", "/", "--quiet", "name")
        assert "work" in in_vhost.split()
        assert "work" not in in_default.split()
    finally:
        await asyncio.to_thread(local_stack.delete_vhost, vhost)


def test_ferretdb_answers_ping_and_enforces_unique_index(local_stack: LocalStack) -> None:
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
        local_stack.mongo_url, serverSelectionTimeoutMS=5000
    )
    db_name = unique("t").replace("-", "_")
    try:
        assert client.admin.command("ping")["ok"] == 1.0
        collection = client[db_name]["threads"]
        collection.create_index("message_id", unique=True)
        collection.insert_one({"message_id": "<a@demo.test>"})
        with pytest.raises(DuplicateKeyError):
            collection.insert_one({"message_id": "<a@demo.test>"})
        assert collection.count_documents({}) == 1
    finally:
        client.drop_database(db_name)
        client.close()


def make_mail(to: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = "sender@example.org"
    mail["To"] = to
    mail["Subject"] = "Проверка доставки"  # non-ASCII header, as real clients send
    mail["Message-ID"] = f"<{uuid.uuid4().hex}@example.org>"
    # 7bit body with a line holding a single dot: SMTP and LMTP dot-stuffing must undo each other.
    mail.set_content("Hello.\n.\nThe line above holds a single dot.\n")
    return mail


def wire_bytes(mail: EmailMessage) -> bytes:
    """The message as smtplib's send_message puts it on the wire."""
    return mail.as_bytes(policy=mail.policy.clone(linesep="\r\n"))


def send(stack: LocalStack, mail: EmailMessage) -> None:
    with smtplib.SMTP(stack.smtp_host, stack.smtp_port, timeout=10) as smtp:
        smtp.send_message(mail)


async def test_mail_sent_over_smtp_arrives_in_imap_and_idle_reports_it(local_stack: LocalStack) -> None:
    mail = make_mail(f"client@{local_stack.mail_domain}")
    async with imap_session(local_stack.imap_host, local_stack.imap_port, "client") as imap:
        assert imap.has_capability("IDLE")
        assert (await imap.select("INBOX")).result == "OK"

        idle = await imap.idle_start(timeout=30)
        await asyncio.to_thread(send, local_stack, mail)
        # IDLE (RFC 2177) pushes the new message count; await it instead of polling.
        async with asyncio.timeout(15):
            while not any(line.endswith(b"EXISTS") for line in await imap.wait_server_push()):
                pass
        imap.idle_done()
        await asyncio.wait_for(idle, 10)

        found = await imap.search("HEADER", "Message-ID", mail["Message-ID"], charset=None)
        assert found.result == "OK"
        numbers = found.lines[0].split()
        assert len(numbers) == 1
        fetched = await imap.fetch(numbers[0].decode(), "(BODY.PEEK[])")
        assert fetched.result == "OK"
        body = bytes(fetched.lines[1])
        # Delivered unchanged: Dovecot only prepends its trace headers (Return-Path, Received, ...).
        assert body.endswith(wire_bytes(mail))


def test_imap_login_with_domain_maps_to_the_same_user(local_stack: LocalStack) -> None:
    mail = make_mail(f"client@{local_stack.mail_domain}")
    send(local_stack, mail)  # 250 means LMTP already stored it
    with imaplib.IMAP4(local_stack.imap_host, local_stack.imap_port, timeout=10) as imap:
        imap.login(f"client@{local_stack.mail_domain}", "client")
        imap.select("INBOX", readonly=True)
        status, data = imap.search(None, "HEADER", "Message-ID", mail["Message-ID"])
        assert status == "OK" and len(data[0].split()) == 1


def test_wrong_password_is_refused(local_stack: LocalStack) -> None:
    with imaplib.IMAP4(local_stack.imap_host, local_stack.imap_port, timeout=10) as imap:
        with pytest.raises(imaplib.IMAP4.error):
            imap.login("client", "not-client")


def test_smtp_relay_rejects_temporarily_when_lmtp_is_down() -> None:
    ports = StackPorts.free()  # nothing listens on ports.lmtp
    relay = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "deploy.local.smtp_relay",
            "--port",
            str(ports.smtp),
            "--lmtp-port",
            str(ports.lmtp),
        ],
        cwd=REPO_ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert relay.stderr is not None
    try:
        assert "listening on" in relay.stderr.readline()  # logged once the socket is bound
        mail = make_mail("client@demo.test")
        with smtplib.SMTP("127.0.0.1", ports.smtp, timeout=10) as smtp:
            with pytest.raises(smtplib.SMTPDataError) as rejected:
                smtp.send_message(mail)
        assert rejected.value.smtp_code == 451  # temporary: the client keeps the mail and retries
    finally:
        relay.terminate()
        _, log = relay.communicate(timeout=10)
    assert "not delivered" in log
    assert mail["Message-ID"] not in log and "client@" not in log  # no mail data in the log


@pytest.mark.slow
async def test_rabbitmq_survives_kill_and_restart(local_stack: LocalStack) -> None:
    name = unique("durable")
    connection = await aio_pika.connect(local_stack.amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
        await channel.default_exchange.publish(
            aio_pika.Message(b"kept", delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=name,
        )
    await asyncio.to_thread(local_stack.kill_rabbitmq)
    assert not accepts_connections(local_stack.ports.amqp)
    await asyncio.to_thread(local_stack.start_rabbitmq)
    connection = await aio_pika.connect(local_stack.amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
        message = await queue.get(timeout=10)
        assert message is not None and message.body == b"kept"
        await message.ack()
        await queue.delete(if_unused=False, if_empty=False)


def test_stop_releases_every_port(module_stack: LocalStack) -> None:
    module_stack.stop()
    assert not any(module_stack.running().values())
    listening = {
        label: port for label, port in asdict(module_stack.ports).items() if accepts_connections(port)
    }
    assert listening == {}
