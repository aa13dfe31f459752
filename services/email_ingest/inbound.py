"""From a parsed mail to the envelope the dispatcher gets. Pure: no I/O."""

from __future__ import annotations

from datetime import datetime, timedelta

from services.email_ingest.mime import ParsedMail
from shared.envelope import AttachmentRef, Channel, EmailFacts, InboundMessage, message_id_for


def source_id_for(mailbox: str, uidvalidity: int, uid: int) -> str:
    """The mail's id at its source: the same mail on the server always gets the same one."""
    return f"imap:{mailbox}:{uidvalidity}:{uid}"


def is_backlog(internaldate: datetime | None, now: datetime, after_seconds: float) -> bool:
    """A mail that has waited on the server longer than ``after_seconds`` is a backlog import.
    INTERNALDATE is the server's arrival time; the Date header (1970, 2099...) is not trusted."""
    return internaldate is not None and now - internaldate > timedelta(seconds=after_seconds)


def to_envelope(
    mail: ParsedMail,
    *,
    source_id: str,
    line: str,
    mailbox: str,
    now: datetime,
    internaldate: datetime | None,
    backlog: bool,
    attachments: list[AttachmentRef],
) -> InboundMessage:
    # The waiting time starts when the mail reached the server (never in the future).
    received = min(internaldate, now) if internaldate is not None else now
    message_id = message_id_for(source_id)
    return InboundMessage(
        message_id=message_id,
        source_id=source_id,
        channel=Channel.EMAIL,
        line=line,
        received_at=received,
        sender=mail.from_address,
        text=mail.text,
        subject=mail.subject,
        html=mail.html,
        email=EmailFacts(
            header_message_id=mail.message_id,
            in_reply_to=mail.in_reply_to,
            references=mail.references,
            to=mail.to,
            auto_submitted=mail.auto_submitted,
            kind=mail.kind,
            bounce_of=mail.bounce_of,
            backlog=backlog,
            quoted=mail.quoted,
            attachments=attachments,
            mailbox=mailbox,
        ),
    )
