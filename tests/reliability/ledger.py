"""The ledger of QUALITY.md 2: every message sent carries a unique id; at the end each id is
counted as lost, visibly duplicated, redelivered internally or recovered."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractQueue

from conversations.repository import Repository
from shared import topology
from shared.envelope import Channel, ChatFacts, InboundMessage, encode, message_id_for, utcnow
from shared.transit import TransitSeal

# Carried in the text of every message a fault test sends: the reliability conftest finds it
# 0 times in the services' logs after each test (QUALITY.md 4: no message text in logs, also on
# failure paths: a broker or database gone, a handler failing, a poison message).
CANARY = f"CANARY-{uuid.uuid4().hex}"


def chat_message(session: str, n: int, line: str = "dv", text: str = "ledger") -> InboundMessage:
    source = f"chat:{session}:{n}"
    return InboundMessage(
        message_id=message_id_for(source),
        source_id=source,
        channel=Channel.CHAT,
        line=line,
        received_at=utcnow(),
        sender=session,
        text=f"{text} {CANARY} {n}",
        chat=ChatFacts(session=session),
    )


@dataclass
class Ledger:
    sent: dict[str, InboundMessage] = field(default_factory=dict)
    publishes: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)

    def report(self, stored: Counter[str]) -> dict[str, int]:
        return {
            "sent": len(self.sent),
            "publishes": sum(self.publishes.values()),
            "lost": sum(1 for mid in self.sent if stored[mid] == 0),
            "visibly_duplicated": sum(1 for mid in self.sent if stored[mid] > 1),
            "redelivered_internally": sum(n - 1 for n in self.events.values() if n > 1),
        }


class Pipeline:
    """Publishes inbound messages the way the ingest services do and listens to the events
    the dispatcher publishes after each database write."""

    def __init__(self, amqp_url: str, transit: TransitSeal | None = None) -> None:
        """``transit``: what opens the events of services that seal them (shared/transit.py)."""
        self.amqp_url = amqp_url
        self.transit = transit
        self.ledger = Ledger()
        self._seen: asyncio.Queue[str] = asyncio.Queue()
        self._changed = asyncio.Condition()
        self.connection: aio_pika.abc.AbstractRobustConnection | None = None
        self.channel: AbstractChannel | None = None
        self._events: AbstractQueue | None = None

    async def __aenter__(self) -> Pipeline:
        self.connection = await aio_pika.connect_robust(self.amqp_url)
        self.channel = await self.connection.channel(publisher_confirms=True)
        await topology.declare(self.channel)
        self._events = await self.channel.declare_queue(exclusive=True)
        await self._events.bind(topology.EVENTS, routing_key="event.#")
        await self._events.consume(self._on_event, no_ack=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.connection is not None:
            await self.connection.close()

    async def _on_event(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        raw = message.body if self.transit is None else self.transit.open(message.body, message.type)
        body = json.loads(raw)
        mid = body.get("message_id")
        if mid and body.get("name") in {"ThreadQueued", "MessageReceived"}:
            self.ledger.events[mid] += 1
            self._seen.put_nowait(mid)
            async with self._changed:
                self._changed.notify_all()

    async def wait_until(self, predicate: Callable[[], bool], within: float = 60) -> None:
        """Until ``predicate`` holds, re-checked at each event the dispatcher announces."""

        async def wait() -> None:
            async with self._changed:
                await self._changed.wait_for(predicate)

        await asyncio.wait_for(wait(), within)

    async def publish(
        self, msg: InboundMessage, *, raw: bytes | None = None, kind: str | None = None
    ) -> None:
        assert self.channel is not None
        exchange = await self.channel.get_exchange(topology.INBOUND)
        await exchange.publish(
            aio_pika.Message(
                raw if raw is not None else encode(msg),
                type=kind or msg.kind,
                message_id=msg.message_id,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=topology.inbound_key(msg.channel, msg.line),
            mandatory=True,
        )
        if raw is None:
            self.ledger.sent[msg.message_id] = msg
            self.ledger.publishes[msg.message_id] += 1

    async def wait_all_seen(self, within: float = 90) -> None:
        """Until every sent message has been announced at least once (i.e. stored)."""

        async def loop() -> None:
            pending = set(self.ledger.sent) - set(self.ledger.events)
            while pending:
                pending.discard(await self._seen.get())

        await asyncio.wait_for(loop(), within)

    async def dead_letters(
        self,
        count: int,
        queue: str = topology.DISPATCHER_INBOUND.name,
        within: float = 60,
        keep: bool = False,
    ) -> list[dict[str, Any]]:
        """The first ``count`` messages that reach ``<queue>.dead``, described by their headers
        (never their bodies), consumed as they arrive; with ``keep`` they are put back."""
        assert self.channel is not None
        dead = await self.channel.get_queue(topology.dead_queue(queue))
        got: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()
        tag = await dead.consume(got.put, no_ack=False)
        held = []
        try:
            for _ in range(count):
                held.append(await asyncio.wait_for(got.get(), within))
        finally:
            await dead.cancel(tag)
            while not got.empty():
                held.append(got.get_nowait())
            for i, msg in enumerate(held):
                if keep or i >= count:
                    await msg.nack(requeue=True)
                else:
                    await msg.ack()
        return [
            {"message_id": m.message_id, "type": m.type, "headers": dict(m.headers or {})}
            for m in held[:count]
        ]

    async def dead_letter_count(self, queue: str = topology.DISPATCHER_INBOUND.name) -> int:
        assert self.channel is not None
        declared = await self.channel.declare_queue(topology.dead_queue(queue), passive=True)
        return int(declared.declaration_result.message_count or 0)


async def stored_counts(repo: Repository, ledger: Ledger) -> Counter[str]:
    """How many stored inbound documents each sent message has (by its source id, so two
    documents of one message, whatever their ids, count as a visible duplicate)."""
    by_source = {m.source_id: mid for mid, m in ledger.sent.items()}
    counts: Counter[str] = Counter()
    async for doc in repo.messages.find({"direction": "in"}, {"source_id": 1}):
        if doc["source_id"] in by_source:
            counts[by_source[doc["source_id"]]] += 1
    return counts


def new_session() -> str:
    return uuid.uuid4().hex
