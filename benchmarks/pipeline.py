"""The inbound pipeline's figures of QUALITY.md 1, on the running stack of `make bench`:

- **saturation**: the highest rate of chat messages, and of mails, that broker -> dispatcher ->
  store holds for ``seconds`` with zero loss, found by a search over rates bounded in time
  (double while held, then halve the gap between the highest held and the lowest not held
  until it is within 15 % or the time is spent). The messages are the envelopes the ingest
  services publish (``InboundMessage``, sealed with the stack's transit key, on the inbound
  exchange with their routing key, confirms pipelined), so the figure is the dispatcher's
  and the store's, not the bench client's WebSocket or IMAP work: chat_ingest's own part is
  the chat latency figure's, email_ingest's the backlog import's. A rate is *held* when the
  publisher kept it (>= 95 % of it), and every message was stored within 10 % of the load's
  duration (+ 3 s) after the last was sent: the queue did not grow. *Zero loss*: every
  message published is stored in the end (a probe that loses one fails the whole figure).
- **ceiling**: raw aio-pika publish with confirms (same pipelining) -> consume with acks
  (prefetch 100) on a quorum queue of the same broker, the same body size, the same count.
- **backlog drain**: the dispatcher stopped, 18,000 chat messages (300 conversations of 60, as
  a 30-minute outage at 10 msg/s leaves) published; then it is started and the time to an
  empty queue with every message and every thread stored is taken, while a publisher goes on
  at 10 msg/s (its slowest confirm shows a stall, if any).

Stored messages are counted in the store's ``messages`` collection (a count without a filter).
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from benchmarks.memory import cpu_used
from shared import topology
from shared.broker import Broker, BrokerMetrics
from shared.envelope import Channel, ChatFacts, EmailFacts, InboundMessage, message_id_for, utcnow
from shared.transit import TransitSeal

IN_FLIGHT = 200  # unconfirmed publishes at once (QUALITY.md: pipeline confirms)
TEXT = "Здравствуйте, мне нужна помощь с документами для работы за границей. " * 3


def seal_for(master_key_b64: str) -> TransitSeal:
    return TransitSeal(base64.b64decode(master_key_b64))


@dataclass
class Inbound:
    """Publishes inbound envelopes as chat_ingest and email_ingest do."""

    amqp_url: str
    master_key_b64: str
    line: str = "dv"
    broker: Broker | None = None
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    async def __aenter__(self) -> Inbound:
        self.broker = Broker(
            self.amqp_url,
            10,
            BrokerMetrics(CollectorRegistry()),
            "bench inbound",
            seal_for(self.master_key_b64),
        )
        await self.broker.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.broker is not None:
            await self.broker.close()

    def envelope(self, channel: Channel, session: str, n: int) -> InboundMessage:
        source_id = f"bench:{self.run}:{channel.value}:{session}:{n}"
        if channel is Channel.CHAT:
            sid = f"bench-{self.run}-{session}"
            source_id = f"chat:{sid}:{n}"
            return InboundMessage(
                message_id=message_id_for(source_id),
                source_id=source_id,
                channel=Channel.CHAT,
                line=self.line,
                received_at=utcnow(),
                sender=sid,
                text=TEXT,
                chat=ChatFacts(session=sid, language="ru"),
            )
        return InboundMessage(
            message_id=message_id_for(source_id),
            source_id=source_id,
            channel=Channel.EMAIL,
            line="113",
            received_at=utcnow(),
            sender=f"client-{self.run}-{session}-{n}@example.org",
            text=TEXT * 4,
            subject="Нужна помощь",
            email=EmailFacts(header_message_id=f"<{uuid.uuid4().hex}@client.example>", to="line@demo.test"),
        )

    async def publish(self, env: InboundMessage) -> float:
        """Publish with its confirm; returns the seconds the confirm took."""
        assert self.broker is not None
        began = time.perf_counter()
        await self.broker.publish(
            env,
            topology.INBOUND,
            topology.inbound_key(env.channel, env.line),
            message_id=env.message_id,
            headers={"channel": env.channel.value, "line": env.line},
        )
        return time.perf_counter() - began


async def paced(
    count: int, rate: float, make: Callable[[int], Awaitable[float]], confirms: list[float] | None = None
) -> float:
    """Call ``make(i)`` ``count`` times at ``rate`` a second, ``IN_FLIGHT`` at most unfinished;
    returns the seconds the sending took (all confirmed)."""
    limit = asyncio.Semaphore(IN_FLIGHT)
    tasks: set[asyncio.Task[None]] = set()
    failures: list[BaseException] = []

    async def one(i: int) -> None:
        try:
            took = await make(i)
            if confirms is not None:
                confirms.append(took)
        except Exception as exc:
            failures.append(exc)
        finally:
            limit.release()

    began = time.perf_counter()
    for i in range(count):
        delay = began + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)  # pacing the offered load, not waiting for an event
        await limit.acquire()
        task = asyncio.create_task(one(i))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    if failures:
        raise RuntimeError(f"{len(failures)} publishes failed, first: {failures[0]!r}")
    return time.perf_counter() - began


async def stored(db: Any) -> int:
    """Messages stored. ``estimated_document_count`` (the ``count`` command without a filter):
    a filtered count would decode the collection on the stand-in at every poll."""
    return int(await db["messages"].estimated_document_count())


async def until_stored(db: Any, target: int, within: float) -> tuple[int, float]:
    """Poll the stored count until ``target`` or ``within`` seconds; (count, seconds waited)."""
    began = time.perf_counter()
    n = await stored(db)
    while n < target and time.perf_counter() - began < within:
        await asyncio.sleep(1)  # the store reports nothing to the bench: its count is watched
        n = await stored(db)
    return n, time.perf_counter() - began


@dataclass
class Probe:
    rate: int
    sent: int
    send_seconds: float
    stored_within: float
    held: bool
    lost: int


async def probe(inbound: Inbound, db: Any, channel: Channel, rate: int, seconds: float) -> Probe:
    count = int(rate * seconds)
    per_session = 4 if channel is Channel.CHAT else 1  # a chat client sends at most 4 a second
    before = await stored(db)
    tag = uuid.uuid4().hex[:6]

    async def one(i: int) -> float:
        return await inbound.publish(inbound.envelope(channel, f"{tag}{i % max(1, rate // per_session)}", i))

    took = await paced(count, rate, one)
    grace = seconds * 0.1 + 3
    n, waited = await until_stored(db, before + count, grace)
    held = n >= before + count and took <= seconds / 0.95
    lost = 0
    if n < before + count:  # not in time: is it late or lost?
        n, _ = await until_stored(db, before + count, max(120.0, count / 50))
        lost = max(0, before + count - n)
    return Probe(rate, count, took, waited, held, lost)


async def saturation(
    inbound: Inbound, db: Any, channel: Channel, seconds: float, budget: float, start: int = 50
) -> tuple[int, list[Probe]]:
    """The highest rate held (0 if none), and every probe made, within ``budget`` seconds."""
    probes: list[Probe] = []
    began = time.monotonic()
    lo, hi = 0, 0
    rate = start
    while time.monotonic() - began + seconds * 1.3 < budget:
        p = await probe(inbound, db, channel, rate, seconds)
        probes.append(p)
        if p.lost:
            return 0, probes
        if p.held:
            lo = rate
        else:
            hi = rate
        if hi == 0:
            rate *= 2
        elif lo == 0:
            rate = max(1, rate // 2)
        elif (hi - lo) / lo > 0.15:
            rate = (lo + hi) // 2
        else:
            break
    return lo, probes


async def raw_ceiling(amqp_url: str, count: int, size: int) -> float:
    """Messages a second through raw publish (confirms, ``IN_FLIGHT`` pipelined) -> consume
    (acks, prefetch 100) on a scratch quorum queue of the same broker."""
    conn = await aio_pika.connect_robust(amqp_url)
    try:
        channel = await conn.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=100)
        name = f"bench.ceiling.{uuid.uuid4().hex[:8]}"
        queue = await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
        done = asyncio.Event()
        got = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal got
            await message.ack()
            got += 1
            if got == count:
                done.set()

        await queue.consume(on_message)
        body = b"x" * size
        began = time.perf_counter()

        async def one(_: int) -> float:
            await channel.default_exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=name
            )
            return 0.0

        await paced(count, 1e9, one)
        await asyncio.wait_for(done.wait(), 300)
        took = time.perf_counter() - began
        await queue.delete(if_unused=False, if_empty=False)
        return count / took
    finally:
        await conn.close()


@dataclass
class Drain:
    backlog: int
    threads: int
    publish_seconds: float
    drain_seconds: float  # start of the dispatcher -> all stored
    from_ready_seconds: float  # dispatcher ready -> all stored
    threads_stored: int
    live_sent: int
    live_confirm_max: float
    lost: int
    cpu_ms_per_message: dict[str, float] = field(default_factory=dict)


async def drain(
    inbound: Inbound,
    mongo_url: str,
    database: str,
    backlog: int,
    conversations: int,
    stop: Callable[[], None],
    start: Callable[[], float],
    cpu: Callable[[], dict[str, float]] | None = None,
) -> Drain:
    """``stop``/``start`` the dispatcher; ``start`` returns the seconds until it was ready."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    db = client[database]
    try:
        await asyncio.to_thread(stop)
        before = await stored(db)
        threads_before = int(await db["threads"].count_documents({}))
        tag = uuid.uuid4().hex[:6]
        per = max(1, backlog // conversations)

        async def one(i: int) -> float:
            return await inbound.publish(inbound.envelope(Channel.CHAT, f"{tag}{i // per}", i))

        published = await paced(backlog, 1e9, one)
        live_confirms: list[float] = []
        live_sent = 0
        stop_live = asyncio.Event()

        async def live() -> None:
            nonlocal live_sent
            n = 0
            while not stop_live.is_set():
                env = inbound.envelope(Channel.CHAT, f"{tag}live{n // 40}", n)
                live_confirms.append(await inbound.publish(env))
                live_sent += 1
                n += 1
                try:
                    await asyncio.wait_for(stop_live.wait(), 0.1)  # 10 msg/s
                except TimeoutError:
                    pass

        began = time.perf_counter()
        live_task = asyncio.create_task(live())
        ready_after = await asyncio.to_thread(start)
        cpu_before = cpu() if cpu is not None else {}
        n, _ = await until_stored(db, before + backlog, max(900.0, backlog / 10))
        while n < before + backlog + live_sent and time.perf_counter() - began < 1200:
            n, _ = await until_stored(db, before + backlog + live_sent, 5)
        took = time.perf_counter() - began
        cpu_after = cpu() if cpu is not None else {}
        stop_live.set()
        await live_task
        n, _ = await until_stored(db, before + backlog + live_sent, 60)
        threads = int(await db["threads"].count_documents({})) - threads_before
        return Drain(
            backlog=backlog,
            threads=-(-backlog // per) + -(-live_sent // 40),
            publish_seconds=published,
            drain_seconds=took,
            from_ready_seconds=took - ready_after,
            threads_stored=threads,
            live_sent=live_sent,
            live_confirm_max=max(live_confirms, default=0.0),
            lost=max(0, before + backlog + live_sent - n),
            cpu_ms_per_message={
                k: 1000 * v / (backlog + live_sent) for k, v in cpu_used(cpu_before, cpu_after).items()
            },
        )
    finally:
        await client.close()
