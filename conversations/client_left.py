"""A chat whose client left: the marker a thread carries, and the rules that set and clear it.
Pure: no I/O (the repository stores the marker, the dispatcher applies the rules).

A thread's ``client_left`` field is ``{"why", "at", "marked_at"}``, present only while the
thread is open and its client has gone:

- ``why`` ``quick_exit``: the web chat's client ended the session (the widget's Quick exit).
  ``at`` is when the session ended.
- ``why`` ``silent``: a web chat's client has not written for the configured time
  (``queue_policy.client_silent_minutes``), whether the thread waits or a consultant holds it.
  ``at`` is the client's last message (stored time), so the console can say for how long.

It goes when the client writes after ``at`` and when the thread is closed. A consultant closes
such a thread in one action as a contact without a consultation with reason :data:`CLOSE_REASON`.
E-mail has no such state (a mail is never "left"), nor has Telegram: a Telegram client who
asked something and put the phone away waits for the answer as a notification, so silence there
is how the channel works, not a sign of leaving.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

QUICK_EXIT = "quick_exit"
SILENT = "silent"
# The configured close reason (``close_reasons``) the one-action close writes.
CLOSE_REASON = "silent"
# Channels whose clients can leave: the web chat only (see the module's doc for Telegram).
CHANNELS = ("chat",)


def marker(why: str, at: datetime, now: datetime) -> dict[str, Any]:
    """The ``client_left`` field: the client left ``why`` at ``at``, noticed ``now``."""
    return {"why": why, "at": at, "marked_at": now}


def silent_since(last_client_at: datetime, now: datetime, minutes: float) -> bool:
    """Whether a client whose last message was stored at ``last_client_at`` counts as silent
    ``now``; never when the rule is off (``minutes`` 0)."""
    return minutes > 0 and last_client_at <= now - timedelta(minutes=minutes)


def wrote_after(left: Any, at: datetime) -> bool:
    """Whether a client message of ``at`` came after the client left (``left``, the field as
    stored, or None): then it clears the marker. A message sent before a quick exit but handled
    after it does not."""
    return isinstance(left, dict) and isinstance(left.get("at"), datetime) and at > left["at"]
