"""Keys and ids of the hotline domain. Pure: no I/O.

A thread's id derives from its key, so finding the thread of a chat session or of a mail is a
primary-key lookup; ids and reply tokens are random.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid

from shared.envelope import Channel, InboundMessage

_THREAD_NAMESPACE = uuid.UUID("0d9b7a4e-3f51-4c1e-8b0a-6a1c2f7e9d33")


def thread_id_for(key: str) -> str:
    """A thread's id, derived from its key: finding the thread of a chat session or of a mail
    is a primary-key lookup (a query on another field is a full scan on FerretDB v1)."""
    return uuid.uuid5(_THREAD_NAMESPACE, key).hex


def new_id() -> str:
    return uuid.uuid4().hex


def new_reply_token() -> str:
    return secrets.token_urlsafe(12)


def thread_key(msg: InboundMessage) -> str:
    """The key of the thread a message starts when it does not continue an existing one.

    A chat session is one thread; a mail that continues nothing is a thread of its own,
    keyed by its source id so a redelivered copy finds the same thread.
    """
    if msg.channel in (Channel.CHAT, Channel.TELEGRAM) and msg.chat is not None:
        return session_thread_key(msg.channel, msg.chat.session)
    return f"{msg.channel.value}:{msg.source_id}"


def telegram_session(secret: bytes, bot: str, chat_id: int | str) -> str:
    """The session of a Telegram chat with ``bot``: ``<bot>:t<32 hex>``, a keyed hash
    (HMAC-SHA256 under the client key secret) of the chat id. What the database keeps of a
    chat (its thread's key and so its id, the bot's remembered choices and message trail) is
    named by it: whoever holds the database, and not the secret, can neither read a chat id
    from it nor test a guessed one, where a plain hash of a number is found by trying them
    all. The chat id itself is kept only sealed, as the thread's client address."""
    digest = hmac.new(secret, f"telegram-chat:{chat_id}".encode(), hashlib.sha256).hexdigest()
    return f"{bot}:t{digest[:32]}"


def session_thread_key(channel: Channel, session: str) -> str:
    """The thread key of a chat session (web chat session id, or :func:`telegram_session`):
    one conversation per session, so chat_ingest can find a client's thread on resume."""
    return f"{channel.value}:{session}"


def phone_thread_key(login: str, idempotency_key: str) -> str:
    """The thread key of a phone consultation ``login`` registers: a retried request (the same
    Idempotency-Key) finds the thread its first attempt stored."""
    return f"phone:{login}:{idempotency_key}"
