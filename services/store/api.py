"""The consultant HTTP API (PRODUCT.md section 4).

JSON in and out; errors are RFC 9457 problem details. Every route but log-in and the
OpenAPI document needs a session; every state-changing route needs the session's CSRF
token. Who may do what:

- a consultant sees the queues of their lines that list their organisation; a thread
  outside them answers 404, the same as a thread that does not exist, so ids cannot be
  probed;
- a specialist sees the queues a consultant of their organisation sees, and the cases of
  their organisation (services/store/cases.py: referred to the roles they fill);
- a supervisor sees what a consultant of their organisation sees, the overview of its queues,
  holders and crises, and who read a thread; an admin manages the accounts of their
  organisation (and sees what its supervisor sees);
- a national administrator sees every organisation's queues of their lines and manages every
  account (:data:`services.store.auth.NATIONAL_ADMIN`): seeing all is that role, never an
  account without an organisation.

Every read of a thread by a person is recorded (:mod:`services.store.audit`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection
from datetime import datetime
from typing import Any

from aiohttp import web

from conversations import announce, client_left
from conversations.client_left import NOT_SAFE
from conversations.model import URGENT
from conversations.outbound import publish_outbound
from conversations.rawmail import ATTACHMENT_NAME, ATTACHMENTS, open_value
from conversations.reference import ReferenceData
from conversations.repository import SEALED_SUBJECT, Doc, IdempotencyKeyReused, Repository
from services.store import skills, stats, totp
from services.store.audit import ReadAudit
from services.store.auth import (
    ADMINS,
    COOKIE,
    DEVICE_COOKIE,
    DEVICE_DAYS,
    SUPERVISORS,
    Attempt,
    LoginThrottle,
    Sessions,
    User,
    accounts_of,
    csrf_ok,
    token_hash,
    too_many,
)
from services.store.events import sessions_ended
from services.store.held_replies import HeldReplies
from services.store.metrics import StoreMetrics
from services.store.settings import StoreSettings
from services.store.shift import Shift
from shared.broker import PUBLISH_ERRORS, Broker
from shared.config import HotlineConfig
from shared.envelope import ConsoleEvent, utcnow
from shared.html import VERSION as SANITISER_VERSION
from shared.html import for_console
from shared.http import Handler, check_json_depth, problem
from shared.logs import get_logger
from shared.peers import client_address

log = get_logger(__name__)

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
# Routes answered without a session: logging in, and the description of the API.
PUBLIC = {("POST", "/api/session"), ("GET", "/api/openapi.json")}
# Threads per page of GET /api/threads, and how deep paging goes (each page is sorted anew).
PAGE_LIMIT = 200
MAX_PAGE = 1000


def jsonable(value: Any) -> Any:
    """A stored document as JSON: datetimes as ISO text, ``_id`` as ``id``."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {("id" if k == "_id" else k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value


# A thread's machinery, never shown; ``sealed_subject`` is shown opened, as ``subject``
# (Repository.open_thread, which the routes call first: :meth:`ConsultantApi.view`).
_THREAD_INTERNAL = {"key", "reply_token", "email", "auto", "data_key", SEALED_SUBJECT}


def thread_view(doc: Doc) -> dict[str, Any]:
    view: dict[str, Any] = jsonable({k: v for k, v in doc.items() if k not in _THREAD_INTERNAL})
    if "sealed" in (view.get("client") or {}):
        view["client"] = {"address": None}  # a thread shown unopened (a search's record)
    return view


# Why no reply can be sent in a thread (ThreadView.cannot_reply): the mail that opened it gave
# no address a reply can go to (services/email_ingest/mime.py, sender_of), and none that
# joins a thread can give one later (conversations/email_threading.py, same_sender).
NO_SENDER = "no_sender"


def _reply_address(opened: Doc) -> bool:
    """Whether a reply in the opened thread has somewhere to go: a mail thread needs its
    client's address; other channels answer their session."""
    return opened.get("channel") != "email" or bool((opened.get("client") or {}).get("address"))


def message_view(doc: Doc) -> dict[str, Any]:
    """A message for the console. E-mail HTML was sanitised once, before it was stored, and is
    shown as stored when its sanitiser version is the current one, so a thread view does not
    wait on the sanitiser; other HTML (an older version the migration has not redone, or
    written by another path) is sanitised here, within the sanitiser's linear budget."""
    view: dict[str, Any] = jsonable(
        {k: v for k, v in doc.items() if k not in {"source_id", "html_sanitiser"}}
    )
    if "html" in view:
        view["html"] = for_console(view["html"], doc.get("html_sanitiser"))
    return view


def require(request: web.Request, roles: Collection[str]) -> User:
    user: User = request["user"]
    if user.role not in roles:
        raise web.HTTPForbidden(text="your role may not do this")
    return user


class ConsultantApi:
    def __init__(
        self,
        settings: StoreSettings,
        config: HotlineConfig,
        repo: Repository,
        broker: Broker,
        audit: ReadAudit,
    ) -> None:
        self.s = settings
        self.config = config
        self.repo = repo
        self.broker = broker
        self.audit = audit
        self.sessions = Sessions(repo, settings.session_hours, totp.required_roles(settings.require_totp))
        self.throttle = LoginThrottle(repo, settings.login_attempts, settings.login_window_seconds)
        self.metrics: StoreMetrics | None = None  # set by the composition root
        self.held: HeldReplies | None = None  # set by the composition root
        # Canned answers and the directory as the database keeps them (administration.py).
        self.reference = ReferenceData(repo.db, config)
        # Who is at work and what goes back when they go (services/store/shift.py).
        self.shift = Shift(repo, broker)  # replaced by the composition root's

    async def view(self, thread: Doc) -> dict[str, Any]:
        """What the console shows of ``thread``: :func:`thread_view` with its subject opened,
        and ``cannot_reply`` (``no_sender``) for a mail thread with no address to reply to."""
        opened = await self.repo.open_thread(thread)
        view = thread_view(opened)
        if not _reply_address(opened):
            view["cannot_reply"] = NO_SENDER
        return view

    # --- plumbing -------------------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/api/"):
            return await handler(request)
        if (request.method, request.path) not in PUBLIC:
            resolved = await self.sessions.resolve_any(request.cookies.get(COOKIE))
            if resolved is None:
                return problem(401, "Not logged in")
            user, csrf, pending = resolved
            # Past the password, not yet the second factor: that step, and nothing else.
            if pending is not None and (request.method, request.path) not in totp.PENDING_ROUTES:
                return problem(401, "Second factor required", pending=pending)
            if request.method in UNSAFE and not csrf_ok(csrf, request.headers.get("X-CSRF-Token")):
                return problem(403, "Missing or wrong CSRF token")
            request["user"] = user
            request["csrf"] = csrf
            request["pending"] = pending
        # Every JSON body of the API (log-in included, statistics' routes too) is measured
        # before a handler parses it: json.loads recurses once per level and would fail a
        # deeply nested body with RecursionError, a 500.
        await check_json_depth(request)
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

    # For the store's routes in other modules (services/store/clients.py).
    json_body = _json

    def visible_queues(self, user: User) -> list[str]:
        # None (every organisation) for a national administrator only (auth.User).
        return self.config.queues_visible_to(user.organisation, user.lines)

    async def thread_of(self, request: web.Request) -> tuple[User, Doc]:
        """The user and the thread the route names, if they may see it (else 404)."""
        user: User = request["user"]
        thread = await self.visible_thread(user, request.match_info["id"])
        if thread is None:
            raise web.HTTPNotFound(text="no such thread")
        return user, thread

    async def visible_thread(self, user: User, thread_id: str) -> Doc | None:
        """The thread ``thread_id`` if ``user`` may see it, else None (not there, or not theirs
        to see: the caller answers both alike)."""
        thread = await self.repo.thread(thread_id)
        if (
            thread is None
            or thread["queue"] not in self.visible_queues(user)
            or self._elsewhere(user, thread)
        ):
            return None
        return thread

    # A queue several organisations share (the triage queue of a line) is for taking threads,
    # not for reading each other's work. A consultation one organisation answered there
    # belongs to it alone: a thread claimed there moves to the organisation's own queue
    # (:meth:`_adopt`); a closed one still there (closed before threads moved, or a phone
    # consultation registered there) is hidden from the others' consultants. The two methods
    # below state that rule for one thread and as a database filter for lists.

    def _others(self, user: User) -> tuple[list[str], list[str]]:
        """(shared queues ``user`` sees, the other organisations in them); empty for people
        of no organisation (national administrators), who see everything of their lines."""
        if user.organisation is None:
            return [], []
        shared = [n for n in self.visible_queues(user) if len(self.config.queues[n].organisations) > 1]
        others = {o for n in shared for o in self.config.queues[n].organisations} - {user.organisation}
        return shared, sorted(others)

    def _elsewhere(self, user: User, thread: Doc) -> bool:
        shared, others = self._others(user)
        facts = thread.get("facts") or {}
        return (
            thread["queue"] in shared and thread["status"] == "closed" and facts.get("organisation") in others
        )

    def _elsewhere_filter(self, user: User) -> Doc | None:
        shared, others = self._others(user)
        if not shared or not others:
            return None
        return {"queue": {"$in": shared}, "status": "closed", "facts.organisation": {"$in": others}}

    def _own_queue(self, organisation: str, shared: str) -> str | None:
        """``organisation``'s own queue on the line of queue ``shared`` (the same skill first)."""
        queue = self.config.queues[shared]
        return self.config.own_queue(organisation, queue.line, queue.skill)

    async def _adopt(self, user: User, thread: Doc) -> Doc:
        """A thread ``user`` just claimed in a shared queue moves to their organisation's own
        queue (the thread as it is now; unchanged where there is nothing to move it to)."""
        queue = self.config.queues.get(thread["queue"])
        org = user.organisation
        if org is None or queue is None or len(queue.organisations) < 2 or org not in queue.organisations:
            return thread
        target = self._own_queue(org, thread["queue"])
        if target is None:
            return thread
        moved = await self.repo.adopt(thread, user.login, target, org)
        return moved if moved is not None else thread

    async def _claimed(self, user: User, thread: Doc) -> Doc:
        """Announce a claim, after moving the thread to the claimer's own queue: consoles of
        the shared queue refresh on ThreadClaimed and find it gone, those of the own queue on
        ThreadTransferred."""
        moved = await self._adopt(user, thread)
        await self._event("ThreadClaimed", thread, user.login, assignee=user.login)
        if moved["queue"] != thread["queue"]:
            await self._event(
                "ThreadTransferred",
                moved,
                user.login,
                from_queue=thread["queue"],
                to_queue=moved["queue"],
                reason="claimed",
            )
        return moved

    async def _event(self, name: str, thread: Doc, by: str, **data: Any) -> None:
        """Record a fact about a thread done by ``by`` (a login), for reports, and announce it
        to live consoles; the event names ``by``."""
        event = await announce.record(self.repo, name, thread, by, **data)
        if name == "ThreadClaimed" and self.metrics is not None:
            self.metrics.claims.labels(thread["queue"]).inc()
        await self._announce(event)

    async def _announce(self, event: ConsoleEvent) -> None:
        """Tell live consoles. The change it announces is already stored, so a broker that is
        away must not turn the request into a failure: consoles re-read on reconnect."""
        await announce.publish_or_log(self.broker, event)

    async def _full_channels(self, user: User) -> list[str]:
        counts = await self.repo.active_counts(user.login)
        capacity = self.config.queue_policy.capacity
        return [ch for ch, cap in capacity.items() if counts.get(ch, 0) >= cap]

    # --- routes ---------------------------------------------------------------------------

    async def attempt_of(self, request: web.Request, login: str) -> Attempt:
        """A log-in attempt of ``login`` (a password, or a second factor's code) from where
        ``request`` comes, as the throttle counts it."""
        peer = client_address(request.remote, request.headers.get("X-Real-IP"), self.s.trusted_proxies)
        return await self.throttle.attempt(login, peer, request.cookies.get(DEVICE_COOKIE))

    async def login(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        login, password = body.get("login"), body.get("password")
        if not isinstance(login, str) or not isinstance(password, str) or len(login) > 100:
            return problem(422, "login and password are required")
        attempt = await self.attempt_of(request, login)
        async with self.throttle.turn(attempt):
            wait = await self.throttle.wait_seconds(attempt)
            if wait > 0:
                # The password is not checked: a guess made while waiting tells nothing.
                log.info("login_throttled", login_hash=attempt.login_hash, wait_seconds=round(wait, 1))
                return too_many(wait)
            result = await self.sessions.login(login, password[:1024])
            if result is None:
                await self.throttle.failed(attempt)
                # A keyed hash, not the login as typed: people type passwords into that field.
                log.info("login_failed", login_hash=attempt.login_hash)
                return problem(401, "Wrong login or password")
            await self.throttle.succeeded(attempt)
        user, token, csrf, step = result
        log.info("login", consultant=user.login, second_factor=step)
        if not step:
            # Logging in makes one available (services/store/shift.py); with a second factor
            # still to give, once it is given (services/store/totp.py).
            await self.shift.logged_in(user.login)
        # Waiting at a second-factor step: who the account is stays unsaid until it is passed.
        answer = {"second_factor": step} if step else {"consultant": user.public()}
        resp = web.json_response({**answer, "csrf_token": csrf})
        # Marks this browser as one this login has used: its attempts are counted apart from
        # everyone else's, so others' failures never slow it (auth.LoginThrottle).
        resp.set_cookie(
            DEVICE_COOKIE,
            await self.throttle.device_cookie(user.login),
            httponly=True,
            samesite="Strict",
            secure=self.s.cookie_secure,
            path="/api/session",
            max_age=DEVICE_DAYS * 24 * 3600,
        )
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
            # Its live sockets close too, on whichever replica holds them.
            await self._announce(sessions_ended(request["user"].login, token_hash(token)))
            if not await self.repo.sessions.count_documents(
                {"login": request["user"].login, "expires_at": {"$gt": utcnow()}}, limit=1
            ):
                await self.shift.leave(request["user"].login, "logout")
        resp = web.json_response({"status": "logged out"})
        resp.del_cookie(COOKIE, path="/")
        return resp

    async def me(self, request: web.Request) -> web.Response:
        user: User = request["user"]
        doc = await self.repo.consultant(user.login) or {}
        # The session's CSRF token too: a console opened in a new tab (its sessionStorage
        # empty) needs it to log out or change anything. Only a page of our own origin can
        # read this answer (no CORS; the cookie is SameSite=Strict).
        me = {**user.public(), "status": doc.get("status", "offline")}
        return web.json_response({"consultant": me, "csrf_token": request["csrf"]})

    async def console_config(self, request: web.Request) -> web.Response:
        """What the console needs to draw its forms: the case form and canned answers of the
        user's lines, every queue a thread may be transferred to, the languages."""
        user: User = request["user"]
        lines = [ln for ln in user.lines if ln in self.config.lines]
        return web.json_response(
            {
                "languages": self.config.languages,
                "lines": {ln: {"name": self.config.lines[ln].name} for ln in lines},
                "case_form": {ln: self.config.case_fields(ln) for ln in lines},
                "close_reasons": self.config.close_reasons,
                "canned_answers": await self.reference.canned(lines, user.organisation),
                "queues": {
                    name: {"line": q.line, "title": q.title, "organisations": q.organisations}
                    for name, q in self.config.queues.items()
                },
                "urgent_priority": URGENT,
            }
        )

    async def set_status(self, request: web.Request) -> web.Response:
        user: User = request["user"]
        status = (await self._json(request)).get("status")
        if status not in {"available", "away", "offline"}:
            return problem(422, "status must be available, away or offline")
        # Nobody is left holding a conversation for a consultant who is not there: away gives
        # back the chats at once, offline everything (services/store/shift.py).
        if status == "available":
            await self.shift.available(user.login)
        else:
            await self.shift.leave(user.login, status, user.login)
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
                    **jsonable(summary[n]),
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
        try:
            limit = int(request.query.get("limit", str(PAGE_LIMIT)))
            page = int(request.query.get("page", "1"))
        except ValueError:
            return problem(422, "limit and page must be whole numbers")
        if not 1 <= limit <= PAGE_LIMIT or not 1 <= page <= MAX_PAGE:
            return problem(422, f"limit: 1 to {PAGE_LIMIT}; page: 1 to {MAX_PAGE}")
        # One more than asked for tells whether a next page exists without counting.
        docs = await self.repo.list_threads(
            [queue] if queue else visible,
            status,
            mine,
            limit + 1,
            (page - 1) * limit,
            self._elsewhere_filter(user),
        )
        now = utcnow()
        resp = web.json_response(
            [
                {**thread_view(t), "reserved": skills.reservation(self.config, user, t, now)}
                for t in await self.repo.open_threads(docs[:limit])
            ]
        )
        if len(docs) > limit:
            resp.headers["Link"] = f'<{request.rel_url.update_query(page=page + 1)}>; rel="next"'
        return resp

    async def next_thread(self, request: web.Request) -> web.Response:
        user: User = request["user"]
        queue = request.match_info["queue"]
        if queue not in self.visible_queues(user):
            return problem(404, "no such queue")
        full = await self._full_channels(user)
        reserved = skills.reserved_filter(self.config, user, utcnow())
        thread = await self.repo.claim_next(queue, user.login, full, reserved)
        if thread is None:
            if full and await self.repo.threads.count_documents({"queue": queue, "status": "waiting"}):
                return problem(
                    409, "At capacity", "you hold as many conversations as you may: " + ", ".join(full)
                )
            return web.Response(status=204)
        log.info("thread_claimed", thread_id=thread["_id"], consultant=user.login)
        return web.json_response(await self.view(await self._claimed(user, thread)))

    async def claim(self, request: web.Request) -> web.Response:
        user, thread = await self.thread_of(request)
        kept = skills.reservation(self.config, user, thread, utcnow())
        if kept is not None:
            return problem(
                409,
                "Kept for a colleague",
                f"this conversation waits for a colleague with {', '.join(kept['for'].values())} "
                f"until {kept['until']}; then anyone may take it",
            )
        if thread.get("assignee") != user.login and thread["channel"] in await self._full_channels(user):
            return problem(
                409, "At capacity", f"you hold as many {thread['channel']} conversations as you may"
            )
        claimed = await self.repo.claim(thread["_id"], user.login)
        if claimed is None:
            return problem(409, "Someone else holds this thread, or it is closed")
        return web.json_response(await self.view(await self._claimed(user, claimed)))

    async def history(self, request: web.Request) -> web.Response:
        """Every change of a thread with its time: queued, claimed, released, transferred,
        escalated, closed (for wait and first-response reports)."""
        user, thread = await self.thread_of(request)
        await self.audit.record(thread["_id"], user.login, "history")
        return web.json_response([jsonable(e) for e in await self.repo.thread_history(thread["_id"])])

    async def reads(self, request: web.Request) -> web.Response:
        """Who read this thread and when (supervisors)."""
        require(request, SUPERVISORS)
        _, thread = await self.thread_of(request)
        return web.json_response([jsonable(r) for r in await self.audit.of_thread(thread["_id"])])

    async def overview(self, request: web.Request) -> web.Response:
        """The supervisor's view: every queue of their lines with its waiting count, oldest
        wait and urgent count; who holds which conversation; consultants' availability;
        urgent conversations still waiting (crises first); open conversations whose client said
        it is not safe now (newest first)."""
        user = require(request, SUPERVISORS)
        names = self.visible_queues(user)
        summary = await self.repo.queue_summary(names)
        held: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
        cursor = self.repo.threads.find(
            {"queue": {"$in": names}, "status": "active"},
            {"queue": 1, "assignee": 1, "channel": 1, "claimed_at": 1, "priority": 1},
        )
        async for t in cursor:
            held[t["queue"]].append(jsonable(t))
        alerts_cursor = (
            self.repo.threads.find(
                {"queue": {"$in": names}, "status": "waiting", "priority": {"$gte": URGENT}},
                {"queue": 1, "channel": 1, "priority": 1, "waiting_since": 1, "escalated_at": 1},
            )
            .sort([("priority", -1), ("waiting_since", 1)])
            .limit(100)
        )
        alerts = [jsonable(t) async for t in alerts_cursor]
        # Open threads whose client said it is not safe now (conversations/client_left.py): a
        # few among the open ones (found by queue_order), newest first.
        not_safe_cursor = self.repo.threads.find(
            {"queue": {"$in": names}, "status": {"$in": ["waiting", "active"]}, "client_left.why": NOT_SAFE},
            {"queue": 1, "channel": 1, "status": 1, "assignee": 1, "client_left": 1},
        )
        not_safe_docs = [t async for t in not_safe_cursor]
        not_safe_docs.sort(key=lambda t: t["client_left"]["at"], reverse=True)
        not_safe = [jsonable(t) for t in not_safe_docs]
        people = []
        people_filter = {**accounts_of(user), "lines": {"$in": user.lines}, "disabled": {"$ne": True}}
        async for c in self.repo.consultants.find(people_filter):
            holds = sum(1 for q in held.values() for t in q if t.get("assignee") == c["_id"])
            people.append(
                {
                    "login": c["_id"],
                    "name": c.get("name", c["_id"]),
                    "role": c["role"],
                    "organisation": c.get("organisation"),
                    "status": c.get("status", "offline"),
                    "holds": holds,
                }
            )
        return web.json_response(
            {
                "queues": [
                    {
                        "name": n,
                        "line": self.config.queues[n].line,
                        "title": self.config.queues[n].title,
                        **jsonable(summary[n]),
                        "urgent_waiting": sum(1 for a in alerts if a["queue"] == n),
                        "active": held[n],
                    }
                    for n in names
                ],
                "consultants": sorted(people, key=lambda p: p["login"]),
                "alerts": alerts,
                "not_safe": not_safe,
            }
        )

    async def users(self, request: web.Request) -> web.Response:
        """Accounts of the admin's organisation (every account for a national administrator).
        Password hashes and second-factor secrets never leave the database."""
        admin = require(request, ADMINS)
        out = []
        hidden = {"password_hash": 0, "totp": 0, "totp_enrolling": 0}
        async for c in self.repo.consultants.find(accounts_of(admin), hidden).sort("_id", 1):
            out.append(jsonable(c))
        return web.json_response(out)

    async def disable_user(self, request: web.Request) -> web.Response:
        """Disable an account of the admin's organisation and end its sessions at once (admins);
        an account of another organisation is not found (404), as one that does not exist."""
        admin = require(request, ADMINS)
        login = request.match_info["login"]
        if login == admin.login:
            return problem(409, "You cannot disable your own account")
        # Only an account the admin may manage (their organisation's; any for a national one).
        if await self.repo.consultants.find_one({"_id": login, **accounts_of(admin)}, {"_id": 1}) is None:
            return problem(404, "No such user")
        if not await self.disable_account(login, admin.login):
            return problem(404, "No such user")
        return web.json_response({"login": login, "disabled": True})

    async def disable_account(self, login: str, by: str) -> bool:
        """Disable ``login``: its sessions end, its live sockets close and its threads go back
        to their queues (also the administration screen's path). False: no such account."""
        res = await self.repo.consultants.update_one({"_id": login}, {"$set": {"disabled": True}})
        if res.matched_count == 0:
            return False
        await self.repo.sessions.delete_many({"login": login})
        await self._announce(sessions_ended(login))
        await self.shift.leave(login, "disabled", by)
        log.info("user_disabled", consultant=login, by=by)
        return True

    async def release(self, request: web.Request) -> web.Response:
        user, thread = await self.thread_of(request)
        holder = None if user.role in SUPERVISORS else user.login
        released = await self.repo.release(thread["_id"], holder)
        if released is None:
            return problem(
                409, "Only the consultant holding an active thread (or a supervisor) can release it"
            )
        await self._event("ThreadReleased", released, user.login, reason="released")
        return web.json_response(await self.view(released))

    async def note(self, request: web.Request) -> web.Response:
        user, thread = await self.thread_of(request)
        text = (await self._json(request)).get("text")
        if not isinstance(text, str) or not text.strip():
            return problem(422, "text is required")
        doc = await self.repo.add_note(thread, user.login, text)
        await self._event("NoteAdded", thread, user.login, message_id=doc["_id"])
        return web.json_response(jsonable(doc), status=201)

    async def transfer(self, request: web.Request) -> web.Response:
        user, thread = await self.thread_of(request)
        body = await self._json(request)
        queue, note = body.get("queue"), body.get("note")
        if not isinstance(queue, str) or queue not in self.config.queues:
            return problem(422, "queue must name a queue of the configuration")
        if note is not None and not isinstance(note, str):
            return problem(422, "note must be text")
        is_supervisor = user.role in SUPERVISORS
        if not is_supervisor and not (thread["status"] == "active" and thread.get("assignee") == user.login):
            return problem(409, "Claim the thread before transferring it")
        target = self.config.queues[queue]
        moved = await self.repo.transfer(thread["_id"], queue, target.organisations, target.line)
        if moved is None:
            return problem(409, "A closed thread cannot be transferred")
        if note and note.strip():
            await self.repo.add_note(moved, user.login, note)
        await self._event("ThreadTransferred", moved, user.login, from_queue=thread["queue"], to_queue=queue)
        return web.json_response(await self.view(moved))

    async def thread(self, request: web.Request) -> web.Response:
        user, thread = await self.thread_of(request)
        # Recorded before anything is sent: a read that could not be recorded is not answered.
        await self.audit.record(thread["_id"], user.login, "thread")
        messages = await self.repo.thread_messages(thread["_id"])
        log.info("thread_read", thread_id=thread["_id"], consultant=user.login)
        view = await self.view(thread)
        if any(m.get("html") and m.get("html_sanitiser") != SANITISER_VERSION for m in messages):
            # HTML still to sanitise (another version or none): off the event loop, so other
            # consultants' requests never wait on it.
            view["messages"] = await asyncio.to_thread(lambda: [message_view(m) for m in messages])
        else:
            view["messages"] = [message_view(m) for m in messages]
        return web.json_response(view)

    async def reply(self, request: web.Request) -> web.Response:
        user, thread = await self.thread_of(request)
        key = request.headers.get("Idempotency-Key", "")
        if not 8 <= len(key) <= 100:
            return problem(400, "Idempotency-Key header of 8-100 characters is required")
        body = await self._json(request)
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            return problem(422, "text is required")
        if thread["status"] != "active" or thread.get("assignee") != user.login:
            return problem(409, "Claim the thread before replying")
        if not _reply_address(await self.repo.open_thread(thread)):
            return problem(
                409,
                "Cannot reply: no usable sender address",
                "the mail gave no address a reply can go to; its text is in the thread",
            )
        files = await self._reply_files(thread, body.get("attachments", []))
        if isinstance(files, web.Response):
            return files
        if client_left.holds_replies(thread.get("client_left")):
            # A reply could be seen by whoever made it unsafe (conversations/client_left.py).
            return problem(
                409,
                "Not safe: do not reply until they write",
                "the client said it is not safe to talk now; replies open again once they write",
            )
        # The client's safe-contact plan may forbid a reply now: it is stored held, with the
        # reason, and the store sends it once allowed (services/store/held_replies.py).
        held = await self.held.hold_for(thread) if self.held is not None else None
        try:
            doc, created = await self.repo.add_reply(
                thread, user.login, text, key, self.s.message_id_domain, held, files, user.organisation
            )
        except IdempotencyKeyReused:
            return problem(
                409,
                "Idempotency-Key already used",
                "this key was sent with another thread or another text; a new reply needs a new key",
            )
        # A retried request whose first attempt stored the reply but failed to publish it
        # publishes it now; one that was published is not sent again. With the broker away
        # the reply is still accepted: it waits in the outbox (outbound.py) and the store's
        # outbox sweeper publishes it once the broker is back.
        try:
            await publish_outbound(self.broker, self.repo, thread, doc)
        except PUBLISH_ERRORS as exc:
            log.warning("reply_publish_deferred", message_id=doc["_id"], error=type(exc).__name__)
        log.info(
            "reply_accepted",
            thread_id=thread["_id"],
            message_id=doc["_id"],
            consultant=user.login,
            created=created,
            held=doc["delivery"]["status"] == "held",
        )
        if created:
            await self._event("MessageSent", thread, user.login, message_id=doc["_id"])
        return web.json_response(jsonable(doc), status=202)

    async def _reply_files(self, thread: Doc, ids: Any) -> list[Doc] | web.Response:
        """The files a reply names (services/store/reply_files.py): uploaded to this thread,
        at most five; their references as the message keeps them, or the problem to answer."""
        if ids in (None, []):
            return []
        if thread["channel"] != "email":
            return problem(422, "Files go by e-mail only", "a chat shows text only", invalid=["attachments"])
        if not isinstance(ids, list) or len(ids) > 5 or not all(isinstance(i, str) for i in ids):
            return problem(422, "attachments: at most 5 file ids", invalid=["attachments"])
        found: dict[str, Doc] = {}
        query = {"_id": {"$in": ids}, "thread_id": thread["_id"]}
        async for f in self.repo.db[ATTACHMENTS].find(query, {"filename": 1, "content_type": 1, "size": 1}):
            found[f["_id"]] = f
        if len(set(ids)) != len(ids) or set(ids) - set(found):
            return problem(
                422, "No such file in this thread", "upload it to this thread first", invalid=["attachments"]
            )
        refs = []
        for i in ids:
            f = found[i]
            name = await open_value(self.repo.vault, f["filename"], ATTACHMENT_NAME)
            refs.append(
                {
                    "id": i,
                    "filename": name,
                    "content_type": f["content_type"],
                    "size": f["size"],
                    "stored": True,
                }
            )
        return refs

    async def close(self, request: web.Request) -> web.Response:
        user, thread = await self.thread_of(request)
        body = await self._json(request)
        # Without an outcome the close is a consultation: clients that send {case} alone keep working.
        outcome = body.get("outcome", "consultation")
        if outcome == "no_consultation":
            return await self._close_without_consultation(user, thread, body)
        if outcome != "consultation":
            return problem(
                422,
                "outcome must be consultation or no_consultation",
                "invalid: outcome",
                invalid=["outcome"],
            )
        case = body.get("case")
        if not isinstance(case, dict):
            return problem(422, "case is required", "send the case form as an object", missing=["case"])
        kept, missing, invalid = self.config.check_case(thread["line"], case)
        if missing or invalid:
            detail = "; ".join(
                part
                for part in (
                    "missing: " + ", ".join(missing) if missing else "",
                    "invalid: " + ", ".join(invalid) if invalid else "",
                )
                if part
            )
            return problem(422, "Case form incomplete", detail, missing=missing, invalid=invalid)
        facts = stats.facts_for(self.config, thread, user.organisation, kept)
        closed = await self.repo.close(thread["_id"], user.login, kept, facts)
        if closed is None:
            return problem(409, "Only the consultant holding an active thread can close it")
        closed = await self._without_left_mark(closed)
        await self._event("ThreadClosed", closed, user.login)
        return web.json_response(await self.view(closed))

    async def _close_without_consultation(
        self, user: User, thread: Doc, body: dict[str, Any]
    ) -> web.Response:
        """Close as a contact without a consultation: a configured reason, and no case form,
        so no answer is invented and nothing enters case statistics."""
        reason = body.get("reason")
        if reason is None or reason == "":
            return problem(422, "reason is required", "missing: reason", missing=["reason"])
        if not isinstance(reason, str) or reason not in self.config.close_reasons:
            return problem(
                422,
                "reason is not a configured close reason",
                "invalid: reason; one of " + ", ".join(self.config.close_reasons),
                invalid=["reason"],
            )
        if body.get("case") is not None:
            return problem(
                422, "a contact without a consultation has no case form", "invalid: case", invalid=["case"]
            )
        facts = stats.no_consultation_facts_for(self.config, thread, user.organisation, reason)
        closed = await self.repo.close_without_consultation(thread["_id"], user.login, reason, facts)
        if closed is None:
            return problem(409, "Only the consultant holding an active thread can close it")
        closed = await self._without_left_mark(closed)
        await self._event("ThreadClosed", closed, user.login, outcome="no_consultation", reason=reason)
        return web.json_response(await self.view(closed))

    async def close_left(self, request: web.Request) -> web.Response:
        """One action for a chat whose client left (conversations/client_left.py): a waiting
        thread is claimed first, then closed as a contact without a consultation with reason
        ``silent``, all in this request. Two consultants acting at once: the claim (or, on a
        held thread, the close) admits one, and the other gets 409. The claim is not held to
        the consultant's capacity: it ends with this request."""
        user, thread = await self.thread_of(request)
        if client_left.CLOSE_REASON not in self.config.close_reasons:
            return problem(409, "No close reason silent is configured", "close_reasons has no silent")
        if thread["status"] == "closed" or not thread.get("client_left"):
            return problem(409, "The client of this conversation has not left, or it is closed")
        if thread["status"] == "waiting":
            claimed = await self.repo.claim(thread["_id"], user.login)
            if claimed is None:
                return problem(409, "Someone else holds this thread, or it is closed")
            thread = await self._claimed(user, claimed)
            if not thread.get("client_left"):
                # The client wrote between the read and the claim: it goes back, keeping its place.
                released = await self.repo.release(thread["_id"], user.login)
                if released is not None:
                    await self._event("ThreadReleased", released, user.login, reason="client wrote again")
                return problem(409, "The client wrote again")
        elif thread.get("assignee") != user.login:
            return problem(409, "Someone else holds this thread")
        return await self._close_without_consultation(user, thread, {"reason": client_left.CLOSE_REASON})

    async def _without_left_mark(self, closed: Doc) -> Doc:
        """A closed thread drops its client_left mark: it describes an open chat."""
        if "client_left" not in closed:
            return closed
        return await self.repo.forget_client_left(closed["_id"]) or closed

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_post("/api/session", self.login)
        r.add_delete("/api/session", self.logout)
        r.add_get("/api/me", self.me)
        r.add_get("/api/config", self.console_config)
        r.add_get("/api/supervisor", self.overview)
        r.add_get("/api/users", self.users)
        r.add_post("/api/users/{login}/disable", self.disable_user)
        r.add_get("/api/threads/{id}/reads", self.reads)
        r.add_put("/api/me/status", self.set_status)
        r.add_get("/api/queues", self.queues)
        r.add_get("/api/threads", self.threads)
        r.add_post("/api/queues/{queue}/next", self.next_thread)
        r.add_post("/api/threads/{id}/claim", self.claim)
        r.add_get("/api/threads/{id}", self.thread)
        r.add_post("/api/threads/{id}/messages", self.reply)
        r.add_post("/api/threads/{id}/close", self.close)
        r.add_post("/api/threads/{id}/close-left", self.close_left)
        r.add_post("/api/threads/{id}/release", self.release)
        r.add_get("/api/threads/{id}/history", self.history)
        r.add_post("/api/threads/{id}/notes", self.note)
        r.add_post("/api/threads/{id}/transfer", self.transfer)
