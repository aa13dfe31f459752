"""Live console events (``GET /api/events``) and delivery reports.

Every store replica consumes its own exclusive queue of console events and writes each
event to the sockets of the consultants allowed to see its queue. Events are hints to
refresh ("thread X changed"); the API stays the source of truth, so a missed event costs
a refresh, never data.

Delivery reports (ack policy): acked after the message's delivery status was written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

from aio_pika.abc import AbstractIncomingMessage
from aiohttp import WSMsgType, web

from services.store.auth import COOKIE, Sessions, User
from services.store.repository import Repository
from shared import topology
from shared.broker import Broker
from shared.envelope import ConsoleEvent, DeliveryReport, Envelope, utcnow
from shared.logs import get_logger

log = get_logger(__name__)

OUTBOX = 256


class ConsoleHub:
    def __init__(self, sessions: Sessions, visible: Callable[[User], list[str]]) -> None:
        self.sessions = sessions
        self.visible = visible
        self.clients: dict[web.WebSocketResponse, tuple[set[str], asyncio.Queue[str]]] = {}

    async def handle_ws(self, request: web.Request) -> web.StreamResponse:
        resolved = await self.sessions.resolve(request.cookies.get(COOKIE))
        if resolved is None:
            raise web.HTTPUnauthorized(text="log in first")
        origin = request.headers.get("Origin")
        if origin is not None and origin.split("://", 1)[-1] != request.host:
            # Cross-site WebSocket hijacking: a foreign page must not read a consultant's feed.
            raise web.HTTPForbidden(text="cross-origin socket refused")
        user, _ = resolved
        ws = web.WebSocketResponse(heartbeat=30, compress=False, max_msg_size=4096)
        await ws.prepare(request)
        outbox: asyncio.Queue[str] = asyncio.Queue(OUTBOX)
        self.clients[ws] = (set(self.visible(user)), outbox)
        writer = asyncio.create_task(self._writer(ws, outbox))
        try:
            await ws.send_str(json.dumps({"type": "hello", "consultant": user.login}))
            async for msg in ws:  # the console only listens; anything it sends is ignored
                if msg.type is WSMsgType.ERROR:
                    break
        finally:
            del self.clients[ws]
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        return ws

    async def _writer(self, ws: web.WebSocketResponse, outbox: asyncio.Queue[str]) -> None:
        while True:
            await ws.send_str(await outbox.get())

    def broadcast(self, event: ConsoleEvent) -> None:
        frame = json.dumps({"type": "event", **json.loads(event.model_dump_json())})
        for ws, (queues, outbox) in list(self.clients.items()):
            if event.queue is None or event.queue in queues:
                try:
                    outbox.put_nowait(frame)
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
        data: dict[str, Any] = {"status": envelope.status.value}
        event = ConsoleEvent(
            name="MessageDelivered",
            thread_id=thread["_id"],
            at=utcnow(),
            queue=thread["queue"],
            line=thread["line"],
            message_id=envelope.message_id,
            data=data,
        )
        await self.broker.publish(event, topology.EVENTS, topology.event_key(event.name))
