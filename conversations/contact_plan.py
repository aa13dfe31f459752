"""A safe-contact plan: how a client may be answered without someone else noticing.

A consultant records it, for the person (the thread's client) or, for a thread whose person is
not known (a web chat nobody linked), for the thread alone; a thread linked to a client later
follows the client's plan. It holds no text a person wrote, only choices:

- ``channels``: the channels a reply may leave by (None: any). A reply on another channel is
  held until the plan allows it or a consultant cancels it;
- ``quiet_hours``: ``{"from", "to"}`` local times in the line's time zone (``Hours.timezone``),
  across midnight when ``from`` is after ``to``; a reply written then is held until ``to``;
- ``write_first``: answer only when they write first: a consultant's reply goes only while the
  client's last message has no consultant's reply after it yet (the client's turn); later ones
  wait until the client writes again. Automatic answers do not use up the client's turn;
- ``sender_name`` and ``subject``: the From display name and the Subject of every mail to the
  client (replies and automatic answers), instead of the line's and "Re: <their subject>".

Enforcement is the store's (services/store/held_replies.py): a reply the plan forbids now is
stored with delivery status ``held`` and the reason, never published; the store releases it
when the plan allows it, or a consultant cancels it (status ``cancelled``, never sent). The
envelope of a held reply says so (``OutboundMessage.hold``), and every sender refuses one.

Collections: ``contact_plans`` ``{_id: "client:<id>" | "thread:<id>", ...plan, set_by,
set_at}`` (only this module touches it); the hold state is the ``delivery`` of a message.
"""

from __future__ import annotations

from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from shared.config import HotlineConfig, Hours
from shared.envelope import Channel, DeliveryStatus, utcnow

Doc = dict[str, Any]

CHANNEL_NOT_ALLOWED = "channel not allowed"
WAITING_FOR_CLIENT = "waiting for the client to write first"
# Delivery states of a reply that has not gone and must not go now.
NOT_OUT = (DeliveryStatus.HELD.value, DeliveryStatus.CANCELLED.value)


class QuietHours(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    start: time = Field(alias="from", description="local time replies stop")
    end: time = Field(alias="to", description="local time replies may go again")

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("quiet hours from and to must differ")
        return self


class ContactPlan(BaseModel):
    """What a consultant recorded (see the module doc); every field optional."""

    model_config = ConfigDict(extra="forbid")

    channels: list[Channel] | None = None
    quiet_hours: QuietHours | None = None
    write_first: bool = False
    sender_name: str | None = Field(default=None, max_length=80)
    subject: str | None = Field(default=None, max_length=120)

    @field_validator("sender_name", "subject")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        # A header value: one line of printable text (the SMTP sender checks again).
        if value is None:
            return None
        value = value.strip()
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValueError("one line of text without control characters")
        return value or None

    def stored(self) -> Doc:
        return self.model_dump(mode="json", by_alias=True)


def _clock(t: time) -> str:
    return t.strftime("%H:%M:%S" if t.second else "%H:%M")


def quiet_now(quiet: QuietHours, local: time) -> bool:
    if quiet.start < quiet.end:
        return quiet.start <= local < quiet.end
    return local >= quiet.start or local < quiet.end  # across midnight


def hold_reason(
    plan: ContactPlan | None, channel: str, now: datetime, timezone: str, client_turn: bool
) -> str | None:
    """Why ``plan`` forbids a consultant's reply on ``channel`` at ``now`` (aware), or None when
    it may go. ``client_turn``: the client wrote and no consultant's reply went after it. Pure.
    The most lasting reason is named first: the channel, then quiet hours, then the turn."""
    if plan is None:
        return None
    if plan.channels is not None and channel not in plan.channels:
        return CHANNEL_NOT_ALLOWED
    if plan.quiet_hours is not None and quiet_now(
        plan.quiet_hours, now.astimezone(ZoneInfo(timezone)).time()
    ):
        return f"quiet hours until {_clock(plan.quiet_hours.end)}"
    if plan.write_first and not client_turn:
        return WAITING_FOR_CLIENT
    return None


def plan_timezone(config: HotlineConfig, thread: Doc) -> str:
    """The time zone a thread's quiet hours are read in: its line's."""
    line = config.lines.get(thread.get("line", ""))
    return (line.hours if line is not None else Hours()).timezone


def plan_key(thread: Doc) -> str:
    """Where a thread's plan lives: its client's, or its own while it has no client."""
    client_id = thread.get("client_id")
    return f"client:{client_id}" if client_id else f"thread:{thread['_id']}"


class ContactPlans:
    """Plans, and the held state of replies (their ``delivery``; never their text)."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.plans: AsyncCollection[Doc] = db["contact_plans"]
        self.messages: AsyncCollection[Doc] = db["messages"]

    async def ensure_indexes(self) -> None:
        # Held replies, found by the store's release pass (few; most messages are "sent").
        await self.messages.create_index([("delivery.status", ASCENDING)], name="delivery_status")

    async def plan_doc(self, thread: Doc) -> Doc | None:
        """The thread's person's plan; else the thread's own, recorded while it had no client
        (a link to a client who has no plan must not drop the protection it had)."""
        found = await self.plans.find_one({"_id": plan_key(thread)})
        if found is None and thread.get("client_id"):
            found = await self.plans.find_one({"_id": f"thread:{thread['_id']}"})
        return found

    async def plan_for(self, thread: Doc) -> ContactPlan | None:
        doc = await self.plan_doc(thread)
        if doc is None:
            return None
        return ContactPlan.model_validate({k: v for k, v in doc.items() if k in ContactPlan.model_fields})

    async def set_plan(self, thread: Doc, plan: ContactPlan, by: str) -> Doc:
        """Record ``plan`` for ``thread``'s person (or the thread); the stored document."""
        fields = {**plan.stored(), "set_by": by, "set_at": utcnow()}
        doc = await self.plans.find_one_and_replace(
            {"_id": plan_key(thread)}, fields, upsert=True, return_document=ReturnDocument.AFTER
        )
        assert doc is not None
        return doc

    async def forget(self, client_ids: list[str], thread_ids: list[str]) -> int:
        """Delete the plans of these clients and threads (a person erased)."""
        keys = [f"client:{c}" for c in client_ids] + [f"thread:{t}" for t in thread_ids]
        return (await self.plans.delete_many({"_id": {"$in": keys}})).deleted_count

    async def client_turn(self, thread_id: str) -> bool:
        """Whether the client wrote last: a message of theirs with no consultant's reply gone
        (neither held nor cancelled) after it. Automatic answers do not count."""
        last_in = await self.messages.find_one(
            {"thread_id": thread_id, "direction": "in"}, {"created_at": 1}, sort=[("created_at", -1)]
        )
        if last_in is None:
            return False
        cursor = self.messages.find(
            {"thread_id": thread_id, "direction": "out", "created_at": {"$gt": last_in["created_at"]}},
            {"author": 1, "delivery": 1},
        )
        async for doc in cursor:
            status = (doc.get("delivery") or {}).get("status")
            if str(doc.get("author", "")).startswith("consultant:") and status not in NOT_OUT:
                return False
        return True

    async def hold_for(
        self, thread: Doc, timezone: str, now: datetime, *, client_turn: bool | None = None
    ) -> str | None:
        """Why a reply in ``thread`` may not go at ``now``, or None. ``client_turn``: known by
        the caller (an automatic answer follows the client's own message), else read."""
        plan = await self.plan_for(thread)
        if plan is None:
            return None
        turn = client_turn
        if turn is None:
            turn = await self.client_turn(thread["_id"]) if plan.write_first else True
        return hold_reason(plan, thread["channel"], now, timezone, turn)

    async def held(
        self, limit: int, thread_id: str | None = None, since: datetime | None = None
    ) -> list[Doc]:
        """Held replies (of ``thread_id``, or all; stored at or after ``since``, for the next
        page), oldest first, without their text: thread, time, delivery."""
        query: Doc = {"delivery.status": DeliveryStatus.HELD.value}
        if thread_id is not None:
            query["thread_id"] = thread_id
        if since is not None:
            query["created_at"] = {"$gte": since}
        cursor = (
            self.messages.find(query, {"thread_id": 1, "created_at": 1, "delivery": 1})
            .sort("created_at", ASCENDING)
            .limit(limit)
        )
        return [m async for m in cursor]

    async def still_held(self, message_id: str, reason: str) -> None:
        """A held reply stays held, now for ``reason``."""
        await self.messages.update_one(
            {
                "_id": message_id,
                "delivery.status": DeliveryStatus.HELD.value,
                "delivery.detail": {"$ne": reason},
            },
            {"$set": {"delivery.detail": reason, "delivery.at": utcnow()}},
        )

    async def release(self, message_id: str) -> bool:
        """A held reply may go: it becomes queued (still in the outbox, unpublished). False when
        it was not held (released or cancelled meanwhile)."""
        done = await self.messages.update_one(
            {"_id": message_id, "delivery.status": DeliveryStatus.HELD.value},
            {
                "$set": {
                    "delivery": {"status": DeliveryStatus.QUEUED.value, "at": utcnow(), "detail": "released"}
                }
            },
        )
        return done.modified_count == 1

    async def cancel(self, message_id: str, thread_id: str, by: str) -> bool:
        """A held reply of ``thread_id`` will never go; False when it was not held."""
        done = await self.messages.update_one(
            {"_id": message_id, "thread_id": thread_id, "delivery.status": DeliveryStatus.HELD.value},
            {
                "$set": {
                    "delivery": {
                        "status": DeliveryStatus.CANCELLED.value,
                        "at": utcnow(),
                        "detail": f"cancelled by {by}",
                    }
                }
            },
        )
        return done.modified_count == 1
