"""Pure routing decisions: which thread key and which queue a new conversation gets.

No I/O here, so every rule is tested without servers.
"""

from __future__ import annotations

from shared.config import HotlineConfig
from shared.envelope import Channel, InboundMessage


class UnknownLine(ValueError):
    """The message names a line the configuration does not have (poison: dead-letter it)."""


def thread_key(msg: InboundMessage) -> str:
    """The key of the thread a message starts when it does not continue an existing one.

    A chat session is one thread; a mail that continues nothing is a thread of its own,
    keyed by its source id so a redelivered copy finds the same thread.
    """
    if msg.channel in (Channel.CHAT, Channel.TELEGRAM) and msg.chat is not None:
        return session_thread_key(msg.channel, msg.chat.session)
    return f"{msg.channel.value}:{msg.source_id}"


def session_thread_key(channel: Channel, session: str) -> str:
    """The thread key of a chat session (web chat session id, or ``<bot>:<chat id>`` on Telegram):
    one conversation per session, so chat_ingest can find a client's thread on resume."""
    return f"{channel.value}:{session}"


def choose_queue(
    config: HotlineConfig,
    line: str,
    region: str | None,
    topic: str | None = None,
    organisation: str | None = None,
) -> str:
    """The queue of a new conversation.

    A topic that needs a specialist goes to the line's queue for that skill; otherwise the
    organisation the client wrote to (an NGO's own mailbox of a shared line); otherwise the
    region's partner NGO; otherwise (no region, or one the line does not list) the line's
    default queue, which on a shared line is the triage queue every partner sees.
    """
    spec = config.lines.get(line)
    if spec is None:
        raise UnknownLine(f"unknown line {line!r}")
    skill = spec.topics[topic].skill if topic in spec.topics else None
    if skill is not None:
        return spec.skill_queues[skill]
    if organisation is not None:
        own = [
            name for name, q in config.queues.items() if q.line == line and q.organisations == [organisation]
        ]
        if own:
            return own[0]
    if region and region in spec.region_queues:
        return spec.region_queues[region]
    return spec.default_queue
