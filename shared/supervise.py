"""Long-running tasks of a service, each under supervision, none of them ending silently.

A service's intake (mailbox watchers), its sweepers and its background loops run in tasks
that must live as long as the process. Without supervision a task that raises something
nobody expected (a library's ``RuntimeError`` while the broker restarts, a bug met by one
odd mail) simply ends: asyncio keeps its exception until the task is garbage-collected, the
process stays up, ``/readyz`` says 200, and no mail is read until someone restarts the
service by hand. Here instead:

- an unexpected exception is logged by type and place (file, line, function; never its
  message nor a traceback, which may quote a person's text, QUALITY.md 4), counted in
  ``hotline_task_failures_total`` and the task is started again after a backoff (jittered,
  doubling up to ``backoff_max``; reset once the task completes a cycle again). A transient
  one (the database or the broker away or busy, ``shared.broker.is_transient``) is an outage,
  not a bug: it is logged as a warning, by type only;
- a task that returns while it should run for ever is treated the same way;
- each task reports the end of every cycle with :meth:`Heartbeat.beat`. An *intake* task
  that is restarting, or that has not completed a cycle within its ``interval``, makes the
  service not ready, named in ``/readyz`` (``task:<name>``), so an operator and an
  orchestrator see that intake stopped.

Cancellation (shutdown) is never caught: :meth:`Supervisor.stop` cancels and awaits every
task, and is the one exit.

A task that runs in passes (a sweep, a refresh) and survives a failed pass reports it with
:class:`PassFailures`, by the same rule: an outage is one warning, a bug an error each time.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from shared.broker import is_transient
from shared.health import Health
from shared.logs import get_logger
from shared.logs import place as place  # re-exported: callers that supervise import it from here

log = get_logger(__name__)


@dataclass
class Heartbeat:
    """What a supervised task knows of its supervision: it calls :meth:`beat` at the end of
    every completed cycle (a mailbox synchronised, a sweep done, an event handled)."""

    name: str
    interval: float | None
    intake: bool
    started: float = field(default_factory=time.monotonic)
    last_beat: float | None = None
    running: bool = True
    cycles: int = 0
    _on_beat: Callable[[str], None] | None = None

    def beat(self) -> None:
        self.last_beat = time.monotonic()
        self.cycles += 1
        if self._on_beat is not None:
            self._on_beat(self.name)

    def problem(self, now: float) -> str | None:
        """Why this task holds the service back from being ready, or None."""
        if not self.running:
            return "restarting"
        if self.interval is not None:
            since = self.last_beat if self.last_beat is not None else self.started
            if now - since > self.interval:
                return "stalled"
        return None


class SupervisorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.failures = Counter(
            "hotline_task_failures_total",
            "Unexpected ends of long-running tasks (each followed by a restart), by error type",
            ["task", "error"],
            registry=registry,
        )
        self.up = Gauge(
            "hotline_task_up",
            "1 while a long-running task runs, 0 while it waits to restart",
            ["task"],
            registry=registry,
        )
        self.last_cycle = Gauge(
            "hotline_task_last_cycle_timestamp_seconds",
            "Unix time of the last completed cycle of a long-running task",
            ["task"],
            registry=registry,
        )


class Supervisor:
    """Owns a service's long-running tasks: starts, restarts, reports and stops them."""

    def __init__(
        self,
        registry: CollectorRegistry,
        health: Health | None = None,
        *,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
    ) -> None:
        self.metrics = SupervisorMetrics(registry)
        self.health = health
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.beats: dict[str, Heartbeat] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(
        self,
        name: str,
        work: Callable[[Heartbeat], Awaitable[None]],
        *,
        interval: float | None = None,
        intake: bool = False,
    ) -> Heartbeat:
        """Run ``work(heartbeat)`` in a task until :meth:`stop`, restarting it when it ends.

        ``interval``: the longest time between two completed cycles of a healthy task; past
        it the task counts as stalled. ``intake``: the service is not ready while this task
        is restarting or stalled (a readiness check ``task:<name>`` is added to ``health``).
        """
        if name in self._tasks:
            raise ValueError(f"a task named {name!r} is already supervised")
        beat = Heartbeat(name, interval, intake, _on_beat=self._record_beat)
        self.beats[name] = beat
        self.metrics.up.labels(name).set(1)
        self._tasks[name] = asyncio.create_task(self._supervise(beat, work), name=name)
        if intake and self.health is not None:

            async def check() -> bool:
                return beat.problem(time.monotonic()) is None

            self.health.add_check(f"task:{name}", check)
        return beat

    def _record_beat(self, name: str) -> None:
        self.metrics.last_cycle.labels(name).set(time.time())

    async def _supervise(self, beat: Heartbeat, work: Callable[[Heartbeat], Awaitable[None]]) -> None:
        delay = self.backoff_initial
        while True:
            cycles_before = beat.cycles
            beat.running = True
            self.metrics.up.labels(beat.name).set(1)
            try:
                await work(beat)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Type and place only: the message of an exception may carry a person's text.
                # A dependency away (transient) is an outage, not a place to look at.
                error = type(exc).__name__
                where = None if is_transient(exc) else place(exc)
            else:
                error, where = "Returned", "-"
            beat.running = False
            self.metrics.up.labels(beat.name).set(0)
            self.metrics.failures.labels(beat.name, error).inc()
            if beat.cycles > cycles_before:
                delay = self.backoff_initial  # it worked for a while: a fresh failure, short wait
            pause = delay * random.uniform(0.5, 1.0)  # noqa: S311 (jitter, not crypto)
            if where is None:
                log.warning("task_failed", task=beat.name, error=error, restart_in=round(pause, 2))
            else:
                log.error("task_failed", task=beat.name, error=error, where=where, restart_in=round(pause, 2))
            await asyncio.sleep(pause)  # backoff before the restart, not a wait for an event
            delay = min(delay * 2, self.backoff_max)

    def companion(self, task: asyncio.Task[Any], name: str, on_failure: Callable[[], object]) -> None:
        """Supervise a task that lives and dies with one connection (a socket's writer): it is
        not restarted on its own, since the connection it serves would be left half-alive
        (open, but deaf). If it ends by an unexpected exception, that is logged by type and
        place and counted like any task failure, and ``on_failure`` runs: it closes the
        connection, so the client reconnects and is served afresh. The connection going away
        (a reset, a closed socket) is the normal end, not a failure."""

        def done(ended: asyncio.Task[Any]) -> None:
            if ended.cancelled() or (exc := ended.exception()) is None:
                return
            if isinstance(exc, ConnectionError | OSError):
                return  # the peer went away: the connection's own handler ends with it
            self.metrics.failures.labels(name, type(exc).__name__).inc()
            log.error("task_failed", task=name, error=type(exc).__name__, where=place(exc), restart_in=None)
            on_failure()

        task.add_done_callback(done)

    def problems(self) -> dict[str, str]:
        """Intake tasks that hold the service back from being ready, with the reason."""
        now = time.monotonic()
        found = {name: beat.problem(now) for name, beat in self.beats.items() if beat.intake}
        return {name: why for name, why in found.items() if why is not None}

    def details(self) -> dict[str, Any]:
        """For ``/readyz`` details: each task's state and seconds since its last cycle."""
        now = time.monotonic()
        return {
            name: {
                "state": beat.problem(now) or "running",
                "since_last_cycle": None if beat.last_beat is None else round(now - beat.last_beat, 1),
                "intake": beat.intake,
            }
            for name, beat in self.beats.items()
        }

    async def stop(self) -> None:
        """Cancel every task and wait for each to end (the only way they end)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._tasks.clear()


class PassFailures:
    """How a loop that runs in passes (a sweep, a refresh) reports the passes that fail.

    A transient failure (the database or the broker away, busy or failing over:
    ``shared.broker.is_transient``) is an outage, not a bug: one warning ``event`` when the
    passes begin to fail, by type only, and one info line ``dependency_back`` (with the
    number of passes that failed) when a pass completes again; the passes in between add
    nothing, so a long outage does not flood the log. Any other failure is logged as an
    error ``event`` with the exception's type and place, every time. Never a traceback nor an
    exception's message (QUALITY.md 4).
    """

    def __init__(self, event: str) -> None:
        self.event = event
        self.failing = 0  # consecutive passes failed by a transient failure

    def failed(self, exc: BaseException, **facts: object) -> None:
        """Report a pass that raised ``exc``; ``facts`` are added to the log line."""
        if not is_transient(exc):
            log.error(self.event, error=type(exc).__name__, where=place(exc), **facts)
            return
        if self.failing == 0:
            log.warning(self.event, error=type(exc).__name__, transient=True, **facts)
        self.failing += 1

    def passed(self) -> None:
        """Report a pass that completed."""
        if self.failing:
            log.info("dependency_back", after=self.event, failed_passes=self.failing)
            self.failing = 0
