"""The store's Prometheus metrics: queue depth and oldest wait, claims, dead letters.

Queue figures come from the database and dead-letter counts from the broker; they are
refreshed in the background every ``every`` seconds rather than at scrape time, so a scrape
never waits on the database.
"""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Counter, Gauge

from conversations.repository import Repository
from shared import topology
from shared.broker import Broker
from shared.config import HotlineConfig
from shared.envelope import utcnow
from shared.supervise import Heartbeat, PassFailures


class StoreMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.waiting = Gauge(
            "hotline_queue_waiting", "Threads waiting, per queue", ["queue"], registry=registry
        )
        self.oldest_wait = Gauge(
            "hotline_queue_oldest_wait_seconds",
            "How long the oldest waiting thread has waited",
            ["queue"],
            registry=registry,
        )
        self.claims = Counter(
            "hotline_claims_total", "Threads taken by consultants", ["queue"], registry=registry
        )
        self.dead_letters = Gauge(
            "hotline_dead_letters",
            "Messages in a work queue's dead-letter queue",
            ["queue"],
            registry=registry,
        )

    async def refresh(self, repo: Repository, broker: Broker, config: HotlineConfig) -> None:
        now = utcnow()
        summary = await repo.queue_summary(list(config.queues))
        for queue, row in summary.items():
            self.waiting.labels(queue).set(row["waiting"])
            oldest = row["oldest_waiting_since"]
            self.oldest_wait.labels(queue).set((now - oldest).total_seconds() if oldest else 0)
        for wq in topology.WORK_QUEUES:
            declared = await broker.channel.declare_queue(topology.dead_queue(wq.name), passive=True)
            self.dead_letters.labels(wq.name).set(declared.declaration_result.message_count or 0)

    async def run(
        self, repo: Repository, broker: Broker, config: HotlineConfig, every: float, heartbeat: Heartbeat
    ) -> None:
        """Refresh until cancelled; a failed refresh keeps the last figures and tries again,
        a completed one beats ``heartbeat``. An outage of the database or the broker is one
        warning, any other failure an error with its place."""
        failures = PassFailures("metrics_refresh_failed")
        while True:
            try:
                await self.refresh(repo, broker, config)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the next round tries again
                failures.failed(exc)
            else:
                failures.passed()
                heartbeat.beat()
            await asyncio.sleep(every)  # a period, not a wait for an event
