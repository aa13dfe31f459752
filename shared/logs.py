"""structlog, configured once per process.

Events are key-values. Message text never goes into a log line: callers log ids,
sizes and outcomes only (QUALITY.md 4).

An exception reaches a log line as two facts, its type (``error``) and the place it was
raised (``where``), never as its message or a traceback: ``str(exc)`` of a parser, a
database driver or a bug of ours often quotes the data it failed on, and a traceback also
prints the messages of the exceptions it was raised while handling. This holds for our own
events logged with ``exc_info`` and for the failure reports of libraries (asyncio's "Task
exception was never retrieved", aiormq's "Consumer callback failed"), whose message text
embeds the exception's ``repr`` and is therefore replaced by ``library_error``.
"""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path
from typing import Any

import structlog

_ROOT = Path(__file__).resolve().parent.parent


def place(exc: BaseException) -> str:
    """Where ``exc`` was raised, as ``path:line in function``: the innermost frame of this
    project's own code if there is one (that is where to look), else the innermost frame.
    Only code locations: nothing of the exception's message or arguments."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "unknown"
    ours = [f for f in frames if f.filename.startswith(str(_ROOT)) and "/.venv/" not in f.filename]
    frame = (ours or frames)[-1]
    try:
        filename = str(Path(frame.filename).resolve().relative_to(_ROOT))
    except ValueError:
        filename = Path(frame.filename).name
    return f"{filename}:{frame.lineno} in {frame.name}"


def _raised(exc_info: Any) -> BaseException | None:
    """The exception an ``exc_info`` value names (an exception, a ``sys.exc_info()`` tuple,
    or True for the one being handled), or None."""
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple):
        return exc_info[1] if len(exc_info) > 1 and isinstance(exc_info[1], BaseException) else None
    return sys.exc_info()[1] if exc_info is True else None


def exception_facts(
    _logger: Any, _method: str, event_dict: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """Replace an event's exception by its type and place (see the module's docstring).

    Runs before the renderer in both chains: for structlog's own events and for records of
    the standard library's loggers (``_record`` is set for those by ``ProcessorFormatter``).
    """
    exc = _raised(event_dict.pop("exc_info", None))
    # Text another processor may have rendered from an exception already: never passed on.
    event_dict.pop("exception", None)
    if exc is None:
        return event_dict
    event_dict.setdefault("error", type(exc).__name__)
    event_dict.setdefault("where", place(exc))
    record = event_dict.get("_record")
    if isinstance(record, logging.LogRecord) and not event_dict.get("_from_structlog"):
        # A library's message about an exception quotes it (and asyncio's also the repr of
        # the task or callback, arguments included): its logger's name says who reported it.
        event_dict["event"] = "library_error"
        event_dict["logger"] = record.name
    return event_dict


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    """Configure structlog and the standard library's logging to write one line per event."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        exception_facts,
    ]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Libraries (aio-pika, aiohttp, pymongo) log through the standard library: route them to
    # stderr at warning and above so their noise stays out while their failures show.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    # aiohttp's server and access loggers put the client's address into their messages; our
    # error middleware logs request failures without it (QUALITY.md 4: no client IPs in logs).
    for name in ("aiohttp.server", "aiohttp.access"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger
