"""The routes of a client's safe-contact plan (conversations/contact_plan.py) and of held replies:

- ``GET /api/threads/{id}/contact-plan``: the plan the thread's replies follow: ``scope``
  ``client`` (the person's, shared by all their threads) or ``thread`` (a thread whose person is
  not known), ``plan`` (null when none was recorded), who set it and when;
- ``PUT /api/threads/{id}/contact-plan`` ``{channels, quiet_hours: {from, to}, write_first,
  sender_name, subject}``: record it (422 names a field that is not valid); held replies of the
  thread are looked at again at once, so a plan that now allows them sends them;
- ``POST /api/threads/{id}/messages/{message}/cancel``: a held reply will never be sent (409 when
  it is not held: sent, released or cancelled meanwhile).

Whoever may see the thread (GET /api/threads/{id}'s rule) may read and record its plan and
cancel its held replies: a plan is often agreed with the client before a reply is due, and a
held reply may outlive its consultant's claim. A plan recorded and a reply cancelled are facts
in the thread's event log, with who did it; reading the plan is recorded like a read of the
thread.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import ValidationError

from conversations import announce
from conversations.contact_plan import ContactPlan, plan_key
from conversations.model import EventName
from conversations.repository import Doc
from services.store.api import ConsultantApi, jsonable
from services.store.held_replies import HeldReplies
from shared.envelope import DeliveryStatus
from shared.http import problem
from shared.logs import get_logger

log = get_logger(__name__)

CONTACT_PLAN_SET = "ContactPlanSet"
REPLY_CANCELLED = "ReplyCancelled"


def plan_view(thread: Doc, doc: Doc | None) -> dict[str, Any]:
    scope = "client" if plan_key(thread).startswith("client:") else "thread"
    if doc is None:
        return {"scope": scope, "plan": None, "set_by": None, "set_at": None}
    plan = {k: v for k, v in doc.items() if k in ContactPlan.model_fields}
    return {"scope": scope, "plan": plan, "set_by": doc.get("set_by"), "set_at": jsonable(doc.get("set_at"))}


class ContactPlanRoutes:
    def __init__(self, api: ConsultantApi, held: HeldReplies) -> None:
        self.api = api
        self.held = held
        self.plans = api.repo.contact_plans

    async def get(self, request: web.Request) -> web.Response:
        user, thread = await self.api.thread_of(request)
        await self.api.audit.record(thread["_id"], user.login, "contact_plan")
        return web.json_response(plan_view(thread, await self.plans.plan_doc(thread)))

    async def put(self, request: web.Request) -> web.Response:
        user, thread = await self.api.thread_of(request)
        body = await self.api.json_body(request)
        try:
            plan = ContactPlan.model_validate(body)
        except ValidationError as exc:
            fields = sorted({str(e["loc"][0]) for e in exc.errors() if e["loc"]})
            return problem(422, "The contact plan is not valid", "; ".join(fields), invalid=fields)
        doc = await self.plans.set_plan(thread, plan, user.login)
        # Only which parts are set: the neutral name and subject stay out of the event log.
        parts = [k for k, v in plan.stored().items() if v not in (None, False)]
        event = await announce.record(self.api.repo, CONTACT_PLAN_SET, thread, user.login, parts=parts)
        await announce.publish_or_log(self.api.broker, event)
        released = await self.held.check_thread(thread["_id"])
        log.info("contact_plan_set", thread_id=thread["_id"], consultant=user.login, released=released)
        return web.json_response(plan_view(thread, doc))

    async def cancel(self, request: web.Request) -> web.Response:
        user, thread = await self.api.thread_of(request)
        message_id = request.match_info["message"]
        if not await self.plans.cancel(message_id, thread["_id"], user.login):
            return problem(409, "Only a held reply can be cancelled", "it was sent, released or cancelled")
        log.info(
            "held_reply_cancelled", thread_id=thread["_id"], message_id=message_id, consultant=user.login
        )
        event = await announce.record(
            self.api.repo, REPLY_CANCELLED, thread, user.login, message_id=message_id
        )
        await announce.publish_or_log(self.api.broker, event)
        await announce.publish_or_log(
            self.api.broker,
            announce.thread_event(
                EventName.MESSAGE_DELIVERED,
                thread,
                message_id=message_id,
                data={"status": DeliveryStatus.CANCELLED.value},
            ),
        )
        doc = await self.api.repo.message(message_id)
        return web.json_response(jsonable({"id": message_id, "delivery": (doc or {}).get("delivery")}))

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/api/threads/{id}/contact-plan", self.get)
        r.add_put("/api/threads/{id}/contact-plan", self.put)
        r.add_post("/api/threads/{id}/messages/{message}/cancel", self.cancel)
