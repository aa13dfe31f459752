"""From a parsed mail to the envelope the dispatcher gets. Pure: no I/O.

The envelope boundary: what :func:`to_envelope` returns encodes (JSON in UTF-8), whatever
the mail held; a string with a lone surrogate is repaired here even if the parser let one
through, and an envelope that still does not encode raises :class:`Unencodable`, an
:class:`Unparseable` that the caller quarantines with its reason. Nothing else is raised.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from services.email_ingest.authresults import sender_auth
from services.email_ingest.mime import ParsedMail, Unencodable, repair
from shared.envelope import (
    AttachmentRef,
    Channel,
    EmailFacts,
    InboundMessage,
    encode,
    message_id_for,
)


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
    trusted_authserv_id: str | None,
) -> InboundMessage:
    """The envelope of ``mail``; ``trusted_authserv_id``: the server whose Authentication-Results
    the mailbox trusts (None: none), for the sender check (authresults.py)."""
    # The waiting time starts when the mail reached the server (never in the future).
    received = min(internaldate, now) if internaldate is not None else now
    message_id = message_id_for(source_id)
    envelope = InboundMessage(
        message_id=message_id,
        source_id=source_id,
        channel=Channel.EMAIL,
        line=line,
        received_at=received,
        sender=mail.from_address,
        text=mail.text,
        subject=mail.subject,
        html=mail.html,
        html_sanitiser=mail.html_sanitiser,
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
            sender_auth=sender_auth(mail.auth_results, mail.author, mail.from_address, trusted_authserv_id),
            mailbox=mailbox,
            problems=mail.problems,
        ),
    )
    return encodable(envelope)


def _repaired(value: Any) -> Any:
    if isinstance(value, str):
        return repair(value)
    if isinstance(value, list):
        return [_repaired(v) for v in value]
    if isinstance(value, dict):
        return {k: _repaired(v) for k, v in value.items()}
    return value


def _encodes(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False, default=str).encode()
    except (ValueError, TypeError):  # UnicodeEncodeError is a ValueError
        return False
    return True


def encodable(envelope: InboundMessage) -> InboundMessage:
    """``envelope`` with every string repaired (see mime.repair), proven to encode.

    Raises :class:`Unencodable` naming the first field that does not (never its content)."""
    data = envelope.model_dump()
    fixed = _repaired(data)
    try:
        if fixed != data:
            envelope = InboundMessage.model_validate(fixed)
        encode(envelope)
    except ValueError:
        broken = next((k for k, v in fixed.items() if not _encodes(v)), "envelope")
        raise Unencodable(broken) from None
    return envelope
