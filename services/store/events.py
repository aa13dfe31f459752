"""Live console events (``GET /api/events``) and delivery reports.

Every store replica consumes its own exclusive queue of console events and writes each
event to the sockets of the consultants allowed to see its queue; an event about a case
(conversations/cases.py) only to those allowed to see the case. Events are hints to
refresh ("thread X changed"); the API stays the source of truth, so a missed event costs
a refresh, never data.

A socket lives no longer than its session. Logging out or disabling an account publishes
``SessionsEnded`` (:func:`sessions_ended`) through the same exchange, so every replica closes
that login's sockets (close code 4401) the moment it hears it; the event itself never reaches
a console. Why the broker and not a session check before each event: the check would cost a
database read per socket per event, and a socket that hears no event would stay open. As a
backstop for what publishes nothing (the admin command, a password reset, expiry), each socket
checks its session every ``RECHECK_SECONDS``.

Delivery reports (ack policy): acked after the message's delivery status was written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aio_pika.abc import AbstractIncomingMessage
from aiohttp import WSMsgType, web
from pymongo.errors import PyMongoError

from conversations import announce
from conversations.cases import CASE_EVENTS, CaseViewer, case_viewer
from conversations.model import EventName
from conversations.repository import Repository
from services.store.auth import COOKIE, Sessions, User, token_hash
from services.store.shift import Shift, seen_quietly
from shared.broker import Broker
from shared.envelope import ConsoleEvent, DeliveryReport, Envelope, utcnow
from shared.logs import get_logger
from shared.supervise import Supervisor

log = get_logger(__name__)

OUTBOX = 256
SESSIONS_ENDED = "SessionsEnded"
RECHECK_SECONDS = 60.0
# WebSocket close code of an ended session (RFC 6455 7.4.2: 4000-4999 are the application's).
SESSION_ENDED_CODE = 4401
# A socket whose writer failed: the console reconnects and refreshes (RFC 6455 7.4.1).
INTERNAL_ERROR_CODE = 1011


def sessions_ended(login: str, session: str | None = None) -> ConsoleEvent:
    """The event that closes ``login``'s sockets on every replica: the one of ``session``
    (a token hash, at log-out) or all of them (None: the account was disabled)."""
    # A console event is about a thread; this one is about none, hence the empty thread id.
    return ConsoleEvent(
        name=SESSIONS_ENDED, thread_id="", at=utcnow(), data={"login": login, "session": session}
    )


@dataclass
class _Client:
    queues: set[str]
    outbox: asyncio.Queue[str]
    login: str
    session: str  # the hash of the session token, as the sessions collection names it
    cases: CaseViewer | None = None  # whose case events it hears (none: a consultant's)


class ConsoleHub:
    def __init__(
        self,
        sessions: Sessions,
        visible: Callable[[User], list[str]],
        recheck_seconds: float = RECHECK_SECONDS,
        supervisor: Supervisor | None = None,
        shift: Shift | None = None,
    ) -> None:
        self.sessions = sessions
        self.shift = shift  # told when a console opens and closes (services/store/shift.py)
        self.supervisor = supervisor
        self.visible = visible
        self.recheck_seconds = recheck_seconds
        self.clients: dict[web.WebSocketResponse, _Client] = {}
        self._closing: set[asyncio.Task[Any]] = set()

    async def handle_ws(self, request: web.Request) -> web.StreamResponse:
        token = request.cookies.get(COOKIE)
        resolved = await self.sessions.resolve(token)
        if resolved is None or token is None:
            raise web.HTTPUnauthorized(text="log in first")
        origin = request.headers.get("Origin")
        if origin is not None and origin.split("://", 1)[-1] != request.host:
            # Cross-site WebSocket hijacking: a foreign page must not read a consultant's feed.
            raise web.HTTPForbidden(text="cross-origin socket refused")
        user, _ = resolved
        ws = web.WebSocketResponse(heartbeat=30, compress=False, max_msg_size=4096)
        await ws.prepare(request)
        outbox: asyncio.Queue[str] = asyncio.Queue(OUTBOX)
        self.clients[ws] = _Client(
            set(self.visible(user)),
            outbox,
            user.login,
            token_hash(token),
            case_viewer(user.role, user.organisation, user.lines),
        )
        writer = asyncio.create_task(self._writer(ws, outbox), name="console-writer")
        if self.supervisor is not None:
            # A writer that dies leaves the socket open but deaf: the console would show a live
            # feed and hear nothing. Close it instead; the console reconnects and refreshes.
            self.supervisor.companion(writer, "console-writer", lambda: self._end(ws, INTERNAL_ERROR_CODE))
        watcher = asyncio.create_task(self._watch(ws, token))
        await seen_quietly(self.shift, user.login)
        try:
            await ws.send_str(json.dumps({"type": "hello", "consultant": user.login}))
            async for msg in ws:  # the console only listens; anything it sends is ignored
                if msg.type is WSMsgType.ERROR:
                    break
        finally:
            self.clients.pop(ws, None)
            for task in (writer, watcher):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            # Last seen now: a console gone counts from here (shift.py).
            await seen_quietly(self.shift, user.login, back=False)
        return ws

    def logins(self) -> list[str]:
        """Whose consoles this replica holds open."""
        return [c.login for c in self.clients.values()]

    async def _watch(self, ws: web.WebSocketResponse, token: str) -> None:
        """Close the socket once its session is gone however it ended (see the module's doc)."""
        while True:
            await asyncio.sleep(self.recheck_seconds)
            try:
                resolved = await self.sessions.resolve(token)
            except PyMongoError:
                continue  # the database is away: the console stays open, asked again next time
            if resolved is None:
                self._end(ws)
                return

    def _end(self, ws: web.WebSocketResponse, code: int = SESSION_ENDED_CODE) -> None:
        """Stop writing to ``ws`` at once and close it; the handler's ``finally`` cleans up."""
        if self.clients.pop(ws, None) is None:
            return
        reason = b"session ended" if code == SESSION_ENDED_CODE else b"server error"
        task = asyncio.get_running_loop().create_task(ws.close(code=code, message=reason))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def end_sessions(self, login: str, session: str | None) -> None:
        for ws, client in list(self.clients.items()):
            if client.login == login and (session is None or client.session == session):
                self._end(ws)

    async def _writer(self, ws: web.WebSocketResponse, outbox: asyncio.Queue[str]) -> None:
        while True:
            await ws.send_str(await outbox.get())

    def broadcast(self, event: ConsoleEvent) -> None:
        if event.name == SESSIONS_ENDED:  # for the replicas, never for a console
            login, session = event.data.get("login"), event.data.get("session")
            if isinstance(login, str):
                self.end_sessions(login, session if isinstance(session, str) else None)
            return
        frame = json.dumps({"type": "event", **json.loads(event.model_dump_json())})
        about_case = event.name in CASE_EVENTS
        for ws, client in list(self.clients.items()):
            # A case event goes only to those who may see the case; it names no queue.
            if about_case:
                heard = client.cases is not None and client.cases.sees(event.organisation, event.line)
            else:
                heard = event.queue is None or event.queue in client.queues
            if heard:
                try:
                    client.outbox.put_nowait(frame)
                except asyncio.QueueFull:
                    # A console that does not read is closed; it reconnects and refreshes.
                    asyncio.get_running_loop().create_task(ws.close())

    async def on_event(self, envelope: Envelope, message: AbstractIncomingMessage) -> None:
        if isinstance(envelope, ConsoleEvent):
            self.broadcast(envelope)

    async def close_all(self) -> None:
        for ws in list(self.clients):
            await ws.close(code=1001, message=b"server shutdown")


class DeliveryRecorder:
    def __init__(self, repo: Repository, broker: Broker) -> None:
        self.repo = repo
        self.broker = broker

    async def handle(self, envelope: Envelope, message: AbstractIncomingMessage) -> None:
        if not isinstance(envelope, DeliveryReport):
            await message.reject(requeue=False)
            return
        doc = await self.repo.set_delivery(
            envelope.message_id, envelope.status.value, envelope.at, envelope.detail
        )
        log.info(
            "delivery_recorded",
            message_id=envelope.message_id,
            status=envelope.status.value,
            applied=doc is not None,
        )
        if doc is None:
            return
        thread = await self.repo.thread(doc["thread_id"])
        if thread is None:
            return
        # Inside a broker handler: a broker that is away raises, and the report is retried.
        await announce.announce(
            self.broker,
            EventName.MESSAGE_DELIVERED,
            thread,
            message_id=envelope.message_id,
            status=envelope.status.value,
        )
