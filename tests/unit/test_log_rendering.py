"""What the services' logging renders of an exception: its type and place, never its message
nor a traceback (QUALITY.md 4: a canary is found 0 times in logs, failure paths included).

Each case logs an exception whose message carries the canary, as a bug's would (``str(exc)``
of a parser or a driver quotes the data it failed on), through the real configuration and
renderer, and reads the rendered line.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging

import pytest

from shared.logs import get_logger
from tests.rendered_logs import service_logging

CANARY = "CANARY-what-a-survivor-wrote"


def fail_on(text: str) -> None:
    raise ValueError(f"could not handle {text!r}")


def lines(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_an_event_logged_with_its_exception_shows_type_and_place(
    fmt: str, capfd: pytest.CaptureFixture[str]
) -> None:
    with service_logging(fmt):
        try:
            fail_on(CANARY)
        except ValueError:
            get_logger("t").exception("handling_failed", message_id="m1")
    err = capfd.readouterr().err
    assert CANARY not in err
    assert "handling_failed" in err and "m1" in err
    assert "ValueError" in err and "test_log_rendering.py" in err and "fail_on" in err


def test_the_json_line_names_the_error_and_where(capfd: pytest.CaptureFixture[str]) -> None:
    with service_logging("json"):
        try:
            fail_on(CANARY)
        except ValueError as exc:
            get_logger("t").error("handling_failed", exc_info=exc)
    err = capfd.readouterr().err
    assert CANARY not in err
    (line,) = lines(err)
    assert line["error"] == "ValueError"
    assert str(line["where"]).startswith("tests/unit/test_log_rendering.py:")
    assert str(line["where"]).endswith(" in fail_on")
    assert "exception" not in line and "exc_info" not in line


@pytest.mark.parametrize("chained", [False, True], ids=["its_own", "raised_while_handling_it"])
@pytest.mark.parametrize("fmt", ["json", "console"])
def test_a_library_reporting_a_failure_on_a_canary_shows_no_text(
    fmt: str, chained: bool, capfd: pytest.CaptureFixture[str]
) -> None:
    """As aiormq does when a consumer callback raises: the exception is the handler's own, or
    one raised while handling it (the channel closed under the nack), whose traceback
    prints the handler's exception too."""
    with service_logging(fmt):
        try:
            try:
                fail_on(CANARY)
            except ValueError:
                if chained:
                    raise ConnectionError("channel closed")  # noqa: B904 (implicitly chained, as there)
                raise
        except (ValueError, ConnectionError) as exc:
            logging.getLogger("aiormq.channel").error("Consumer callback failed", exc_info=exc)
    err = capfd.readouterr().err
    assert CANARY not in err
    error = "ConnectionError" if chained else "ValueError"
    assert "library_error" in err and "aiormq.channel" in err and error in err


@pytest.mark.parametrize("fmt", ["json", "console"])
async def test_a_task_exception_nobody_retrieved_shows_no_text(
    fmt: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """asyncio reports it through its logger, with the task's repr (the exception's repr in
    it) in the message and the exception attached."""

    async def work() -> None:
        fail_on(CANARY)

    with service_logging(fmt):
        task = asyncio.create_task(work())
        await asyncio.wait({task})
        del task
        gc.collect()  # the task's finaliser reports the exception nobody retrieved
    err = capfd.readouterr().err
    assert CANARY not in err
    assert "library_error" in err and "asyncio" in err and "ValueError" in err
