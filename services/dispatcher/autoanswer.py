"""Which automatic answer, if any, a message gets. Pure: no I/O.

- Never to a robot (RFC 3834 auto-replies, bounces, lists) or to mail imported from a backlog:
  that is how mail loops and floods of stale "we got your message" start.
- Out of hours: a notice with emergency numbers and the opening time, once per consultation
  per closed period (keyed by that period's next opening).
- In hours: an acknowledgement of a consultation's first message: a thread's first, and the
  first after each close (the dispatcher keys each answer by the consultation).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from shared.config import HotlineConfig
from shared.hours import is_open, next_opening


@dataclass(frozen=True)
class AutoAnswer:
    kind: str  # "acknowledgement" | "out_of_hours"
    text: str
    period: str  # what makes it once-only: the closed period, or "first-contact"


def _language(config: HotlineConfig, language: str | None) -> str:
    return language if language in config.languages else config.languages[0]


def _when(opens: datetime, now: datetime, timezone: str) -> str:
    local_now = now.astimezone(ZoneInfo(timezone))
    hhmm = opens.strftime("%H:%M")
    if opens.date() == local_now.date():
        return f"{hhmm}"
    return f"{opens:%d.%m} {hhmm}"


def decide(
    config: HotlineConfig,
    *,
    line: str,
    language: str | None,
    now: datetime,
    first_message: bool,
    last_out_of_hours: str | None,
    robot: bool,
    backlog: bool,
) -> AutoAnswer | None:
    if robot or backlog or line not in config.lines:
        return None
    hours = config.lines[line].hours
    lang = _language(config, language)
    if not is_open(hours, now):
        opens = next_opening(hours, now)
        period = opens.isoformat()
        if last_out_of_hours == period:
            return None
        text = config.auto_answers.out_of_hours[lang].replace("{opens}", _when(opens, now, hours.timezone))
        return AutoAnswer("out_of_hours", text, period)
    if first_message:
        return AutoAnswer("acknowledgement", config.auto_answers.acknowledgement[lang], "first-contact")
    return None
