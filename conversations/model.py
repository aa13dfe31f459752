"""Constants and documents of the hotline domain. Pure: no I/O.

The constructors build the thread document every writer stores, so its fields are named in one
place; where a thread gets its queue and priority is the caller's decision (the dispatcher's
routing and scoring, a consultant's own queue for a phone call).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from conversations.identity import new_reply_token, phone_thread_key, thread_id_for

# A thread's priority: a crisis or danger signal goes first, and one that waited too long is
# escalated above that (services/dispatcher/priority.py decides, the sweeper escalates).
NORMAL = 0
URGENT = 10
ESCALATED = 20


class ThreadStatus(StrEnum):
    """Where a thread is. A StrEnum, so it is stored and compared as its plain string."""

    WAITING = "waiting"  # in its queue, held by nobody
    ACTIVE = "active"  # claimed by a consultant
    CLOSED = "closed"


class EventName(StrEnum):
    """Facts about a thread, in the past tense: kept in the event log and announced to
    consoles (``conversations.announce``) under these names."""

    THREAD_QUEUED = "ThreadQueued"
    THREAD_CLAIMED = "ThreadClaimed"
    THREAD_RELEASED = "ThreadReleased"
    THREAD_TRANSFERRED = "ThreadTransferred"
    THREAD_CLOSED = "ThreadClosed"
    CRISIS_ESCALATED = "CrisisEscalated"
    MESSAGE_RECEIVED = "MessageReceived"
    MESSAGE_SENT = "MessageSent"
    MESSAGE_DELIVERED = "MessageDelivered"
    NOTE_ADDED = "NoteAdded"
    CONSULTATION_REGISTERED = "ConsultationRegistered"
    CLIENT_LEFT = "ClientLeft"  # a chat's client left: quick exit or silence (client_left.py)
    CLIENT_RETURNED = "ClientReturned"  # ... and wrote again


def new_thread(
    key: str,
    *,
    channel: str,
    line: str,
    queue: str,
    organisations: list[str],
    client_address: str,
    created_at: datetime,
    waiting_since: datetime,
    status: ThreadStatus = ThreadStatus.WAITING,
    priority: int = NORMAL,
    subject: str | None = None,
    context: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A new thread's document, held by nobody, with its id derived from ``key`` and a fresh
    reply token. ``context`` (a chat's language, region, topic) is stored as given, and only
    what is given: a thread of a channel without them has no such fields."""
    return {
        "_id": thread_id_for(key),
        "key": key,
        "channel": channel,
        "line": line,
        "queue": queue,
        "organisations": organisations,
        "status": status,
        "priority": priority,
        "client": {"address": client_address},
        "subject": subject,
        **(context or {}),
        "reply_token": new_reply_token(),
        "assignee": None,
        "claim_seq": 0,
        "created_at": created_at,
        "waiting_since": waiting_since,
    }


def new_phone_consultation(
    login: str,
    idempotency_key: str,
    *,
    line: str,
    queue: str,
    organisations: list[str],
    case: dict[str, Any],
    at: datetime,
    now: datetime,
) -> dict[str, Any]:
    """A consultation that happened outside the gateway (a phone call at ``at``), registered
    by ``login`` at ``now`` with its case form: a thread born closed, keyed by the consultant
    and the request's idempotency key so a retried request finds it. Statistics' ``facts``
    are the caller's to add."""
    thread = new_thread(
        phone_thread_key(login, idempotency_key),
        channel="phone",
        line=line,
        queue=queue,
        organisations=organisations,
        client_address="",
        created_at=at,
        waiting_since=at,
        status=ThreadStatus.CLOSED,
    )
    thread.update(closed_at=now, closed_by=login, updated_at=now, case=case)
    return thread
