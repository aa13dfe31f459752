"""The consultant HTTP API (PRODUCT.md section 4).

JSON in and out; errors are RFC 9457 problem details. Every route but log-in needs a
session; every state-changing route needs the session's CSRF token. A consultant sees
only the queues of their organisation and lines: a thread outside them answers 404, the
same as a thread that does not exist, so ids cannot be probed.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from aiohttp import web

from services.store.auth import COOKIE, LoginThrottle, Sessions, User, csrf_ok
from services.store.repository import Doc, Repository
from services.store.settings import StoreSettings
from shared import topology
from shared.broker import Broker
from shared.config import HotlineConfig
from shared.envelope import Channel, ConsoleEvent, OutboundMessage, utcnow
from shared.http import Handler, problem
from shared.logs import get_logger

log = get_logger(__name__)

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {("id" if k == "_id" else k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def thread_view(doc: Doc) -> dict[str, Any]:
    view: dict[str, Any] = _jsonable({k: v for k, v in doc.items() if k not in {"key", "reply_token"}})
    return view


class ConsultantApi:
    def __init__(
        self, settings: StoreSettings, config: HotlineConfig, repo: Repository, broker: Broker
    ) -> None:
        self.s = settings
        self.config = config
        self.repo = repo
        self.broker = broker
        self.sessions = Sessions(repo, settings.session_hours)
        self.throttle = LoginThrottle(settings.login_attempts, settings.login_window_seconds)

    # --- plumbing -------------------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/api/"):
            return await handler(request)
        if not (request.path == "/api/session" and request.method == "POST"):
            resolved = await self.sessions.resolve(request.cookies.get(COOKIE))
            if resolved is None:
                return problem(401, "Not logged in")
            user, csrf = resolved
            if request.method in UNSAFE and not csrf_ok(csrf, request.headers.get("X-CSRF-Token")):
                return problem(403, "Missing or wrong CSRF token")
            request["user"] = user
        return await handler(request)

    async def _json(self, request: web.Request) -> dict[str, Any]:
        if request.content_type != "application/json":
            raise web.HTTPUnsupportedMediaType(text="send application/json")
        if request.content_length is not None and request.content_length > self.s.max_body_bytes:
            raise web.HTTPRequestEntityTooLarge(
                max_size=self.s.max_body_bytes, actual_size=request.content_length
            )
        try:
            body = json.loads(await request.text())
        except ValueError:
            raise web.HTTPBadRequest(text="body is not JSON") from None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="body must be a JSON object")
        return body

    def visible_queues(self, user: User) -> list[str]:
        org = None if user.role in {"supervisor", "admin"} else user.organisation
        return self.config.queues_visible_to(org, user.lines)

    async def _thread(self, request: web.Request) -> tuple[User, Doc]:
        user: User = request["user"]
        thread = await self.repo.thread(request.match_info["id"])
        if thread is None or thread["queue"] not in self.visible_queues(user):
            raise web.HTTPNotFound(text="no such thread")
        return user, thread

    async def _event(self, name: str, thread: Doc, **data: Any) -> None:
        event = ConsoleEvent(
            name=name,
            thread_id=thread["_id"],
            at=utcnow(),
            queue=thread["queue"],
            line=thread["line"],
            data=data,
        )
        await self.broker.publish(event, topology.EVENTS, topology.event_key(name))

    # --- routes ---------------------------------------------------------------------------

    async def login(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        login, password = body.get("login"), body.get("password")
        if not isinstance(login, str) or not isinstance(password, str) or len(login) > 100:
            return problem(422, "login and password are required")
        if self.throttle.blocked(login):
            return problem(429, "Too many failed log-ins; wait a few minutes")
        result = await self.sessions.login(login, password[:1024])
        if result is None:
            self.throttle.failed(login)
            log.info("login_failed", login=login)
            return problem(401, "Wrong login or password")
        self.throttle.succeeded(login)
        user, token, csrf = result
        log.info("login", consultant=user.login)
        resp = web.json_response({"consultant": user.public(), "csrf_token": csrf})
        resp.set_cookie(
            COOKIE,
            token,
            httponly=True,
            samesite="Strict",
            secure=self.s.cookie_secure,
            path="/",
            max_age=int(self.s.session_hours * 3600),
        )
        return resp

    async def logout(self, request: web.Request) -> web.Response:
        token = request.cookies.get(COOKIE)
        if token:
            await self.sessions.logout(token)
        resp = web.json_response({"status": "logged out"})
        resp.del_cookie(COOKIE, path="/")
        return resp

    async def me(self, request: web.Request) -> web.Response:
        user: User = request["user"]
        return web.json_response({"consultant": user.public()})

    async def set_status(self, request: web.Request) -> web.Response:
        user: User = request["user"]
        status = (await self._json(request)).get("status")
        if status not in {"available", "away", "offline"}:
            return problem(422, "status must be available, away or offline")
        await self.repo.consultants.update_one({"_id": user.login}, {"$set": {"status": status}})
        return web.json_response({"status": status})

    async def queues(self, request: web.Request) -> web.Response:
        names = self.visible_queues(request["user"])
        summary = await self.repo.queue_summary(names)
        return web.json_response(
            [
                {
                    "name": n,
                    "line": self.config.queues[n].line,
                    "title": self.config.queues[n].title,
                    **_jsonable(summary[n]),
                }
                for n in names
            ]
        )

    async def threads(self, request: web.Request) -> web.Response:
        user: User = request["user"]
        visible = self.visible_queues(user)
        queue = request.query.get("queue")
        if queue is not None and queue not in visible:
            return problem(404, "no such queue")
        status = request.query.get("status")
        if status is not None and status not in {"waiting", "active", "closed"}:
            return problem(422, "status must be waiting, active or closed")
        mine = user.login if request.query.get("mine") == "1" else None
        docs = await self.repo.list_threads([queue] if queue else visible, status, mine)
        return web.json_response([thread_view(t) for t in docs])

    async def next_thread(self, request: web.Request) -> web.Response:
        user: User = request["user"]
        queue = request.match_info["queue"]
        if queue not in self.visible_queues(user):
            return problem(404, "no such queue")
        thread = await self.repo.claim_next(queue, user.login)
        if thread is None:
            return web.Response(status=204)
        log.info("thread_claimed", thread_id=thread["_id"], consultant=user.login)
        await self._event("ThreadClaimed", thread, assignee=user.login)
        return web.json_response(thread_view(thread))

    async def claim(self, request: web.Request) -> web.Response:
        user, thread = await self._thread(request)
        claimed = await self.repo.claim(thread["_id"], user.login)
        if claimed is None:
            return problem(409, "Someone else holds this thread, or it is closed")
        await self._event("ThreadClaimed", claimed, assignee=user.login)
        return web.json_response(thread_view(claimed))

    async def thread(self, request: web.Request) -> web.Response:
        user, thread = await self._thread(request)
        messages = await self.repo.thread_messages(thread["_id"])
        log.info("thread_read", thread_id=thread["_id"], consultant=user.login)
        view = thread_view(thread)
        view["messages"] = [_jsonable(m) for m in messages]
        return web.json_response(view)

    async def reply(self, request: web.Request) -> web.Response:
        user, thread = await self._thread(request)
        key = request.headers.get("Idempotency-Key", "")
        if not 8 <= len(key) <= 100:
            return problem(400, "Idempotency-Key header of 8-100 characters is required")
        text = (await self._json(request)).get("text")
        if not isinstance(text, str) or not text.strip():
            return problem(422, "text is required")
        if thread["status"] != "active" or thread.get("assignee") != user.login:
            return problem(409, "Claim the thread before replying")
        doc, created = await self.repo.add_reply(thread, user.login, text, key, self.s.message_id_domain)
        if not doc.get("published"):
            # A retried request whose first attempt stored the reply but failed to publish it
            # publishes it now; one that was published is not sent again.
            await self._publish_reply(thread, doc)
            await self.repo.mark_published(doc["_id"])
        log.info(
            "reply_accepted",
            thread_id=thread["_id"],
            message_id=doc["_id"],
            consultant=user.login,
            created=created,
        )
        if created:
            await self._event("MessageSent", thread, message_id=doc["_id"])
        return web.json_response(_jsonable(doc), status=202)

    async def _publish_reply(self, thread: Doc, doc: Doc) -> None:
        email = thread.get("email") or {}
        channel = Channel(thread["channel"])
        out = OutboundMessage(
            message_id=doc["_id"],
            thread_id=thread["_id"],
            channel=channel,
            line=thread["line"],
            recipient=thread["client"]["address"],
            text=doc["text"],
            sent_at=doc["created_at"],
            subject=thread.get("subject"),
            email_message_id=doc.get("email_message_id"),
            in_reply_to=email.get("last_client_message_id"),
            references=list(email.get("references", [])),
        )
        await self.broker.publish(
            out, topology.OUTBOUND, topology.outbound_key(channel, thread["line"]), message_id=doc["_id"]
        )

    async def close(self, request: web.Request) -> web.Response:
        user, thread = await self._thread(request)
        case = (await self._json(request)).get("case")
        if not isinstance(case, dict):
            return problem(422, "case is required", "send the case form as an object")
        missing = [f for f in self.config.case_form.required if case.get(f) in (None, "", [])]
        if missing:
            return problem(422, "Case form incomplete", "missing: " + ", ".join(missing))
        closed = await self.repo.close(thread["_id"], user.login, case)
        if closed is None:
            return problem(409, "Only the consultant holding an active thread can close it")
        await self._event("ThreadClosed", closed)
        return web.json_response(thread_view(closed))

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_post("/api/session", self.login)
        r.add_delete("/api/session", self.logout)
        r.add_get("/api/me", self.me)
        r.add_put("/api/me/status", self.set_status)
        r.add_get("/api/queues", self.queues)
        r.add_get("/api/threads", self.threads)
        r.add_post("/api/queues/{queue}/next", self.next_thread)
        r.add_post("/api/threads/{id}/claim", self.claim)
        r.add_get("/api/threads/{id}", self.thread)
        r.add_post("/api/threads/{id}/messages", self.reply)
        r.add_post("/api/threads/{id}/close", self.close)
