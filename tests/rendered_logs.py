"""The services' own logging, rendered, for a test that reads what an operator would read.

``structlog.testing.capture_logs`` hands a test the event dictionaries before any processor
runs, so it cannot see what the renderer makes of an exception (its message, a traceback,
the exceptions it was raised while handling). A test that checks what reaches a log file
configures logging exactly as a service does (:func:`shared.logs.configure_logging`, at
the services' default level) and reads the rendered lines from stderr (``capfd``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import structlog

from shared.logs import configure_logging
from shared.settings import ServiceSettings

SERVICE_LEVEL: str = ServiceSettings.model_fields["log_level"].default


@contextmanager
def service_logging(fmt: str, level: str = SERVICE_LEVEL) -> Iterator[None]:
    """Log as a service does, in ``fmt`` (``json`` as in containers, or ``console``), until
    the block ends; then give the test session its logging back."""
    root = logging.getLogger()
    handlers, root_level = root.handlers[:], root.level
    quiet = {name: logging.getLogger(name).level for name in ("aiohttp.server", "aiohttp.access")}
    configure_logging(level, fmt)
    # The one difference from a service: no logger is cached on first use. A module's logger
    # cached here would keep writing to this test's captured stream in the tests after it.
    structlog.configure(cache_logger_on_first_use=False)
    try:
        yield
    finally:
        structlog.reset_defaults()
        root.handlers[:] = handlers
        root.setLevel(root_level)
        for name, value in quiet.items():
            logging.getLogger(name).setLevel(value)
