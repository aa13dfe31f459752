"""Replies held by a client's safe-contact plan (conversations/contact_plan.py): the store's
pass that sends them once the plan allows it.

A held reply is stored with delivery status ``held`` and the reason, and never published (the
outbox skips it; :func:`conversations.outbound.publish_outbound` refuses it). Each pass asks,
per thread with held replies, whether a consultant's reply may go now (the plan as it is now,
the clock in the line's time zone, whether the client wrote last); if so, every held reply of
the thread becomes ``queued`` and is published, oldest first; if not, the reason is kept up to
date (quiet hours may end while the client has still to write first). A reply's release is one
conditional write, so a pass and a consultant's cancel, or two replicas, never both win.

One store replica passes at a time: the one holding the ``held-replies`` lease
(shared/lease.py), renewed each pass, like the outbox sweeper. A plan just changed is also
applied at once to its thread (:meth:`HeldReplies.check_thread`), without the lease: the
conditional release keeps that harmless.
"""

from __future__ import annotations

from collections.abc import Iterable

from conversations import announce
from conversations.contact_plan import plan_timezone
from conversations.model import EventName
from conversations.outbound import periodically, publish_outbound
from conversations.repository import Doc, Repository
from shared.broker import PUBLISH_ERRORS, Broker
from shared.config import HotlineConfig
from shared.envelope import DeliveryStatus, utcnow
from shared.lease import Lease
from shared.logs import get_logger
from shared.supervise import Heartbeat

log = get_logger(__name__)

LEASE_KEY = "held-replies"
BATCH = 500


class HeldReplies:
    def __init__(
        self,
        repo: Repository,
        broker: Broker,
        config: HotlineConfig,
        lease: Lease,
        holder: str,
        page: int = BATCH,
    ) -> None:
        self.repo = repo
        self.broker = broker
        self.config = config
        self.lease = lease
        self.holder = holder
        self.page = page

    def timezone(self, thread: Doc) -> str:
        return plan_timezone(self.config, thread)

    async def hold_for(self, thread: Doc) -> str | None:
        """Why a consultant's reply in ``thread`` may not go now, or None (the reply route asks
        this before storing a reply)."""
        return await self.repo.contact_plans.hold_for(thread, self.timezone(thread), utcnow())

    async def check(self) -> int:
        """One pass over every held reply; returns how many were released."""
        if not await self.lease.take(LEASE_KEY, self.holder):
            return 0  # another replica passes
        # Every held reply, a page at a time: replies that must wait longer (a plan's long
        # quiet hours) never keep the ones after them from going.
        released, since, seen = 0, None, set[str]()
        while True:
            page = await self.repo.contact_plans.held(self.page, since=since)
            fresh = [d for d in page if d["_id"] not in seen]
            if not fresh:
                return released
            released += await self._check(fresh)
            if len(page) < self.page:
                return released
            # The next page starts at this one's last time; replies stored in the same
            # millisecond come again and are skipped by id.
            last = page[-1]["created_at"]
            seen = {d["_id"] for d in page if d["created_at"] == last} | (seen if last == since else set())
            since = last

    async def check_thread(self, thread_id: str) -> int:
        """The held replies of one thread (its plan just changed); how many were released."""
        return await self._check(await self.repo.contact_plans.held(self.page, thread_id))

    async def _check(self, held: Iterable[Doc]) -> int:
        by_thread: dict[str, list[Doc]] = {}
        for doc in held:
            by_thread.setdefault(doc["thread_id"], []).append(doc)
        released = 0
        for thread_id, docs in by_thread.items():
            thread = await self.repo.thread(thread_id)
            if thread is None:
                continue
            reason = await self.hold_for(thread)
            if reason is not None:
                for doc in docs:
                    await self.repo.contact_plans.still_held(doc["_id"], reason)
                continue
            for doc in docs:
                if await self._release(thread, doc["_id"]):
                    released += 1
        return released

    async def _release(self, thread: Doc, message_id: str) -> bool:
        if not await self.repo.contact_plans.release(message_id):
            return False  # cancelled or released meanwhile
        log.info("held_reply_released", message_id=message_id, thread_id=thread["_id"])
        doc = await self.repo.message(message_id)
        if doc is not None:
            try:
                await publish_outbound(self.broker, self.repo, thread, doc)
            except PUBLISH_ERRORS as exc:
                # Queued and unpublished: the outbox sweeper publishes it once the broker is back.
                log.warning("held_reply_publish_deferred", message_id=message_id, error=type(exc).__name__)
                return True
        await announce.publish_or_log(
            self.broker,
            announce.thread_event(
                EventName.MESSAGE_DELIVERED,
                thread,
                message_id=message_id,
                data={"status": DeliveryStatus.QUEUED.value},
            ),
        )
        return True

    async def run(self, every: float, heartbeat: Heartbeat) -> None:
        # A period: the clock and a plan offer no event to wait for.
        await periodically(self.check, every, heartbeat, "held_replies_pass_failed")
