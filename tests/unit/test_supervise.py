"""The supervisor of long-running tasks: nothing ends silently, readiness tells the truth."""

from __future__ import annotations

import asyncio
import time

import pytest
import structlog
from prometheus_client import CollectorRegistry
from pymongo.errors import AutoReconnect, DuplicateKeyError, OperationFailure, ServerSelectionTimeoutError

from shared.broker import BrokerUnavailable
from shared.health import Health
from shared.supervise import Heartbeat, PassFailures, Supervisor, place

SECRET = "CANARY-text-a-person-wrote"


def failures(registry: CollectorRegistry, task: str, error: str) -> float:
    value = registry.get_sample_value("hotline_task_failures_total", {"task": task, "error": error})
    return value or 0.0


async def test_a_task_that_raises_is_logged_by_type_and_place_and_started_again() -> None:
    registry = CollectorRegistry()
    sup = Supervisor(registry, backoff_initial=0.01)
    runs: list[int] = []
    second = asyncio.Event()

    async def work(beat: Heartbeat) -> None:
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError(f"channel closed while sending {SECRET}")
        second.set()
        await asyncio.Event().wait()

    with structlog.testing.capture_logs() as logs:
        sup.start("watcher", work)
        await asyncio.wait_for(second.wait(), 5)
    await sup.stop()
    assert len(runs) == 2
    (failed,) = [e for e in logs if e["event"] == "task_failed"]
    assert failed["task"] == "watcher" and failed["error"] == "RuntimeError"
    assert failed["where"].startswith("tests/unit/test_supervise.py:") and failed["where"].endswith("in work")
    # Type and place only: never the exception's message, never a traceback.
    assert SECRET not in repr(logs) and "exc_info" not in failed
    assert failures(registry, "watcher", "RuntimeError") == 1


async def test_a_task_that_returns_is_started_again() -> None:
    registry = CollectorRegistry()
    sup = Supervisor(registry, backoff_initial=0.01)
    runs = 0
    third = asyncio.Event()

    async def work(beat: Heartbeat) -> None:
        nonlocal runs
        runs += 1
        if runs == 3:
            third.set()
            await asyncio.Event().wait()

    sup.start("loop", work)
    await asyncio.wait_for(third.wait(), 5)
    await sup.stop()
    assert failures(registry, "loop", "Returned") == 2


async def test_readiness_names_a_dead_intake_task_and_recovers_with_it() -> None:
    registry = CollectorRegistry()
    health = Health(registry)
    sup = Supervisor(registry, health, backoff_initial=30)  # stays down long enough to look at
    failed = asyncio.Event()

    async def work(beat: Heartbeat) -> None:
        failed.set()
        raise OSError("gone")

    sup.start("imap-watcher box", work, intake=True)
    await asyncio.wait_for(failed.wait(), 5)
    assert sup.problems() == {"imap-watcher box": "restarting"}
    assert await health.checks["task:imap-watcher box"]() is False
    assert registry.get_sample_value("hotline_task_up", {"task": "imap-watcher box"}) == 0
    await sup.stop()


async def test_an_intake_task_without_a_completed_cycle_within_its_interval_is_stalled() -> None:
    sup = Supervisor(CollectorRegistry())
    beat_now = asyncio.Event()
    beaten = asyncio.Event()

    async def work(beat: Heartbeat) -> None:
        await beat_now.wait()
        beat.beat()
        beaten.set()
        await asyncio.Event().wait()

    beat = sup.start("sync", work, interval=60, intake=True)
    assert sup.problems() == {}
    now = time.monotonic()
    assert beat.problem(now + 61) == "stalled"  # nothing completed since the start
    beat_now.set()
    await asyncio.wait_for(beaten.wait(), 5)
    assert beat.problem(time.monotonic() + 59) is None
    assert beat.problem(time.monotonic() + 61) == "stalled"
    assert sup.details()["sync"]["state"] == "running"
    await sup.stop()


async def test_a_task_that_is_not_intake_never_holds_readiness_back() -> None:
    sup = Supervisor(CollectorRegistry(), backoff_initial=30)
    failed = asyncio.Event()

    async def work(beat: Heartbeat) -> None:
        failed.set()
        raise ValueError("x")

    sup.start("metrics", work, interval=1)
    await asyncio.wait_for(failed.wait(), 5)
    assert sup.problems() == {}
    assert sup.details()["metrics"]["state"] == "restarting"
    await sup.stop()


async def test_stop_cancels_every_task_and_a_name_is_supervised_once() -> None:
    sup = Supervisor(CollectorRegistry())
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def work(beat: Heartbeat) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    sup.start("one", work)
    with pytest.raises(ValueError):
        sup.start("one", work)
    await asyncio.wait_for(started.wait(), 5)
    await sup.stop()
    assert cancelled.is_set()


def test_place_names_the_innermost_frame_of_our_code_without_the_message() -> None:
    def inner() -> None:
        raise KeyError(SECRET)

    try:
        inner()
    except KeyError as exc:
        where = place(exc)
    assert where.startswith("tests/unit/test_supervise.py:") and where.endswith(" in inner")
    assert SECRET not in where


async def test_a_task_ended_by_a_database_away_is_a_warning_without_a_place() -> None:
    registry = CollectorRegistry()
    sup = Supervisor(registry, backoff_initial=0.01)
    runs: list[int] = []
    second = asyncio.Event()

    async def work(beat: Heartbeat) -> None:
        runs.append(1)
        if len(runs) == 1:
            raise ServerSelectionTimeoutError(f"no servers while reading {SECRET}")
        second.set()
        await asyncio.Event().wait()

    with structlog.testing.capture_logs() as logs:
        sup.start("sweeper", work)
        await asyncio.wait_for(second.wait(), 5)
    await sup.stop()
    (failed,) = [e for e in logs if e["event"] == "task_failed"]
    assert failed["log_level"] == "warning" and failed["error"] == "ServerSelectionTimeoutError"
    assert "where" not in failed and SECRET not in repr(logs)
    assert failures(registry, "sweeper", "ServerSelectionTimeoutError") == 1


def test_passes_failed_by_an_outage_are_one_warning_and_its_end_one_line() -> None:
    reports = PassFailures("sweep_failed")
    with structlog.testing.capture_logs() as logs:
        reports.failed(AutoReconnect(f"connection closed reading {SECRET}"), queue="q")
        reports.failed(OperationFailure("database is locked (5) (SQLITE_BUSY)", 1), queue="q")
        reports.failed(BrokerUnavailable("channel closed"), queue="q")
        reports.passed()
        reports.passed()
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("sweep_failed", "warning"),
        ("dependency_back", "info"),
    ]
    warning, back = logs
    assert warning["error"] == "AutoReconnect" and warning["queue"] == "q" and "where" not in warning
    assert back["after"] == "sweep_failed" and back["failed_passes"] == 3
    assert SECRET not in repr(logs)


def test_a_pass_failed_by_anything_else_is_an_error_with_its_place_every_time() -> None:
    reports = PassFailures("sweep_failed")
    with structlog.testing.capture_logs() as logs:
        for _ in range(2):
            try:
                raise KeyError(SECRET)
            except KeyError as exc:
                reports.failed(exc)
        try:
            raise DuplicateKeyError("E11000", 11000)
        except DuplicateKeyError as exc:
            reports.failed(exc)
        reports.passed()
    assert [(e["event"], e["log_level"], e["error"]) for e in logs] == [
        ("sweep_failed", "error", "KeyError"),
        ("sweep_failed", "error", "KeyError"),
        ("sweep_failed", "error", "DuplicateKeyError"),
    ]
    assert all(e["where"].startswith("tests/unit/test_supervise.py:") for e in logs)
    assert SECRET not in repr(logs)


async def test_a_connections_writer_that_fails_is_logged_counted_and_its_connection_closed() -> None:
    registry = CollectorRegistry()
    sup = Supervisor(registry)
    closed: list[str] = []

    async def writer(error: BaseException | None) -> None:
        await asyncio.sleep(0)
        if error is not None:
            raise error

    with structlog.testing.capture_logs() as logs:
        for name, error in (
            ("bug", ValueError(f"cannot encode {SECRET}")),
            ("peer-gone", ConnectionResetError("peer reset")),
            ("done", None),
        ):
            task = asyncio.create_task(writer(error))
            sup.companion(task, "chat-writer", lambda name=name: closed.append(name))
            await asyncio.gather(task, return_exceptions=True)
            await asyncio.sleep(0)  # done callbacks run on the next turn of the loop
        cancelled = asyncio.create_task(asyncio.Event().wait())
        sup.companion(cancelled, "chat-writer", lambda: closed.append("cancelled"))
        cancelled.cancel()
        await asyncio.gather(cancelled, return_exceptions=True)
        await asyncio.sleep(0)
    # Only the unexpected failure closes its connection; a peer gone or a cancel is a normal end.
    assert closed == ["bug"]
    (failed,) = [e for e in logs if e["event"] == "task_failed"]
    assert failed["task"] == "chat-writer" and failed["error"] == "ValueError"
    where = failed["where"]
    assert where.startswith("tests/unit/test_supervise.py:") and where.endswith("in writer")
    assert SECRET not in repr(logs)
    assert failures(registry, "chat-writer", "ValueError") == 1
