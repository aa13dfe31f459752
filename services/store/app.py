"""Composition root of the store: database, broker, API, console and live events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry
from pymongo.errors import PyMongoError

from conversations import reference
from conversations.outbound import OutboxSweeper
from conversations.repository import Repository
from conversations.vault import Vault, open_transit_key
from services.store import administration, openapi, reports, skills
from services.store.administration import AdministrationRoutes
from services.store.api import ConsultantApi
from services.store.attachments import AttachmentRoutes
from services.store.audit import ReadAudit
from services.store.case_report_routes import CaseReportRoutes
from services.store.cases import CaseApi
from services.store.clients import ClientRoutes
from services.store.contact_plan_routes import ContactPlanRoutes
from services.store.erasure import ErasureRoutes
from services.store.events import ConsoleHub, DeliveryRecorder
from services.store.held_replies import HeldReplies
from services.store.metrics import StoreMetrics
from services.store.migrations import migrate
from services.store.quarantine import QuarantineRoutes
from services.store.reply_files import ReplyFileRoutes
from services.store.retention import LEASE_SECONDS as RETENTION_LEASE_SECONDS
from services.store.retention import RetentionJob
from services.store.search import SearchRoutes
from services.store.service_figures import ServiceFigureRoutes
from services.store.settings import StoreSettings
from services.store.shift import LEASE_KEY as SHIFT_LEASE
from services.store.shift import Shift, ShiftRoutes
from services.store.takeover import TakeOverRoutes
from services.store.totp import TotpRoutes
from shared import topology
from shared.broker import CONNECT_ERRORS, Broker, BrokerMetrics
from shared.config import load_config
from shared.health import Health
from shared.http import errors, security_headers
from shared.lease import Lease
from shared.lifecycle import retry_until_ready
from shared.mongo import make_client, ping
from shared.supervise import Supervisor
from shared.transit import for_master_keys

STATIC = Path(__file__).parent / "static"

CONSOLE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # No inline script, no remote anything: e-mail HTML shown here cannot run or fetch.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
}


def create_app(settings: StoreSettings) -> web.Application:
    config = load_config(settings.config_path)
    registry = CollectorRegistry()
    health = Health(registry)
    client = make_client(settings.mongo_url.get_secret_value())
    db = client[settings.mongo_database]
    vault = Vault(client, settings.key_vault_namespace(settings.mongo_database), settings.master_keys())
    repo = Repository(db, vault)
    transit = for_master_keys(settings.master_keys())
    broker = Broker(
        settings.amqp_url.get_secret_value(),
        settings.prefetch,
        BrokerMetrics(registry),
        f"store {settings.instance_id}",
        transit,
    )
    audit = ReadAudit(db)
    api = ConsultantApi(settings, config, repo, broker, audit)
    metrics = StoreMetrics(registry)
    api.metrics = metrics
    # The lease lapses after three missed passes: another replica then passes.
    held = HeldReplies(
        repo,
        broker,
        config,
        Lease(db["leases"], 3 * settings.hold_check_seconds + 30),
        settings.instance_id,
        settings.hold_page,
    )
    api.held = held
    supervisor = Supervisor(registry, health)
    shift = Shift(
        repo,
        broker,
        gone_minutes=settings.console_gone_minutes,
        email_minutes=settings.away_email_minutes,
        handoff_minutes=settings.handoff_minutes,
        lease=Lease(db["leases"], 3 * settings.shift_check_seconds + 30),
        holder=settings.instance_id,
    )
    api.shift = shift
    hub = ConsoleHub(api.sessions, api.visible_queues, supervisor=supervisor, shift=shift)
    app = web.Application(
        middlewares=[security_headers(CONSOLE_HEADERS), errors, api.middleware],
        client_max_size=settings.max_body_bytes,
    )
    health.add_routes(app)
    api.add_routes(app)
    ClientRoutes(api).add_routes(app)
    ContactPlanRoutes(api, held).add_routes(app)
    ServiceFigureRoutes(api).add_routes(app)
    reports.register(app, config, repo, api.sessions, settings.stats_timezone, settings.stats_min_cell)
    CaseReportRoutes(api).add_routes(app)
    AttachmentRoutes(api).add_routes(app)
    ReplyFileRoutes(api).add_routes(app)
    ErasureRoutes(api).add_routes(app)
    ShiftRoutes(api, shift).add_routes(app)
    TakeOverRoutes(api).add_routes(app)
    QuarantineRoutes(api).add_routes(app)
    AdministrationRoutes(api).install(app)
    TotpRoutes(api, transit).add_routes(app)
    app.router.add_get("/api/events", hub.handle_ws)
    app.router.add_get("/api/openapi.json", openapi.serve)

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC)
    health.add_check("database", lambda: ping(db))

    async def broker_ready() -> bool:
        return broker.is_ready()

    # Reported, not deciding: with the broker away the console still reads, and replies are
    # accepted into the outbox (outbound.py); only live events pause.
    health.add_check("broker", broker_ready, required=False)

    health.add_details("tasks", supervisor.details)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        try:
            await retry_until_ready(
                "database", repo.ensure_indexes, settings.startup_timeout, (PyMongoError,)
            )
            await open_transit_key(vault, transit, health, settings.startup_timeout)
            await migrate(db)
            # Threads stored before threads had clients get theirs, once per database.
            await repo.clients.assign_existing(settings.client_key_secret.get_secret_value().encode())
            await audit.ensure_indexes()
            # Canned answers and the directory: the YAML's, the first time (conversations/reference.py).
            await reference.seed(db, config)
            await administration.ensure_indexes(db)
            await retry_until_ready("broker", broker.connect, settings.startup_timeout, CONNECT_ERRORS)
            events = await topology.declare_replica_queue(
                broker.channel,
                topology.console_events_queue(settings.instance_id),
                topology.EVENTS,
                ["event.#"],
            )
            await broker.consume(events, hub.on_event)
            await broker.consume(
                broker.topology.queues[topology.STORE_DELIVERY.name],
                DeliveryRecorder(repo, broker).handle,
            )
            # The lease lapses after three missed passes: another replica then sweeps.
            lease = Lease(db["leases"], 3 * settings.outbox_seconds + 30)
            outbox = OutboxSweeper(repo, broker, lease, settings.instance_id)
            supervisor.start(
                "outbox",
                lambda beat: outbox.run(settings.outbox_seconds, beat),
                interval=3 * settings.outbox_seconds + 30,
            )
            supervisor.start(
                "held_replies",
                lambda beat: held.run(settings.hold_check_seconds, beat),
                interval=3 * settings.hold_check_seconds + 30,
            )
            # Threads kept for a language or skill: consoles hear when they are everyone's.
            fallback = skills.Fallback(
                repo, broker, config, Lease(db["leases"], 30 + 3 * 10.0), settings.instance_id
            )
            supervisor.start("skill_fallback", fallback.run, interval=3 * fallback.every() + 30)
            if settings.retention_interval_hours > 0:
                retention = RetentionJob(
                    repo,
                    config,
                    Lease(db["leases"], RETENTION_LEASE_SECONDS),
                    settings.instance_id,
                    days=settings.retention_days,
                    unclosed_days=settings.retention_unclosed_days,
                    interval=timedelta(hours=settings.retention_interval_hours),
                    check_seconds=settings.retention_check_seconds,
                )
                supervisor.start(
                    "retention", retention.run, interval=3 * settings.retention_check_seconds + 60
                )
            await shift.ensure_indexes()
            check = settings.shift_check_seconds
            supervisor.start(SHIFT_LEASE, lambda beat: shift.run(check, beat), interval=3 * check + 30)
            # Presence is said more often than a console may be gone, whatever the settings.
            presence = min(check, 60 * settings.console_gone_minutes / 3)
            supervisor.start(
                "presence",
                lambda beat: shift.run_presence(hub.logins, presence, beat),
                interval=3 * presence + 30,
            )
            every = settings.metrics_refresh_seconds
            supervisor.start(
                "metrics",
                lambda beat: metrics.run(repo, broker, config, every, beat),
                interval=3 * every + 30,
            )
            yield
            await supervisor.stop()
            await broker.stop_consuming(settings.shutdown_timeout)
        finally:
            await supervisor.stop()
            await broker.close()
            await vault.close()
            await client.close()

    async def close_sockets(app: web.Application) -> None:
        await hub.close_all()

    app.cleanup_ctx.append(resources)
    CaseApi(api).install(app, supervisor)  # after resources: its start needs the database up
    SearchRoutes(api).install(app, supervisor)  # after resources: its indexer needs the database
    app.on_shutdown.append(close_sockets)
    return app
