"""Handling one inbound message: find or create its thread, store it, announce it.

Ack policy: the broker module acks only after :meth:`Dispatcher.handle` returns, i.e.
after the database writes. A redelivered message finds its thread (unique key) and its
message (unique source id) already there and changes nothing; the console event is
published again, which consoles treat as a refresh, never as a new message.
"""

from __future__ import annotations

from aio_pika.abc import AbstractIncomingMessage

from services.dispatcher import routing
from services.dispatcher.email_threading import (
    is_bounce_of_ours,
    may_join,
    references,
    reply_tokens,
)
from services.store.repository import Repository, new_id, new_reply_token
from shared import topology
from shared.broker import Broker
from shared.config import HotlineConfig
from shared.envelope import Channel, ConsoleEvent, Envelope, InboundMessage, utcnow
from shared.logs import get_logger

log = get_logger(__name__)


class Dispatcher:
    def __init__(self, repo: Repository, broker: Broker, config: HotlineConfig) -> None:
        self.repo = repo
        self.broker = broker
        self.config = config

    def _new_thread(self, msg: InboundMessage) -> dict[str, object]:
        region = msg.chat.region if msg.chat else None
        queue = routing.choose_queue(self.config, msg.line, region)
        now = utcnow()
        return {
            "_id": new_id(),
            "key": routing.thread_key(msg),
            "channel": msg.channel.value,
            "line": msg.line,
            "queue": queue,
            "organisations": self.config.queues[queue].organisations,
            "status": "waiting",
            "priority": 0,
            "client": {"address": msg.sender},
            "subject": msg.subject,
            "language": msg.chat.language if msg.chat else None,
            "region": region,
            "topic": msg.chat.topic if msg.chat else None,
            "reply_token": new_reply_token(),
            "assignee": None,
            "created_at": now,
            "waiting_since": msg.received_at,
            "last_message_at": msg.received_at,
        }

    async def _email_thread(self, msg: InboundMessage) -> dict[str, object] | None:
        """The thread a mail continues, if it refers to us and comes from the thread's client."""
        refs = references(msg)
        thread = await self.repo.email_thread_by_reference(refs, reply_tokens(refs))
        if thread is not None and not may_join(thread, msg):
            log.info("email_thread_refused", message_id=msg.message_id, thread_id=thread["_id"])
            return None
        return thread

    async def _bounce(self, msg: InboundMessage) -> bool:
        """A delivery-status report about our replies: mark them failed so the consultant sees
        it; the report itself is kept in the raw-mail store, not shown as a client message.
        False when it names none of ours (then it is handled as an ordinary, robot, mail)."""
        assert msg.email is not None
        changed = await self.repo.mark_bounced(msg.email.bounce_of, msg.received_at, "bounced")
        if not changed and not await self.repo.email_thread_by_reference(msg.email.bounce_of, []):
            return False
        for doc in changed:
            thread = await self.repo.thread(doc["thread_id"])
            if thread is None:
                continue
            event = ConsoleEvent(
                name="MessageDelivered",
                thread_id=thread["_id"],
                at=utcnow(),
                queue=thread["queue"],
                line=thread["line"],
                message_id=doc["_id"],
                data={"status": "failed", "detail": "bounced"},
            )
            await self.broker.publish(event, topology.EVENTS, topology.event_key(event.name))
        log.info("processed", message_id=msg.message_id, channel="email", bounce=True, marked=len(changed))
        return True

    async def handle(self, envelope: Envelope, message: AbstractIncomingMessage) -> None:
        if not isinstance(envelope, InboundMessage):
            log.error("unexpected_envelope", kind=envelope.kind)
            await message.reject(requeue=False)
            return
        msg = envelope
        if msg.line not in self.config.lines:
            log.error("unknown_line", message_id=msg.message_id, line=msg.line)
            await message.reject(requeue=False)
            return
        existing = None
        if msg.channel is Channel.EMAIL:
            if is_bounce_of_ours(msg) and await self._bounce(msg):
                return
            existing = await self._email_thread(msg)
        if existing is None:
            existing = await self.repo.thread_by_key(routing.thread_key(msg))
        new_thread = self._new_thread(msg) if existing is None else {}
        accepted = await self.repo.accept_inbound(msg, existing, new_thread)
        thread = accepted.thread
        log.info(
            "processed",
            message_id=msg.message_id,
            thread_id=thread["_id"],
            channel=msg.channel.value,
            queue=thread["queue"],
            thread_created=accepted.thread_created,
            duplicate=not accepted.message_stored,
            reopened=accepted.reopened,
        )
        name = "ThreadQueued" if accepted.thread_created or accepted.reopened else "MessageReceived"
        event = ConsoleEvent(
            name=name,
            thread_id=thread["_id"],
            at=utcnow(),
            queue=thread["queue"],
            line=thread["line"],
            message_id=msg.message_id,
        )
        await self.broker.publish(event, topology.EVENTS, topology.event_key(name))
