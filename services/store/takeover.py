"""A supervisor watches a conversation live and takes it over (docs/console.md, "Watching and
taking over").

Watching needs no route of its own: a supervisor opens any thread of their queues (the read is
audited as every read is) and the console follows it live, read-only, by the queue's events.
Taking over makes the supervisor its holder at once, whoever held it: the consultant's reply
box closes (replies need the holder: ``ConsultantApi.reply``), their console is told, and the
fact is in the thread's history with who and from whom. Who holds a thread is decided by the
unique claim record (Repository._take), so a take-over racing the holder's own release or a
colleague's claim ends with exactly one holder.
"""

from __future__ import annotations

from aiohttp import web

from services.store.api import ConsultantApi, require
from services.store.auth import SUPERVISORS
from shared.http import problem
from shared.logs import get_logger

log = get_logger(__name__)

TAKEN_OVER = "ThreadTakenOver"


class TakeOverRoutes:
    def __init__(self, api: ConsultantApi) -> None:
        self.api = api
        self.repo = api.repo

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/api/threads/{id}/takeover", self.take_over)

    async def take_over(self, request: web.Request) -> web.Response:
        user = require(request, SUPERVISORS)
        _, thread = await self.api.thread_of(request)
        if thread["status"] == "closed":
            return problem(409, "A closed thread cannot be taken over")
        previous = thread.get("assignee")
        if thread["status"] == "active" and previous == user.login:
            return web.json_response(await self.api.view(thread))
        taken = await self.repo.take_over(thread, user.login)
        if taken is None:
            return problem(409, "The thread changed meanwhile: open it again and retry")
        log.info("thread_taken_over", thread_id=thread["_id"], by=user.login, previous=previous)
        await self.api._event(TAKEN_OVER, taken, user.login, previous=previous, assignee=user.login)
        return web.json_response(await self.api.view(taken))
