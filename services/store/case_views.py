"""What the case routes read from a request and answer (services/store/cases.py): no I/O.

Bodies are checked field by field; a field that is missing or wrong raises
:class:`Unprocessable`, answered 422 naming it (``missing``, ``invalid``). A case is shown in
three ways: :func:`summary` in lists (no free text), :func:`full_view` to those who may read
it, :func:`receipt` to someone who opened it but may not see it.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from aiohttp import web

from conversations import cases as model
from conversations.repository import Doc
from shared.http import problem

# How far ahead a referral's time or a follow-up may be set; how far back a time may lie
# (clocks of two machines differ a little).
AHEAD = timedelta(days=730)
SKEW = timedelta(minutes=5)
T = TypeVar("T")


class Unprocessable(Exception):
    """A request body the route cannot take: answered 422 naming the fields."""

    def __init__(self, title: str, *, missing: list[str] | None = None, invalid: list[str] | None = None):
        super().__init__(title)
        self.title = title
        self.missing = missing or []
        self.invalid = invalid or []

    def response(self) -> web.Response:
        parts = [f"missing: {', '.join(self.missing)}" if self.missing else ""]
        parts.append(f"invalid: {', '.join(self.invalid)}" if self.invalid else "")
        return problem(
            422, self.title, "; ".join(p for p in parts if p), missing=self.missing, invalid=self.invalid
        )


def iso(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def answer(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=functools.partial(json.dumps, default=iso))


def summary(case: Doc, now: datetime) -> dict[str, Any]:
    """A case in a list: no free text."""
    return {
        "id": case["_id"],
        "reference": model.case_reference(case["organisation"], case["number"]),
        **{
            k: case.get(k)
            for k in (
                "number",
                "organisation",
                "line",
                "kind",
                "status",
                "close_reason",
                "opened_at",
                "opened_by",
                "referral",
                "assignee",
                "next_followup_at",
                "thread_id",
                "consultation_id",
                "client_id",
                "updated_at",
                "closed_at",
            )
        },
        "overdue": model.overdue(case, now),
    }


def full_view(case: Doc, history: list[Doc], now: datetime) -> dict[str, Any]:
    """A whole case: its intake, logs, follow-ups, notes and the history of its changes."""
    view = summary(case, now)
    for k in ("intake", "services", "external_referrals", "followups", "notes"):
        view[k] = case.get(k)
    view["history"] = [
        {("id" if k == "_id" else k): v for k, v in e.items() if k != "case_id"} for e in history
    ]
    return view


def receipt(case: Doc) -> dict[str, Any]:
    """What someone who opened a case but may not see it (a consultant) gets back."""
    return {
        "id": case["_id"],
        "reference": model.case_reference(case["organisation"], case["number"]),
        "kind": case["kind"],
        "status": case["status"],
        "referral": {"role": case["referral"]["role"], "due_at": case["referral"]["due_at"]},
    }


# --- reading request bodies ------------------------------------------------------------------


def read_text(body: dict[str, Any], name: str, limit: int, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise Unprocessable(f"{name} is required", missing=[name])
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise Unprocessable(f"{name} must be text of at most {limit} characters", invalid=[name])
    return value.strip()


def _iso_value(value: Any, parse: Callable[[str], T]) -> T | None:
    """``value`` parsed by ``parse`` (an ISO 8601 reader), or None when it is not such text."""
    try:
        return parse(value) if isinstance(value, str) else None
    except ValueError:
        return None


def read_moment(body: dict[str, Any], name: str) -> datetime | None:
    """An ISO 8601 date-time with its offset, as UTC; None when not given."""
    if body.get(name) is None:
        return None
    moment = _iso_value(body[name], datetime.fromisoformat)
    if moment is None or moment.tzinfo is None:
        raise Unprocessable(f"{name} must be a date-time with its offset (ISO 8601)", invalid=[name])
    return moment.astimezone(UTC)


def not_past(moment: datetime, name: str, now: datetime) -> datetime:
    """``moment``, if it lies between now (give or take the clocks' skew) and ``AHEAD``."""
    if not now - SKEW <= moment <= now + AHEAD:
        raise Unprocessable(f"{name} must lie between now and two years ahead", invalid=[name])
    return moment


def read_choice(body: dict[str, Any], name: str, options: Any) -> str:
    value = body.get(name)
    if value is None or value == "":
        raise Unprocessable(f"{name} is required", missing=[name])
    if not isinstance(value, str) or value not in options:
        raise Unprocessable(f"{name} must be one of: {', '.join(options)}", invalid=[name])
    return value


def read_day(body: dict[str, Any], name: str, latest: date) -> date:
    """An ISO date, no later than ``latest``."""
    if body.get(name) in (None, ""):
        raise Unprocessable(f"{name} is required", missing=[name])
    day = _iso_value(body[name], date.fromisoformat)
    if day is None or day > latest:
        raise Unprocessable(f"{name} must be an ISO date, not in the future", invalid=[name])
    return day


def read_amount(body: dict[str, Any], name: str, applies: bool) -> float | None:
    """A number of at least 0, given only where an amount ``applies``."""
    value = body.get(name)
    if value is None:
        return None
    if (
        not applies
        or isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 <= value < 1e9
    ):
        raise Unprocessable(f"{name}: a number of at least 0, for a kind with an amount", invalid=[name])
    return value
