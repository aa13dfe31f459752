"""A person's requests about their data: a copy of it, or its erasure (issue: survivor privacy).

- ``GET /api/threads/{id}/person/export``: everything the gateway holds about the person behind
  the thread that the asking supervisor may see, as one JSON file (a subject-access request):
  each of their threads with its messages as written (replies and internal notes included:
  they are about the person), its consultations and case forms, and their cases. Each thread
  exported is recorded in its read audit (``export``).
- ``POST /api/threads/{id}/person/erase`` ``{"confirm": "erase"}``: erase it. Every thread of
  the person the supervisor may see loses its text as retention clears it
  (services/store/retention.py: messages, raw mails, attachments, subject, address, free-text
  answers), then its data key is deleted (conversations/vault.py), so what was sealed is
  unreadable in every backup too; replies still held or unsent are cancelled; their cases
  lose their free text and their keys. When that reached all of the person's threads and
  cases, their safe-contact plan is deleted, the mails of theirs still in quarantine (found by
  the client key of their address, conversations/rawmail.py) lose their bytes and their keys,
  and what recognised them (their client key) is forgotten, so a new message from them starts
  afresh; when another organisation still holds some, both stay for it. Kept: the threads'
  times and categorical facts, so statistics count as before. Refused (409) while
  one of those threads or cases is open: a person still being helped is not erased under a
  consultant's hands. Each thread records ``TextErased`` with who did it.

The person is the thread's client (conversations/clients.py); a thread with no client (a web
chat nobody linked) is the person's only thread. Only supervisors and admins may do either, and
only for what they may see: another organisation's threads of the same person are theirs to
answer for.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp import web

from conversations.cases import CaseRepository, CaseStatus, case_viewer
from conversations.model import EventName, ThreadStatus
from conversations.rawmail import erase_quarantined
from conversations.repository import Doc
from services.store.api import ConsultantApi, jsonable, require
from services.store.auth import SUPERVISORS, User
from services.store.retention import clear_thread
from shared.envelope import utcnow
from shared.http import problem
from shared.logs import get_logger

log = get_logger(__name__)

# Fields of a thread or message that are the gateway's own machinery, not the person's data.
_INTERNAL = {"key", "reply_token", "data_key", "claim_seq", "html_sanitiser", "search", "published"}


def _clean(doc: Doc) -> Any:
    return jsonable({k: v for k, v in doc.items() if k not in _INTERNAL})


class ErasureRoutes:
    def __init__(self, api: ConsultantApi) -> None:
        self.api = api
        self.repo = api.repo
        self.cases = CaseRepository(api.repo.db, api.repo.vault, api.config.cases.free_text_fields)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/api/threads/{id}/person/export", self.export)
        app.router.add_post("/api/threads/{id}/person/erase", self.erase)

    async def _person(self, request: web.Request) -> tuple[User, str | None, list[Doc], list[Doc], bool]:
        """(who asks, the client id, the person's threads and cases this supervisor may see,
        whether those are all of the person's)."""
        user = require(request, SUPERVISORS)
        thread = await self.api.visible_thread(user, request.match_info["id"])
        if thread is None:
            raise web.HTTPNotFound(text="no such thread")
        client_id = thread.get("client_id")
        threads, every = [thread], 1
        if client_id:
            threads = []
            theirs = await self.repo.threads_of_client(client_id)
            every = len(theirs)
            for t in theirs:
                seen = await self.api.visible_thread(user, t["_id"])
                if seen is not None:
                    threads.append(seen)
        viewer = case_viewer(user.role, user.organisation, user.lines)
        found = await self.cases.of_client(client_id) if client_id else []
        cases = [c for c in found if viewer is not None and viewer.sees_case(c)]
        return user, client_id, threads, cases, len(threads) == every and len(cases) == len(found)

    async def export(self, request: web.Request) -> web.Response:
        user, client_id, threads, cases, _ = await self._person(request)
        out: list[Any] = []
        for t in sorted(threads, key=lambda t: t["created_at"]):
            # Recorded before anything is sent, like every read of a thread (audit.py).
            await self.api.audit.record(t["_id"], user.login, "export")
            messages = await self.repo.thread_messages(t["_id"])
            out.append(
                {
                    **_clean(await self.repo.open_thread(t)),
                    "messages": [_clean(m) for m in messages],
                    "consultations": [_clean(c) for c in await self.repo.consultations_of(t["_id"])],
                }
            )
        for c in cases:
            await self.api.audit.record_case(c["_id"], user.login, "export")
        body = {
            "exported_at": utcnow().isoformat(),
            "exported_by": user.login,
            "client_id": client_id,
            "threads": out,
            "cases": [_clean(c) for c in cases],
        }
        log.info("person_exported", by=user.login, threads=len(out), cases=len(cases))
        name = f"person-{client_id or threads[0]['_id']}.json"
        return web.json_response(
            body,
            headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
        )

    async def erase(self, request: web.Request) -> web.Response:
        require(request, SUPERVISORS)  # the role first: it says nothing about the thread
        body = await self.api.json_body(request)
        if body.get("confirm") != "erase":
            why = 'send {"confirm": "erase"}: erasure cannot be undone'
            return problem(422, "Confirm the erasure", why, invalid=["confirm"])
        user, client_id, threads, cases, everything = await self._person(request)
        still_open = [t["_id"] for t in threads if t.get("status") != ThreadStatus.CLOSED.value]
        open_cases = [c["_id"] for c in cases if c.get("status") != CaseStatus.CLOSED.value]
        if still_open or open_cases:
            return problem(
                409,
                "The person is still being helped",
                "close their open conversations and cases first",
                threads=still_open,
                cases=open_cases,
            )
        # Everything stored up to now, a moment's margin for clocks.
        before = utcnow() + timedelta(seconds=5)
        ids = [t["_id"] for t in threads]
        for tid in ids:
            await clear_thread(self.repo, tid, before, {"status": ThreadStatus.CLOSED.value})
        keys = await self.repo.erase_text(ids)
        fields = self.api.config.cases.free_text_fields
        cleared = sum([await self.cases.clear_free_text(c["_id"], fields) for c in cases])
        keys += await self.cases.erase_text([c["_id"] for c in cases])
        # What recognises the person and their safe-contact plan go only when this erasure
        # reached all of them: another organisation still helping them keeps both (its held
        # replies stay held, its new threads stay theirs).
        forgotten = 0
        if everything:
            if client_id:  # their quarantined mails, found by the key of their address
                known = await self.repo.clients.keys_of(client_id)
                keys += await erase_quarantined(self.repo.db, self.repo.vault, known)
            forgotten = await self.repo.clients.forget(client_id) if client_id else 0
            await self.repo.contact_plans.forget([client_id] if client_id else [], ids)
        else:
            await self.repo.contact_plans.forget([], ids)
        for tid in ids:
            await self.repo.record_event(tid, EventName.TEXT_ERASED, user.login)
        log.info("person_erased", by=user.login, threads=len(ids), cases=cleared, keys=keys)
        return web.json_response(
            {
                "threads": len(ids),
                "cases": cleared,
                "data_keys_deleted": keys,
                "client_keys_forgotten": forgotten,
            }
        )
