"""Messages on their way between services are sealed (shared/transit.py): whoever copies the
broker's disk, and not the master key, finds no one's words or address in its queues. The
services, with the key, still deliver every message."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import aiohttp

from deploy.local.stack import LocalStack
from shared import topology
from shared.transit import is_sealed
from tests.conftest import Gateway
from tests.integration.chat_client import ChatClient
from tests.integration.helpers import Consultant, Mailbox, mail, new_message_id
from tests.integration.test_vault import files_holding


async def queue_depth(amqp_url: str, queue: str, at_least: int, within: float = 30) -> list[bytes]:
    """Wait until ``queue`` holds ``at_least`` messages; return their bodies, left in the queue."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            declared = await channel.declare_queue(queue, passive=True)
            count = declared.declaration_result.message_count or 0
            if count >= at_least or loop.time() > deadline:
                break
            await asyncio.sleep(0.2)  # another process publishes: nothing here to await
        bodies = []
        while (message := await declared.get(fail=False, no_ack=False)) is not None:
            bodies.append(message.body)  # not acked: back in the queue when the channel closes
        return bodies


async def test_messages_in_the_queues_are_sealed_on_the_brokers_disk(
    gateway: Gateway, stack: LocalStack
) -> None:
    canary = "Transit-" + uuid.uuid4().hex
    address = f"{gateway.client_mailbox}@demo.test"
    # The dispatcher is stopped: what the intake publishes waits in its queue, on disk.
    assert gateway.processes.stop("dispatcher") == 0
    gateway.seed_demo_accounts()
    async with aiohttp.ClientSession() as http:
        chat = ChatClient(http, gateway.chat_url)
        await chat.start(line="dv", language="ru")
        await chat.say(f"{canary}-chat")
        await chat.wait(lambda: not chat.pending)  # acked: confirmed by the broker
        inbox = Mailbox("127.0.0.1", gateway.urls.imap_port, gateway.line_mailbox)
        await inbox.append(
            mail(
                address,
                f"{gateway.line_mailbox}@demo.test",
                f"{canary}-subject",
                f"{canary}-mail",
                new_message_id(),
            )
        )
        bodies = await queue_depth(gateway.urls.amqp_url, topology.DISPATCHER_INBOUND.name, 2)
        assert len(bodies) == 2 and all(is_sealed(b) for b in bodies)

        # A control: a plain message on a queue of the same broker is found on its disk, so the
        # search below sees what the broker wrote.
        control = ("Control-" + uuid.uuid4().hex).encode()
        connection = await aio_pika.connect(gateway.urls.amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            scratch = await channel.declare_queue(
                f"control-{uuid.uuid4().hex}", durable=True, arguments={"x-queue-type": "quorum"}
            )
            await channel.default_exchange.publish(
                aio_pika.Message(control, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=scratch.name,
            )
            assert files_holding(stack.root / "rabbitmq", control) != []
            await scratch.delete(if_unused=False, if_empty=False)
        for needle in (canary.encode(), address.encode()):
            assert files_holding(stack.root / "rabbitmq", needle) == [], needle

        # With the key, every message is delivered: the dispatcher opens and stores both.
        sofia = Consultant(gateway.store_url)
        await sofia.login("sofia", "sofia-demo")
        await sofia.open_events()
        try:
            gateway.processes.start("dispatcher", gateway.env["dispatcher"])
            gateway.processes.wait_ready(gateway.ports)
            threads = {
                (await sofia.wait_event(lambda e: e["name"] == "ThreadQueued"))["thread_id"] for _ in range(2)
            }
            texts = []
            for tid in threads:
                status, view = await sofia.call("GET", f"/api/threads/{tid}")
                assert status == 200
                texts += [m["text"] for m in view["messages"] if m["direction"] == "in"]
            assert sorted(texts) == [f"{canary}-chat", f"{canary}-mail"]
        finally:
            await sofia.close()
            await chat.drop()
