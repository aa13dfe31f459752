"""Running a service: one aiohttp application per process, whatever the service does.

Every resource is opened in a ``cleanup_ctx`` generator of the application, in order
(broker, database, consumers); aiohttp closes them in reverse on SIGTERM/SIGINT, so the
shutdown order is always: stop intake (consumers), drain in-flight work within
``shutdown_timeout``, close dependencies, close connections.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable

from aiohttp import web

from shared.config import ConfigError
from shared.logs import configure_logging, get_logger
from shared.settings import S, ServiceSettings, load_settings


def run(app: web.Application, settings: ServiceSettings) -> None:
    """Serve ``app`` until SIGTERM or SIGINT, then shut down gracefully."""
    log = get_logger("lifecycle")
    log.info("service_starting", host=settings.http_host, port=settings.http_port)
    web.run_app(
        app,
        host=settings.http_host,
        port=settings.http_port,
        shutdown_timeout=settings.shutdown_timeout,
        access_log=None,  # request lines would carry client addresses (QUALITY.md 4)
        print=None,
        handle_signals=True,
    )
    log.info("service_stopped")


def setup_logging(settings: ServiceSettings) -> None:
    configure_logging(settings.log_level, settings.log_format)


def main(create_app: Callable[[S], web.Application], settings_cls: type[S]) -> None:
    """Entry point of every service: settings, logging, app, run; config errors exit 2."""
    settings = load_settings(settings_cls)
    setup_logging(settings)
    try:
        app = create_app(settings)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    run(app, settings)


async def retry_until_ready(
    what: str,
    action: Callable[[], Awaitable[None]],
    within: float,
    errors: tuple[type[BaseException], ...],
) -> None:
    """Run ``action`` until it succeeds, retrying ``errors`` with backoff for ``within`` seconds.

    A service may start before its broker or database answers (compose starts them together,
    an orchestrator restarts one of them); it waits instead of failing at once, and once
    ``within`` is spent the last error propagates so the process exits with it.
    """
    log = get_logger("lifecycle")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    delay = 0.5
    while True:
        try:
            await action()
            return
        except errors as exc:
            if loop.time() + delay > deadline:
                log.error("dependency_unavailable", dependency=what, error=type(exc).__name__)
                raise
            log.warning("dependency_waiting", dependency=what, error=type(exc).__name__, retry_in=delay)
            await asyncio.sleep(delay)  # backoff between attempts, not a wait for an event
            delay = min(delay * 2, 5.0)
