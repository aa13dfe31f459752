"""The routes about the person behind a thread (conversations/clients.py):

- ``POST /api/threads/{id}/client`` ``{"thread": "<other id>"}``: this thread is the same person
  as the other one (a widget chat whose client says "I wrote to you last week"); when the other
  is a web chat with no client yet, it gets one, so two chats of one person are one. Only someone
  who may see both threads may say so (GET /api/threads/{id}'s rule, for each); an id one may
  not see answers 404 like one that does not exist.
- ``DELETE /api/threads/{id}/client``: undo that; the thread gets back the client it had.
- ``GET /api/threads/{id}/earlier``: the closed consultations of the thread's client that the
  viewer's organisation may see (:func:`conversations.clients.visible_consultations`), latest
  first: when, channel, line, outcome, the categorical answers of the case form, who answered.
  Another organisation's consultations are not shown, nor counted, nor hinted at.

A link and its undo are facts in the thread's event log (ClientLinked, ClientUnlinked) with who
did it; a read of earlier consultations is recorded like any read of a thread.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from conversations import announce
from conversations.clients import visible_consultations
from conversations.model import EventName
from conversations.repository import Doc
from services.store.api import ConsultantApi
from services.store.auth import User
from shared.http import problem
from shared.logs import get_logger

log = get_logger(__name__)


def consultation_view(doc: Doc) -> dict[str, Any]:
    """What the console shows of an earlier consultation: no free text, no address."""
    facts = doc.get("facts") or {}
    return {
        "id": doc["_id"],
        "thread_id": doc.get("thread_id"),
        "started_at": _iso(doc.get("started_at")),
        "closed_at": _iso(doc.get("closed_at")),
        "channel": doc.get("channel"),
        "line": doc.get("line"),
        "organisation": facts.get("organisation"),
        "outcome": doc.get("outcome"),
        "reason": doc.get("reason"),
        # The categorical answers statistics count (stats.case_fields): option ids only.
        "case": facts.get("fields") or {},
        "consultants": list(doc.get("consultants") or []),
        "closed_by": doc.get("closed_by"),
    }


def _iso(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


class ClientRoutes:
    def __init__(self, api: ConsultantApi) -> None:
        self.api = api
        self.clients = api.repo.clients

    async def _thread(self, user: User, thread_id: str) -> Doc:
        thread = await self.api.visible_thread(user, thread_id)
        if thread is None:
            raise web.HTTPNotFound(text="no such thread")
        return thread

    async def link(self, request: web.Request) -> web.Response:
        user: User = request["user"]
        thread = await self._thread(user, request.match_info["id"])
        other_id = (await self.api.json_body(request)).get("thread")
        if not isinstance(other_id, str) or not other_id:
            return problem(
                422, "thread is required", "the id of a thread of the same person", missing=["thread"]
            )
        if other_id == thread["_id"]:
            return problem(422, "a thread cannot be linked to itself", invalid=["thread"])
        other = await self.api.visible_thread(user, other_id)
        if other is None:
            return problem(404, "No such thread", "the other thread is not one you can see")
        # A web chat names nobody: the first link makes the other thread's person a client.
        client_id = await self.clients.client_of(other)
        if client_id == thread.get("client_id"):
            # Already so (a retry): nothing to record; its consultations follow, should the
            # first attempt have stopped between the two writes.
            await self.clients.follow(thread)
            return web.json_response(await self.api.view(thread))
        linked = await self.clients.link(thread, client_id, user.login, other["_id"])
        return await self._changed(EventName.CLIENT_LINKED, user, thread, linked, from_thread=other["_id"])

    async def unlink(self, request: web.Request) -> web.Response:
        user: User = request["user"]
        thread = await self._thread(user, request.match_info["id"])
        if not isinstance(thread.get("client_link"), dict):
            await self.clients.follow(thread)  # as for a link: a retry completes an undo
            return problem(409, "This thread was not linked to a client by hand")
        restored = await self.clients.unlink(thread)
        return await self._changed(EventName.CLIENT_UNLINKED, user, thread, restored)

    async def _changed(
        self, name: str, user: User, before: Doc, after: Doc | None, **data: Any
    ) -> web.Response:
        """The answer to a link or its undo: 409 when the thread's client changed since it was
        read (nothing was written), else the fact, with who did it and the client before and
        after, goes to the event log and live consoles, and the thread is answered."""
        if after is None:
            return problem(409, "The thread's client changed meanwhile", "reload the thread and try again")
        event = await announce.record(
            self.api.repo,
            name,
            after,
            user.login,
            **data,
            client_id=after.get("client_id"),
            previous_client_id=before.get("client_id"),
        )
        # Stored already: a broker that is away delays only the live refresh (announce.py).
        await announce.publish_or_log(self.api.broker, event)
        log.info("client_changed", event_name=name, thread_id=after["_id"], consultant=user.login)
        return web.json_response(await self.api.view(after))

    async def earlier(self, request: web.Request) -> web.Response:
        user: User = request["user"]
        thread = await self._thread(user, request.match_info["id"])
        # Recorded before anything is sent, like every read of a thread (audit.py).
        await self.api.audit.record(thread["_id"], user.login, "earlier")
        client_id = thread.get("client_id")
        if not client_id:
            return web.json_response([])
        found = await self.clients.consultations_of(
            client_id, visible_consultations(user.organisation, user.lines)
        )
        return web.json_response([consultation_view(c) for c in found])

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_post("/api/threads/{id}/client", self.link)
        r.add_delete("/api/threads/{id}/client", self.unlink)
        r.add_get("/api/threads/{id}/earlier", self.earlier)
