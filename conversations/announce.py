"""Console events: telling live consoles what happened to a thread, and keeping the fact in the
event log. One implementation for every service that announces (dispatcher, sweeper, store).

An event is a hint to refresh ("thread X changed"); the API stays the source of truth. It goes
to :data:`shared.topology.EVENTS` under :func:`shared.topology.event_key` of its name.

Two policies for a broker that is away, chosen by the caller:

- :func:`publish` raises. For a consumer inside a broker handler: the failure propagates, the
  message is not acked and is retried, and the event is published again (consoles treat a
  repeat as a refresh).
- :func:`publish_or_log` logs ``event_not_announced`` and returns. For a change that is already
  stored and not retried by anything (an HTTP request): a broker outage must not turn the
  request into a failure, and consoles re-read on reconnect.
"""

from __future__ import annotations

from typing import Any

from conversations.model import NORMAL
from conversations.repository import Doc, Repository
from shared import topology
from shared.broker import PUBLISH_ERRORS, Broker
from shared.envelope import ConsoleEvent, utcnow
from shared.logs import get_logger

log = get_logger(__name__)


def thread_event(
    name: str, thread: Doc, *, message_id: str | None = None, data: dict[str, Any] | None = None
) -> ConsoleEvent:
    """The console event ``name`` about ``thread`` (its queue and line decide which consoles
    hear it), stamped now. Pure but for the clock."""
    return ConsoleEvent(
        name=name,
        thread_id=thread["_id"],
        at=utcnow(),
        queue=thread["queue"],
        line=thread["line"],
        message_id=message_id,
        data=data if data is not None else {},
        channel=thread.get("channel"),
        assignee=thread.get("assignee"),
        urgent=thread.get("priority", NORMAL) > NORMAL,
    )


async def publish(broker: Broker, event: ConsoleEvent) -> None:
    """Publish ``event`` to consoles. Raises what :meth:`Broker.publish` raises."""
    await broker.publish(event, topology.EVENTS, topology.event_key(event.name))


async def publish_or_log(broker: Broker, event: ConsoleEvent) -> bool:
    """Publish ``event`` to consoles; with the broker away, log ``event_not_announced`` and
    return False instead of raising (see the module's doc for when that is right)."""
    try:
        await publish(broker, event)
    except PUBLISH_ERRORS as exc:
        log.warning("event_not_announced", event_name=event.name, error=type(exc).__name__)
        return False
    return True


async def announce(
    broker: Broker, name: str, thread: Doc, *, message_id: str | None = None, **data: Any
) -> None:
    """Publish the event ``name`` about ``thread`` without recording it (a refresh hint, or a
    fact recorded elsewhere). Raises what :meth:`Broker.publish` raises."""
    await publish(broker, thread_event(name, thread, message_id=message_id, data=data))


async def record(
    repo: Repository, name: str, thread: Doc, by: str | None = None, **data: Any
) -> ConsoleEvent:
    """Keep the fact ``name`` about ``thread`` in the event log (for reports) and return the
    console event that announces it, for the caller to publish under its own policy.

    The event carries ``data`` and, where a person did it, ``by`` (their login). Raises what
    the database raises; then nothing is to be announced."""
    await repo.record_event(thread["_id"], name, by, **data)
    return thread_event(name, thread, data=data if by is None else {"by": by, **data})
