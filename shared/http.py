"""Small HTTP pieces the web-facing services share."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from shared.logs import get_logger, place
from shared.mongo import is_transient_database_error

log = get_logger(__name__)

# What a request refused while the database is away or busy tells the client to wait: about
# a restart of the database, and more than the driver's server selection (shared/mongo.py).
RETRY_AFTER_SECONDS = 5

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# Request bodies of our APIs nest a few levels (a case form is three); 32 leaves room and stays
# far below the ~1,000 levels at which Python's json parser raises RecursionError.
MAX_JSON_DEPTH = 32
_SIGNIFICANT = re.compile(r'["\[\]{}]')
# The rest of a string after its opening quote. Possessive, and tried once per string: an
# unterminated string costs one pass, never one per quote inside it.
_STRING_REST = re.compile(r'(?:[^"\\]|\\.)*+"', re.DOTALL)


def json_too_deep(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``text`` opens more than ``limit`` arrays or objects inside each other.

    Cheap: a body with fewer opening brackets than ``limit`` cannot be too deep and is not
    scanned; another is scanned once, linearly, strings skipped whole (brackets in text are
    text). Malformed JSON (an unterminated string) is left to the parser to refuse.
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    depth, pos = 0, 0
    while (found := _SIGNIFICANT.search(text, pos)) is not None:
        char, pos = found.group(), found.end()
        if char == '"':
            rest = _STRING_REST.match(text, pos)
            if rest is None:
                return False
            pos = rest.end()
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


async def check_json_depth(request: web.Request, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse (400) a JSON request body nested deeper than ``limit``, before any handler parses it.

    aiohttp keeps the body it read, so the handler reads it again without a second receive.
    """
    if not request.can_read_body or "json" not in request.content_type:
        return
    try:
        text = await request.text()
    except UnicodeDecodeError:
        raise web.HTTPBadRequest(text="body is not UTF-8") from None
    if json_too_deep(text, limit):
        raise web.HTTPBadRequest(text=f"JSON nested deeper than {limit} levels")


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

    A database that is away, busy or failing over (``is_transient_database_error``) is not a
    failure of the request: it answers 503 with ``Retry-After`` (RFC 9110 section 10.2.3) and
    is logged as one warning, type only, so an outage does not read as a bug. Anything else
    is a 500, logged as an error with the exception's type and place.

    aiohttp's own error log names the client's address; this keeps such failures out of
    it (QUALITY.md 4: no client IP in any log) while still logging what broke.
    """
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return problem(exc.status, exc.reason, exc.text if exc.text != exc.reason else None)
    except Exception as exc:  # the last resort of a request: log it, answer 500 or 503, stay up
        if is_transient_database_error(exc):
            log.warning(
                "request_unavailable",
                method=request.method,
                route=_route(request),
                dependency="database",
                error=type(exc).__name__,
            )
            unavailable = problem(
                503, "Service Unavailable", "the database is unavailable; try again shortly"
            )
            unavailable.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return unavailable
        # Type and place, no traceback: an exception's message or a frame's locals can quote
        # what a person wrote (QUALITY.md 4: canaries are checked on failure paths too).
        log.error(
            "request_failed",
            method=request.method,
            route=_route(request),
            error=type(exc).__name__,
            where=place(exc),
        )
        return problem(500, "Internal error", "the failure was logged")


def _route(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"


def security_headers(headers: dict[str, str], path_prefix: str = "/") -> Middleware:
    """Add ``headers`` to every plain HTTP response under ``path_prefix``; a header the handler
    set itself stays (a download's stricter ``Content-Security-Policy: sandbox``)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if request.path.startswith(path_prefix) and not isinstance(response, web.WebSocketResponse):
            for name, value in headers.items():
                response.headers.setdefault(name, value)
        return response

    return middleware
