"""Small HTTP pieces the web-facing services share."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def security_headers(headers: dict[str, str], path_prefix: str = "/") -> Middleware:
    """Add ``headers`` to every plain HTTP response under ``path_prefix``."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if request.path.startswith(path_prefix) and not isinstance(response, web.WebSocketResponse):
            response.headers.update(headers)
        return response

    return middleware
