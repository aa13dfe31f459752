"""What happens to cases, told: the event log and live consoles; and the store's check for
referrals nobody took in time and follow-ups come due (services/store/cases.py's routes tell
their changes through :class:`CaseNews` too).

Every ``cases.check_seconds`` (supervised: services/store/app.py) the check finds

- open cases whose referral was not taken by its time: each is marked ``referral.alerted_at``
  once and announced as CaseReferralOverdue, for the organisation's supervisors (and the
  specialists of the role, whose lists show it first);
- follow-ups come due: each is marked ``alerted_at`` once and announced as CaseFollowUpDue,
  for the case's assignee and the supervisors.

Safe on several replicas at once: a conditional write admits one of them per alert.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

from conversations import announce
from conversations import cases as model
from conversations.cases import CaseEvent, CaseRepository
from conversations.repository import Doc
from services.store.case_views import iso
from shared.broker import Broker
from shared.envelope import ConsoleEvent, utcnow
from shared.logs import get_logger
from shared.supervise import Heartbeat

log = get_logger(__name__)


class CaseNews:
    def __init__(self, cases: CaseRepository, broker: Broker) -> None:
        self.cases = cases
        self.broker = broker

    async def changed(self, case: Doc, name: CaseEvent, by: str | None, **data: Any) -> None:
        """Keep the fact ``name`` about ``case`` (done by ``by``, a login, or by the store) and
        tell the consoles of those who may see the case (services/store/events.py). ``data``
        holds ids, kinds and times only: it is logged and announced."""
        await self.cases.record_event(case, name.value, by, **data)
        event = ConsoleEvent(
            name=name.value,
            thread_id=case.get("thread_id") or "",
            at=utcnow(),
            organisation=case["organisation"],
            line=case["line"],
            data=json.loads(json.dumps({"case_id": case["_id"], "by": by, **data}, default=iso)),
        )
        # Stored already: a broker that is away delays only the live refresh (announce.py).
        await announce.publish_or_log(self.broker, event)
        log.info("case_changed", case_id=case["_id"], event_name=name.value, consultant=by)


class CaseAlerts:
    def __init__(self, news: CaseNews) -> None:
        self.news = news
        self.cases = news.cases

    async def watch(self, every: float, beat: Heartbeat) -> None:
        """Run :meth:`check` every ``every`` seconds, for ever."""
        while True:
            await self.check(utcnow())
            beat.beat()
            await asyncio.sleep(every)  # a period, not a wait for an event

    async def check(self, now: datetime) -> None:
        """Alert once for each referral nobody took by ``now``, and for each follow-up due."""
        for case in await self.cases.late_referrals(now):
            alerted = await self.cases.mark_referral_alerted(case, now)
            if alerted is not None:
                referral = alerted["referral"]
                await self.news.changed(
                    alerted,
                    CaseEvent.REFERRAL_OVERDUE,
                    None,
                    role=referral["role"],
                    due_at=referral["due_at"],
                )
        for case in await self.cases.followups_coming_due(now):
            await self._followups_due(case["_id"], now)

    async def _followups_due(self, case_id: str, now: datetime) -> None:
        announced: list[str] = []

        def mark(case: Doc) -> Doc:
            fields, ids = model.followups_now_due(case, now)
            announced[:] = ids
            return fields

        done = await self.cases.change(case_id, mark)
        if done is not None and done[1]:
            case = done[0]
            for item_id in announced:
                await self.news.changed(
                    case, CaseEvent.FOLLOW_UP_DUE, None, item_id=item_id, assignee=case.get("assignee")
                )
