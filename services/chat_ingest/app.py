"""Composition root of chat_ingest: the widget, its socket, the reply and event consumers,
and the Telegram webhooks."""

from __future__ import annotations

import resource
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from pymongo.errors import PyMongoError

from conversations.reference import ReferenceData
from conversations.repository import ChatRepository
from conversations.vault import Vault, open_transit_key
from services.chat_ingest.settings import ChatIngestSettings
from services.chat_ingest.telegram_bot import TelegramBots
from services.chat_ingest.ws import ChatHub, ChatMetrics
from shared import topology
from shared.broker import CONNECT_ERRORS, Broker, BrokerMetrics
from shared.config import ConfigError, HotlineConfig, load_config
from shared.envelope import utcnow
from shared.health import Health
from shared.hours import is_open, next_opening
from shared.http import errors, security_headers
from shared.lifecycle import retry_until_ready
from shared.mongo import make_client, ping
from shared.supervise import Supervisor
from shared.transit import for_master_keys

STATIC = Path(__file__).parent / "static"

# The widget page must leave no trace and never be framed by a stranger's site.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; connect-src 'self'; img-src 'self'; "
    "style-src 'self'; script-src 'self'; frame-ancestors 'self'",
}


def raise_file_limit() -> None:
    """Every chat socket is a file descriptor: use the hard limit, not the (often 1024) soft one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def chat_info(config: HotlineConfig) -> dict[str, Any]:
    """What the widget shows before connecting: lines with duty hours, regions, topics, and
    the help directory (emergency, national and by region)."""
    now = utcnow()
    return {
        "languages": config.languages,
        "regions": config.regions,
        "directory": config.directory.model_dump(exclude_none=True),
        "lines": {
            name: {
                "name": line.name,
                "on_duty": is_open(line.hours, now),
                "opens": next_opening(line.hours, now).isoformat(),
                "hours": {
                    "timezone": line.hours.timezone,
                    "open": line.hours.open.strftime("%H:%M"),
                    "close": line.hours.close.strftime("%H:%M"),
                },
                "topics": {t: topic.title for t, topic in line.topics.items()},
            }
            for name, line in config.lines.items()
        },
    }


def create_app(settings: ChatIngestSettings) -> web.Application:
    config = load_config(settings.config_path)
    registry = CollectorRegistry()
    health = Health(registry)
    app = web.Application(middlewares=[security_headers(SECURITY_HEADERS, "/chat"), errors])
    health.add_routes(app)
    transit = for_master_keys(settings.master_keys())
    broker = Broker(
        settings.amqp_url.get_secret_value(),
        settings.prefetch,
        BrokerMetrics(registry),
        f"chat_ingest {settings.instance_id}",
        transit,
    )
    client = make_client(settings.mongo_url.get_secret_value())
    db = client[settings.mongo_database]
    vault = Vault(client, settings.key_vault_namespace(settings.mongo_database), settings.master_keys())
    repo = ChatRepository(db, vault)
    hub = ChatHub(settings, config, broker, repo, ChatMetrics(registry))
    try:
        bots = TelegramBots(settings, config, broker, repo, registry)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    # Canned answers' and the directory's database copy, cached (conversations/reference.py).
    reference = ReferenceData(db, config)
    bots.reference = reference

    async def broker_ready() -> bool:
        return broker.is_ready()

    health.add_check("broker", broker_ready)
    # Chat is taken with the broker alone (messages are published, the dispatcher stores them);
    # without the database only new sessions and resumes wait: reported, not deciding.
    health.add_check("database", lambda: ping(db), required=False)

    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    async def widget(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "widget.js")

    async def widget_css(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "widget.css")

    async def info(request: web.Request) -> web.Response:
        directory = await reference.directory()
        resp = web.json_response(chat_info(config.model_copy(update={"directory": directory})))
        # Read by the widget from the organisation's own site: public, no credentials.
        resp.headers["Access-Control-Allow-Origin"] = "*"
        return resp

    app.router.add_get("/chat/", page)
    app.router.add_get("/chat/widget.js", widget)
    app.router.add_get("/chat/widget.css", widget_css)
    app.router.add_get("/chat/info", info)
    app.router.add_get("/chat/ws", hub.handle_ws)
    app.router.add_post("/telegram/{bot}/webhook", bots.handle_webhook)
    if bots.bots:
        health.add_details("telegram", bots.details)

    supervisor = Supervisor(registry, health)
    health.add_details("tasks", supervisor.details)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        raise_file_limit()
        try:
            await retry_until_ready(
                "database", repo.ensure_indexes, settings.startup_timeout, (PyMongoError,)
            )
            await open_transit_key(vault, transit, health, settings.startup_timeout)
            await retry_until_ready("broker", broker.connect, settings.startup_timeout, CONNECT_ERRORS)
            await hub.start(supervisor)
            replies = await topology.declare_replica_queue(
                broker.channel,
                topology.chat_outbound_queue(settings.instance_id),
                topology.OUTBOUND,
                ["outbound.chat.#"],
            )
            events = await topology.declare_replica_queue(
                broker.channel,
                topology.chat_events_queue(settings.instance_id),
                topology.EVENTS,
                [
                    *(topology.event_key(name) for name in topology.QUEUE_ORDER_EVENTS),
                    topology.chat_session_ended_key(),
                ],
            )
            await broker.consume(replies, hub.deliver)
            await broker.consume(events, hub.on_event)
            await bots.start()
            if bots.bots:
                # Only a replica that has the bots takes Telegram replies off the shared queue.
                await broker.consume(broker.topology.queues[topology.TELEGRAM_OUTBOUND.name], bots.deliver)
            yield
            await broker.stop_consuming(settings.shutdown_timeout)
        finally:
            await supervisor.stop()
            await bots.stop()
            await hub.stop()
            await broker.close()
            await vault.close()
            await client.close()

    async def close_sockets(app: web.Application) -> None:
        await hub.close_all()

    app.cleanup_ctx.append(resources)
    app.on_shutdown.append(close_sockets)
    return app
