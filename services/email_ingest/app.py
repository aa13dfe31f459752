"""Composition root of email_ingest: the IMAP watcher and the SMTP reply sender."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CollectorRegistry
from pymongo.errors import PyMongoError

from conversations.vault import Vault, open_transit_key
from services.email_ingest.imap import ImapMetrics, MailboxWatcher, mailboxes_from
from services.email_ingest.quarantine import ReplayRequests
from services.email_ingest.rawstore import RawStore
from services.email_ingest.settings import EmailIngestSettings
from services.email_ingest.smtp import ReplySender, SmtpMetrics, accounts_from
from services.email_ingest.tls import client_context
from shared import topology
from shared.broker import CONNECT_ERRORS, Broker, BrokerMetrics
from shared.config import load_config
from shared.health import Health
from shared.http import errors
from shared.lifecycle import retry_until_ready
from shared.mongo import make_client, ping
from shared.supervise import Supervisor
from shared.transit import for_master_keys


def create_app(settings: EmailIngestSettings) -> web.Application:
    config = load_config(settings.config_path)
    mailboxes = mailboxes_from(settings, config)  # refuses to start on a missing password
    # Built (and the CA bundle read) now, so a bad file stops the start with its setting's name.
    smtp_tls = (
        client_context(settings.tls_ca_file, "EMAIL_INGEST_TLS_CA_FILE")
        if settings.smtp_security != "none"
        else None
    )
    accounts = accounts_from(settings, config, smtp_tls)  # refuses to start on a missing password
    registry = CollectorRegistry()
    health = Health(registry)
    app = web.Application(middlewares=[errors])
    health.add_routes(app)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        client = make_client(settings.mongo_url.get_secret_value())
        db = client[settings.mongo_database]
        vault = Vault(client, settings.key_vault_namespace(settings.mongo_database), settings.master_keys())
        transit = for_master_keys(settings.master_keys())
        broker = Broker(
            settings.amqp_url.get_secret_value(),
            settings.prefetch,
            BrokerMetrics(registry),
            f"email_ingest {settings.instance_id}",
            transit,
        )
        health.add_check("database", lambda: ping(db))

        async def broker_ready() -> bool:
            return broker.is_ready()

        health.add_check("broker", broker_ready)
        supervisor = Supervisor(registry, health, backoff_max=settings.reconnect_max_seconds)
        health.add_details("tasks", supervisor.details)
        # A healthy watcher completes a synchronisation at least once per IDLE (or poll)
        # period; allow the watchdog twice on top before calling it stalled.
        cycle = max(settings.idle_seconds, settings.poll_seconds) + 2 * settings.watchdog_seconds
        try:
            secret = settings.client_key_secret
            raw = RawStore(db, vault, secret.get_secret_value().encode() if secret else None)
            sender = ReplySender.on(
                db, settings, config, broker, smtp_tls, SmtpMetrics(registry), vault=vault, accounts=accounts
            )
            for ensure in (raw.ensure_indexes, sender.ensure_indexes):
                await retry_until_ready("database", ensure, settings.startup_timeout, (PyMongoError,))
            await open_transit_key(vault, transit, health, settings.startup_timeout)
            await retry_until_ready("broker", broker.connect, settings.startup_timeout, CONNECT_ERRORS)
            # A database outage holds the reply (retried in place) instead of spending its
            # delivery attempts: the send ledger and the rate limit live there.
            await broker.consume(
                broker.topology.queues[topology.EMAIL_OUTBOUND.name],
                sender.handle,
            )
            # Replays a supervisor asks for in the console (services/store/quarantine.py).
            replays = ReplayRequests(
                raw, broker, {b.name: b for b in mailboxes}, settings.max_attachment_bytes
            )
            every = settings.replay_check_seconds
            supervisor.start(
                "quarantine-replays", lambda beat: replays.run(every, beat), interval=3 * every + 30
            )
            metrics = ImapMetrics(registry)
            for box in mailboxes:
                watcher = MailboxWatcher(box, settings, broker, db["imap_cursors"], raw, metrics)
                supervisor.start(f"imap-watcher {box.name}", watcher.run, interval=cycle, intake=True)
            yield
            # Stop intake first: the watchers, then the reply consumer, then drain.
            await supervisor.stop()
            await broker.stop_consuming(settings.shutdown_timeout)
        finally:
            await supervisor.stop()
            await broker.close()
            await vault.close()
            await client.close()

    app.cleanup_ctx.append(resources)
    return app
