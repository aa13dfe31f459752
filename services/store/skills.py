"""Routing by skill and language: who is offered a waiting thread first.

A thread needs

- a language, when it is written in one that not every consultant speaks: its ``language``
  (a chat's choice, a mail's as the dispatcher detected it) is one of the configured
  ``languages`` and not one of ``queue_policy.common_languages`` (default: the first
  configured language);
- a skill, when its topic names one (``lines.<line>.topics.<topic>.skill``, e.g. ``legal``).
  A queue's own ``skill`` describes everyone who works it, so it asks for nothing more.

What a thread needs is read from what it records (``language``, ``line``, ``topic``) and its
wait from ``waiting_since``, so a change of the configuration applies to the threads already
waiting. For ``queue_policy.skill_wait_minutes`` from the start of its wait, such a thread is
reserved for consultants whose account lists the language (``languages``) or the skill
(``skills``): others see it in their list marked ``reserved`` (for a colleague who speaks
English; open to all at ``until``), "next" passes it over, and a claim is refused with 409.
After that it is the whole queue's. Consultants with the skill or language see and take it at
once, as before.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from conversations import announce
from conversations.outbound import periodically
from conversations.repository import Doc, Repository
from services.store.auth import User
from shared.broker import Broker
from shared.config import HotlineConfig
from shared.envelope import utcnow
from shared.lease import Lease
from shared.supervise import Heartbeat


def common_languages(config: HotlineConfig) -> set[str]:
    return set(config.queue_policy.common_languages or config.languages[:1])


def wait(config: HotlineConfig) -> timedelta:
    return timedelta(minutes=config.queue_policy.skill_wait_minutes)


def needs(config: HotlineConfig, thread: Doc) -> dict[str, str]:
    """What ``thread`` asks of whoever takes it: ``language`` and/or ``skill``."""
    out: dict[str, str] = {}
    language = thread.get("language")
    if language in config.languages and language not in common_languages(config):
        out["language"] = language
    line = config.lines.get(thread.get("line", ""))
    topic = line.topics.get(thread.get("topic") or "") if line is not None else None
    if topic is not None and topic.skill:
        out["skill"] = topic.skill
    return out


def missing(config: HotlineConfig, user: User, thread: Doc) -> dict[str, str]:
    """What ``thread`` needs that ``user`` does not have."""
    need = needs(config, thread)
    out: dict[str, str] = {}
    if "language" in need and need["language"] not in user.languages:
        out["language"] = need["language"]
    if "skill" in need and need["skill"] not in user.skills:
        out["skill"] = need["skill"]
    return out


def reservation(config: HotlineConfig, user: User, thread: Doc, now: datetime) -> dict[str, Any] | None:
    """Whom a waiting ``thread`` is kept for while ``user`` may not take it yet, and until
    when; None when ``user`` may take it (or it is not waiting)."""
    if thread.get("status") != "waiting" or not isinstance(thread.get("waiting_since"), datetime):
        return None
    until: datetime = thread["waiting_since"] + wait(config)
    lacking = missing(config, user, thread)
    if not lacking or until <= now:
        return None
    return {"for": lacking, "until": until.isoformat()}


def reserved_filter(config: HotlineConfig, user: User, now: datetime) -> Doc | None:
    """A database filter for the waiting threads reserved for others than ``user`` now (the
    same rule as :func:`reservation`), or None when there are none."""
    if wait(config) <= timedelta(0):
        return None
    alternatives: list[Doc] = []
    languages = [
        lang
        for lang in config.languages
        if lang not in common_languages(config) and lang not in user.languages
    ]
    if languages:
        alternatives.append({"language": {"$in": languages}})
    for name, line in config.lines.items():
        topics = [t for t, spec in line.topics.items() if spec.skill and spec.skill not in user.skills]
        if topics:
            alternatives.append({"line": name, "topic": {"$in": topics}})
    if not alternatives:
        return None
    return {"status": "waiting", "waiting_since": {"$gt": now - wait(config)}, "$or": alternatives}


# The console event that says a kept thread is now the whole queue's (consoles refresh).
OPENED_TO_ALL = "ThreadOpenedToAll"
LEASE_KEY = "skill-fallback"


def needs_filter(config: HotlineConfig) -> Doc | None:
    """A database filter for threads that need a language or skill at all."""
    alternatives: list[Doc] = []
    languages = [lang for lang in config.languages if lang not in common_languages(config)]
    if languages:
        alternatives.append({"language": {"$in": languages}})
    for name, line in config.lines.items():
        topics = [t for t, spec in line.topics.items() if spec.skill]
        if topics:
            alternatives.append({"line": name, "topic": {"$in": topics}})
    return {"$or": alternatives} if alternatives else None


class Fallback:
    """Tells consoles when a kept thread becomes the whole queue's: one pass every
    :meth:`every` seconds announces ``ThreadOpenedToAll`` for each waiting thread whose keeping
    ended since the last pass (one replica passes at a time, by a lease). A console also asks
    again at a thread's ``reserved.until``; the event is for the consoles that did not list it."""

    def __init__(
        self, repo: Repository, broker: Broker, config: HotlineConfig, lease: Lease, holder: str
    ) -> None:
        self.repo = repo
        self.broker = broker
        self.config = config
        self.lease = lease
        self.holder = holder
        self._since: datetime | None = None  # the end of the window the last pass covered

    def every(self) -> float:
        """Seconds between passes: a quarter of the wait, within 0.5 to 10 (10 when off)."""
        seconds = wait(self.config).total_seconds()
        return 10.0 if seconds <= 0 else min(10.0, max(0.5, seconds / 4))

    async def check(self) -> int:
        """One pass: how many threads were announced."""
        needing = needs_filter(self.config)
        if needing is None or wait(self.config) <= timedelta(0):
            return 0
        if not await self.lease.take(LEASE_KEY, self.holder):
            self._since = None  # another replica passes; start afresh if this one takes over
            return 0
        until = utcnow() - wait(self.config)
        since = self._since or until - timedelta(seconds=3 * self.every())
        query: Doc = {"status": "waiting", "waiting_since": {"$gt": since, "$lte": until}, **needing}
        found = [t async for t in self.repo.threads.find(query, {"queue": 1, "line": 1})]
        for thread in found:
            await announce.publish_or_log(self.broker, announce.thread_event(OPENED_TO_ALL, thread))
        self._since = until
        return len(found)

    async def run(self, heartbeat: Heartbeat) -> None:
        # A period: the clock offers no event to wait for.
        await periodically(self.check, self.every(), heartbeat, "skill_fallback_pass_failed")
