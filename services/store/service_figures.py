"""Service figures for supervisors, never published (issue 18, item 5): how long people wait,
how soon they get an answer, how many chats are abandoned while waiting, and how many
consultations each consultant closes per shift. Pure counting over the thread event log; no
message text is read.

Definitions, per consultation (an episode of a thread: it starts at its ``ThreadQueued``, the
thread's first message or the first after a close):

- **waiting time**: from its start to the first ``ThreadClaimed`` (someone took the person);
- **time to the first answer**: from its start to the first ``MessageSent`` (a consultant's
  reply; automatic answers are not events and do not count);
- **abandoned while waiting**: a chat or Telegram consultation whose client left
  (``ClientLeft``: quick exit, or silence) before anybody had taken it;
- **consultations per consultant per shift**: the consultations (started in the window, in the
  viewer's queues) each consultant closed, by the local day of the close (a shift is a
  consultant's day in ``STORE_STATS_TIMEZONE``).

Each is counted in the period (day or month) and queue where the consultation started, and by
the thread's channel. p50 and p90 are the median and the 90th percentile (inclusive method of
:func:`statistics.quantiles`), in seconds.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from services.store.auth import SUPERVISORS
from shared.envelope import utcnow
from shared.http import problem

Doc = dict[str, Any]

QUEUED, CLAIMED, SENT, CLOSED, LEFT = (
    "ThreadQueued",
    "ThreadClaimed",
    "MessageSent",
    "ThreadClosed",
    "ClientLeft",
)
EVENTS = (QUEUED, CLAIMED, SENT, CLOSED, LEFT)
CHATS = frozenset({"chat", "telegram"})


def percentiles(samples: list[float]) -> Doc:
    """``{count, p50, p90}`` of ``samples`` (seconds, one decimal); None where there are none."""
    if not samples:
        return {"count": 0, "p50": None, "p90": None}
    if len(samples) == 1:
        return {"count": 1, "p50": round(samples[0], 1), "p90": round(samples[0], 1)}
    deciles = statistics.quantiles(samples, n=10, method="inclusive")
    return {"count": len(samples), "p50": round(statistics.median(samples), 1), "p90": round(deciles[8], 1)}


@dataclass
class _Cell:
    waited: list[float] = field(default_factory=list)
    first_answer: list[float] = field(default_factory=list)
    abandoned: int = 0


@dataclass
class _Open:
    """The consultation of a thread being followed through its events."""

    start: datetime
    key: tuple[str, str, str]  # (period, queue, channel)
    claimed: bool = False
    answered: bool = False


def _period(at: datetime, period: str, tz: ZoneInfo) -> str:
    local = at.astimezone(tz)
    return local.strftime("%Y-%m-%d" if period == "day" else "%Y-%m")


def figures(
    events: Iterable[Mapping[str, Any]],
    channels: Mapping[str, str],
    *,
    start: datetime,
    end: datetime,
    period: str,
    tz: ZoneInfo,
    queues: frozenset[str] | None = None,
) -> Doc:
    """The figures of the consultations that started in [start, end), from ``events`` (each
    ``{thread_id, name, at, by, data}``, in any order; later events of those consultations
    may follow ``end``). ``channels``: thread id -> channel. ``queues``: the queues the viewer
    may see (None: all)."""
    by_thread: dict[str, list[Mapping[str, Any]]] = {}
    for e in events:
        by_thread.setdefault(str(e["thread_id"]), []).append(e)
    cells: dict[tuple[str, str, str], _Cell] = {}
    shifts: Counter[tuple[str, str]] = Counter()
    for thread_id, evs in by_thread.items():
        channel = channels.get(thread_id, "unknown")
        current: _Open | None = None
        for e in sorted(evs, key=lambda x: x["at"]):
            at: datetime = e["at"]
            name = e["name"]
            data = e.get("data") or {}
            if name == QUEUED:
                queue = str(data.get("queue") or "unknown")
                counted = start <= at < end and (queues is None or queue in queues)
                current = _Open(at, (_period(at, period, tz), queue, channel)) if counted else None
                continue
            if current is None:
                continue
            if name == CLOSED and e.get("by") and data.get("outcome") != "no_consultation":
                shifts[(str(e["by"]), _period(at, "day", tz))] += 1
            cell = cells.setdefault(current.key, _Cell())
            if name == CLAIMED and not current.claimed:
                current.claimed = True
                cell.waited.append((at - current.start).total_seconds())
            elif name == SENT and not current.answered:
                current.answered = True
                cell.first_answer.append((at - current.start).total_seconds())
            elif name == LEFT and not current.claimed and channel in CHATS:
                cell.abandoned += 1
                current = None  # counted once; its close adds nothing
            elif name == CLOSED:
                current = None
    rows = [
        {
            "period": key[0],
            "queue": key[1],
            "channel": key[2],
            "waiting_seconds": percentiles(c.waited),
            "first_answer_seconds": percentiles(c.first_answer),
            "abandoned_while_waiting": c.abandoned,
        }
        for key, c in sorted(cells.items())
    ]
    per_consultant = [
        {"consultant": who, "day": day, "consultations": n} for (who, day), n in sorted(shifts.items())
    ]
    return {"period": period, "rows": rows, "consultations_per_shift": per_consultant}


# --- the route ---------------------------------------------------------------------------------

# How long after its window a consultation's claim or answer is still looked for.
FOLLOW_DAYS = 7


class ServiceFigureRoutes:
    """``GET /api/service-figures?from=&to=&period=day|month``: supervisors and admins, within
    their lines and, if they belong to one, their organisation's queues. Never published: no
    suppression applies, and the answer says so."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self.repo = api.repo
        self.config = api.config
        self.tz = ZoneInfo(api.s.stats_timezone)

    def _queues(self, user: Any) -> frozenset[str]:
        lines = set(user.lines)
        return frozenset(
            name
            for name, q in self.config.queues.items()
            if q.line in lines and (user.organisation is None or user.organisation in q.organisations)
        )

    async def handle(self, request: web.Request) -> web.Response:
        """Waiting time and time to the first answer (p50, p90), chats abandoned while
        waiting, consultations per consultant per shift: supervisors and admins."""
        user = request["user"]
        if user.role not in SUPERVISORS:
            return problem(403, "Service figures are for supervisors and admins")
        today = utcnow().astimezone(self.tz).date()
        try:
            first = _date(request.query.get("from"), today.replace(day=1), "from")
            last = _date(request.query.get("to"), today, "to")
        except ValueError as exc:
            return problem(422, "Bad service figures request", str(exc), invalid=[str(exc).split(":")[0]])
        period = request.query.get("period", "day")
        if period not in {"day", "month"}:
            return problem(422, "Bad service figures request", "period: day or month", invalid=["period"])
        if last < first or (last - first).days > 400:
            return problem(
                422, "Bad service figures request", "to: from..to is 0 to 400 days", invalid=["to"]
            )
        start = datetime.combine(first, time(), self.tz)
        end = datetime.combine(last + timedelta(days=1), time(), self.tz)
        events = [
            e
            async for e in self.repo.thread_events.find(
                {
                    "name": {"$in": list(EVENTS)},
                    "at": {"$gte": start, "$lt": end + timedelta(days=FOLLOW_DAYS)},
                },
                {"thread_id": 1, "name": 1, "at": 1, "by": 1, "data": 1, "_id": 0},
                batch_size=1000,
            )
        ]
        ids = sorted({str(e["thread_id"]) for e in events})
        channels: dict[str, str] = {}
        for i in range(0, len(ids), 500):
            async for t in self.repo.threads.find({"_id": {"$in": ids[i : i + 500]}}, {"channel": 1}):
                channels[t["_id"]] = t.get("channel", "unknown")
        result = figures(
            events, channels, start=start, end=end, period=period, tz=self.tz, queues=self._queues(user)
        )
        result.update({"from": first.isoformat(), "to": last.isoformat(), "note": NOTE})
        return web.json_response(result)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/api/service-figures", self.handle)


NOTE = "Service figures for supervisors: exact, not for publication. Times in seconds."


def _date(raw: str | None, default: date, name: str) -> date:
    if raw is None:
        return default
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{name}: a date YYYY-MM-DD") from None
