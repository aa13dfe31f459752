"""``/healthz``, ``/readyz`` and ``/metrics``, the same on every service.

``/healthz`` answers 200 while the process runs. ``/readyz`` answers 200 only when every
readiness check (broker, database, ...) passes within a short timeout, else 503 with the
failing checks named. ``/metrics`` serves the service's own Prometheus registry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

ReadinessCheck = Callable[[], Awaitable[bool]]
Details = Callable[[], dict[str, Any]]

CHECK_TIMEOUT = 2.0


class Health:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.checks: dict[str, ReadinessCheck] = {}
        self.details: dict[str, Details] = {}

    def add_check(self, name: str, check: ReadinessCheck) -> None:
        self.checks[name] = check

    def add_details(self, name: str, details: Details) -> None:
        """Facts shown in ``/readyz`` under ``details`` that do not decide readiness."""
        self.details[name] = details

    async def _run(self, check: ReadinessCheck) -> bool:
        try:
            return await asyncio.wait_for(check(), CHECK_TIMEOUT)
        except (TimeoutError, OSError, ConnectionError):
            return False
        except Exception:  # a readiness probe must answer, whatever broke
            return False

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        names = list(self.checks)
        results = await asyncio.gather(*(self._run(self.checks[n]) for n in names))
        checks = dict(zip(names, results, strict=True))
        ready = bool(checks) and all(results)
        body: dict[str, Any] = {"status": "ready" if ready else "not ready", "checks": checks}
        if self.details:
            body["details"] = {name: get() for name, get in self.details.items()}
        return web.json_response(body, status=200 if ready else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        resp = web.Response(body=body)
        resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return resp

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics)
