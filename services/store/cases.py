"""The case routes of the store (docs/cases.md).

A case (conversations/cases.py) is opened from a consultation or a thread by anyone who may see
that conversation, consultants included: they hand it over. From then on only the owning
organisation's specialists and supervisors see it (:func:`conversations.cases.case_viewer`);
to everyone else, every case route answers 404 whether the case exists or not, so ids cannot
be probed. Routes about one case check the session's role first only where the route is for
supervisors alone (``/reads``: 403, which says nothing about the case).

Each change is kept in ``case_events`` with who did it, and announced to the consoles of those
who may see the case (services/store/case_alerts.py, which also holds the store's check for
referrals nobody took in time); each read of a whole case is recorded in the read audit before
it is answered. Logs name cases, kinds and logins, never what people wrote.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from aiohttp import web

from conversations import cases as model
from conversations.cases import (
    SUPERVISING,
    CaseConflict,
    CaseEvent,
    CaseRepository,
    NoSuchItem,
    case_viewer,
)
from conversations.model import consultation_id
from conversations.repository import Doc
from services.store.api import ConsultantApi
from services.store.auth import User
from services.store.case_alerts import CaseAlerts, CaseNews
from services.store.case_views import (
    SKEW,
    Unprocessable,
    answer,
    full_view,
    not_past,
    read_amount,
    read_choice,
    read_day,
    read_moment,
    read_text,
    receipt,
    summary,
)
from shared.envelope import utcnow
from shared.http import problem
from shared.logs import get_logger
from shared.supervise import Supervisor

log = get_logger(__name__)

LIST_LIMIT = 500
TEXT_LIMIT = 2000
NOTE_LIMIT = 10000


class CaseApi:
    def __init__(self, api: ConsultantApi) -> None:
        self.api = api
        self.config = api.config
        self.cases = CaseRepository(api.repo.db, api.repo.vault, api.config.cases.free_text_fields)
        self.news = CaseNews(self.cases, api.broker)
        self.alerts_check = CaseAlerts(self.news)

    # --- plumbing -------------------------------------------------------------------------

    def install(self, app: web.Application, supervisor: Supervisor) -> None:
        """Add the routes, and, once the store's resources are up (call this after the store's
        own cleanup context is appended), the indexes and the supervised check."""
        self.add_routes(app)

        async def running(app: web.Application) -> Any:
            await self.cases.ensure_indexes()
            every = self.config.cases.check_seconds
            supervisor.start(
                "case_alerts", lambda beat: self.alerts_check.watch(every, beat), interval=3 * every + 30
            )
            yield

        app.cleanup_ctx.append(running)

    @staticmethod
    def _guard(handler: Callable[[web.Request], Awaitable[web.Response]]) -> Any:
        """Turn a refused change into its answer: 422 naming fields, 409 for the case's state,
        404 for an item of the case that does not exist."""

        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.Response:
            try:
                return await handler(request)
            except Unprocessable as exc:
                return exc.response()
            except CaseConflict as exc:
                return problem(409, "The case's state does not allow this", str(exc))
            except NoSuchItem:
                return problem(404, "No such item of this case")

        return guarded

    async def _body(self, request: web.Request) -> dict[str, Any]:
        return await self.api.json_body(request)

    async def _case(self, request: web.Request) -> tuple[User, Doc]:
        """The case of the route, if the session's user may see it; else 404, the same answer
        as for a case that does not exist."""
        user: User = request["user"]
        viewer = case_viewer(user.role, user.organisation, user.lines)
        case = await self.cases.case(request.match_info["id"]) if viewer is not None else None
        if case is None or viewer is None or not viewer.sees_case(case):
            raise web.HTTPNotFound(text="no such case")
        return user, case

    async def _change(self, request: web.Request, decide: Callable[[Doc], Doc]) -> tuple[User, Doc, bool]:
        user, case = await self._case(request)
        done = await self.cases.change(case["_id"], decide)
        if done is None:
            raise web.HTTPNotFound(text="no such case")
        return user, *done

    # --- routes ---------------------------------------------------------------------------

    async def settings(self, request: web.Request) -> web.Response:
        """What the console needs to open and work on cases: kinds of the user's lines with
        their intake questionnaires, referral roles, assistance kinds, close reasons and the
        directory entries an external referral may name."""
        user: User = request["user"]
        cases = self.config.cases
        assistance = cases.assistance_of(user.organisation) if user.organisation else cases.assistance_kinds
        # The directory as the database keeps it (administration.py edits it).
        d = await self.api.reference.directory()
        directory = [*d.emergency, *d.national, *[e for es in d.regions.values() for e in es]]
        return answer(
            {
                "kinds": {k: kind.model_dump() for k, kind in cases.kinds_of(user.lines).items()},
                "referral_roles": cases.referral_roles,
                "assistance_kinds": {k: a.model_dump() for k, a in assistance.items()},
                "close_reasons": cases.close_reasons,
                "directory": {e.id: e.name for e in directory if e.id},
                "statuses": [s.value for s in model.CaseStatus],
            }
        )

    async def _source(self, user: User, body: dict[str, Any]) -> tuple[str, str, str, str, str | None]:
        """(organisation, line, thread id, consultation id, client id) of the conversation a
        case is opened from. A thread or consultation the user may not see answers 404."""
        thread_ref, consultation_ref = body.get("thread"), body.get("consultation")
        if (thread_ref is None) == (consultation_ref is None):
            raise Unprocessable("give a thread or a consultation", missing=["thread"])
        ref = thread_ref if consultation_ref is None else consultation_ref
        field = "thread" if consultation_ref is None else "consultation"
        if not isinstance(ref, str) or not ref or len(ref) > 100:
            raise Unprocessable(f"{field} must be an id", invalid=[field])
        thread_id = ref if field == "thread" else ref.rpartition(":")[0]
        thread = await self.api.visible_thread(user, thread_id)
        if thread is None:
            raise web.HTTPNotFound(text=f"no such {field}")
        if field == "consultation":
            found = [c for c in await self.api.repo.consultations_of(thread_id) if c["_id"] == ref]
            if not found:
                raise web.HTTPNotFound(text="no such consultation")
            consultation = found[0]
            if consultation.get("outcome") != "consultation":
                raise Unprocessable("a contact closed without a consultation opens no case", invalid=[field])
            counted = (consultation.get("facts") or {}).get("organisation")
            theirs = [counted] if counted else []
            line, client_id = consultation["line"], consultation.get("client_id")
        else:
            theirs = list(thread.get("organisations") or [])
            n = (thread.get("consultation") or {}).get("n", 1)
            ref, line, client_id = consultation_id(thread_id, n), thread["line"], thread.get("client_id")
        # A member of an organisation opens its cases; a national administrator, the case
        # of the one organisation the conversation is for.
        if user.organisation is not None and user.organisation not in theirs:
            raise Unprocessable("the conversation is another organisation's", invalid=[field])
        if user.organisation is None and len(theirs) != 1:
            raise Unprocessable(
                "the conversation is for no single organisation: claim it first", invalid=[field]
            )
        organisation = user.organisation or theirs[0]
        return organisation, line, thread_id, ref, client_id

    async def open(self, request: web.Request) -> web.Response:
        """Open a case from a consultation or an open thread; referred at once to the kind's role."""
        user: User = request["user"]
        body = await self._body(request)
        organisation, line, thread_id, consultation, client_id = await self._source(user, body)
        kinds = self.config.cases.kinds_of([line])
        kind = read_choice(body, "kind", kinds)
        answers = body.get("intake", {})
        if not isinstance(answers, dict):
            raise Unprocessable("intake must be an object", invalid=["intake"])
        intake, missing, invalid = self.config.cases.check_intake(kind, answers)
        if missing or invalid:
            raise Unprocessable(
                "Intake incomplete",
                missing=[f"intake.{n}" for n in missing],
                invalid=[f"intake.{n}" for n in invalid],
            )
        viewer = case_viewer(user.role, user.organisation, user.lines)
        existing = await self.cases.by_open_key(f"{consultation}:{kind}")
        if existing is None:
            now = utcnow()
            spec = kinds[kind].referral
            doc = model.new_case(
                number=await self.cases.next_number(organisation),
                organisation=organisation,
                line=line,
                kind=kind,
                intake=intake,
                opened_by=user.login,
                at=now,
                thread_id=thread_id,
                consultation_id=consultation,
                client_id=client_id,
                referral=model.new_referral(spec.role, now + timedelta(hours=spec.hours), user.login, now),
            )
            case, created = await self.cases.insert(doc)
            if created:
                await self.news.changed(
                    case,
                    CaseEvent.CASE_OPENED,
                    user.login,
                    kind=kind,
                    role=spec.role,
                    due_at=case["referral"]["due_at"],
                )
        else:
            case, created = existing, False
        status = 201 if created else 200
        if viewer is not None and viewer.sees_case(case):
            return answer(summary(case, utcnow()), status)
        return answer(receipt(case), status)

    async def list(self, request: web.Request) -> web.Response:
        """My cases, overdue first: referred to a role I fill, or mine; a supervisor's, all of
        their organisation's (of every organisation of their lines for one of none).
        ``status=closed``: closed ones, latest first."""
        user: User = request["user"]
        viewer = case_viewer(user.role, user.organisation, user.lines)
        if viewer is None:
            return answer([])
        status = request.query.get("status")
        if status is not None and status not in {s.value for s in model.CaseStatus}:
            return problem(422, "status must be open, active, monitoring or closed", invalid=["status"])
        query = model.work_filter(viewer, user.login, user.specialist_roles, user.role in SUPERVISING)
        now = utcnow()
        if status == model.CaseStatus.CLOSED:
            found = await self.cases.closed(query, LIST_LIMIT)
        else:
            query["status"] = {"$in": [status] if status else model.OPEN_STATUSES}
            found = sorted(await self.cases.listed(query, LIST_LIMIT), key=lambda c: model.work_order(c, now))
        return answer([summary(c, now) for c in found])

    async def alerts(self, request: web.Request) -> web.Response:
        """Referrals nobody took in time and follow-ups that are due, among the viewer's cases
        (GET /api/cases' rule)."""
        user: User = request["user"]
        viewer = case_viewer(user.role, user.organisation, user.lines)
        late: list[dict[str, Any]] = []
        due: list[dict[str, Any]] = []
        if viewer is not None:
            query = model.work_filter(viewer, user.login, user.specialist_roles, user.role in SUPERVISING)
            query["status"] = {"$in": model.OPEN_STATUSES}
            now = utcnow()
            for case in sorted(
                await self.cases.listed(query, LIST_LIMIT), key=lambda c: model.work_order(c, now)
            ):
                if model.late_referral(case, now):
                    late.append(summary(case, now))
                for f in model.due_followups(case, now):
                    due.append({"case": summary(case, now), "followup": {"id": f["id"], "due": f["due"]}})
        return answer({"overdue_referrals": late, "due_followups": due})

    async def read(self, request: web.Request) -> web.Response:
        user, case = await self._case(request)
        # Recorded before anything is sent: a read that could not be recorded is not answered.
        await self.api.audit.record_case(case["_id"], user.login, "case")
        log.info("case_read", case_id=case["_id"], consultant=user.login)
        return answer(full_view(case, await self.cases.history(case["_id"]), utcnow()))

    async def reads(self, request: web.Request) -> web.Response:
        """Who read the case and when (supervisors)."""
        user: User = request["user"]
        if user.role not in SUPERVISING:
            raise web.HTTPForbidden(text="your role may not do this")
        _, case = await self._case(request)
        found = await self.api.audit.of_case(case["_id"])
        return answer([{("id" if k == "_id" else k): v for k, v in r.items()} for r in found])

    async def refer(self, request: web.Request) -> web.Response:
        user, case = await self._case(request)
        body = await self._body(request)
        role = read_choice(body, "role", self.config.cases.referral_roles)
        now = utcnow()
        due = read_moment(body, "due_at")
        if due is None:
            due = now + timedelta(hours=self.config.cases.kinds[case["kind"]].referral.hours)
        due = not_past(due, "due_at", now)
        _, after, _ = await self._change(request, lambda c: model.refer(c, role, due, user.login, now))
        await self.news.changed(after, CaseEvent.CASE_REFERRED, user.login, role=role, due_at=due)
        return answer(summary(after, now))

    async def take(self, request: web.Request) -> web.Response:
        user: User = request["user"]
        now = utcnow()
        supervising = user.role in SUPERVISING
        _, after, changed = await self._change(
            request, lambda c: model.take(c, user.login, user.specialist_roles, supervising, now)
        )
        if changed:
            await self.news.changed(after, CaseEvent.CASE_TAKEN, user.login, role=after["referral"]["role"])
        return answer(summary(after, now))

    async def _append(
        self, request: web.Request, field: str, item: Doc, name: CaseEvent, **data: Any
    ) -> web.Response:
        user, after, _ = await self._change(request, lambda c: model.append(c, field, item))
        await self.news.changed(after, name, user.login, item_id=item["id"], **data)
        return answer(item, 201)

    async def add_service(self, request: web.Request) -> web.Response:
        user, case = await self._case(request)
        body = await self._body(request)
        offered = self.config.cases.assistance_of(case["organisation"])
        kind = read_choice(body, "kind", offered)
        day = read_day(body, "date", (utcnow() + timedelta(days=1)).date())
        amount = read_amount(body, "amount", offered[kind].amount)
        note = read_text(body, "note", TEXT_LIMIT)
        item = model.new_service(kind, day.isoformat(), user.login, utcnow(), amount, note)
        return await self._append(request, "services", item, CaseEvent.SERVICE_LOGGED, kind=kind)

    async def add_external_referral(self, request: web.Request) -> web.Response:
        user, _ = await self._case(request)
        body = await self._body(request)
        to = body.get("to")
        if to is None or to == "":
            raise Unprocessable("to is required", missing=["to"])
        if not isinstance(to, str) or await self.api.reference.directory_entry(to) is None:
            raise Unprocessable("to must name a directory entry by its id", invalid=["to"])
        now = utcnow()
        at = read_moment(body, "at") or now
        if at > now + SKEW:
            raise Unprocessable("at must not lie in the future", invalid=["at"])
        result = read_text(body, "result", TEXT_LIMIT)
        item = model.new_external_referral(to, at, user.login, result, now)
        return await self._append(
            request, "external_referrals", item, CaseEvent.EXTERNAL_REFERRAL_MADE, to=to
        )

    async def external_result(self, request: web.Request) -> web.Response:
        user, _ = await self._case(request)
        result = read_text(await self._body(request), "result", TEXT_LIMIT, required=True)
        assert result is not None
        now, item_id = utcnow(), request.match_info["item"]
        _, after, _ = await self._change(request, lambda c: model.record_result(c, item_id, result, now))
        await self.news.changed(after, CaseEvent.EXTERNAL_REFERRAL_UPDATED, user.login, item_id=item_id)
        return answer(summary(after, now))

    async def add_followup(self, request: web.Request) -> web.Response:
        user, _ = await self._case(request)
        body = await self._body(request)
        now = utcnow()
        due = read_moment(body, "due")
        if due is None:
            raise Unprocessable("due is required", missing=["due"])
        item = model.new_followup(
            not_past(due, "due", now), read_text(body, "note", TEXT_LIMIT), user.login, now
        )
        return await self._append(request, "followups", item, CaseEvent.FOLLOW_UP_SCHEDULED, due=due)

    async def followup_done(self, request: web.Request) -> web.Response:
        user: User = request["user"]
        now, item_id = utcnow(), request.match_info["item"]
        _, after, changed = await self._change(
            request, lambda c: model.followup_done(c, item_id, user.login, now)
        )
        if changed:
            await self.news.changed(after, CaseEvent.FOLLOW_UP_DONE, user.login, item_id=item_id)
        return answer(summary(after, now))

    async def add_note(self, request: web.Request) -> web.Response:
        user, _ = await self._case(request)
        text = read_text(await self._body(request), "text", NOTE_LIMIT, required=True)
        assert text is not None
        item = model.new_note(text, user.login, utcnow())
        return await self._append(request, "notes", item, CaseEvent.NOTE_ADDED)

    async def set_status(self, request: web.Request) -> web.Response:
        user, case = await self._case(request)
        body = await self._body(request)
        status = read_choice(body, "status", [s for s in model.CaseStatus if s != model.CaseStatus.OPEN])
        reason = body.get("reason")
        if status == model.CaseStatus.CLOSED:
            reason = read_choice(body, "reason", self.config.cases.close_reasons)
        elif reason is not None:
            raise Unprocessable("a reason is given at close only", invalid=["reason"])
        if user.role not in SUPERVISING and case.get("assignee") != user.login:
            return problem(
                409, "Only the case's assignee or a supervisor can change its status", "take it first"
            )
        now = utcnow()
        _, after, changed = await self._change(request, lambda c: model.set_status(c, status, reason, now))
        if changed:
            await self.news.changed(after, CaseEvent.STATUS_CHANGED, user.login, status=status, reason=reason)
        return answer(summary(after, now))

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        g = self._guard
        # Fixed paths first: /api/cases/{id} would take them otherwise.
        r.add_get("/api/cases/settings", self.settings)
        r.add_get("/api/cases/alerts", self.alerts)
        r.add_get("/api/cases", g(self.list))
        r.add_post("/api/cases", g(self.open))
        r.add_get("/api/cases/{id}", self.read)
        r.add_get("/api/cases/{id}/reads", self.reads)
        r.add_post("/api/cases/{id}/refer", g(self.refer))
        r.add_post("/api/cases/{id}/take", g(self.take))
        r.add_post("/api/cases/{id}/services", g(self.add_service))
        r.add_post("/api/cases/{id}/external-referrals", g(self.add_external_referral))
        r.add_patch("/api/cases/{id}/external-referrals/{item}", g(self.external_result))
        r.add_post("/api/cases/{id}/followups", g(self.add_followup))
        r.add_post("/api/cases/{id}/followups/{item}/done", g(self.followup_done))
        r.add_post("/api/cases/{id}/notes", g(self.add_note))
        r.add_post("/api/cases/{id}/status", g(self.set_status))
