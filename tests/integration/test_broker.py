"""The broker module against the real RabbitMQ: a publish that no queue takes fails (so a
message is never dropped silently), except a console event nobody is listening for."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from aio_pika.exceptions import AMQPError
from prometheus_client import CollectorRegistry

from deploy.local.stack import LocalStack
from shared import topology
from shared.broker import Broker, BrokerMetrics
from shared.envelope import Channel, ConsoleEvent, utcnow
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
