"""A chat whose client left: the marker a thread carries, and the rules that set and clear it.
Pure: no I/O (the repository stores the marker, the dispatcher applies the rules).

A thread's ``client_left`` field is ``{"why", "at", "marked_at"}``, present only while the
thread is open and its client has gone:

- ``why`` ``not_safe``: the client said it is not safe to talk now and hid the conversation
  (the widget's "Not safe now", the Telegram bot's ``/notsafe``). It means "do not reply until
  they write": the console refuses replies while it holds (:func:`holds_replies`) and the
  organisation's supervisors are told. ``at`` is when the client asked. On the web chat the
  session ended too, as with a quick exit; on Telegram the chat stays, so the client writing
  there again clears the mark.
- ``why`` ``quick_exit``: the web chat's client ended the session (the widget's Quick exit).
  ``at`` is when the session ended.
- ``why`` ``silent``: a web chat's client has not written for the configured time
  (``queue_policy.client_silent_minutes``), whether the thread waits or a consultant holds it.
  ``at`` is the client's last message (stored time), so the console can say for how long.

It goes when the client writes after ``at`` and when the thread is closed. A consultant closes
such a thread in one action as a contact without a consultation with reason :data:`CLOSE_REASON`.
A stronger mark replaces a weaker one, never the reverse (:func:`at_least`): not safe, then
quick exit, then silence. E-mail has no such state (a mail is never "left"). A Telegram thread
is marked only as not safe: a Telegram client who asked something and put the phone away waits
for the answer as a notification, so silence there is how the channel works, not a sign of
leaving.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

NOT_SAFE = "not_safe"
QUICK_EXIT = "quick_exit"
SILENT = "silent"
# Strongest first: a mark replaces only those after it.
STRENGTH = (NOT_SAFE, QUICK_EXIT, SILENT)
# Marks after which the web chat session is over: it writes nothing more, so silence is moot.
ENDED = (NOT_SAFE, QUICK_EXIT)
# The configured close reason (``close_reasons``) the one-action close writes.
CLOSE_REASON = "silent"
# Channels whose clients can fall silent: the web chat only (see the module's doc for Telegram).
CHANNELS = ("chat",)
# Channels whose clients can say it is not safe now.
NOT_SAFE_CHANNELS = ("chat", "telegram")


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


def at_least(why: str) -> list[str]:
    """The marks as strong as ``why`` or stronger: a thread carrying one of them keeps it when
    ``why`` comes (a quick exit does not hide that the client said it was not safe)."""
    return list(STRENGTH[: STRENGTH.index(why) + 1])


def holds_replies(left: Any) -> bool:
    """Whether the mark (``left``, the field as stored, or None) forbids replying now: the
    client said it is not safe, and has not written since."""
    return isinstance(left, dict) and left.get("why") == NOT_SAFE
