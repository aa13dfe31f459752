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
    CLIENT_LINKED = "ClientLinked"  # a consultant said whose thread this is (conversations.clients)
    CLIENT_UNLINKED = "ClientUnlinked"  # ...and took it back
    CLIENT_LEFT = "ClientLeft"  # a chat's client left: quick exit or silence (client_left.py)
    CLIENT_RETURNED = "ClientReturned"  # ... and wrote again
    TEXT_ERASED = "TextErased"  # a person's data was erased on request (services/store/erasure.py)


class Outcome(StrEnum):
    """How a consultation ended (PRODUCT.md 3.6)."""

    CONSULTATION = "consultation"  # with the line's case form
    NO_CONSULTATION = "no_consultation"  # with a configured reason, never in case statistics


def consultation_id(thread_id: str, n: int) -> str:
    """The id of the ``n``-th consultation (1, 2, ...) of a thread: derived, so writing a
    consultation again (a retried close, a migration run twice) writes the same document."""
    return f"{thread_id}:{n}"


def open_consultation(n: int, started_at: datetime, queue: str) -> dict[str, Any]:
    """A thread's ``consultation`` field while its ``n``-th episode is open: when it started,
    the queues it went through and the consultants who answered in it. The closed episode
    becomes a document of its own (:func:`closed_consultation`)."""
    return {"n": n, "started_at": started_at, "queues": [queue], "consultants": []}


def closed_consultation(
    thread: Mapping[str, Any],
    *,
    outcome: Outcome,
    reason: str | None,
    case: Mapping[str, Any] | None,
    facts: Mapping[str, Any],
) -> dict[str, Any]:
    """The document of ``thread``'s current consultation, just closed (``thread`` as the close
    left it). Its own start time, channel, line, organisations, queue path, consultants, case
    form and outcome; ``client_id`` links it to a person where one is known."""
    current = {
        **open_consultation(1, thread["created_at"], thread["queue"]),
        **(thread.get("consultation") or {}),
    }
    consultants = list(current.get("consultants") or [])
    if thread.get("closed_by") and thread["closed_by"] not in consultants:
        consultants.append(thread["closed_by"])
    queues = list(current.get("queues") or [])
    if not queues or queues[-1] != thread["queue"]:
        queues.append(thread["queue"])
    return {
        "_id": consultation_id(thread["_id"], current["n"]),
        "thread_id": thread["_id"],
        "n": current["n"],
        "client_id": thread.get("client_id"),
        "started_at": current["started_at"],
        "channel": thread["channel"],
        "line": thread["line"],
        "organisations": list(thread.get("organisations") or []),
        "queues": queues,
        "consultants": consultants,
        "closed_at": thread.get("closed_at"),
        "closed_by": thread.get("closed_by"),
        "outcome": outcome.value,
        "reason": reason,
        "case": dict(case) if case is not None else None,
        "facts": dict(facts),
    }


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
    client_id: str | None = None,
    sender_unverified: bool = False,
) -> dict[str, Any]:
    """A new thread's document, held by nobody, with its id derived from ``key`` and a fresh
    reply token. ``context`` (a chat's language, region, topic) is stored as given, and only
    what is given: a thread of a channel without them has no such fields. ``client_id`` is the
    person the channel names (conversations.clients), None where it names nobody.
    ``sender_unverified``: opened by a mail whose sender failed the trusted mail server's check
    (conversations/email_threading.py); stored only then, and never changed."""
    marks: dict[str, Any] = {"sender_unverified": True} if sender_unverified else {}
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
        "client_id": client_id,
        "subject": subject,
        **(context or {}),
        "reply_token": new_reply_token(),
        "assignee": None,
        "claim_seq": 0,
        "created_at": created_at,
        "waiting_since": waiting_since,
        # The consultation the thread's first message opens (a reopen opens the next).
        "consultation": open_consultation(1, waiting_since, queue),
        **marks,
    }


def address_kept(thread: Mapping[str, Any]) -> bool:
    """Whether ``thread`` (as stored, or opened) still holds its client's address or chat:
    in clear, or sealed (Repository.seal_thread). Retention and erasure drop it."""
    client = thread.get("client") or {}
    return bool(client.get("address")) or client.get("sealed") is not None


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
    are the caller's to add; the consultation's document is :func:`closed_consultation`."""
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
