"""The broker module against the real RabbitMQ: a publish that no queue takes fails (so a
message is never dropped silently), except a console event nobody is listening for; a busy
database is waited for without spending a message's delivery attempts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import structlog
from aio_pika.abc import AbstractIncomingMessage
from aio_pika.exceptions import AMQPError
from prometheus_client import CollectorRegistry
from pymongo.errors import OperationFailure

from deploy.local.stack import LocalStack
from shared import topology
from shared.broker import Broker, BrokerMetrics
from shared.envelope import Channel, ConsoleEvent, Envelope, utcnow
from tests.reliability.ledger import chat_message, new_session


@pytest.fixture
async def broker(stack: LocalStack) -> AsyncIterator[Broker]:
    b = Broker(
        stack.add_vhost(f"broker-{uuid.uuid4().hex[:8]}"), 10, BrokerMetrics(CollectorRegistry()), "test"
    )
    await b.connect()
    try:
        yield b
    finally:
        await b.close()


async def test_an_inbound_message_no_queue_takes_fails_its_publish(broker: Broker) -> None:
    message = chat_message(new_session(), 1)
    key = topology.inbound_key(Channel.CHAT, "dv")
    await broker.publish(message, topology.INBOUND, key)  # the work queue takes it
    queue = broker.topology.queues[topology.DISPATCHER_INBOUND.name]
    assert (await queue.declare()).message_count == 1
    await queue.delete(if_unused=False, if_empty=False)  # an operator deleted the queue
    with pytest.raises(AMQPError):
        await broker.publish(message, topology.INBOUND, key)


async def test_a_console_event_with_no_console_listening_is_not_an_error(broker: Broker) -> None:
    event = ConsoleEvent(name="MessageReceived", thread_id="t", at=utcnow(), queue="gp-dv", line="dv")
    await broker.publish(event, topology.EVENTS, topology.event_key(event.name))
    assert broker.is_ready()


async def test_a_busy_database_is_retried_in_place_without_spending_delivery_attempts(
    broker: Broker,
) -> None:
    """The stand-in's SQLITE_BUSY (any transient database error on MongoDB alike) more times
    than the delivery limit: the message is handled once it passes, never dead-lettered, and
    the wait costs one warning line, no traceback."""
    calls = 0
    handled = asyncio.Event()

    async def handler(envelope: Envelope, message: AbstractIncomingMessage) -> None:
        nonlocal calls
        calls += 1
        if calls <= topology.DELIVERY_LIMIT + 1:
            raise OperationFailure("database is locked (5) (SQLITE_BUSY)", 1)
        handled.set()

    queue = broker.topology.queues[topology.DISPATCHER_INBOUND.name]
    message = chat_message(new_session(), 1)
    with structlog.testing.capture_logs() as logs:
        await broker.consume(queue, handler)
        await broker.publish(message, topology.INBOUND, topology.inbound_key(Channel.CHAT, "dv"))
        await asyncio.wait_for(handled.wait(), 60)
        await broker.stop_consuming(5)
    dead = await broker.channel.declare_queue(topology.dead_queue(queue.name), passive=True)
    assert dead.declaration_result.message_count == 0
    assert (await queue.declare()).message_count == 0  # acked
    assert calls == topology.DELIVERY_LIMIT + 2
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["dependency_unavailable_retrying"]
    assert not any("exc_info" in e or e["event"] == "handler_failed" for e in logs)


async def test_a_failure_of_the_message_itself_still_spends_its_attempts(broker: Broker) -> None:
    calls = 0
    dead_lettered = asyncio.Event()

    async def handler(envelope: Envelope, message: AbstractIncomingMessage) -> None:
        nonlocal calls
        calls += 1
        raise ValueError("a bug this message meets")

    async def on_dead(message: AbstractIncomingMessage) -> None:
        await message.ack()
        dead_lettered.set()

    queue = broker.topology.queues[topology.DISPATCHER_INBOUND.name]
    dead = await broker.channel.declare_queue(topology.dead_queue(queue.name), passive=True)
    await dead.consume(on_dead)
    await broker.consume(queue, handler)
    await broker.publish(
        chat_message(new_session(), 1), topology.INBOUND, topology.inbound_key(Channel.CHAT, "dv")
    )
    await asyncio.wait_for(dead_lettered.wait(), 60)
    await broker.stop_consuming(5)
    assert calls == topology.DELIVERY_LIMIT + 1  # the first delivery and DELIVERY_LIMIT more
