"""Time-driven queue rules, run periodically by every dispatcher replica.

- A claimed thread with no reply within ``queue_policy.claim_timeout_minutes`` goes back to
  its queue, keeping its place.
- A crisis waiting longer than ``queue_policy.crisis_escalation_minutes`` is bumped above
  every other thread and raised to supervisors (a ``CrisisEscalated`` console event).
- A web chat whose client has not written for ``queue_policy.client_silent_minutes`` is marked
  as left (departures.py).
- The records of e-mail senders answered automatically lapse after their line's period and are
  deleted (conversations/answered_senders.py).

Every change is a conditional single-document update, so replicas sweeping at the same time
apply each change once.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from conversations import announce
from conversations.model import ESCALATED, URGENT, EventName
from conversations.repository import Doc, Repository
from services.dispatcher.departures import Departures
from shared.broker import Broker
from shared.config import HotlineConfig
from shared.envelope import utcnow
from shared.logs import get_logger
from shared.supervise import Heartbeat, PassFailures

log = get_logger(__name__)


class Sweeper:
    def __init__(self, repo: Repository, broker: Broker, config: HotlineConfig) -> None:
        self.repo = repo
        self.broker = broker
        self.policy = config.queue_policy
        self.departures = Departures(repo, broker, config)

    async def _announce(self, name: str, thread: Doc, **data: object) -> None:
        """Record the change in the event log and announce it. A broker that is away raises,
        failing the pass (:meth:`run` logs it); the change itself is already stored."""
        await announce.publish(self.broker, await announce.record(self.repo, name, thread, None, **data))

    async def sweep(self, now: datetime) -> tuple[int, int]:
        """One pass; returns (threads released, crises escalated)."""
        released = await self.repo.release_unanswered(
            now - timedelta(minutes=self.policy.claim_timeout_minutes)
        )
        for thread in released:
            log.info("claim_timed_out", thread_id=thread["_id"], queue=thread["queue"])
            await self._announce(EventName.THREAD_RELEASED, thread, reason="no reply in time")
        escalated = await self.repo.escalate_waiting_crises(
            now - timedelta(minutes=self.policy.crisis_escalation_minutes),
            URGENT,
            ESCALATED,
        )
        for thread in escalated:
            log.warning("crisis_escalated", thread_id=thread["_id"], queue=thread["queue"])
            await self._announce(
                EventName.CRISIS_ESCALATED, thread, waiting_since=thread["waiting_since"].isoformat()
            )
        await self.departures.sweep_silent(now)
        await self.repo.answered_senders.prune(now)
        return len(released), len(escalated)

    async def run(self, every: float, heartbeat: Heartbeat) -> None:
        """Sweep every ``every`` seconds until cancelled; a failed pass is logged and retried,
        a completed one beats ``heartbeat`` (the supervisor's view of this loop). An outage of
        the database or the broker is one warning, any other failure an error with its place."""
        failures = PassFailures("sweep_failed")
        while True:
            try:
                await self.sweep(utcnow())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the next pass retries
                failures.failed(exc)
            else:
                failures.passed()
                heartbeat.beat()
            await asyncio.sleep(every)  # a period, not a wait for an event
