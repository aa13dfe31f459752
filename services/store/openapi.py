"""The OpenAPI 3.1 document of the store's HTTP API, served at ``/api/openapi.json``.

The list of paths comes from the application's router, so the document can never name a
route that does not exist nor miss one that does; what each operation means, who may call
it and what it answers is written here. A route added elsewhere (e.g. statistics) without
an entry here is still listed, described by its handler's docstring; tests/unit/test_openapi.py
fails when one of this module's operations has no route, or a console route has no entry.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Schema) -> Schema:
    return {"content": {"application/json": {"schema": schema}}}


def _ok(description: str, schema: Schema | None = None) -> Schema:
    out: Schema = {"description": description}
    if schema is not None:
        out.update(_json(schema))
    return out


PROBLEM = {
    "description": "problem details (RFC 9457)",
    "content": {"application/problem+json": {"schema": _ref("Problem")}},
}


def _body(schema: Schema) -> Schema:
    return {"required": True, **_json(schema)}


def _obj(required: list[str], **props: Schema) -> Schema:
    return {"type": "object", "required": required, "properties": props}


STR: Schema = {"type": "string"}
TIME: Schema = {"type": ["string", "null"], "format": "date-time"}

COMPONENTS: Schema = {
    "schemas": {
        "Problem": {
            "type": "object",
            "required": ["type", "title", "status"],
            "properties": {
                "type": STR,
                "title": STR,
                "status": {"type": "integer"},
                "detail": STR,
                "missing": {"type": "array", "items": STR},
                "invalid": {"type": "array", "items": STR},
            },
        },
        "Consultant": _obj(
            ["login", "name", "role", "lines"],
            login=STR,
            name=STR,
            role={"enum": ["consultant", "supervisor", "admin"]},
            organisation={"type": ["string", "null"]},
            lines={"type": "array", "items": STR},
            status={"enum": ["available", "away", "offline"]},
        ),
        "Queue": _obj(
            ["name", "line", "waiting", "oldest_waiting_since"],
            name=STR,
            line=STR,
            title={"type": "object", "additionalProperties": STR},
            waiting={"type": "integer"},
            oldest_waiting_since=TIME,
        ),
        "Thread": _obj(
            ["id", "channel", "line", "queue", "status", "priority"],
            id=STR,
            channel={"enum": ["email", "chat", "telegram"]},
            line=STR,
            queue=STR,
            status={"enum": ["waiting", "active", "closed"]},
            priority={"type": "integer"},
            assignee={"type": ["string", "null"]},
            subject={"type": ["string", "null"]},
            language={"type": ["string", "null"]},
            region={"type": ["string", "null"]},
            topic={"type": ["string", "null"]},
            waiting_since=TIME,
            case={"type": "object", "description": "case form answers: option ids, lists when multiple"},
            outcome={"enum": ["consultation", "no_consultation"], "description": "how a closed thread ended"},
            no_consultation_reason={"type": "string", "description": "a configured close reason id"},
            client_id={"type": ["string", "null"], "description": "the person (pseudonymous), where known"},
            client_link=_obj(
                ["previous", "by", "at", "thread"],
                previous={"type": ["string", "null"], "description": "the client an undo gives back"},
                by=STR,
                at=TIME,
                thread={"type": "string", "description": "the thread whose client was taken"},
            ),
            client_left=_obj(
                ["why", "at"],
                why={"enum": ["quick_exit", "silent"]},
                at={**TIME, "description": "when the session ended; for silent, the client's last message"},
                marked_at=TIME,
            ),
        ),
        "Message": _obj(
            ["id", "thread_id", "direction", "author", "created_at"],
            id=STR,
            thread_id=STR,
            direction={"enum": ["in", "out", "note"]},
            author={"type": "string", "description": "client | bot | consultant:<login>"},
            text=STR,
            html={"type": ["string", "null"], "description": "sanitised e-mail HTML"},
            quoted={"type": ["string", "null"], "description": "quoted e-mail history"},
            attachments={"type": "array", "items": {"type": "object"}},
            delivery=_obj([], status={"enum": ["queued", "sent", "failed"]}, at=TIME),
            created_at=TIME,
        ),
        "ThreadWithMessages": {
            "allOf": [
                _ref("Thread"),
                _obj(["messages"], messages={"type": "array", "items": _ref("Message")}),
            ]
        },
        "Event": _obj(["id", "thread_id", "name", "at"], id=STR, thread_id=STR, name=STR, at=TIME, by=STR),
        "EarlierConsultation": _obj(
            ["id", "thread_id", "started_at", "channel", "line", "outcome"],
            id=STR,
            thread_id=STR,
            started_at=TIME,
            closed_at=TIME,
            channel={"enum": ["email", "chat", "telegram", "phone"]},
            line=STR,
            organisation={"type": ["string", "null"], "description": "the organisation it counts for"},
            outcome={"enum": ["consultation", "no_consultation"]},
            reason={"type": ["string", "null"], "description": "a configured close reason id"},
            case={"type": "object", "description": "categorical answers of the case form (option ids)"},
            consultants={"type": "array", "items": STR},
            closed_by={"type": ["string", "null"]},
        ),
    }
}

THREAD_ID = {"name": "id", "in": "path", "required": True, "schema": STR}

# (method, path) -> (who may call it, operation). "who" is documentation for readers of the
# document (x-access); the access-matrix test checks the behaviour independently.
OPERATIONS: dict[tuple[str, str], tuple[str, Schema]] = {
    ("POST", "/api/session"): ("anyone", {
        "summary": "Log in: sets the HttpOnly session cookie, returns the consultant and a CSRF token",
        "description": "Also sets the device cookie hl_device: failed log-ins are counted per "
        "(login, source) and per source, a source being this browser once it logged in as that "
        "login, else the peer address. Past the free failures each attempt from that source waits, "
        "longer each time (429 with Retry-After, the password unchecked); nobody is locked out.",
        "requestBody": _body(_obj(["login", "password"], login=STR, password=STR)),
        "responses": {
            "200": _ok("logged in", _obj(["consultant", "csrf_token"], consultant=_ref("Consultant"), csrf_token=STR)),  # noqa: E501
            "400": PROBLEM, "401": PROBLEM, "413": PROBLEM, "415": PROBLEM, "422": PROBLEM,
            "429": {**PROBLEM, "headers": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}},  # noqa: E501
        },
    }),
    ("DELETE", "/api/session"): ("session", {
        "summary": "Log out: the session ends at once, and its live /api/events sockets close (4401)",
        "responses": {"200": _ok("logged out"), "401": PROBLEM, "403": PROBLEM},
    }),
    ("GET", "/api/me"): ("session", {
        "summary": "The logged-in consultant with their availability",
        "responses": {"200": _ok("me", _obj(["consultant"], consultant=_ref("Consultant"))), "401": PROBLEM},
    }),
    ("PUT", "/api/me/status"): ("session", {
        "summary": "Set availability; offline gives every held conversation back to its queue",
        "requestBody": _body(_obj(["status"], status={"enum": ["available", "away", "offline"]})),
        "responses": {"200": _ok("set"), "401": PROBLEM, "403": PROBLEM, "422": PROBLEM},
    }),
    ("GET", "/api/config"): ("session", {
        "summary": "Case form, canned answers, close reasons and transfer targets of the consultant's lines",
        "responses": {"200": _ok("console configuration", {"type": "object"}), "401": PROBLEM},
    }),
    ("GET", "/api/queues"): ("session", {
        "summary": "Queues this consultant may see, with waiting count and oldest wait",
        "responses": {"200": _ok("queues", {"type": "array", "items": _ref("Queue")}), "401": PROBLEM},
    }),
    ("GET", "/api/threads"): ("session", {
        "summary": "Threads of visible queues, waiting ones by priority then age",
        "description": "Paged: at most `limit` threads (default and maximum 200) from page `page`; a "
        "`Link: <...>; rel=\"next\"` header names the next page when there is one. Open threads in "
        "the order next hands them out (priority, then longest waiting), closed ones latest closed "
        "first. Ask by status (the console asks for waiting and active): without one, closed threads "
        "share the pages with open ones.",
        "parameters": [
            {"name": "queue", "in": "query", "schema": STR},
            {"name": "status", "in": "query", "schema": {"enum": ["waiting", "active", "closed"]}},
            {"name": "mine", "in": "query", "schema": {"enum": ["1"]}},
            {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 200}},  # noqa: E501
            {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1}},  # noqa: E501
        ],
        "responses": {
            "200": {
                **_ok("threads", {"type": "array", "items": _ref("Thread")}),
                "headers": {"Link": {"description": 'rel="next": the next page, when there is one', "schema": STR}},  # noqa: E501
            },
            "401": PROBLEM, "404": PROBLEM, "422": PROBLEM,
        },
    }),
    ("POST", "/api/queues/{queue}/next"): ("queue", {
        "summary": "Claim the most urgent, longest-waiting thread of the queue",
        "description": "From a shared queue, the thread moves to the claimer's organisation's own queue.",
        "parameters": [{"name": "queue", "in": "path", "required": True, "schema": STR}],
        "responses": {
            "200": _ok("claimed", _ref("Thread")), "204": {"description": "nobody is waiting"},
            "401": PROBLEM, "403": PROBLEM, "404": PROBLEM, "409": PROBLEM,
        },
    }),
    ("POST", "/api/threads/{id}/claim"): ("thread", {
        "summary": "Claim one thread; 409 when someone else holds it",
        "description": "A thread of a queue several organisations share moves to the claimer's "
        "organisation's own queue of the line (answered with its new queue); released, it returns.",
        "responses": {"200": _ok("claimed", _ref("Thread")), "401": PROBLEM, "403": PROBLEM, "404": PROBLEM, "409": PROBLEM},  # noqa: E501
    }),
    ("GET", "/api/threads/{id}"): ("thread", {
        "summary": "The thread with its messages and notes (the read is recorded)",
        "responses": {"200": _ok("thread", _ref("ThreadWithMessages")), "401": PROBLEM, "404": PROBLEM},
    }),
    ("GET", "/api/threads/{id}/history"): ("thread", {
        "summary": "Every change of the thread with its time (the read is recorded)",
        "responses": {"200": _ok("events", {"type": "array", "items": _ref("Event")}), "401": PROBLEM, "404": PROBLEM},  # noqa: E501
    }),
    ("POST", "/api/threads/{id}/client"): ("thread, and the other thread", {
        "summary": "This thread is the same person as another one: it takes that thread's client",
        "description": "For a chat whose client says who they are. Only someone who may see both "
        "threads may link them: either unseen answers 404. 409 when the other thread's client is not "
        "known. Recorded in the event log (ClientLinked, by whom); undone by DELETE.",
        "requestBody": _body(_obj(["thread"], thread={"type": "string", "description": "the other thread's id"})),  # noqa: E501
        "responses": {"200": _ok("linked", _ref("Thread")), "401": PROBLEM, "403": PROBLEM, "404": PROBLEM, "409": PROBLEM, "422": PROBLEM},  # noqa: E501
    }),
    ("DELETE", "/api/threads/{id}/client"): ("thread", {
        "summary": "Undo a link: the thread gets back the client it had (none for a chat)",
        "description": "409 when the thread was not linked by hand. Recorded (ClientUnlinked, by whom).",
        "responses": {"200": _ok("unlinked", _ref("Thread")), "401": PROBLEM, "403": PROBLEM, "404": PROBLEM, "409": PROBLEM},  # noqa: E501
    }),
    ("GET", "/api/threads/{id}/earlier"): ("thread", {
        "summary": "The closed consultations of the thread's client, latest first, as far as the "
        "viewer's organisation may see them (the read is recorded)",
        "description": "A member of an organisation sees that organisation's consultations of their "
        "lines; a supervisor of whole lines, every organisation's of them. No free text: the case "
        "form's categorical answers. Empty when the client is not known.",
        "responses": {"200": _ok("consultations", {"type": "array", "items": _ref("EarlierConsultation")}), "401": PROBLEM, "404": PROBLEM},  # noqa: E501
    }),
    ("GET", "/api/threads/{id}/reads"): ("supervisor", {
        "summary": "Who read the thread and when",
        "responses": {"200": _ok("reads", {"type": "array", "items": {"type": "object"}}), "401": PROBLEM, "403": PROBLEM, "404": PROBLEM},  # noqa: E501
    }),
    ("POST", "/api/threads/{id}/messages"): ("thread holder", {
        "summary": "Reply; delivery status follows on the message (queued, sent, failed)",
        "description": "The Idempotency-Key (8-100 characters) names this reply: sent again with the same "
        "thread and text it answers the stored reply (202, nothing sent twice); with another thread or "
        "another text it is refused with 409 and nothing is stored or sent.",
        "parameters": [{"name": "Idempotency-Key", "in": "header", "required": True, "schema": STR}],
        "requestBody": _body(_obj(["text"], text=STR)),
        "responses": {
            "202": _ok("accepted", _ref("Message")),
            "400": PROBLEM, "401": PROBLEM, "403": PROBLEM, "404": PROBLEM, "409": PROBLEM, "422": PROBLEM,
        },
    }),
    ("POST", "/api/threads/{id}/notes"): ("thread", {
        "summary": "Internal note: shown to consultants, never sent",
        "requestBody": _body(_obj(["text"], text=STR)),
        "responses": {"201": _ok("note", _ref("Message")), "401": PROBLEM, "403": PROBLEM, "404": PROBLEM, "422": PROBLEM},  # noqa: E501
    }),
    ("POST", "/api/threads/{id}/transfer"): ("thread holder or supervisor", {
        "summary": "Move the thread to another queue, with an optional note",
        "requestBody": _body(_obj(["queue"], queue=STR, note=STR)),
        "responses": {"200": _ok("moved", _ref("Thread")), "401": PROBLEM, "403": PROBLEM, "404": PROBLEM, "409": PROBLEM, "422": PROBLEM},  # noqa: E501
    }),
    ("POST", "/api/threads/{id}/release"): ("thread holder or supervisor", {
        "summary": "Give the thread back to its queue",
        "responses": {"200": _ok("released", _ref("Thread")), "401": PROBLEM, "403": PROBLEM, "404": PROBLEM, "409": PROBLEM},  # noqa: E501
    }),
    ("POST", "/api/threads/{id}/close"): ("thread holder", {
        "summary": "Close as a consultation with the case form, or as a contact without a consultation "
        "with a configured reason; 422 names missing and invalid fields (missing, invalid)",
        "description": "A consultation: {outcome: consultation, case} or {case} alone. Without a "
        "consultation: {outcome: no_consultation, reason} (a close_reasons id of GET /api/config) and "
        "no case; statistics count it apart, by reason, never among consultations.",
        "requestBody": _body({
            "oneOf": [
                _obj(["case"], outcome={"const": "consultation"}, case={"type": "object"}),
                _obj(["outcome", "reason"], outcome={"const": "no_consultation"}, reason=STR),
            ]
        }),
        "responses": {"200": _ok("closed", _ref("Thread")), "401": PROBLEM, "403": PROBLEM, "404": PROBLEM, "409": PROBLEM, "422": PROBLEM},  # noqa: E501
    }),
    ("POST", "/api/threads/{id}/close-left"): ("anyone who sees the thread, if nobody else holds it", {
        "summary": "Close a chat whose client left (client_left: quick exit or silence) in one action: "
        "claimed if waiting, then closed as no consultation with reason silent",
        "description": "409 when the thread is not marked client_left, is closed, is held by someone "
        "else or another consultant acted first (the second of two at once), or when close_reasons "
        "has no silent.",
        "responses": {"200": _ok("closed", _ref("Thread")), "401": PROBLEM, "403": PROBLEM, "404": PROBLEM, "409": PROBLEM},  # noqa: E501
    }),
    ("GET", "/api/supervisor"): ("supervisor", {
        "summary": "Every queue of the supervisor's lines: waiting, oldest wait, holders, crises",
        "responses": {"200": _ok("overview", {"type": "object"}), "401": PROBLEM, "403": PROBLEM},
    }),
    ("GET", "/api/users"): ("admin", {
        "summary": "Accounts, without password hashes",
        "responses": {"200": _ok("users", {"type": "array", "items": _ref("Consultant")}), "401": PROBLEM, "403": PROBLEM},  # noqa: E501
    }),
    ("POST", "/api/users/{login}/disable"): ("admin", {
        "summary": "Disable an account; its sessions end, its live sockets close and its conversations go back to their queues",  # noqa: E501
        "parameters": [{"name": "login", "in": "path", "required": True, "schema": STR}],
        "responses": {"200": _ok("disabled"), "401": PROBLEM, "403": PROBLEM, "404": PROBLEM, "409": PROBLEM},
    }),
    ("GET", "/api/events"): ("session", {
        "summary": "WebSocket of live queue and thread events for the console",
        "description": "Lives no longer than its session: at log-out or when the account is disabled "
        "it is closed with code 4401 on every replica, before any further event; a session ended "
        "otherwise (expiry, the admin command) closes it within a minute.",
        "responses": {"101": {"description": "switching to WebSocket"}, "401": PROBLEM, "403": PROBLEM},
    }),
    ("GET", "/api/openapi.json"): ("anyone", {
        "summary": "This document",
        "responses": {"200": _ok("OpenAPI 3.1 document", {"type": "object"})},
    }),
}  # fmt: skip

_PARAM = re.compile(r"\{(\w+)\}")


def api_routes(app: web.Application) -> list[tuple[str, str, Any]]:
    """(method, path, handler) of every ``/api/`` route of ``app``."""
    out = []
    for route in app.router.routes():
        info = route.resource.canonical if route.resource is not None else ""
        if route.method in {"HEAD", "*"} or not info.startswith("/api/"):
            continue
        out.append((route.method, info, route.handler))
    return out


def _operation_id(method: str, path: str) -> str:
    words = re.sub(r"[^a-z0-9]+", "_", _PARAM.sub(r"\1", path).lower()).strip("_")
    return f"{method.lower()}_{words}"


def document(app: web.Application) -> Schema:
    paths: dict[str, dict[str, Schema]] = {}
    for method, path, handler in api_routes(app):
        access, op = OPERATIONS.get((method, path), ("session", None))
        if op is None:  # a route described only by its handler (another module's)
            doc = (handler.__doc__ or path).strip().splitlines()[0]
            op = {"summary": doc, "responses": {"200": _ok("see summary"), "401": PROBLEM}}
        op = {**op, "operationId": _operation_id(method, path), "x-access": access}
        params = list(op.get("parameters", []))
        named = {p["name"] for p in params if p["in"] == "path"}
        for name in _PARAM.findall(path):
            if name not in named:
                params.append({**THREAD_ID, "name": name})
        if params:
            op["parameters"] = params
        paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "hotline-gateway consultant API",
            "version": "1",
            "description": "Session cookie (HttpOnly, SameSite=Strict) from POST /api/session; "
            "header X-CSRF-Token on every state-changing call; errors are RFC 9457 problem details. "
            "A JSON body nested deeper than 32 arrays or objects is refused with 400 on every route.",
        },
        "paths": dict(sorted(paths.items())),
        "components": COMPONENTS,
    }


async def serve(request: web.Request) -> web.Response:
    return web.json_response(document(request.app))
