"""A chat whose client left: the dispatcher marks its thread for the console, and clears
the mark when the client writes again (the rules: conversations/client_left.py).

- Quick exit and "not safe now": chat_ingest publishes ``ChatSessionEnded`` (shared/topology.py)
  with ``why`` ``not_safe`` for the latter, and ``channel`` ``telegram`` for the bot's
  ``/notsafe``; the durable queue ``dispatcher.chat_ended`` brings it to
  :meth:`Departures.on_chat_ended`, which marks the session's thread. ``ClientLeft`` with ``why``
  ``not_safe`` is what tells the organisation's supervisors (their consoles raise it as an
  alert; services/store/static/console.js). Ack policy: acked when the handler returns, after
  the mark is stored, recorded in the event log and announced; a failure before that is
  retried by the broker module, and a redelivery finds the thread marked and announces it again
  (consoles take a repeat as a refresh). An end the broker never got (chat_ingest logs
  chat_end_not_announced), or one handled before the dispatcher stored the session's first
  message, marks nothing: the silence rule marks that web chat later.
- Silence: each sweeper pass (sweeper.py) calls :meth:`Departures.sweep_silent`.
- Writing again: the dispatcher's accept path calls :func:`returned`.

Each mark and clear is a conditional single-document update: replicas doing the same at once
change a thread once, and only the one that changed it records the fact.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from aio_pika.abc import AbstractIncomingMessage

from conversations import announce
from conversations.client_left import (
    CHANNELS,
    ENDED,
    NOT_SAFE,
    NOT_SAFE_CHANNELS,
    QUICK_EXIT,
    SILENT,
    marker,
    silent_since,
    wrote_after,
)
from conversations.identity import session_thread_key, thread_id_for
from conversations.model import EventName, ThreadStatus
from conversations.repository import Doc, Repository
from shared import topology
from shared.broker import Broker
from shared.config import HotlineConfig
from shared.envelope import Channel, ConsoleEvent, Envelope, utcnow
from shared.logs import get_logger

log = get_logger(__name__)

OPEN = (ThreadStatus.WAITING, ThreadStatus.ACTIVE)


async def _record_and_announce(
    repo: Repository, broker: Broker, name: str, thread: Doc, **data: object
) -> None:
    """Keep the fact in the event log and announce it; a broker that is away raises (the
    change is stored; the caller's policy decides what a failure means)."""
    await announce.publish(broker, await announce.record(repo, name, thread, None, **data))


async def returned(repo: Repository, broker: Broker, thread: Doc, at: datetime) -> None:
    """The client of ``thread`` (as read before their message was stored) wrote at ``at``: a
    mark from before then goes. Nothing is written for a thread without a mark."""
    left = thread.get("client_left") or {}
    if not wrote_after(left, at) or not await repo.client_wrote(thread["_id"], at):
        return
    log.info("client_returned", thread_id=thread["_id"], why=left.get("why"))
    await _record_and_announce(repo, broker, EventName.CLIENT_RETURNED, thread, why=left.get("why"))


class Departures:
    def __init__(self, repo: Repository, broker: Broker, config: HotlineConfig) -> None:
        self.repo = repo
        self.broker = broker
        self.policy = config.queue_policy

    async def on_chat_ended(self, envelope: Envelope, message: AbstractIncomingMessage) -> None:
        """A web chat's client ended the session (Quick exit, or "Not safe now"), or a Telegram
        client said it is not safe now: mark its thread, if open."""
        if not isinstance(envelope, ConsoleEvent) or envelope.name != topology.CHAT_SESSION_ENDED:
            log.error("unexpected_envelope", kind=envelope.kind)
            return
        sid, channel = envelope.data.get("session"), envelope.data.get("channel", Channel.CHAT.value)
        if not isinstance(sid, str) or not sid or channel not in NOT_SAFE_CHANNELS:
            log.error("chat_end_without_session")
            return
        # Only a web chat session ends; a Telegram chat is hidden, and goes on when they write.
        why = NOT_SAFE if envelope.data.get("why") == NOT_SAFE or channel != Channel.CHAT else QUICK_EXIT
        thread_id = thread_id_for(session_thread_key(Channel(channel), sid))
        legacy = envelope.data.get("legacy")
        if channel == Channel.TELEGRAM and isinstance(legacy, str) and legacy:
            # A chat whose open thread was stored under its chat id (Dispatcher's legacy rule).
            old = await self.repo.thread_by_key(session_thread_key(Channel.TELEGRAM, legacy))
            if old is not None and old["status"] in OPEN:
                thread_id = old["_id"]
        marked = await self.repo.mark_client_left(thread_id, marker(why, envelope.at, utcnow()))
        if marked is not None:
            log.info("client_left", thread_id=thread_id, why=why)
            await _record_and_announce(self.repo, self.broker, EventName.CLIENT_LEFT, marked, why=why)
            return
        thread = await self.repo.thread(thread_id)
        if thread is None or thread["status"] not in OPEN:
            # No thread (the client wrote nothing, or their message is not stored yet) or a
            # closed one: nobody is waiting on this chat.
            log.info("chat_end_not_marked", thread_id=thread_id, thread=thread is not None)
        elif (thread.get("client_left") or {}).get("why") == why:
            # Marked by an earlier delivery of this end, whose announcement may not have gone.
            await announce.announce(self.broker, EventName.CLIENT_LEFT, thread, why=why)

    async def sweep_silent(self, now: datetime) -> int:
        """Mark the open web chats whose client has not written for ``client_silent_minutes``;
        clear a silence mark the client has written after (set while their message was on its
        way). Returns how many were marked. One query for the open chats (a bounded set), one
        for their clients' messages within the period (thread_messages index), then one read
        of the latest client message of each chat that fell silent."""
        minutes = self.policy.client_silent_minutes
        if minutes <= 0:
            return 0
        marked = 0
        chats = [
            t
            for t in await self.repo.open_threads_of(list(CHANNELS))
            if (t.get("client_left") or {}).get("why") not in ENDED  # an ended session writes nothing more
        ]
        recent = await self.repo.latest_client_messages(
            [t["_id"] for t in chats], since=now - timedelta(minutes=minutes)
        )
        for thread in chats:
            left, last = thread.get("client_left"), recent.get(thread["_id"])
            if left is None and last is None:
                last = await self.repo.last_client_message_at(thread["_id"]) or thread["waiting_since"]
                if not silent_since(last, now, minutes):
                    continue
                doc = await self.repo.mark_client_left(thread["_id"], marker(SILENT, last, now))
                if doc is not None:
                    marked += 1
                    log.info("client_left", thread_id=thread["_id"], why=SILENT)
                    await _record_and_announce(
                        self.repo, self.broker, EventName.CLIENT_LEFT, doc, why=SILENT, since=last.isoformat()
                    )
            elif left is not None and last is not None:
                # A message within the period; one the accept path's own check missed (it was
                # on its way as the mark was set) is never older than that.
                await returned(self.repo, self.broker, thread, last)
        return marked
