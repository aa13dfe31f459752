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
    if msg.channel is Channel.CHAT and msg.chat is not None:
        return f"chat:{msg.chat.session}"
    return f"{msg.channel.value}:{msg.source_id}"


def choose_queue(config: HotlineConfig, line: str, region: str | None) -> str:
    """The queue of a new conversation: the region's partner NGO, else the line's default."""
    spec = config.lines.get(line)
    if spec is None:
        raise UnknownLine(f"unknown line {line!r}")
    if region and region in spec.region_queues:
        return spec.region_queues[region]
    return spec.default_queue
