"""Small HTTP pieces the web-facing services share."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from shared.logs import get_logger

log = get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def problem(status: int, title: str, detail: str | None = None, **extensions: object) -> web.Response:
    """An RFC 9457 problem-details response; ``extensions`` become extension members (section 3.2)."""
    body: dict[str, object] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extensions)
    return web.json_response(body, status=status, content_type="application/problem+json")


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn HTTP errors into problem details and unexpected failures into a logged 500.

    aiohttp's own error log names the client's address; this keeps such failures out of
    it (QUALITY.md 4: no client IP in any log) while still logging what broke.
    """
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return problem(exc.status, exc.reason, exc.text if exc.text != exc.reason else None)
    except Exception as exc:  # the last resort of a request: log it, answer 500, stay up
        log.exception(
            "request_failed", method=request.method, route=_route(request), error=type(exc).__name__
        )
        return problem(500, "Internal error", "the failure was logged")


def _route(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"


def security_headers(headers: dict[str, str], path_prefix: str = "/") -> Middleware:
    """Add ``headers`` to every plain HTTP response under ``path_prefix``."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if request.path.startswith(path_prefix) and not isinstance(response, web.WebSocketResponse):
            response.headers.update(headers)
        return response

    return middleware
