"""The chat WebSocket: one reader loop and one writer task per connection.

A client's message is acknowledged (``ack`` frame) only after the broker confirmed it, so
an ``ack`` means "durably accepted". A client that resends a message after a reconnect
uses the same frame id; the source id is built from it, so the dispatcher stores it once.

Per-source bounds (:mod:`services.chat_ingest.sources`): one client address holds at most
``max_sockets_per_source`` sockets and starts at most ``starts_per_source_per_minute`` chats,
besides the per-socket and per-process bounds.

Each connection has its own bounded outbound queue and writer task: a slow reader only
ever fills its own queue, and when that is full it is disconnected (it can resume),
never delaying anyone else. No user agent is read; the client's address is read only to
count sockets and starts per source in memory, and is never stored or logged.

Replies (ack policy of :meth:`ChatHub.deliver`): every replica hears every web chat reply
on its own exclusive queue; the replica holding the client's socket queues it for the
socket and acks; the others ack and do nothing. A reply is in the database before it is
published, with delivery ``queued``; once a writer has written it to a socket it is
reported ``sent``. On ``resume`` every reply still ``queued`` is written again, so a client
who was away, or whose replica died, gets each waiting reply; a connection never writes
the same reply twice.

Queue positions: each replica hears the console events (``ThreadQueued``,
``ThreadClaimed``, ...) and recomputes, from the database, the position of the waiting
threads of its clients in the queues that changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from aio_pika.abc import AbstractIncomingMessage
from aio_pika.exceptions import DeliveryError
from aiohttp import WSMsgType, web
from prometheus_client import CollectorRegistry, Counter, Gauge
from pymongo.errors import PyMongoError

from conversations.identity import session_thread_key, thread_id_for
from conversations.repository import ChatRepository, Doc
from services.chat_ingest import frames
from services.chat_ingest.settings import ChatIngestSettings
from services.chat_ingest.sources import SourceLimits, source_of
from shared import topology
from shared.broker import PUBLISH_ERRORS, Broker
from shared.config import HotlineConfig
from shared.envelope import (
    Channel,
    ChatFacts,
    ConsoleEvent,
    DeliveryReport,
    DeliveryStatus,
    Envelope,
    InboundMessage,
    OutboundMessage,
    message_id_for,
    utcnow,
)
from shared.hours import is_open
from shared.logs import get_logger
from shared.peers import client_address
from shared.supervise import Heartbeat, PassFailures, Supervisor, place

log = get_logger(__name__)

# Messages of one connection published and awaiting their broker confirm at once.
MAX_IN_FLIGHT = 16

# A Telegram update claim is kept this long for deduplication: Telegram stops redelivering
# an update after 24 hours.
TELEGRAM_UPDATE_RETENTION = timedelta(hours=48)

# WebSocket close code of a socket that held no chat within CHAT_INGEST_HANDSHAKE_SECONDS
# (RFC 6455 7.4.2: 4000-4999 are the application's; 408 as in HTTP's Request Timeout).
HANDSHAKE_TIMEOUT_CODE = 4408
# Close code of a socket refused because its source holds CHAT_INGEST_MAX_SOCKETS_PER_SOURCE
# already (429 as in HTTP's Too Many Requests).
TOO_MANY_SOCKETS_CODE = 4429

# "position" frames: 1, 2, ... waiting; 0 a consultant has the conversation; None not queued
# (no message yet, or closed).
WITH_CONSULTANT = 0


def session_id_for(token: str) -> str:
    """The internal session id: a hash, so ids in queues and logs never reveal the token."""
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def on_duty(config: HotlineConfig, line: str, now: datetime) -> bool:
    return is_open(config.lines[line].hours, now)


class ChatMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.sockets = Gauge("hotline_chat_sockets", "Open chat sockets", registry=registry)
        self.frames = Counter(
            "hotline_chat_frames_total", "Client frames, by outcome", ["outcome"], registry=registry
        )
        self.delivered = Counter(
            "hotline_chat_delivered_total", "Replies written to sockets", registry=registry
        )
        self.replayed = Counter(
            "hotline_chat_replayed_total", "Waiting replies written on resume", registry=registry
        )


@dataclass(slots=True)  # one per connected client: keep them small (QUALITY.md 1: <= 20 KiB a socket)
class Session:
    id: str
    line: str
    language: str | None = None
    region: str | None = None
    topic: str | None = None
    thread_id: str | None = None
    queue: str | None = None
    position: int | None = None
    ended: bool = False  # Quick exit: a message of it still on its way is refused


class Outbox:
    """A bounded queue of frames for one connection's writer task.

    asyncio.Queue would do, but it carries three deques and an Event (some 2.5 KiB); with
    10,000 idle sockets on a small server that is 25 MiB for nothing (QUALITY.md 1 allows
    20 KiB a socket in all).
    """

    __slots__ = ("_busy", "_drained", "_items", "_limit", "_waiter")

    def __init__(self, limit: int) -> None:
        self._items: list[dict[str, Any]] = []
        self._limit = limit
        self._waiter: asyncio.Future[None] | None = None
        self._busy = False  # the writer holds a frame it has not finished writing
        self._drained: asyncio.Future[None] | None = None

    def put_nowait(self, frame: dict[str, Any]) -> None:
        if len(self._items) >= self._limit:
            raise asyncio.QueueFull
        self._items.append(frame)
        self._wake()

    async def get(self) -> dict[str, Any]:
        """The next frame; the writer calls :meth:`done` once it is written."""
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        self._busy = True
        return self._items.pop(0)

    def done(self) -> None:
        self._busy = False
        if not self._items and self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def flushed(self) -> None:
        """Until every queued frame was written."""
        while self._items or self._busy:
            self._drained = asyncio.get_running_loop().create_future()
            try:
                await self._drained
            finally:
                self._drained = None

    def qsize(self) -> int:
        return len(self._items)


@dataclass(eq=False, slots=True)  # identity: each socket is its own connection
class Connection:
    ws: web.WebSocketResponse
    outbox: Outbox
    session: Session | None = None
    tokens: float = 0.0
    stamp: float = field(default_factory=time.monotonic)
    # Replies written (or queued) on this connection: a reply heard live and found again in
    # the resume backlog is written once. Made on the first reply: most sockets idle.
    replies: set[str] | None = None
    # Messages published and not yet confirmed: confirms are pipelined, not awaited one by one.
    publishing: set[asyncio.Task[None]] | None = None
    starts: int = 0  # chats started on this socket (bounded by max_starts_per_socket)
    source: str = ""  # the client's address, for per-source bounds only (never logged)
    # Closes the socket unless it holds a chat in time (CHAT_INGEST_HANDSHAKE_SECONDS): without
    # it one client could hold sockets for ever, up to the global cap, without starting a chat.
    deadline: asyncio.TimerHandle | None = None

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


def reply_frame(message_id: str, role: str, text: str, sent_at: datetime) -> dict[str, Any]:
    return {
        "type": "message",
        "message_id": message_id,
        "from": role,
        "text": text,
        "sent_at": sent_at.isoformat(),
    }


def backlog_frame(doc: Doc) -> dict[str, Any]:
    """The frame of a stored reply written again (on resume, after a broker outage)."""
    role = "bot" if str(doc.get("author", "")).startswith("bot") else "consultant"
    return reply_frame(doc["_id"], role, doc["text"], doc["created_at"])


class ChatHub:
    def __init__(
        self,
        settings: ChatIngestSettings,
        config: HotlineConfig,
        broker: Broker,
        repo: ChatRepository,
        metrics: ChatMetrics,
    ) -> None:
        self.s = settings
        self.config = config
        self.broker = broker
        self.repo = repo
        self.metrics = metrics
        self.connections: set[Connection] = set()
        self.by_session: dict[str, set[Connection]] = {}
        self.sessions: dict[str, Session] = {}
        self.by_thread: dict[str, str] = {}  # thread id -> session id, for attached sessions
        self._reports: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._dirty_queues: set[str] = set()
        self._dirty = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # New chats of this process: a token bucket, besides the bounds per socket and per
        # source (self.sources).
        self._start_tokens = float(settings.session_start_burst)
        self._start_stamp = time.monotonic()
        # Sessions ended on this replica whose end the database does not hold yet (being
        # written, or the write failed: the sweep writes it again); resume refuses them.
        self._ended: set[str] = set()
        self.sources = SourceLimits(settings.max_sockets_per_source, settings.starts_per_source_per_minute)
        self.supervisor: Supervisor | None = None  # set by start()

    async def start(self, supervisor: Supervisor) -> None:
        """Start the background loops, delivery reports, position updates and the expiry
        sweep, under the service's supervisor (which restarts them and stops them at shutdown)."""
        self.supervisor = supervisor
        self.broker.when_restored(self.replay_missed)
        supervisor.start("chat-reports", lambda _beat: self._report_loop())
        supervisor.start("chat-positions", lambda _beat: self._position_loop())
        every = self.s.sweep_seconds
        supervisor.start("chat-expiry-sweep", self._sweep_loop, interval=3 * every + 30)

    # --- expiry -----------------------------------------------------------------------------

    def expiry(self) -> datetime:
        return utcnow() + timedelta(seconds=self.s.session_ttl_seconds)

    async def sweep(self) -> dict[str, int]:
        """Delete what expired: chat sessions unused for ``session_ttl_seconds`` (the sessions
        this replica's sockets hold are kept first), Telegram chat choices, and Telegram update
        claims past their retention. The documents carry an indexed expiry field; on MongoDB 7
        a TTL index would do the deleting, but FerretDB rejects TTL indexes (code 238,
        ../shared/reviews/ferretdb.md section 3), so this sweep is the mechanism everywhere."""
        now = utcnow()
        for sid in list(self._ended):
            await self.repo.end_session(sid, self.expiry())
            self._ended.discard(sid)
        if self.sessions:
            held = list(self.sessions)
            await self.repo.keep_sessions(held, self.expiry())
            # Backstop of the broker's ChatSessionEnded: a session ended on a replica that
            # could not announce it is closed here within one sweep.
            live = await self.repo.live_sessions(held)
            for sid in held:
                if sid not in live and self._close_session(sid):
                    log.info("chat_ended_elsewhere", session=sid)
        return await self.repo.delete_expired(now, now - TELEGRAM_UPDATE_RETENTION, self.expiry())

    async def _sweep_loop(self, beat: Heartbeat) -> None:
        failures = PassFailures("chat_sweep_failed")
        while True:
            try:
                deleted = await self.sweep()
            except PyMongoError as exc:  # the next pass deletes it; anything else: the supervisor
                failures.failed(exc)
            else:
                failures.passed()
                if any(deleted.values()):
                    log.info("chat_expired_deleted", **deleted)
                beat.beat()
            await asyncio.sleep(self.s.sweep_seconds)  # a period, not a wait for an event

    def _allow_start(self, conn: Connection) -> None:
        """Bound the sessions a flood can create: per socket, per source and per process. The
        source is counted first, so one client's refused starts never spend everyone's budget."""
        if conn.starts >= self.s.max_starts_per_socket:
            raise frames.FrameError(
                "too_many_sessions", "this connection started too many chats; reconnect to start another"
            )
        if not self.sources.allow_start(conn.source):
            raise frames.FrameError(
                "too_many_starts", "too many new chats from your network this minute; try again shortly"
            )
        now = time.monotonic()
        rate, burst = self.s.session_starts_per_second, float(self.s.session_start_burst)
        self._start_tokens = min(burst, self._start_tokens + (now - self._start_stamp) * rate)
        self._start_stamp = now
        if self._start_tokens < 1:
            log.warning("chat_start_busy")
            raise frames.FrameError("busy", "too many new chats right now; try again shortly")
        self._start_tokens -= 1

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    # --- socket ---------------------------------------------------------------------------

    async def handle_ws(self, request: web.Request) -> web.StreamResponse:
        if len(self.connections) >= self.s.max_connections:
            self.metrics.frames.labels("refused_busy").inc()
            raise web.HTTPServiceUnavailable(text="chat is busy, try again shortly")
        source = source_of(
            client_address(request.remote, request.headers.get("X-Real-IP"), self.s.trusted_proxies)
        )
        if not self.sources.open(source):
            return await self._refuse_socket(request)
        try:
            return await self._hold(request, source)
        finally:
            self.sources.close(source)

    async def _refuse_socket(self, request: web.Request) -> web.StreamResponse:
        """A socket over its source's bound: upgraded only to say why (a browser's WebSocket
        sees no HTTP status), then closed with TOO_MANY_SOCKETS_CODE."""
        self.metrics.frames.labels("too_many_sockets").inc()
        ws = web.WebSocketResponse(compress=False, max_msg_size=self.s.max_frame_bytes)
        await ws.prepare(request)
        frame = frames.error("too_many_sockets", "too many chat connections from your network; close one")
        with contextlib.suppress(ConnectionError):
            await ws.send_str(json.dumps(frame))
        await ws.close(code=TOO_MANY_SOCKETS_CODE, message=b"too many sockets")
        return ws

    async def _hold(self, request: web.Request, source: str) -> web.StreamResponse:
        ws = web.WebSocketResponse(
            heartbeat=self.s.heartbeat_seconds,
            compress=False,  # compression costs memory per socket and leaks lengths (CRIME)
            max_msg_size=self.s.max_frame_bytes,
        )
        await ws.prepare(request)
        conn = Connection(ws, Outbox(self.s.outbound_queue), tokens=self.s.frame_burst, source=source)
        conn.deadline = asyncio.get_running_loop().call_later(
            self.s.handshake_seconds, self._handshake_expired, conn
        )
        self.connections.add(conn)
        self.metrics.sockets.inc()
        writer = asyncio.create_task(self._writer(conn), name="chat-writer")
        if self.supervisor is not None:
            # A writer that dies leaves the socket open but deaf: close it, the client resumes.
            self.supervisor.companion(writer, "chat-writer", lambda: self._spawn(conn.ws.close()))
        try:
            await self._reader(conn)
        finally:
            if conn.publishing:
                # Let confirms that are on their way arrive (the client resends what has no ack).
                _, late = await asyncio.wait(conn.publishing, timeout=self.s.shutdown_timeout)
                for task in late:
                    task.cancel()
                await asyncio.gather(*late, return_exceptions=True)
            self._disarm(conn)
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
            close_after = frame.pop("_close", False)
            close_code = frame.pop("_code", 1000)
            thread_id = frame.pop("_thread", None)
            await conn.ws.send_str(json.dumps(frame, ensure_ascii=False))
            conn.outbox.done()
            if thread_id is not None:
                # Written to the socket: the console may show it as sent.
                self.metrics.delivered.inc()
                self._reports.put_nowait((frame["message_id"], thread_id))
            if close_after:
                await conn.ws.close(code=close_code)
                return

    def _handshake_expired(self, conn: Connection) -> None:
        conn.deadline = None
        if conn.session is not None or conn.ws.closed:
            return
        self.metrics.frames.labels("handshake_timeout").inc()
        log.info("chat_handshake_timeout")
        frame = frames.error("handshake_timeout", "no chat was started or resumed in time; reconnect")
        # Through the writer, so the client reads why before the close.
        self._reply(conn, {**frame, "_close": True, "_code": HANDSHAKE_TIMEOUT_CODE})

    @staticmethod
    def _disarm(conn: Connection) -> None:
        """The socket no longer needs to start a chat in time (it holds one, or it waits for
        the database, which is not the client's doing)."""
        if conn.deadline is not None:
            conn.deadline.cancel()
            conn.deadline = None

    def _reply(self, conn: Connection, frame: dict[str, Any]) -> None:
        if not conn.send(frame):
            # Its own queue is full: this client does not read. Drop the socket, not the others.
            log.warning("chat_slow_client_dropped")
            self.metrics.frames.labels("slow_client_dropped").inc()
            self._spawn(conn.ws.close())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.append(task)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        with contextlib.suppress(ValueError):
            self._tasks.remove(task)

    def _send_reply(self, conn: Connection, message_id: str, thread_id: str, frame: dict[str, Any]) -> bool:
        """Queue a reply for one connection unless it was written there already."""
        if conn.replies is None:
            conn.replies = set()
        elif message_id in conn.replies:
            return False
        conn.replies.add(message_id)
        self._reply(conn, {**frame, "_thread": thread_id})
        return True

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
                    log.warning("chat_rate_abuse_closed")
                    # Let the writer flush the error frames first, so the client learns why.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(conn.outbox.flushed(), 1)
                    await conn.ws.close(code=1008, message=b"rate limit")
                    break
                self._reply(conn, frames.error("rate_limited", "too many frames, slow down"))
                continue
            try:
                frame = frames.parse_client_frame(msg.data, self.s.max_text_chars)
                if isinstance(frame, frames.Message):
                    await self._publish_pipelined(conn, frame)
                else:
                    await self._on_frame(conn, frame)
                    self.metrics.frames.labels("ok").inc()
            except frames.FrameError as exc:
                self.metrics.frames.labels(exc.code).inc()
                self._reply(conn, frames.error(exc.code, exc.detail))
            if conn.ws.closed:
                break

    async def _publish_pipelined(self, conn: Connection, frame: frames.Message) -> None:
        """Publish a client's message without waiting for the previous one's confirm (at most
        ``MAX_IN_FLIGHT`` per connection); each is acknowledged when its own confirm arrives.
        Publishes leave in the order the frames came, on one channel."""
        session = conn.session
        if session is None:
            raise frames.FrameError("no_session", "send start or resume first")
        if conn.publishing is None:
            conn.publishing = set()
        while len(conn.publishing) >= MAX_IN_FLIGHT:
            await asyncio.wait(conn.publishing, return_when=asyncio.FIRST_COMPLETED)
        task = asyncio.create_task(self._accept_and_answer(conn, session, frame))
        conn.publishing.add(task)
        task.add_done_callback(conn.publishing.discard)

    async def _accept_and_answer(self, conn: Connection, session: Session, frame: frames.Message) -> None:
        try:
            await self._accept(conn, session, frame)
            self.metrics.frames.labels("ok").inc()
        except frames.FrameError as exc:
            self.metrics.frames.labels(exc.code).inc()
            # Named by its id: the client keeps the message and sends that one again.
            self._reply(conn, frames.error(exc.code, exc.detail, frame.id))
        except Exception as exc:
            # A failure nobody planned for, met by this one message: the others flow on. Type
            # and place only (the message's text must not reach a log); the client keeps the
            # message, named by its id, and sends it again after a while.
            self.metrics.frames.labels("failed").inc()
            log.error("chat_message_failed", error=type(exc).__name__, where=place(exc))
            detail = "this message could not be taken; it is kept and will be sent again"
            self._reply(conn, frames.error("not_accepted", detail, frame.id))

    def _attach(self, conn: Connection, session: Session) -> None:
        self._disarm(conn)
        self._detach(conn)
        known = self.sessions.setdefault(session.id, session)
        conn.session = known
        self.by_session.setdefault(known.id, set()).add(conn)
        if known.thread_id is not None:
            self.by_thread[known.thread_id] = known.id

    def _detach(self, conn: Connection) -> None:
        session = conn.session
        if session is None:
            return
        conn.session = None
        peers = self.by_session.get(session.id)
        if peers is not None:
            peers.discard(conn)
            if not peers:
                del self.by_session[session.id]
                self.sessions.pop(session.id, None)
                if session.thread_id is not None:
                    self.by_thread.pop(session.thread_id, None)

    def _session_frame(self, token: str, session: Session) -> dict[str, Any]:
        return {
            "type": "session",
            "token": token,
            "on_duty": on_duty(self.config, session.line, utcnow()),
            "position": session.position,
        }

    async def _on_frame(self, conn: Connection, frame: frames.ClientFrame) -> None:
        if isinstance(frame, frames.Start):
            await self._start(conn, frame)
        elif isinstance(frame, frames.Resume):
            await self._resume(conn, frame.token)
        elif isinstance(frame, frames.Message):
            if conn.session is None:
                raise frames.FrameError("no_session", "send start or resume first")
            await self._accept(conn, conn.session, frame)
        elif isinstance(frame, frames.End):
            if conn.session is not None:
                await self._end(conn.session, frame.reason)
            else:
                self._reply(conn, {"type": "closed", "_close": True})

    async def _end(self, session: Session, reason: str | None = None) -> None:
        """Quick exit (and "Not safe now", ``reason`` ``not_safe``, which the announcement
        carries as ``why`` so the dispatcher marks the thread so): every socket of the session,
        here and on every replica, gets ``closed`` and is closed, and the token never resumes
        again. Here at once; the end is written to
        the session's document (any replica's resume reads it) and then announced through the
        broker (each replica closes its sockets of it when it hears it). Why the broker and not
        a read of the document before each message: chat goes on through a database outage,
        and a socket that sends nothing would never be checked."""
        self._ended.add(session.id)  # refused here from now on, before the write is done
        self._close_session(session.id)
        try:
            await self.repo.end_session(session.id, self.expiry())
            self._ended.discard(session.id)
        except PyMongoError as exc:
            # The client is leaving anyway: this replica refuses the token meanwhile, and the
            # sweep writes the end once the database is back.
            log.warning("chat_end_not_recorded", session=session.id, error=type(exc).__name__)
        data = {"session": session.id} if reason is None else {"session": session.id, "why": reason}
        event = ConsoleEvent(name=topology.CHAT_SESSION_ENDED, thread_id="", at=utcnow(), data=data)
        try:
            await self.broker.publish(event, topology.EVENTS, topology.chat_session_ended_key())
        except PUBLISH_ERRORS as exc:
            # The other replicas find the end in the database at their next sweep.
            log.warning("chat_end_not_announced", session=session.id, error=type(exc).__name__)
        log.info("chat_ended", session=session.id, why=reason)

    def _close_session(self, sid: str) -> bool:
        """Send ``closed`` to and close every socket of ``sid`` this replica holds."""
        session = self.sessions.get(sid)
        if session is None:
            return False
        session.ended = True
        for conn in list(self.by_session.get(sid, ())):
            self._detach(conn)  # a frame that still comes on it has no session
            self._reply(conn, {"type": "closed", "_close": True})
        return True

    async def _start(self, conn: Connection, frame: frames.Start) -> None:
        line = frame.line or self.s.default_line
        if line not in self.config.lines:
            raise frames.FrameError("bad_field", "unknown line")
        if frame.language and frame.language not in self.config.languages:
            raise frames.FrameError("bad_field", "unknown language")
        if frame.region and frame.region not in self.config.regions:
            raise frames.FrameError("bad_field", "unknown region")
        if frame.topic and frame.topic not in self.config.lines[line].topics:
            raise frames.FrameError("bad_field", "unknown topic")
        self._allow_start(conn)
        token = secrets.token_urlsafe(24)
        session = Session(session_id_for(token), line, frame.language, frame.region, frame.topic)
        facts = {"line": line, "language": frame.language, "region": frame.region, "topic": frame.topic}
        try:
            await self.repo.create_session(session.id, facts, self.expiry())
        except PyMongoError as exc:
            log.warning("chat_start_failed", error=type(exc).__name__)
            self._disarm(conn)  # the widget asks again on this socket until the database is back
            raise frames.FrameError("unavailable", "chat is not available right now; try again") from None
        conn.starts += 1
        self._attach(conn, session)
        self._reply(conn, self._session_frame(token, session))
        log.info("chat_started", session=session.id, line=line)

    async def _resume(self, conn: Connection, token: str) -> None:
        sid = session_id_for(token)
        try:
            # The document is read even when this replica holds the session: another
            # replica may have ended it a moment ago (before its announcement arrives here).
            doc = None if sid in self._ended else await self.repo.session(sid)
            if doc is None:
                # Unknown, forged, ended or expired (deleted by the sweep, so these cannot
                # be told apart): nothing about any conversation is revealed.
                self.metrics.frames.labels("unknown_session").inc()
                raise frames.FrameError("unknown_session", "this chat has ended or expired; start a new one")
            session = self.sessions.get(sid)
            if session is None:
                session = Session(sid, doc["line"], doc.get("language"), doc.get("region"), doc.get("topic"))
                # In use again: it expires a full TTL from now (while a socket holds it, the
                # sweep keeps moving that on).
                await self.repo.keep_sessions([sid], self.expiry())
            thread = await self.repo.thread_by_key(session_thread_key(Channel.CHAT, sid))
            if thread is not None:
                session.thread_id, session.queue = thread["_id"], thread["queue"]
                session.position = await self._position_of(thread)
            # Attached before the backlog is read: a reply published meanwhile is heard live,
            # and the connection's reply set keeps it from being written twice.
            self._attach(conn, session)
            self._reply(conn, self._session_frame(token, session))
            if thread is not None:
                for doc in await self.repo.waiting_replies(thread["_id"]):
                    if self._send_reply(conn, doc["_id"], thread["_id"], backlog_frame(doc)):
                        self.metrics.replayed.inc()
        except PyMongoError as exc:
            log.warning("chat_resume_failed", session=sid, error=type(exc).__name__)
            self._disarm(conn)  # as for start: waiting for the database is not the client's doing
            raise frames.FrameError("unavailable", "cannot resume right now; try again") from None
        log.info("chat_resumed", session=sid, thread_id=session.thread_id)

    async def _accept(self, conn: Connection, session: Session, frame: frames.Message) -> None:
        if session.ended:  # ended (Quick exit) while this message was on its way
            raise frames.FrameError("unknown_session", "this chat has ended; start a new one")
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
        except PUBLISH_ERRORS as exc:
            # The client keeps the message and resends it (the error frame names it): while
            # the broker is away that is "unavailable", as for the database; a publish the
            # broker refused (unroutable, nacked) is "not_accepted". Both are worth a resend.
            log.warning("chat_publish_failed", session=session.id, error=type(exc).__name__)
            if isinstance(exc, DeliveryError):
                raise frames.FrameError("not_accepted", "not accepted yet; send it again") from None
            raise frames.FrameError("unavailable", "chat is not available right now; send it again") from None
        if session.thread_id is None and session.id in self.sessions:
            # The session's thread: its id derives from the session (the dispatcher creates
            # it under that id), so its queue events reach this client from now on.
            session.thread_id = thread_id_for(session_thread_key(Channel.CHAT, session.id))
            self.by_thread[session.thread_id] = session.id
        ack: dict[str, Any] = {"type": "ack", "id": frame.id, "message_id": message_id}
        if frame.repaired:
            ack["repaired"] = True  # the widget tells its sender part of it could not be read
        self._reply(conn, ack)

    # --- replies from consultants -----------------------------------------------------------

    async def replay_missed(self) -> None:
        """After a broker outage (called by the broker once it is back, with this replica's
        reply queue declared and consumed again): that queue is exclusive, so it was gone while
        the broker was, and a reply published then (the store's outbox publishes the replies
        written during the outage as soon as it can) reached no socket. Write each held
        session's replies published but not yet shown, as a resume does; one the queue brings
        meanwhile is written once (the connection's reply set), and one not yet published comes
        live when the outbox publishes it."""
        held = {
            sid: session.thread_id
            for sid, session in self.sessions.items()
            if session.thread_id and self.by_session.get(sid)
        }
        if not held:
            return
        try:
            waiting = await self.repo.published_unshown(sorted(set(held.values())))
        except PyMongoError as exc:
            # The database away too: each client gets them on its next resume.
            log.warning("chat_replay_failed", error=type(exc).__name__)
            return
        replayed = 0
        for sid, thread_id in held.items():
            for doc in waiting.get(thread_id, []):
                for conn in list(self.by_session.get(sid, ())):
                    replayed += self._send_reply(conn, doc["_id"], thread_id, backlog_frame(doc))
        self.metrics.replayed.inc(replayed)
        log.info("chat_replies_replayed", sessions=len(held), replies=replayed)

    async def deliver(self, envelope: Envelope, message: AbstractIncomingMessage) -> None:
        """Queue a consultant's reply for the client's sockets held by this replica (see the
        module's ack policy)."""
        if not isinstance(envelope, OutboundMessage):
            await message.reject(requeue=False)
            return
        if envelope.hold is not None:
            # Held by the client's safe-contact plan (conversations/contact_plan.py): never shown.
            log.warning("reply_held_not_sent", message_id=envelope.message_id, thread_id=envelope.thread_id)
            return
        conns = list(self.by_session.get(envelope.recipient, ()))
        frame = reply_frame(envelope.message_id, envelope.sender_role, envelope.text, envelope.sent_at)
        for conn in conns:
            self._send_reply(conn, envelope.message_id, envelope.thread_id, frame)

    async def _report_loop(self) -> None:
        while True:
            message_id, thread_id = await self._reports.get()
            report = DeliveryReport(
                message_id=message_id,
                thread_id=thread_id,
                status=DeliveryStatus.SENT,
                at=utcnow(),
                detail="shown to the client",
            )
            try:
                await self.broker.publish(
                    report, topology.EVENTS, topology.delivery_key(DeliveryStatus.SENT.value)
                )
            except PUBLISH_ERRORS as exc:
                # Stays "queued" in the database: the client gets it again on resume and
                # shows it once (replies carry their id).
                log.warning("chat_report_failed", message_id=message_id, error=type(exc).__name__)

    # --- queue positions from console events -----------------------------------------------

    async def on_event(self, envelope: Envelope, message: AbstractIncomingMessage) -> None:
        """Events that change a queue's order (``topology.QUEUE_ORDER_EVENTS``): tell clients
        of closing, and mark the queues whose order changed; and ``ChatSessionEnded``: close
        this replica's sockets of that session. Those are the only ones this replica's queue
        is bound to. Ack policy: acked at once; positions are recomputed from the database, so
        a missed event costs one stale position until the next, and a missed end is found by
        the sweep (:meth:`sweep`)."""
        if isinstance(envelope, ConsoleEvent) and envelope.name == topology.CHAT_SESSION_ENDED:
            sid = envelope.data.get("session")
            if isinstance(sid, str) and self._close_session(sid):
                log.info("chat_ended_elsewhere", session=sid)
            return
        if not isinstance(envelope, ConsoleEvent) or envelope.name not in topology.QUEUE_ORDER_EVENTS:
            return
        if envelope.queue:
            self._dirty_queues.add(envelope.queue)
        sid = self.by_thread.get(envelope.thread_id)
        session = self.sessions.get(sid) if sid else None
        if session is not None:
            if session.queue:
                self._dirty_queues.add(session.queue)  # it may have moved (transfer)
            else:
                session.queue = envelope.queue  # its thread was just queued
            if envelope.name == "ThreadClosed":
                session.position = None
                for conn in list(self.by_session.get(session.id, ())):
                    self._reply(conn, {"type": "closed"})
        if self._dirty_queues:
            self._dirty.set()

    async def _position_of(self, thread: Doc) -> int | None:
        if thread.get("status") == "active":
            return WITH_CONSULTANT
        return await self.repo.position(thread)

    async def _position_loop(self) -> None:
        failures = PassFailures("chat_positions_failed")
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            queues, self._dirty_queues = self._dirty_queues, set()
            try:
                await self._refresh_positions(queues)
            except PyMongoError as exc:
                failures.failed(exc)
            else:
                failures.passed()

    async def _refresh_positions(self, queues: set[str]) -> None:
        """Recompute the positions of this replica's clients in ``queues``: two queries per
        queue (its waiting order, and the state of the clients' threads not waiting), not
        two per client."""
        sessions = [s for s in self.sessions.values() if s.thread_id is not None and s.queue in queues]
        if not sessions:
            return
        states = await self.repo.thread_states([s.thread_id for s in sessions if s.thread_id])
        orders: dict[str, list[str]] = {}
        for session in sessions:
            state = states.get(session.thread_id or "")
            if state is None:
                continue
            session.queue = state["queue"]
            if state.get("status") == "waiting":
                if session.queue not in orders:
                    orders[session.queue] = await self.repo.waiting_order(session.queue)
                order = orders[session.queue]
                position = order.index(session.thread_id) + 1 if session.thread_id in order else None
            elif state.get("status") == "active":
                position = WITH_CONSULTANT
            else:
                position = None
            if position != session.position:
                session.position = position
                for conn in list(self.by_session.get(session.id, ())):
                    self._reply(conn, {"type": "position", "position": position})

    async def close_all(self) -> None:
        for conn in list(self.connections):
            await conn.ws.close(code=1001, message=b"server shutdown")
