"""RabbitMQ connection, confirmed publishing and consuming, for every service.

Publishing: the channel runs in publisher-confirm mode, so ``publish`` returns only once
the broker has taken responsibility for the message (and raises if it did not, or if
nothing was bound to take it). Callers act on the confirm (ack a frame, flag a mail) only
after it.

Consuming (ack policy): a handler's message is acked only after the handler returned,
that is after its side effect. Every envelope travels sealed (shared/transit.py). A body that
is not a valid envelope, or that no key of this process opens, is rejected without
requeue and lands in the queue's dead-letter queue with its reason logged. A handler that
raises is requeued; the quorum queue's delivery limit dead-letters it after
``topology.DELIVERY_LIMIT`` attempts, so poison never loops forever.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from aio_pika.exceptions import AMQPConnectionError, AMQPError, ChannelInvalidStateError
from prometheus_client import CollectorRegistry, Counter, Histogram

from shared import topology
from shared.envelope import Envelope, EnvelopeError, decode, encode
from shared.logs import get_logger, place
from shared.mongo import is_transient_database_error
from shared.transit import TransitError, TransitSeal, is_sealed

log = get_logger(__name__)

Handler = Callable[[Envelope, AbstractIncomingMessage], Awaitable[None]]


# What a broker that is down or restarting raises while connecting.
CONNECT_ERRORS: tuple[type[BaseException], ...] = (AMQPError, ConnectionError, OSError, TimeoutError)


# Header stamped on every publish: unique per publish, kept by the broker's redeliveries of it,
# so a consumer tells "the same publish again" (redelivered after its consumer died) from
# "another publish of the same message" (a producer that published twice).
PUBLISH_ID = "publish_id"


class BrokerUnavailable(ConnectionError):
    """The broker cannot take a publish now: the connection is down or its channel is being
    re-opened after a broker restart. Transient: the caller keeps the message and tries again."""


# What ``Broker.publish`` raises when the broker, not the message, is at fault. aio-pika's
# ChannelInvalidStateError (a RuntimeError, raised while a robust channel is closed) is turned
# into BrokerUnavailable by ``publish``, so no caller has to catch RuntimeError.
PUBLISH_ERRORS = (AMQPError, ConnectionError, OSError, TimeoutError)


def is_transient(exc: BaseException) -> bool:
    """A failure of a dependency that comes back by itself, not of the message: the database
    away, busy or failing over, or the broker away (a publish inside a handler). Such a failure
    is retried in place; it must not spend the message's delivery attempts."""
    return is_transient_database_error(exc) or isinstance(
        exc, BrokerUnavailable | AMQPConnectionError | ChannelInvalidStateError
    )


class BrokerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.published = Counter(
            "hotline_published_total",
            "Envelopes published, by kind and channel",
            ["kind", "channel"],
            registry=registry,
        )
        self.consumed = Counter(
            "hotline_consumed_total",
            "Envelopes consumed, by outcome",
            ["queue", "outcome"],
            registry=registry,
        )
        self.handle_seconds = Histogram(
            "hotline_handle_seconds", "Time to handle one envelope", ["queue"], registry=registry
        )


class _ChannelGone(Exception):
    """The channel a message came on closed while its handler waited for a dependency."""


def _channel_closed(message: AbstractIncomingMessage) -> bool:
    try:
        return message.channel.is_closed
    except ChannelInvalidStateError:  # aio-pika raises instead of returning a closed channel
        return True


class Broker:
    """One robust connection and one confirming channel, owned by the service's composition root."""

    def __init__(
        self, url: str, prefetch: int, metrics: BrokerMetrics, name: str, transit: TransitSeal | None = None
    ) -> None:
        """``transit``: what seals each envelope published and opens each one consumed
        (shared/transit.py); every service has one. Without it (a test's or a tool's broker)
        envelopes are published plain, and only plain ones can be read."""
        self._url = url
        self._transit = transit
        self._prefetch = prefetch
        self._metrics = metrics
        self._name = name
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self.topology = topology.Topology()
        self._consumers: list[tuple[AbstractQueue, str]] = []
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._up = asyncio.Event()  # set while connected with every channel restored
        self._on_restore: list[Callable[[], Coroutine[Any, Any, None]]] = []
        self._restore_tasks: set[asyncio.Task[None]] = set()

    async def connect(self) -> None:
        """Connect, open the confirming channel and declare the topology; on failure leave
        nothing open, so the caller may simply try again."""
        connection = await aio_pika.connect_robust(
            self._url, client_properties={"connection_name": self._name}
        )
        try:
            # on_return_raises: a mandatory message that no queue takes fails its publish.
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            assert isinstance(channel, AbstractRobustChannel)
            await channel.set_qos(prefetch_count=self._prefetch)
            self.topology = await topology.declare(channel)
        except BaseException:
            await connection.close()
            raise
        self._connection, self._channel = connection, channel
        # aio-pika calls reconnect_callbacks once the connection and all its channels are
        # restored after an outage, close_callbacks whenever the connection is lost.
        connection.reconnect_callbacks.add(self._on_restored)
        connection.close_callbacks.add(self._on_lost)
        self._up.set()

    def _on_restored(self, *_: Any) -> None:
        self._up.set()
        for callback in self._on_restore:
            task = asyncio.get_running_loop().create_task(callback())
            self._restore_tasks.add(task)
            task.add_done_callback(self._restore_done)

    def _restore_done(self, task: asyncio.Task[None]) -> None:
        self._restore_tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("broker_restore_callback_failed", error=type(exc).__name__)

    def when_restored(self, callback: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``callback`` each time the connection comes back after an outage, once its
        channels, queues and consumers are restored: what a per-replica queue missed while it
        was gone (exclusive queues vanish with the connection) can be made up for then."""
        self._on_restore.append(callback)

    def _on_lost(self, *_: Any) -> None:
        self._up.clear()

    async def wait_ready(self) -> None:
        """Return once the broker is connected (again) with its channels restored."""
        while not self.is_ready():
            await self._up.wait()
            if not self.is_ready():
                self._up.clear()  # set by a restore that was lost again at once

    @property
    def channel(self) -> AbstractRobustChannel:
        if self._channel is None:
            raise BrokerUnavailable("broker is not connected")
        return self._channel

    def is_ready(self) -> bool:
        return (
            self._connection is not None
            and not self._connection.is_closed
            and self._channel is not None
            and not self._channel.is_closed
        )

    async def publish(
        self,
        envelope: Envelope,
        exchange: str,
        routing_key: str,
        *,
        message_id: str | None = None,
        headers: dict[str, Any] | None = None,
    ) -> None:
        """Publish and wait for the broker's confirm; raise if it was refused or unroutable.

        Raises one of ``PUBLISH_ERRORS``: ``BrokerUnavailable`` while the broker is away,
        ``AMQPError`` when it refused this message (e.g. ``DeliveryError`` when unroutable)."""
        try:
            await self._publish(envelope, exchange, routing_key, message_id, headers)
        except ChannelInvalidStateError as exc:
            raise BrokerUnavailable("channel closed") from exc
        channel = getattr(envelope, "channel", None)
        self._metrics.published.labels(envelope.kind, channel.value if channel is not None else "").inc()

    async def _publish(
        self,
        envelope: Envelope,
        exchange: str,
        routing_key: str,
        message_id: str | None,
        headers: dict[str, Any] | None,
    ) -> None:
        ex = self.topology.exchanges.get(exchange) or await self.channel.get_exchange(exchange)
        body = encode(envelope)
        if self._transit is not None:
            body = self._transit.seal(body, envelope.kind)
        msg = aio_pika.Message(
            body,
            content_type="application/json" if self._transit is None else "application/octet-stream",
            type=envelope.kind,
            message_id=message_id,
            headers={"v": envelope.v, PUBLISH_ID: uuid.uuid4().hex, **(headers or {})},
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        # mandatory: a message no queue is bound to take is an error, not a silent drop
        # (console events excepted: with no console listening there is nobody to tell).
        await ex.publish(msg, routing_key=routing_key, mandatory=topology.must_route(exchange, routing_key))

    def open_body(self, kind: str | None, body: bytes) -> bytes:
        """The envelope of a consumed ``body``: opened (shared/transit.py), or as it is when
        it was published plain. Raises TransitError for a sealed one this process cannot open."""
        if self._transit is None:
            if is_sealed(body):
                raise TransitError("sealed, and this process holds no master key")
            return body
        return self._transit.open(body, kind)

    async def consume(
        self,
        queue: AbstractQueue,
        handler: Handler,
        transient: Callable[[BaseException], bool] = is_transient,
    ) -> None:
        """Start delivering ``queue`` to ``handler`` under the ack policy of this module.

        ``transient`` tells a failure of a dependency that comes back by itself (the database
        restarting or busy, the broker away) from a failure of the message. A transient one
        is retried in place with backoff, holding the message unacknowledged, so an outage
        neither spends the message's delivery attempts nor dead-letters anything; prefetch
        bounds what is held meanwhile. One warning is logged when the retries begin, one
        line when they end; no traceback.
        """

        async def on_message(message: AbstractIncomingMessage) -> None:
            self._in_flight += 1
            self._idle.clear()
            started = time.perf_counter()
            try:
                await self._handle(queue.name, message, handler, transient)
            finally:
                self._metrics.handle_seconds.labels(queue.name).observe(time.perf_counter() - started)
                self._in_flight -= 1
                if self._in_flight == 0:
                    self._idle.set()

        tag = await queue.consume(on_message)
        self._consumers.append((queue, tag))

    async def _handle(
        self,
        queue: str,
        message: AbstractIncomingMessage,
        handler: Handler,
        transient: Callable[[BaseException], bool],
    ) -> None:
        try:
            envelope = decode(message.type, self.open_body(message.type, message.body))
        except (EnvelopeError, TransitError) as exc:
            log.error("envelope_rejected", queue=queue, reason=str(exc), size=len(message.body))
            self._metrics.consumed.labels(queue, "rejected").inc()
            await message.reject(requeue=False)
            return
        try:
            await self._retry_transient(queue, envelope, message, handler, transient)
        except _ChannelGone:
            # The broker took the message back when the channel closed; it is redelivered
            # (to this consumer once restored, or another). Nothing to ack or nack here.
            self._metrics.consumed.labels(queue, "redelivered").inc()
            return
        except asyncio.CancelledError:
            # Shutting down mid-message: the broker redelivers it to another consumer.
            await message.nack(requeue=True)
            raise
        except Exception as exc:
            # A failure we could not handle: requeue; the delivery limit bounds the attempts.
            # Type and place, no traceback: an exception's message or a frame's locals can
            # quote the text a person wrote (QUALITY.md 4).
            log.error(
                "handler_failed",
                queue=queue,
                message_id=message.message_id,
                error=type(exc).__name__,
                where=place(exc),
                redelivered=message.redelivered,
            )
            self._metrics.consumed.labels(queue, "failed").inc()
            if not message.processed:
                await message.nack(requeue=True)
            return
        if not message.processed:
            await message.ack()
        self._metrics.consumed.labels(queue, "acked").inc()

    async def _retry_transient(
        self,
        queue: str,
        envelope: Envelope,
        message: AbstractIncomingMessage,
        handler: Handler,
        transient: Callable[[BaseException], bool],
    ) -> None:
        delay = 0.5
        attempts = 0
        while True:
            try:
                await handler(envelope, message)
            except Exception as exc:
                if not transient(exc):
                    raise
                if _channel_closed(message):
                    raise _ChannelGone from None
                attempts += 1
                self._metrics.consumed.labels(queue, "retried").inc()
                if attempts == 1:
                    log.warning(
                        "dependency_unavailable_retrying",
                        queue=queue,
                        message_id=message.message_id,
                        error=type(exc).__name__,
                    )
                await asyncio.sleep(delay)  # backoff while the dependency is away
                delay = min(delay * 2, 10.0)
                continue
            if attempts:
                log.info("dependency_back", queue=queue, message_id=message.message_id, retries=attempts)
            return

    async def stop_consuming(self, deadline: float) -> None:
        """Stop intake, then wait up to ``deadline`` seconds for in-flight messages to finish."""
        for queue, tag in self._consumers:
            try:
                await queue.cancel(tag)
            except Exception as exc:  # the connection may already be gone
                log.warning("consumer_cancel_failed", queue=queue.name, error=type(exc).__name__)
        self._consumers.clear()
        try:
            await asyncio.wait_for(self._idle.wait(), deadline)
        except TimeoutError:
            log.warning("drain_timeout", in_flight=self._in_flight)

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
            self._channel = None
