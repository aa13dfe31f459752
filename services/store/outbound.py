"""Handing a stored outbound message (a consultant's reply or an automatic answer) to its
channel. Used by the store's API and by the dispatcher, so both build the same envelope."""

from __future__ import annotations

from services.store.repository import Doc, Repository
from shared import topology
from shared.broker import Broker
from shared.envelope import Channel, OutboundMessage


def outbound_envelope(thread: Doc, doc: Doc) -> OutboundMessage:
    email = thread.get("email") or {}
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
    )


async def publish_outbound(broker: Broker, repo: Repository, thread: Doc, doc: Doc) -> None:
    """Publish (confirmed) unless already published, then remember that it was.

    A crash between the two publishes it again on the next attempt; the channels recognise
    the same message id (the SMTP sender keeps a record of what it sent).
    """
    if doc.get("published"):
        return
    out = outbound_envelope(thread, doc)
    await broker.publish(
        out, topology.OUTBOUND, topology.outbound_key(out.channel, thread["line"]), message_id=doc["_id"]
    )
    await repo.mark_published(doc["_id"])
