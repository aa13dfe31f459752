"""The one typed envelope every message on the broker travels in.

JSON on the wire, never pickle. Each envelope kind has a name (the AMQP ``type``
property) and a version ``v``: a minor change adds optional fields, readers ignore
unknown fields, a breaking change is a new kind. Ids come from the source (the IMAP
mailbox + UIDVALIDITY + UID, the client's chat frame id, the Telegram update_id) so a
replay produces the same ids and is harmless. Times are timezone-aware UTC.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

# Fixed namespace: message ids are uuid5(namespace, source_id), stable across processes.
_ID_NAMESPACE = uuid.UUID("6f1c1c5e-8c1e-4b54-9a55-6a2f7d2b8d01")


def message_id_for(source_id: str) -> str:
    """Our message id for a source id: the same source always gets the same id."""
    return uuid.uuid5(_ID_NAMESPACE, source_id).hex


def utcnow() -> datetime:
    return datetime.now(UTC)


class Channel(StrEnum):
    EMAIL = "email"
    CHAT = "chat"
    TELEGRAM = "telegram"


class Envelope(BaseModel):
    """Base of every envelope kind."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    kind: ClassVar[str]
    v: int = 1


class AttachmentRef(BaseModel):
    """An attachment kept outside the broker (``mail_attachments``), referenced by id."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    id: str
    filename: str
    content_type: str
    size: int
    stored: bool = Field(description="false when it exceeded the size cap and only its facts were kept")


class SenderAuth(BaseModel):
    """Whether a mail's From was confirmed by the mail server its mailbox trusts (RFC 8601
    Authentication-Results; services/email_ingest/authresults.py): ``verified``, ``failed``, or
    ``unknown`` when the mailbox trusts no server."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    verdict: Literal["verified", "failed", "unknown"]
    detail: str = Field(default="", description="the deciding results (method=result), no address")


class EmailFacts(BaseModel):
    """What the dispatcher needs of an e-mail's headers to thread it."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    header_message_id: str | None = None
    in_reply_to: list[str] = Field(default_factory=list)
    references: list[str] = Field(default_factory=list)
    to: str | None = None
    auto_submitted: bool = False
    # v1 minor additions (optional; older readers ignore them):
    kind: Literal["person", "auto_reply", "bulk", "bounce"] = "person"
    bounce_of: list[str] = Field(default_factory=list, description="Message-IDs a bounce reports on")
    sender_auth: SenderAuth | None = Field(
        default=None, description="the sender check; None: sent before there was one (as unknown)"
    )
    backlog: bool = Field(default=False, description="imported from a backlog: never auto-answered")
    quoted: str = Field(default="", description="quoted history, folded by the console")
    attachments: list[AttachmentRef] = Field(default_factory=list)
    mailbox: str | None = Field(default=None, description="name of the mailbox it came from")
    problems: list[str] = Field(
        default_factory=list,
        description="what could not be read of the mail, handed over anyway: no_sender (no address "
        "a reply can go to; sender is empty), unreadable_part (a part whose bytes did not decode)",
    )


class ChatFacts(BaseModel):
    """The client's optional pre-chat choices."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    session: str
    language: str | None = None
    region: str | None = None
    topic: str | None = None


class InboundMessage(Envelope):
    """A client's message, from any channel, on its way to the dispatcher."""

    kind: ClassVar[str] = "inbound_message"
    message_id: str
    source_id: str
    channel: Channel
    line: str
    received_at: AwareDatetime
    sender: str = Field(description="e-mail address, chat session id or Telegram chat id")
    text: str
    subject: str | None = None
    html: str | None = Field(default=None, description="sanitised HTML body, if any")
    email: EmailFacts | None = None
    chat: ChatFacts | None = None
    # v1 minor addition (optional; older readers ignore it):
    html_sanitiser: int | None = Field(
        default=None, description="version of the sanitiser `html` went through; None: unknown"
    )


class OutboundMessage(Envelope):
    """A consultant's (or the bot's) reply on its way to a channel."""

    kind: ClassVar[str] = "outbound_message"
    message_id: str
    thread_id: str
    channel: Channel
    line: str
    recipient: str
    text: str
    sent_at: AwareDatetime
    sender_role: Literal["consultant", "bot"] = "consultant"
    subject: str | None = None
    email_message_id: str | None = None
    in_reply_to: str | None = None
    references: list[str] = Field(default_factory=list)
    # v1 minor additions (optional; older readers ignore them), from the client's safe-contact
    # plan (conversations/contact_plan.py):
    hold: str | None = Field(
        default=None, description="why the plan forbids sending it now; a sender never sends one held"
    )
    sender_name: str | None = Field(default=None, description="neutral From display name for e-mail")
    neutral_subject: str | None = Field(default=None, description="neutral Subject for e-mail")
    attachments: list[AttachmentRef] = Field(
        default_factory=list,
        description="files a consultant attached (cleaned, in mail_attachments by id); e-mail only",
    )
    organisation: str | None = Field(
        default=None,
        description="the organisation of the consultant who wrote it; e-mail answers in its name "
        "(its mailbox's From, Reply-To, signature and SMTP account); none for automatic answers",
    )


class DeliveryStatus(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"
    # Set by the store alone, never reported by a sender: a reply the client's safe-contact
    # plan forbids now, and one a consultant cancelled while it was held.
    HELD = "held"
    CANCELLED = "cancelled"


class DeliveryReport(Envelope):
    """What became of an outbound message."""

    kind: ClassVar[str] = "delivery_report"
    message_id: str
    thread_id: str
    status: DeliveryStatus
    at: AwareDatetime
    detail: str | None = None


class ConsoleEvent(Envelope):
    """A fact about a thread that consoles show live (past tense: ThreadQueued, ...)."""

    kind: ClassVar[str] = "console_event"
    name: str
    thread_id: str
    at: AwareDatetime
    queue: str | None = None
    organisation: str | None = None
    line: str | None = None
    message_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    # v1 minor additions (optional; older readers ignore them), so a console can tell whom an
    # event concerns without asking (its notifications: services/store/static/notify.js):
    channel: Channel | None = Field(default=None, description="the thread's channel")
    assignee: str | None = Field(default=None, description="the login holding the thread, if any")
    urgent: bool = Field(default=False, description="the thread is urgent (a crisis, danger words)")


KINDS: dict[str, type[Envelope]] = {
    cls.kind: cls for cls in (InboundMessage, OutboundMessage, DeliveryReport, ConsoleEvent)
}


class EnvelopeError(ValueError):
    """The bytes are not a valid envelope of a known kind (poison: dead-letter it)."""


def encode(envelope: Envelope) -> bytes:
    return envelope.model_dump_json().encode()


def decode(kind: str | None, body: bytes) -> Envelope:
    """Parse ``body`` as the envelope kind named by the AMQP ``type`` property."""
    cls = KINDS.get(kind or "")
    if cls is None:
        raise EnvelopeError(f"unknown envelope kind {kind!r}")
    try:
        return cls.model_validate_json(body)
    except ValidationError as exc:
        # Only field locations and error types: the body may hold a client's words.
        where = ", ".join(".".join(str(p) for p in e["loc"]) + ":" + e["type"] for e in exc.errors())
        raise EnvelopeError(f"invalid {kind}: {where}") from None
