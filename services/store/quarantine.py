"""Quarantined mail for supervisors (docs/email.md, "A mail that cannot be fully read").

- ``GET /api/quarantine``: the mails the e-mail intake could not turn into a message, each with
  its reason, mailbox, line, size and times, and whether a replay is asked for or how the last
  one ended; never its content (no bytes, subject or sender).
- ``POST /api/quarantine/replay`` ``{"source_id": ...}``: ask the intake to replay it. The
  intake does what ``python -m services.email_ingest.quarantine replay`` does (parse again,
  publish with the same source id, so at most once in a thread); the request is a document in
  ``mail_replays`` (conversations/rawmail.py), as the store never parses mail itself. 202.

Supervisors and admins only, and only what their lines hold: a mail is of its mailbox's line
(recorded with it; for a mail recorded before that, the configured mailbox's; when neither
says, as for the mailbox the environment gives, it shows only to supervisors of no
organisation), and a mailbox that belongs to an organisation shows only to that
organisation's supervisors (and to those of no organisation). A mailbox no organisation owns
(the shared infoline's) shows to every supervisor of its line: which organisation's region the
writer is in is not known before the mail is read.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from conversations.rawmail import quarantined_mail, quarantined_mails, request_replay
from services.store.api import ConsultantApi, jsonable, require
from services.store.auth import SUPERVISORS, User
from shared.config import HotlineConfig
from shared.http import problem
from shared.logs import get_logger

log = get_logger(__name__)

Doc = dict[str, Any]


def sees_mail(config: HotlineConfig, user: User, mail: Doc) -> bool:
    """Whether ``user`` (a supervisor or admin) may see the quarantined ``mail`` (see above)."""
    spec = config.mailboxes.get(str(mail.get("mailbox") or ""))
    line = mail.get("line") or (spec.line if spec is not None else None)
    if line is None:  # recorded before its line was, from the mailbox the environment gives
        return user.organisation is None
    if line not in user.lines:
        return False
    owner = spec.organisation if spec is not None else None
    return user.organisation is None or owner is None or owner == user.organisation


def mail_view(mail: Doc) -> dict[str, Any]:
    """What the console lists of a quarantined mail: facts only."""
    last = mail.get("last_replay") or None
    view: dict[str, Any] = jsonable(
        {
            "source_id": mail["_id"],
            "mailbox": mail.get("mailbox"),
            "line": mail.get("line"),
            "reason": mail.get("reason"),
            "size": mail.get("size"),
            "stored_at": mail.get("stored_at"),
            "kept": not mail.get("text_deleted") and mail.get("reason") != "too_large",
            "replay_requested": bool(mail.get("replay_requested")),
            "last_replay": {"at": last.get("at"), "outcome": last.get("outcome")} if last else None,
        }
    )
    return view


class QuarantineRoutes:
    def __init__(self, api: ConsultantApi) -> None:
        self.api = api
        self.db = api.repo.db

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/api/quarantine", self.list)
        app.router.add_post("/api/quarantine/replay", self.replay)

    async def list(self, request: web.Request) -> web.Response:
        user = require(request, SUPERVISORS)
        mails = await quarantined_mails(self.db)
        return web.json_response([mail_view(m) for m in mails if sees_mail(self.api.config, user, m)])

    async def replay(self, request: web.Request) -> web.Response:
        user = require(request, SUPERVISORS)  # the role first: it says nothing about the mail
        body = await self.api.json_body(request)
        source_id = body.get("source_id")
        if not isinstance(source_id, str) or not 1 <= len(source_id) <= 1000:
            return problem(422, "source_id is required", invalid=["source_id"])
        mail = await quarantined_mail(self.db, source_id)
        if mail is None or not sees_mail(self.api.config, user, mail):
            return problem(404, "No such quarantined mail")
        asked = await request_replay(self.db, source_id, user.login)
        log.info("quarantine_replay_requested", source_id=source_id, by=user.login, new=asked)
        mail["replay_requested"] = True
        return web.json_response(mail_view(mail), status=202)
