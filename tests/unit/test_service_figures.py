"""Service figures from event streams: waiting time and time to the first answer per period,
queue and channel with their median and 90th percentile, chats abandoned while waiting, and
consultations per consultant per shift, counted where the consultation started."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from services.store.service_figures import figures, percentiles

MINSK = ZoneInfo("Europe/Minsk")
T0 = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)  # 10:00 in Minsk
START, END = datetime(2026, 3, 1, tzinfo=MINSK), datetime(2026, 4, 1, tzinfo=MINSK)


def ev(thread: str, name: str, minutes: float, by: str | None = None, **data: Any) -> dict[str, Any]:
    return {"thread_id": thread, "name": name, "at": T0 + timedelta(minutes=minutes), "by": by, "data": data}


def consultation(thread: str, waited: float, answered: float, by: str = "vera") -> list[dict[str, Any]]:
    return [
        ev(thread, "ThreadQueued", 0, queue="gp-dv"),
        ev(thread, "ThreadClaimed", waited, by),
        ev(thread, "MessageSent", answered, by),
        ev(thread, "ThreadClosed", answered + 5, by),
    ]


def test_percentiles_are_the_median_and_the_ninetieth() -> None:
    assert percentiles([]) == {"count": 0, "p50": None, "p90": None}
    assert percentiles([42.0]) == {"count": 1, "p50": 42.0, "p90": 42.0}
    assert percentiles([float(x) for x in range(1, 11)]) == {"count": 10, "p50": 5.5, "p90": 9.1}


def test_waiting_and_first_answer_per_queue_and_channel() -> None:
    events = []
    for i in range(10):
        events += consultation(f"t{i}", waited=i + 1, answered=i + 3)
    events += consultation("mail", waited=60, answered=120)
    channels = {**{f"t{i}": "chat" for i in range(10)}, "mail": "email"}
    out = figures(events, channels, start=START, end=END, period="month", tz=MINSK)
    rows = {r["channel"]: r for r in out["rows"]}
    assert rows["chat"]["period"] == "2026-03" and rows["chat"]["queue"] == "gp-dv"
    # Minutes 1..10 waited, 3..12 to the first answer, in seconds.
    assert rows["chat"]["waiting_seconds"] == {"count": 10, "p50": 330.0, "p90": 546.0}
    assert rows["chat"]["first_answer_seconds"] == {"count": 10, "p50": 450.0, "p90": 666.0}
    assert rows["email"]["waiting_seconds"] == {"count": 1, "p50": 3600.0, "p90": 3600.0}
    assert out["consultations_per_shift"] == [
        {"consultant": "vera", "day": "2026-03-02", "consultations": 11}
    ]


def test_a_client_who_left_before_anyone_took_the_chat_is_abandoned_once() -> None:
    events = [
        ev("gone", "ThreadQueued", 0, queue="gp-dv"),
        ev("gone", "ClientLeft", 4, why="quick_exit"),
        ev("gone", "ThreadClaimed", 6, "vera"),
        ev("gone", "ThreadClosed", 6, "vera", outcome="no_consultation", reason="silent"),
        # Left after being taken: not abandoned while waiting.
        ev("taken", "ThreadQueued", 0, queue="gp-dv"),
        ev("taken", "ThreadClaimed", 1, "vera"),
        ev("taken", "ClientLeft", 9, why="silent"),
        # E-mail is never "abandoned".
        ev("mail", "ThreadQueued", 0, queue="gp-dv"),
        ev("mail", "ClientLeft", 2, why="silent"),
    ]
    out = figures(
        events,
        {"gone": "chat", "taken": "chat", "mail": "email"},
        start=START,
        end=END,
        period="day",
        tz=MINSK,
    )
    rows = {r["channel"]: r for r in out["rows"]}
    assert rows["chat"]["abandoned_while_waiting"] == 1 and rows["email"]["abandoned_while_waiting"] == 0
    assert rows["chat"]["waiting_seconds"]["count"] == 1  # only the one taken while its client was there
    assert out["consultations_per_shift"] == []  # a close without a consultation is not one


def test_each_consultation_of_a_thread_counts_where_it_started_and_other_queues_stay_out() -> None:
    events = [
        *consultation("t", waited=2, answered=3),
        # The same thread a day later: its second consultation, the next day's figures.
        ev("t", "ThreadQueued", 24 * 60, queue="gp-dv"),
        ev("t", "ThreadClaimed", 24 * 60 + 10, "dina"),
        ev("t", "ThreadClosed", 24 * 60 + 20, "dina"),
        ev("x", "ThreadQueued", 0, queue="lastrada-migration"),
        ev("x", "ThreadClaimed", 1, "anna"),
        # Started before the window: not counted.
        {**ev("old", "ThreadQueued", 0, queue="gp-dv"), "at": START - timedelta(minutes=1)},
        ev("old", "ThreadClaimed", 1, "vera"),
    ]
    out = figures(
        events,
        {"t": "telegram", "x": "email", "old": "chat"},
        start=START,
        end=END,
        period="day",
        tz=MINSK,
        queues=frozenset({"gp-dv"}),
    )
    assert [(r["period"], r["channel"], r["waiting_seconds"]["p50"]) for r in out["rows"]] == [
        ("2026-03-02", "telegram", 120.0),
        ("2026-03-03", "telegram", 600.0),
    ]
    assert out["consultations_per_shift"] == [
        {"consultant": "dina", "day": "2026-03-03", "consultations": 1},
        {"consultant": "vera", "day": "2026-03-02", "consultations": 1},
    ]
