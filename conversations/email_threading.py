"""Pure e-mail threading decisions (PRODUCT.md 3.1). No I/O.

A mail joins an existing thread only when both hold:
1. it refers to us: one of its In-Reply-To/References is one of our reply Message-IDs, or
   carries the thread's reply token (our Message-IDs are ``<message id>.<token>@<domain>``,
   so the token survives a mailer that keeps only the last reference, and replies whose
   message record is gone);
2. it comes from the thread's client (the address compared case-insensitively);
3. what the mailbox's trusted mail server said of its sender (RFC 8601 Authentication-Results,
   services/email_ingest/authresults.py) matches the thread: a mail whose sender failed the
   check (DMARC, or SPF/DKIM alignment) joins only a thread of such mail, marked "sender not
   verified" (``sender_unverified``), never a thread of verified or unchecked mail; a mailbox
   that trusts no server checks nothing (verdict ``unknown``), and its mail threads by From.
Anything else starts a new thread. Subjects never merge anything: two strangers writing
"Help" must never share a thread.
"""

from __future__ import annotations

import re
from typing import Any

from shared.envelope import InboundMessage

# <32 hex>.<token_urlsafe(12): 16 chars>@domain, as written by Repository.add_reply.
_OURS = re.compile(r"^<([0-9a-f]{32})\.([A-Za-z0-9_-]{16})@[^<>@\s]{1,200}>$")


def references(msg: InboundMessage) -> list[str]:
    if msg.email is None:
        return []
    return [*msg.email.in_reply_to, *msg.email.references]


def reply_tokens(refs: list[str]) -> list[str]:
    """The reply tokens carried by those references that look like our Message-IDs."""
    out: list[str] = []
    for ref in refs:
        m = _OURS.match(ref)
        if m and m.group(2) not in out:
            out.append(m.group(2))
    return out


def our_message_ids(refs: list[str]) -> dict[str, str]:
    """Our message id (the stored message's ``_id``) of each reference that looks like one of
    our Message-IDs: looking a reply up by it is a primary-key lookup."""
    out: dict[str, str] = {}
    for ref in refs:
        m = _OURS.match(ref)
        if m:
            out[m.group(1)] = ref
    return out


def same_sender(thread: dict[str, Any], sender: str) -> bool:
    address = str((thread.get("client") or {}).get("address") or "")
    return bool(address) and address.casefold() == sender.casefold()


def sender_unverified(msg: InboundMessage) -> bool:
    """Whether the mailbox's trusted mail server did not confirm the mail's sender: such a mail
    is kept apart from the person its From names (its own thread, no client record)."""
    auth = msg.email.sender_auth if msg.email is not None else None
    return auth is not None and auth.verdict == "failed"


def may_join(thread: dict[str, Any] | None, msg: InboundMessage) -> bool:
    """Whether ``msg`` (which refers to ``thread``) may join it: only from the thread's client,
    within the same channel and line, and only as verified as the thread (see above)."""
    return (
        thread is not None
        and thread.get("channel") == msg.channel.value
        and thread.get("line") == msg.line
        and same_sender(thread, msg.sender)
        and bool(thread.get("sender_unverified")) == sender_unverified(msg)
    )


def may_answer_automatically(msg: InboundMessage) -> bool:
    """No automatic answer to robots (RFC 3834 5: auto-replies, bounces, list and bulk mail)
    nor to mail imported from a backlog: answering those makes loops or wakes old threads."""
    if msg.email is None:
        return True
    return msg.email.kind == "person" and not msg.email.auto_submitted and not msg.email.backlog


def is_bounce_of_ours(msg: InboundMessage) -> bool:
    return msg.email is not None and msg.email.kind == "bounce" and bool(msg.email.bounce_of)
