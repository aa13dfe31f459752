"""Composition root of the dispatcher."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CollectorRegistry
from pymongo.errors import PyMongoError

from conversations.repository import Repository
from conversations.vault import Vault, open_transit_key
from services.dispatcher.departures import Departures
from services.dispatcher.dispatch import Dispatcher
from services.dispatcher.settings import DispatcherSettings
from services.dispatcher.sweeper import Sweeper
from shared import topology
from shared.broker import CONNECT_ERRORS, Broker, BrokerMetrics
from shared.config import load_config
from shared.health import Health
from shared.http import errors
from shared.lifecycle import retry_until_ready
from shared.mongo import make_client, ping
from shared.supervise import Supervisor
from shared.transit import for_master_keys


def create_app(settings: DispatcherSettings) -> web.Application:
    config = load_config(settings.config_path)
    registry = CollectorRegistry()
    health = Health(registry)
    app = web.Application(middlewares=[errors])
    health.add_routes(app)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        client = make_client(settings.mongo_url.get_secret_value())
        db = client[settings.mongo_database]
        vault = Vault(client, settings.key_vault_namespace(settings.mongo_database), settings.master_keys())
        repo = Repository(db, vault)
        transit = for_master_keys(settings.master_keys())
        broker = Broker(
            settings.amqp_url.get_secret_value(),
            settings.prefetch,
            BrokerMetrics(registry),
            f"dispatcher {settings.instance_id}",
            transit,
        )
        health.add_check("database", lambda: ping(db))

        async def broker_ready() -> bool:
            return broker.is_ready()

        health.add_check("broker", broker_ready)
        supervisor = Supervisor(registry, health)
        health.add_details("tasks", supervisor.details)
        try:
            await retry_until_ready(
                "database", repo.ensure_indexes, settings.startup_timeout, (PyMongoError,)
            )
            await open_transit_key(vault, transit, health, settings.startup_timeout)
            await retry_until_ready("broker", broker.connect, settings.startup_timeout, CONNECT_ERRORS)
            dispatcher = Dispatcher(
                repo,
                broker,
                config,
                settings.client_key_secret.get_secret_value().encode(),
                settings.message_id_domain,
            )
            await dispatcher.mail_language.warm()
            await broker.consume(
                broker.topology.queues[topology.DISPATCHER_INBOUND.name],
                dispatcher.handle,
            )
            departures = Departures(repo, broker, config)
            await broker.consume(
                broker.topology.queues[topology.DISPATCHER_CHAT_ENDED.name], departures.on_chat_ended
            )
            sweeper = Sweeper(repo, broker, config)
            every = settings.sweep_seconds
            supervisor.start("sweeper", lambda beat: sweeper.run(every, beat), interval=3 * every + 30)
            yield
            await supervisor.stop()
            await broker.stop_consuming(settings.shutdown_timeout)
        finally:
            await supervisor.stop()
            await broker.close()
            await vault.close()
            await client.close()

    app.cleanup_ctx.append(resources)
    return app
