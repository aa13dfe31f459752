"""The broker topology, declared in one place.

Exchanges (all topic, durable):

- ``hotline.inbound``:  ``inbound.<channel>.<line>``, clients' messages -> dispatcher
- ``hotline.outbound``: ``outbound.<channel>.<line>``, replies -> email_ingest / chat_ingest
- ``hotline.events``:   ``event.<Name>`` console events, ``delivery.<status>`` delivery reports
- ``hotline.dlx``:      dead letters, routed by the name of the queue they died in

Work queues are quorum queues (replicated when the broker is clustered, and with a
delivery limit, so a message that keeps failing is dead-lettered instead of looping).
Each has a ``<queue>.dead`` queue. Per-replica queues (chat sockets, console events)
are exclusive and vanish with their replica: what they carry is also in the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

from shared.envelope import Channel

INBOUND = "hotline.inbound"
OUTBOUND = "hotline.outbound"
EVENTS = "hotline.events"
DLX = "hotline.dlx"

# How often a work message may be delivered before it is dead-lettered as poison.
DELIVERY_LIMIT = 5


def inbound_key(channel: Channel, line: str) -> str:
    return f"inbound.{channel.value}.{line}"


def outbound_key(channel: Channel, line: str) -> str:
    return f"outbound.{channel.value}.{line}"


# The console events after which clients' queue positions may differ: chat_ingest replicas
# hear only these (not one event per message).
QUEUE_ORDER_EVENTS = (
    "ThreadQueued",
    "ThreadClaimed",
    "ThreadReleased",
    "ThreadTransferred",
    "ThreadClosed",
    "CrisisEscalated",
)


def event_key(name: str) -> str:
    return f"event.{name}"


# A web chat ended by its client (Quick exit, or "Not safe now": data ``why`` ``not_safe``), or a
# Telegram chat its client hid (``/notsafe``: data ``channel`` ``telegram``, ``session`` the
# chat's key): every chat_ingest replica closes the sockets it holds of that session (a Telegram
# chat has none), and the dispatcher marks its thread (DISPATCHER_CHAT_ENDED). Not under
# ``event.``: the store forwards those to consoles.
CHAT_SESSION_ENDED = "ChatSessionEnded"


def chat_session_ended_key() -> str:
    return "chat.session_ended"


def must_route(exchange: str, routing_key: str) -> bool:
    """Whether a publish must reach a queue (else it fails): everything but console events,
    which only live consoles and chat replicas hear, and which may find none listening."""
    return not (exchange == EVENTS and routing_key.startswith("event."))


def delivery_key(status: str) -> str:
    return f"delivery.{status}"


def dead_queue(queue: str) -> str:
    return f"{queue}.dead"


@dataclass(frozen=True)
class WorkQueue:
    name: str
    exchange: str
    binding: str


DISPATCHER_INBOUND = WorkQueue("dispatcher.inbound", INBOUND, "inbound.#")
EMAIL_OUTBOUND = WorkQueue("email_ingest.outbound", OUTBOUND, "outbound.email.#")
STORE_DELIVERY = WorkQueue("store.delivery", EVENTS, "delivery.#")
# Replies to Telegram chats: any chat_ingest replica may send them through the Bot API.
TELEGRAM_OUTBOUND = WorkQueue("chat_ingest.telegram", OUTBOUND, "outbound.telegram.#")
# Quick exits and "not safe now": the dispatcher marks the session's thread as one whose client
# left (conversations/client_left.py). Durable, unlike the chat replicas' own queues of the same key.
DISPATCHER_CHAT_ENDED = WorkQueue("dispatcher.chat_ended", EVENTS, chat_session_ended_key())
WORK_QUEUES = (DISPATCHER_INBOUND, EMAIL_OUTBOUND, STORE_DELIVERY, TELEGRAM_OUTBOUND, DISPATCHER_CHAT_ENDED)

# Web chat replies also route here, where they expire at once. The reply is in the database
# before it is published and a client who resumes gets it from there; this queue only keeps
# a reply routable (publishes are mandatory) while no chat_ingest replica is running.
CHAT_REPLY_SINK = "chat_ingest.outbound.sink"


def chat_outbound_queue(instance_id: str) -> str:
    """Each chat_ingest replica hears every chat reply and delivers those whose socket it holds."""
    return f"chat_ingest.outbound.{instance_id}"


def console_events_queue(instance_id: str) -> str:
    return f"store.events.{instance_id}"


def chat_events_queue(instance_id: str) -> str:
    """Each chat_ingest replica hears console events to tell its clients their queue position."""
    return f"chat_ingest.events.{instance_id}"


@dataclass
class Topology:
    exchanges: dict[str, AbstractExchange] = field(default_factory=dict)
    queues: dict[str, AbstractQueue] = field(default_factory=dict)


async def declare(channel: AbstractChannel) -> Topology:
    """Declare every exchange, work queue and dead-letter queue (idempotent)."""
    topo = Topology()
    for name in (INBOUND, OUTBOUND, EVENTS, DLX):
        topo.exchanges[name] = await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)
    for wq in WORK_QUEUES:
        dead = await channel.declare_queue(
            dead_queue(wq.name), durable=True, arguments={"x-queue-type": "quorum"}
        )
        await dead.bind(topo.exchanges[DLX], routing_key=wq.name)
        args: dict[str, Any] = {
            "x-queue-type": "quorum",
            "x-delivery-limit": DELIVERY_LIMIT,
            "x-dead-letter-exchange": DLX,
            "x-dead-letter-routing-key": wq.name,
        }
        queue = await channel.declare_queue(wq.name, durable=True, arguments=args)
        await queue.bind(topo.exchanges[wq.exchange], routing_key=wq.binding)
        topo.queues[wq.name] = queue
        topo.queues[dead.name] = dead
    sink = await channel.declare_queue(
        CHAT_REPLY_SINK, durable=True, arguments={"x-message-ttl": 0, "x-max-length": 0}
    )
    await sink.bind(topo.exchanges[OUTBOUND], routing_key="outbound.chat.#")
    return topo


async def declare_replica_queue(
    channel: AbstractChannel, name: str, exchange: str, bindings: list[str]
) -> AbstractQueue:
    """An exclusive queue for one replica, gone when its connection closes."""
    queue = await channel.declare_queue(name, exclusive=True, auto_delete=True)
    for key in bindings:
        await queue.bind(exchange, routing_key=key)
    return queue


def definitions(vhost: str = "/") -> dict[str, Any]:
    """The exchanges, queues and bindings :func:`declare` creates, in RabbitMQ's definitions format.

    Pure: what ``deploy/rabbitmq/definitions.json`` holds (``python -m deploy.definitions``
    writes it) and what ``POST /api/definitions`` or ``rabbitmqadmin import`` load. Arguments
    are exactly those :func:`declare` passes, so a service declaring the topology over an
    imported one gets no PRECONDITION_FAILED. Users and permissions are left out on purpose:
    they carry secrets, and operators create them.
    """
    exchanges = [
        {
            "name": name,
            "vhost": vhost,
            "type": "topic",
            "durable": True,
            "auto_delete": False,
            "internal": False,
            "arguments": {},
        }
        for name in (INBOUND, OUTBOUND, EVENTS, DLX)
    ]
    queues: list[dict[str, Any]] = []
    bindings: list[dict[str, Any]] = []

    def queue(name: str, arguments: dict[str, Any]) -> None:
        queues.append(
            {"name": name, "vhost": vhost, "durable": True, "auto_delete": False, "arguments": arguments}
        )

    def bind(exchange: str, name: str, key: str) -> None:
        bindings.append(
            {
                "source": exchange,
                "vhost": vhost,
                "destination": name,
                "destination_type": "queue",
                "routing_key": key,
                "arguments": {},
            }
        )

    for wq in WORK_QUEUES:
        queue(dead_queue(wq.name), {"x-queue-type": "quorum"})
        bind(DLX, dead_queue(wq.name), wq.name)
        queue(
            wq.name,
            {
                "x-queue-type": "quorum",
                "x-delivery-limit": DELIVERY_LIMIT,
                "x-dead-letter-exchange": DLX,
                "x-dead-letter-routing-key": wq.name,
            },
        )
        bind(wq.exchange, wq.name, wq.binding)
    queue(CHAT_REPLY_SINK, {"x-message-ttl": 0, "x-max-length": 0})
    bind(OUTBOUND, CHAT_REPLY_SINK, "outbound.chat.#")
    return {"exchanges": exchanges, "queues": queues, "bindings": bindings}
