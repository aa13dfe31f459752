"""Handing a stored outbound message (a consultant's reply or an automatic answer) to its
channel. Used by the store's API and by the dispatcher, so both build the same envelope.

The outbox: every outbound message is listed in the collection ``outbox`` (its id), stored
with ``published: false`` and published right after; one whose publish failed (the broker
away, the process stopped in between) stays listed, and :class:`OutboxSweeper` in the store
publishes it once the broker is back. The sweep reads the list, then those messages by
``_id`` (``Repository.outbox``): its cost follows the replies waiting, not the messages stored.
Publishing twice is harmless: each channel knows a reply by its message id (the SMTP sender
records its outcome and holds a lease per reply, the widget shows a message id once, the
Telegram sender records what it sent).

A reply the client's safe-contact plan holds (conversations/contact_plan.py) is never
published: :func:`publish_outbound` refuses it and the outbox skips it; the store's release pass
(services/store/held_replies.py) publishes it once allowed. The envelope carries the plan's
neutral sender name and subject for e-mail.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

from conversations.contact_plan import NOT_OUT, ContactPlan
from conversations.repository import Doc, Repository
from shared import topology
from shared.broker import PUBLISH_ERRORS, Broker
from shared.envelope import AttachmentRef, Channel, OutboundMessage, utcnow
from shared.lease import Lease
from shared.logs import get_logger
from shared.supervise import Heartbeat, PassFailures

log = get_logger(__name__)

# Left to the path that stored a message before the sweeper publishes it: it publishes at once.
GRACE = timedelta(seconds=10)
BATCH = 100
LEASE_KEY = "outbox"


def outbound_envelope(thread: Doc, doc: Doc, plan: ContactPlan | None = None) -> OutboundMessage:
    """The envelope of stored message ``doc`` of ``thread`` (opened: its subject in clear)."""
    email = thread.get("email") or {}
    delivery = doc.get("delivery") or {}
    return OutboundMessage(
        message_id=doc["_id"],
        thread_id=thread["_id"],
        channel=Channel(thread["channel"]),
        line=thread["line"],
        recipient=thread["client"]["address"],
        text=doc["text"],
        sent_at=doc["created_at"],
        sender_role="bot" if doc["author"] == "bot" else "consultant",
        subject=thread.get("subject"),
        email_message_id=doc.get("email_message_id"),
        in_reply_to=email.get("last_client_message_id"),
        references=list(email.get("references", [])),
        hold=(delivery.get("detail") or "held") if delivery.get("status") in NOT_OUT else None,
        sender_name=plan.sender_name if plan is not None else None,
        neutral_subject=plan.subject if plan is not None else None,
        attachments=[AttachmentRef.model_validate(a) for a in doc.get("attachments") or []],
        organisation=doc.get("organisation"),
    )


async def cancel_undeliverable(repo: Repository, thread: Doc, doc: Doc) -> bool:
    """Whether ``doc`` has nothing to send or nobody to send it to (retention or an erasure
    deleted its text or the address): then it is cancelled, never published, and no longer in
    the way of the messages after it."""
    if doc.get("text") and (thread.get("client") or {}).get("address"):
        return False  # ``thread`` opened: an address sealed under an erased key reads as None
    await repo.messages.update_one(
        {"_id": doc["_id"], "published": False},
        {"$set": {"published": True, "delivery.status": "cancelled", "delivery.detail": "text deleted"}},
    )
    return True


async def publish_outbound(broker: Broker, repo: Repository, thread: Doc, doc: Doc) -> None:
    """Publish (confirmed) unless already published, then remember that it was.

    A crash between the two publishes it again on the next attempt; the channels recognise
    the same message id (the SMTP sender keeps a record of what it sent). A held or cancelled
    reply is not published at all.
    """
    if doc.get("published") or (doc.get("delivery") or {}).get("status") in NOT_OUT:
        return
    # The reply's Subject and recipient are the thread's, sealed at rest (Repository.open_thread).
    opened = await repo.open_thread(thread)
    if await cancel_undeliverable(repo, opened, doc):
        return
    plan = await repo.contact_plans.plan_for(thread) if thread["channel"] == Channel.EMAIL else None
    out = outbound_envelope(opened, doc, plan)
    await broker.publish(
        out, topology.OUTBOUND, topology.outbound_key(out.channel, thread["line"]), message_id=doc["_id"]
    )
    await repo.mark_published(doc["_id"])


class OutboxSweeper:
    """Publishes outbound messages that were stored but not published (see the module doc).

    One store replica sweeps at a time: the one holding the ``outbox`` lease (shared/lease.py),
    renewed at each pass; another takes over when it lapses. So two replicas never publish the
    same message side by side."""

    def __init__(self, repo: Repository, broker: Broker, lease: Lease, holder: str) -> None:
        self.repo = repo
        self.broker = broker
        self.lease = lease
        self.holder = holder

    async def sweep(self) -> int:
        """One pass; returns how many were published. Stops at the first broker failure
        (the next pass tries again); a database failure propagates to ``run``."""
        if not await self.lease.take(LEASE_KEY, self.holder):
            return 0  # another replica sweeps
        published = 0
        for doc in await self.repo.outbox(utcnow() - GRACE, BATCH):
            thread = await self.repo.thread(doc["thread_id"])
            if thread is None:
                continue
            thread = await self.repo.open_thread(thread)
            if await cancel_undeliverable(self.repo, thread, doc):
                continue
            try:
                await publish_outbound(self.broker, self.repo, thread, doc)
            except PUBLISH_ERRORS as exc:
                log.warning("outbox_publish_failed", message_id=doc["_id"], error=type(exc).__name__)
                break
            published += 1
            log.info("outbox_published", message_id=doc["_id"], thread_id=thread["_id"])
        return published

    async def run(self, every: float, heartbeat: Heartbeat) -> None:
        await periodically(self.sweep, every, heartbeat, "outbox_sweep_failed")


async def periodically(
    one_pass: Callable[[], Awaitable[object]], every: float, heartbeat: Heartbeat, failed: str
) -> None:
    """Run ``one_pass`` every ``every`` seconds for a supervised task, beating after each pass
    that ends well. One that fails is logged as ``failed`` and the next pass tries again: the
    database or the broker away as one warning for the whole outage, anything else as an
    error with its type and place (:class:`shared.supervise.PassFailures`)."""
    failures = PassFailures(failed)
    while True:
        try:
            await one_pass()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the next pass tries again
            failures.failed(exc)
        else:
            failures.passed()
            heartbeat.beat()
        await asyncio.sleep(every)  # a period, not a wait for an event
