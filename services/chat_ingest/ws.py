"""The chat WebSocket: one reader loop and one writer task per connection.

A client's message is acknowledged (``ack`` frame) only after the broker confirmed it, so
an ``ack`` means "durably accepted". A client that resends a message after a reconnect
uses the same frame id; the source id is built from it, so the dispatcher stores it once.

Each connection has its own bounded outbound queue and writer task: a slow reader only
ever fills its own queue, and when that is full it is disconnected (it can resume),
never delaying anyone else. No client address or user agent is read, stored or logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aio_pika.abc import AbstractIncomingMessage
from aio_pika.exceptions import AMQPError
from aiohttp import WSMsgType, web
from prometheus_client import CollectorRegistry, Counter, Gauge

from services.chat_ingest import frames
from services.chat_ingest.settings import ChatIngestSettings
from shared import topology
from shared.broker import Broker
from shared.config import HotlineConfig
from shared.envelope import (
    Channel,
    ChatFacts,
    DeliveryReport,
    DeliveryStatus,
    Envelope,
    InboundMessage,
    OutboundMessage,
    message_id_for,
    utcnow,
)
from shared.logs import get_logger

log = get_logger(__name__)


def session_id_for(token: str) -> str:
    """The internal session id: a hash, so ids in queues and logs never reveal the token."""
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def on_duty(config: HotlineConfig, line: str, now: datetime) -> bool:
    hours = config.lines[line].hours
    local = now.astimezone(ZoneInfo(hours.timezone)).time()
    return hours.open <= local < hours.close


class ChatMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.sockets = Gauge("hotline_chat_sockets", "Open chat sockets", registry=registry)
        self.frames = Counter(
            "hotline_chat_frames_total", "Client frames, by outcome", ["outcome"], registry=registry
        )
        self.delivered = Counter(
            "hotline_chat_delivered_total", "Replies written to sockets", registry=registry
        )


@dataclass
class Session:
    id: str
    line: str
    language: str | None = None
    region: str | None = None
    topic: str | None = None


@dataclass(eq=False)  # identity: each socket is its own connection
class Connection:
    ws: web.WebSocketResponse
    outbox: asyncio.Queue[dict[str, Any]]
    session: Session | None = None
    tokens: float = 0.0
    stamp: float = field(default_factory=time.monotonic)

    def allow(self, rate: float, burst: int) -> bool:
        """Token bucket: ``rate`` frames a second, bursts of ``burst``."""
        now = time.monotonic()
        self.tokens = min(float(burst), self.tokens + (now - self.stamp) * rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def send(self, frame: dict[str, Any]) -> bool:
        try:
            self.outbox.put_nowait(frame)
        except asyncio.QueueFull:
            return False
        return True


class ChatHub:
    def __init__(
        self, settings: ChatIngestSettings, config: HotlineConfig, broker: Broker, metrics: ChatMetrics
    ) -> None:
        self.s = settings
        self.config = config
        self.broker = broker
        self.metrics = metrics
        self.by_session: dict[str, set[Connection]] = {}
        self.connections: set[Connection] = set()

    # --- socket ---------------------------------------------------------------------------

    async def handle_ws(self, request: web.Request) -> web.StreamResponse:
        if len(self.connections) >= self.s.max_connections:
            raise web.HTTPServiceUnavailable(text="chat is busy, try again shortly")
        ws = web.WebSocketResponse(
            heartbeat=self.s.heartbeat_seconds,
            compress=False,  # compression costs memory per socket and leaks lengths (CRIME)
            max_msg_size=self.s.max_frame_bytes,
        )
        await ws.prepare(request)
        conn = Connection(ws, asyncio.Queue(self.s.outbound_queue), tokens=self.s.frame_burst)
        self.connections.add(conn)
        self.metrics.sockets.inc()
        writer = asyncio.create_task(self._writer(conn), name="chat-writer")
        try:
            await self._reader(conn)
        finally:
            self.connections.discard(conn)
            self._detach(conn)
            self.metrics.sockets.dec()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            await ws.close()
        return ws

    async def _writer(self, conn: Connection) -> None:
        while True:
            frame = await conn.outbox.get()
            await conn.ws.send_str(json.dumps(frame, ensure_ascii=False))
            if frame.get("type") == "closed":
                await conn.ws.close()
                return

    def _reply(self, conn: Connection, frame: dict[str, Any]) -> None:
        if not conn.send(frame):
            # Its own queue is full: this client does not read. Drop the socket, not the others.
            log.warning("chat_slow_client_dropped")
            asyncio.get_running_loop().create_task(conn.ws.close())

    async def _reader(self, conn: Connection) -> None:
        abuse = 0
        async for msg in conn.ws:
            if msg.type is WSMsgType.ERROR:
                break
            if msg.type is not WSMsgType.TEXT:
                self._reply(conn, frames.error("bad_frame", "text frames only"))
                continue
            if not conn.allow(self.s.frames_per_second, self.s.frame_burst):
                abuse += 1
                self.metrics.frames.labels("rate_limited").inc()
                if abuse > self.s.frame_burst:
                    await conn.ws.close(code=1008, message=b"rate limit")
                    break
                self._reply(conn, frames.error("rate_limited", "too many frames, slow down"))
                continue
            try:
                frame = frames.parse_client_frame(msg.data, self.s.max_text_chars)
                await self._on_frame(conn, frame)
                self.metrics.frames.labels("ok").inc()
            except frames.FrameError as exc:
                self.metrics.frames.labels(exc.code).inc()
                self._reply(conn, frames.error(exc.code, exc.detail))
            if conn.ws.closed:
                break

    def _attach(self, conn: Connection, session: Session) -> None:
        self._detach(conn)
        conn.session = session
        self.by_session.setdefault(session.id, set()).add(conn)

    def _detach(self, conn: Connection) -> None:
        if conn.session is not None:
            peers = self.by_session.get(conn.session.id)
            if peers is not None:
                peers.discard(conn)
                if not peers:
                    del self.by_session[conn.session.id]

    def _session_frame(self, token: str, session: Session) -> dict[str, Any]:
        return {
            "type": "session",
            "token": token,
            "on_duty": on_duty(self.config, session.line, utcnow()),
            "position": None,
        }

    async def _on_frame(self, conn: Connection, frame: frames.ClientFrame) -> None:
        if isinstance(frame, frames.Start):
            line = frame.line or self.s.default_line
            if line not in self.config.lines:
                raise frames.FrameError("bad_field", "unknown line")
            if frame.language and frame.language not in self.config.languages:
                raise frames.FrameError("bad_field", "unknown language")
            if frame.region and frame.region not in self.config.regions:
                raise frames.FrameError("bad_field", "unknown region")
            token = secrets.token_urlsafe(24)
            session = Session(session_id_for(token), line, frame.language, frame.region, frame.topic)
            self._attach(conn, session)
            self._reply(conn, self._session_frame(token, session))
            log.info("chat_started", session=session.id, line=line)
        elif isinstance(frame, frames.Resume):
            sid = session_id_for(frame.token)
            known = next(iter(self.by_session.get(sid, ())), None)
            session = known.session if known and known.session else Session(sid, self.s.default_line)
            self._attach(conn, session)
            self._reply(conn, self._session_frame(frame.token, session))
        elif isinstance(frame, frames.Message):
            if conn.session is None:
                raise frames.FrameError("no_session", "send start or resume first")
            await self._accept(conn, conn.session, frame)
        elif isinstance(frame, frames.End):
            self._reply(conn, {"type": "closed"})

    async def _accept(self, conn: Connection, session: Session, frame: frames.Message) -> None:
        source_id = f"chat:{session.id}:{frame.id}"
        message_id = message_id_for(source_id)
        envelope = InboundMessage(
            message_id=message_id,
            source_id=source_id,
            channel=Channel.CHAT,
            line=session.line,
            received_at=utcnow(),
            sender=session.id,
            text=frame.text,
            chat=ChatFacts(
                session=session.id, language=session.language, region=session.region, topic=session.topic
            ),
        )
        try:
            await self.broker.publish(
                envelope,
                topology.INBOUND,
                topology.inbound_key(Channel.CHAT, session.line),
                message_id=message_id,
                headers={"channel": "chat", "line": session.line},
            )
        except (AMQPError, ConnectionError, OSError, RuntimeError, TimeoutError) as exc:
            # Broker down, refused or unroutable: the client keeps the message and resends it.
            log.warning("chat_publish_failed", session=session.id, error=type(exc).__name__)
            raise frames.FrameError("not_accepted", "not accepted yet; send it again") from None
        self._reply(conn, {"type": "ack", "id": frame.id, "message_id": message_id})

    # --- replies from consultants -----------------------------------------------------------

    async def deliver(self, envelope: Envelope, message: AbstractIncomingMessage) -> None:
        """Write a consultant's reply to the client's sockets held by this replica.

        Ack policy: every replica hears every reply; a replica that holds none of the
        client's sockets acks and does nothing. The reply is in the database already, so
        a client who is away gets it on resume.
        """
        if not isinstance(envelope, OutboundMessage):
            await message.reject(requeue=False)
            return
        conns = list(self.by_session.get(envelope.recipient, ()))
        frame = {
            "type": "message",
            "message_id": envelope.message_id,
            "from": envelope.sender_role,
            "text": envelope.text,
            "sent_at": envelope.sent_at.isoformat(),
        }
        delivered = sum(1 for c in conns if c.send(frame))
        if delivered:
            self.metrics.delivered.inc()
            report = DeliveryReport(
                message_id=envelope.message_id,
                thread_id=envelope.thread_id,
                status=DeliveryStatus.SENT,
                at=utcnow(),
                detail="shown to the client",
            )
            await self.broker.publish(
                report, topology.EVENTS, topology.delivery_key(DeliveryStatus.SENT.value)
            )

    async def close_all(self) -> None:
        for conn in list(self.connections):
            await conn.ws.close(code=1001, message=b"server shutdown")
