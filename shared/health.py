"""``/healthz``, ``/readyz`` and ``/metrics``, the same on every service.

``/healthz`` answers 200 while the process runs. ``/readyz`` answers 200 when every check the
service needs for its own job passes within a short timeout, else 503; the body lists every
check's result under ``checks`` and names the failing required ones under ``missing`` and the
failing others under ``degraded``. A check that is not required is one the service works
without for a while (chat_ingest takes chat with the broker alone), so an orchestrator that
routes by readiness does not cut a channel off while it still works. ``/metrics`` serves the
service's own Prometheus registry.
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
        self.required: set[str] = set()
        self.details: dict[str, Details] = {}

    def add_check(self, name: str, check: ReadinessCheck, *, required: bool = True) -> None:
        """Add a readiness check; ``required=False`` reports it without deciding readiness."""
        self.checks[name] = check
        if required:
            self.required.add(name)
        else:
            self.required.discard(name)

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
        missing = [n for n in names if n in self.required and not checks[n]]
        degraded = [n for n in names if n not in self.required and not checks[n]]
        ready = bool(self.required) and not missing
        body: dict[str, Any] = {
            "status": "ready" if ready else "not ready",
            "checks": checks,
            "missing": missing,
            "degraded": degraded,
        }
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
