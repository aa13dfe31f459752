"""Pure routing decisions: which thread key and which queue a new conversation gets.

No I/O here, so every rule is tested without servers.
"""

from __future__ import annotations

from shared.config import HotlineConfig


class UnknownLine(ValueError):
    """The message names a line the configuration does not have (poison: dead-letter it)."""


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
