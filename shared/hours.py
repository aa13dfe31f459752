"""Duty hours of a line: pure functions of a configuration and a time."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from shared.config import Hours


def is_open(hours: Hours, now: datetime) -> bool:
    """Whether consultants are on duty at ``now`` (timezone-aware)."""
    local = now.astimezone(ZoneInfo(hours.timezone))
    return local.date() not in hours.holidays and hours.open <= local.time() < hours.close


def next_opening(hours: Hours, now: datetime) -> datetime:
    """The start of the next duty period after ``now``, or the current one's start if open.

    It names the closed period ``now`` falls in: every moment of one closed period has the
    same next opening, which is what "once per closed period" is keyed on.
    """
    zone = ZoneInfo(hours.timezone)
    local = now.astimezone(zone)
    day = local.date()
    if is_open(hours, now):
        return datetime.combine(day, hours.open, zone)
    if local.time() < hours.open and day not in hours.holidays:
        return datetime.combine(day, hours.open, zone)
    # A year of holidays in a row would be a configuration error; stop looking well past it.
    for _ in range(400):
        day += timedelta(days=1)
        if day not in hours.holidays:
            return datetime.combine(day, hours.open, zone)
    raise ValueError("no opening within 400 days: check the holidays")
