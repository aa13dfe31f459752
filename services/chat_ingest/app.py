"""Composition root of chat_ingest: the widget, its socket and the reply consumer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry

from services.chat_ingest.settings import ChatIngestSettings
from services.chat_ingest.ws import ChatHub, ChatMetrics
from shared import topology
from shared.broker import CONNECT_ERRORS, Broker, BrokerMetrics
from shared.config import load_config
from shared.health import Health
from shared.http import errors, security_headers
from shared.lifecycle import retry_until_ready

STATIC = Path(__file__).parent / "static"

# The widget page must leave no trace and never be framed by a stranger's site.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; connect-src 'self'; img-src 'self'; "
    "style-src 'self'; script-src 'self'; frame-ancestors 'self'",
}


def create_app(settings: ChatIngestSettings) -> web.Application:
    config = load_config(settings.config_path)
    registry = CollectorRegistry()
    health = Health(registry)
    app = web.Application(middlewares=[security_headers(SECURITY_HEADERS, "/chat"), errors])
    health.add_routes(app)
    broker = Broker(
        settings.amqp_url.get_secret_value(),
        settings.prefetch,
        BrokerMetrics(registry),
        f"chat_ingest {settings.instance_id}",
    )
    hub = ChatHub(settings, config, broker, ChatMetrics(registry))

    async def broker_ready() -> bool:
        return broker.is_ready()

    health.add_check("broker", broker_ready)

    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    async def widget(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "widget.js")

    async def widget_css(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "widget.css")

    app.router.add_get("/chat/", page)
    app.router.add_get("/chat/widget.js", widget)
    app.router.add_get("/chat/widget.css", widget_css)
    app.router.add_get("/chat/ws", hub.handle_ws)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        try:
            await retry_until_ready("broker", broker.connect, settings.startup_timeout, CONNECT_ERRORS)
            replies = await topology.declare_replica_queue(
                broker.channel,
                topology.chat_outbound_queue(settings.instance_id),
                topology.OUTBOUND,
                ["outbound.chat.#"],
            )
            await broker.consume(replies, hub.deliver)
            yield
            await broker.stop_consuming(settings.shutdown_timeout)
        finally:
            await broker.close()

    async def close_sockets(app: web.Application) -> None:
        await hub.close_all()

    app.cleanup_ctx.append(resources)
    app.on_shutdown.append(close_sockets)
    return app
