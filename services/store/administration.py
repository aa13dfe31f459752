"""The administration screen's API: accounts, canned answers and the help directory.

Who may:

- an administrator (:func:`is_administrator`) manages every account, every canned answer
  and the directory;
- a supervisor of an organisation manages the consultant and specialist accounts of their
  organisation on their lines, and their organisation's canned answers; line-wide canned
  answers, other organisations' and the directory they may read, not change. Accounts of
  another organisation answer 404, as if they did not exist;
- nobody changes their own role, organisation or lines, nor disables themselves, here.

Every change is recorded in ``admin_changes`` (who, when, which account, answer or entry, what
was done and which fields changed, with the new values of an account's role, organisation,
lines, skills and languages; never a password, never a canned answer's or entry's text).

A password an administrator or supervisor sets (a new account, a reset) is argon2id as every
password and must be changed at the next log-in: until it is, the session may only read
``/api/me``, change the password (``PUT /api/me/password``) and log out (:meth:`middleware`).
A reset ends the account's sessions. Disabling goes through the same path as
``POST /api/users/{login}/disable`` (:meth:`ConsultantApi.disable_account`): sessions end,
live sockets close, held threads go back to their queues.

Canned answers and directory entries live in the database (conversations/reference.py); every
change raises the kind's version, so every replica's cache reloads within seconds.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from pydantic import ValidationError
from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from conversations import reference
from conversations.identity import new_id
from conversations.repository import Doc
from services.store.api import ConsultantApi, jsonable
from services.store.auth import NATIONAL_ADMIN, User, hash_password, verify_password
from services.store.auth import ROLES as AUTH_ROLES
from services.store.events import sessions_ended
from shared.config import DirectoryEntry
from shared.envelope import utcnow
from shared.http import Handler, problem
from shared.logs import get_logger

log = get_logger(__name__)

ROLES = AUTH_ROLES
# The roles an organisation's supervisor may give (never their own or a higher one).
ORGANISATION_ROLES = {"consultant", "specialist"}
LOGIN = re.compile(r"^[a-z0-9][a-z0-9._-]{1,39}$")
MIN_PASSWORD = 10
MAX_PASSWORD = 1024
MAX_TITLE = 200
MAX_TEXT = 4000
CHANGES = "admin_changes"
# What a session that must change its password may still do.
WHILE_CHANGING = {("GET", "/api/me"), ("PUT", "/api/me/password"), ("DELETE", "/api/session")}


def is_administrator(user: User) -> bool:
    """Whether ``user`` administers the whole installation (accounts of every organisation,
    the directory): the national administrator. The one place that says so."""
    return user.role == NATIONAL_ADMIN


def may_edit_organisation(user: User, organisation: str | None) -> bool:
    """Whether ``user`` manages accounts and canned answers of ``organisation`` (None: of no
    organisation, i.e. line-wide)."""
    if is_administrator(user):
        return True
    return (
        user.role in ("supervisor", "admin")
        and user.organisation is not None
        and organisation == user.organisation
    )


def _texts(value: Any, languages: list[str], limit: int, required: bool) -> dict[str, str] | None:
    """A text by language, or None when it is not one."""
    if not isinstance(value, dict) or (required and not value):
        return None
    if not all(isinstance(k, str) and k in languages for k in value):
        return None
    if not all(isinstance(v, str) and v.strip() and len(v) <= limit for v in value.values()):
        return None
    return {k: v.strip() for k, v in value.items()}


async def ensure_indexes(db: AsyncDatabase[Doc]) -> None:
    """The change log is read latest first, whole or by organisation."""
    await db[CHANGES].create_index([("at", DESCENDING)], name="latest")
    await db[CHANGES].create_index([("organisation", ASCENDING), ("at", DESCENDING)], name="organisation")


class AdministrationRoutes:
    def __init__(self, api: ConsultantApi) -> None:
        self.api = api
        self.config = api.config
        self.repo = api.repo
        self.changes = api.repo.db[CHANGES]

    # --- plumbing -------------------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """A session whose password was set by someone else does nothing until it is changed."""
        user: User | None = request.get("user")
        if (
            user is not None
            and user.must_change_password
            and (request.method, request.path) not in WHILE_CHANGING
        ):
            return problem(
                403, "Change your password first", "your password was set for you: choose your own"
            )
        return await handler(request)

    def _staff(self, request: web.Request) -> User:
        user: User = request["user"]
        if not is_administrator(user) and user.role not in ("supervisor", "admin"):
            raise web.HTTPForbidden(text="your role may not do this")
        return user

    def _administrator(self, request: web.Request) -> User:
        user: User = request["user"]
        if not is_administrator(user):
            raise web.HTTPForbidden(text="your role may not do this")
        return user

    async def _record(self, by: User, kind: str, target: str, action: str, **detail: Any) -> None:
        await self.changes.insert_one(
            {
                "_id": new_id(),
                "at": utcnow(),
                "by": by.login,
                "kind": kind,
                "target": target,
                "action": action,
                **detail,
            }
        )
        log.info("admin_change", kind=kind, target=target, action=action, by=by.login)

    # --- accounts -------------------------------------------------------------------------

    async def _account(self, user: User, login: str) -> Doc:
        """The account ``login`` if ``user`` manages it; else 404, as if it did not exist."""
        doc = await self.repo.consultant(login)
        if doc is None or not self._manages(user, doc):
            raise web.HTTPNotFound(text="no such account")
        return doc

    def _manages(self, user: User, doc: Doc) -> bool:
        if is_administrator(user):
            return True
        return may_edit_organisation(user, doc.get("organisation")) and doc.get("role") in ORGANISATION_ROLES

    def _account_fields(
        self, user: User, body: dict[str, Any], current: Doc | None
    ) -> dict[str, Any] | web.Response:
        """The account fields ``body`` sets, checked against the configuration and what
        ``user`` may give; a problem to answer otherwise."""
        out: dict[str, Any] = {}
        invalid: list[str] = []
        known_skills = {q.skill for q in self.config.queues.values()} | {
            t.skill for ln in self.config.lines.values() for t in ln.topics.values() if t.skill
        }
        if "name" in body:
            name = body["name"]
            if not isinstance(name, str) or not name.strip() or len(name) > 100:
                invalid.append("name")
            else:
                out["name"] = name.strip()
        if "role" in body:
            if body["role"] not in ROLES:
                invalid.append("role")
            else:
                out["role"] = body["role"]
        if "organisation" in body:
            org = body["organisation"]
            if org is not None and org not in self.config.organisations:
                invalid.append("organisation")
            else:
                out["organisation"] = org
        for field, known in (
            ("lines", set(self.config.lines)),
            ("skills", known_skills),
            ("languages", set(self.config.languages)),
            ("specialist_roles", set(self.config.cases.referral_roles)),
        ):
            if field in body:
                value = body[field]
                if not isinstance(value, list) or not all(isinstance(v, str) and v in known for v in value):
                    invalid.append(field)
                else:
                    out[field] = sorted(set(value))
        if invalid:
            return problem(422, "Invalid account fields", "invalid: " + ", ".join(invalid), invalid=invalid)
        if current is not None and current["_id"] == user.login:
            for field in ("role", "organisation", "lines"):
                if field in out and out[field] != current.get(field):
                    return problem(
                        409, "You cannot change your own role, organisation or lines", invalid=[field]
                    )
        merged = {**(current or {}), **out}
        role, org = merged.get("role", "consultant"), merged.get("organisation")
        if not merged.get("lines"):
            return problem(422, "An account works on at least one line", invalid=["lines"])
        if role != NATIONAL_ADMIN and org is None:  # only a national administrator is of none
            return problem(422, f"A {role} belongs to an organisation", invalid=["organisation"])
        if role == "specialist" and not merged.get("specialist_roles"):
            return problem(422, "A specialist fills referral roles", invalid=["specialist_roles"])
        if role != "specialist" and merged.get("specialist_roles"):
            out["specialist_roles"] = []
        if not is_administrator(user):
            # An organisation's supervisor: their organisation, the roles below theirs, their lines.
            if role not in ORGANISATION_ROLES:
                return problem(403, "You may not give this role", invalid=["role"])
            if org != user.organisation:
                return problem(403, "You manage your organisation's accounts only", invalid=["organisation"])
            if not set(merged["lines"]) <= set(user.lines):
                return problem(403, "You may give only lines you work on", invalid=["lines"])
        return out

    def _password(self, body: dict[str, Any], field: str = "password") -> str | web.Response:
        password = body.get(field)
        if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
            return problem(
                422, f"A password has {MIN_PASSWORD} to {MAX_PASSWORD} characters", invalid=[field]
            )
        return password

    @staticmethod
    def _view(doc: Doc) -> dict[str, Any]:
        shown = {k: v for k, v in doc.items() if k not in {"password_hash"}}
        return dict(jsonable(shown))

    async def accounts(self, request: web.Request) -> web.Response:
        """The accounts the caller manages, without password hashes."""
        user = self._staff(request)
        query: Doc = {} if is_administrator(user) else {
            "organisation": user.organisation, "role": {"$in": sorted(ORGANISATION_ROLES)}
        }  # fmt: skip
        if not is_administrator(user) and user.organisation is None:
            return web.json_response([])
        docs = [d async for d in self.repo.consultants.find(query, {"password_hash": 0}).sort("_id", 1)]
        return web.json_response([self._view(d) for d in docs])

    async def create_account(self, request: web.Request) -> web.Response:
        user = self._staff(request)
        body = await self.api.json_body(request)
        login = body.get("login")
        if not isinstance(login, str) or not LOGIN.match(login):
            return problem(422, "login: 2-40 lower-case letters, digits, . _ -", invalid=["login"])
        body.setdefault("role", "consultant")
        if not is_administrator(user):
            body.setdefault("organisation", user.organisation)
        fields = self._account_fields(user, body, None)
        if isinstance(fields, web.Response):
            return fields
        password = self._password(body)
        if isinstance(password, web.Response):
            return password
        doc = {
            "_id": login,
            "name": login,
            "organisation": None,
            "skills": [],
            "languages": [],
            "specialist_roles": [],
            **fields,
            "password_hash": hash_password(password),
            "must_change_password": True,
            "disabled": False,
            "status": "offline",
            "created_at": utcnow(),
            "created_by": user.login,
        }
        try:
            await self.repo.consultants.insert_one(doc)
        except DuplicateKeyError:
            return problem(409, "This login is taken", invalid=["login"])
        await self._record(
            user, "account", login, "created", organisation=doc["organisation"], values=self._safe(fields)
        )
        return web.json_response(self._view(doc), status=201)

    @staticmethod
    def _safe(fields: dict[str, Any]) -> dict[str, Any]:
        """What the change log keeps of account fields (never a password)."""
        keep = ("name", "role", "organisation", "lines", "skills", "languages", "specialist_roles")
        return {k: v for k, v in fields.items() if k in keep}

    async def update_account(self, request: web.Request) -> web.Response:
        user = self._staff(request)
        current = await self._account(user, request.match_info["login"])
        body = await self.api.json_body(request)
        unknown = set(body) - {
            "name",
            "role",
            "organisation",
            "lines",
            "skills",
            "languages",
            "specialist_roles",
        }
        if unknown:
            return problem(
                422,
                "Unknown account fields",
                "unknown: " + ", ".join(sorted(unknown)),
                invalid=sorted(unknown),
            )
        fields = self._account_fields(user, body, current)
        if isinstance(fields, web.Response):
            return fields
        changed = {k: v for k, v in fields.items() if current.get(k) != v}
        if changed:
            await self.repo.consultants.update_one({"_id": current["_id"]}, {"$set": changed})
            await self._record(
                user,
                "account",
                current["_id"],
                "updated",
                organisation=current.get("organisation"),
                values=self._safe(changed),
            )
        if {"role", "organisation", "lines"} & set(changed):
            # What the account may see changed: its open consoles log in again.
            await self.api._announce(sessions_ended(current["_id"]))
        return web.json_response(self._view({**current, **changed}))

    async def disable_account(self, request: web.Request) -> web.Response:
        user = self._staff(request)
        current = await self._account(user, request.match_info["login"])
        if current["_id"] == user.login:
            return problem(409, "You cannot disable your own account")
        await self.api.disable_account(current["_id"], user.login)
        await self._record(
            user, "account", current["_id"], "disabled", organisation=current.get("organisation")
        )
        return web.json_response(self._view({**current, "disabled": True}))

    async def enable_account(self, request: web.Request) -> web.Response:
        user = self._staff(request)
        current = await self._account(user, request.match_info["login"])
        await self.repo.consultants.update_one({"_id": current["_id"]}, {"$set": {"disabled": False}})
        await self._record(
            user, "account", current["_id"], "enabled", organisation=current.get("organisation")
        )
        return web.json_response(self._view({**current, "disabled": False}))

    async def reset_password(self, request: web.Request) -> web.Response:
        """A new password the person must change at their next log-in; their sessions end."""
        user = self._staff(request)
        current = await self._account(user, request.match_info["login"])
        if current["_id"] == user.login:
            return problem(409, "Change your own password with PUT /api/me/password")
        password = self._password(await self.api.json_body(request))
        if isinstance(password, web.Response):
            return password
        await self.repo.consultants.update_one(
            {"_id": current["_id"]},
            {"$set": {"password_hash": hash_password(password), "must_change_password": True}},
        )
        await self.repo.sessions.delete_many({"login": current["_id"]})
        await self.api._announce(sessions_ended(current["_id"]))
        await self._record(
            user, "account", current["_id"], "password_reset", organisation=current.get("organisation")
        )
        return web.json_response({"login": current["_id"], "must_change_password": True})

    async def change_own_password(self, request: web.Request) -> web.Response:
        """Anyone's own password: the current one, then a new one (ends a forced change)."""
        user: User = request["user"]
        body = await self.api.json_body(request)
        doc = await self.repo.consultant(user.login)
        current = body.get("current")
        if (
            doc is None
            or not isinstance(current, str)
            or not verify_password(doc["password_hash"], current[:MAX_PASSWORD])
        ):
            return problem(403, "The current password is wrong", invalid=["current"])
        password = self._password(body, "new")
        if isinstance(password, web.Response):
            return password
        if password == current:
            return problem(422, "Choose a password other than the current one", invalid=["new"])
        await self.repo.consultants.update_one(
            {"_id": user.login},
            {"$set": {"password_hash": hash_password(password), "must_change_password": False}},
        )
        await self._record(
            user, "account", user.login, "own_password_changed", organisation=user.organisation
        )
        return web.json_response({"login": user.login, "must_change_password": False})

    async def change_log(self, request: web.Request) -> web.Response:
        """The latest changes the caller may see: an administrator's all, a supervisor's those
        of their organisation."""
        user = self._staff(request)
        query: Doc = {} if is_administrator(user) else {"organisation": user.organisation or "\x00"}
        cursor = self.changes.find(query).sort("at", -1).limit(500)
        return web.json_response([jsonable(d) async for d in cursor])

    # --- canned answers -------------------------------------------------------------------

    async def canned(self, request: web.Request) -> web.Response:
        """Canned answers of the caller's lines (all of them, for an administrator), each
        marked whether the caller may change it."""
        user = self._staff(request)
        out = []
        for doc in await self.api.reference.canned_docs():
            if not is_administrator(user) and doc.get("line") not in user.lines:
                continue
            if not is_administrator(user) and doc.get("organisation") not in (None, user.organisation):
                continue
            out.append({**jsonable(doc), "editable": may_edit_organisation(user, doc.get("organisation"))})
        return web.json_response(out)

    def _canned_fields(self, user: User, body: dict[str, Any], current: Doc | None) -> Doc | web.Response:
        languages = self.config.languages
        title = _texts(body.get("title", (current or {}).get("title")), languages, MAX_TITLE, True)
        text = _texts(body.get("text", (current or {}).get("text")), languages, MAX_TEXT, True)
        line = body.get("line", (current or {}).get("line"))
        organisation = body.get("organisation", (current or {}).get("organisation", user.organisation))
        invalid = [n for n, v in (("title", title), ("text", text)) if v is None]
        if line not in self.config.lines:
            invalid.append("line")
        if organisation is not None and organisation not in self.config.organisations:
            invalid.append("organisation")
        if invalid:
            return problem(422, "Invalid canned answer", "invalid: " + ", ".join(invalid), invalid=invalid)
        if not may_edit_organisation(user, organisation) or (
            not is_administrator(user) and line not in user.lines
        ):
            return problem(403, "You may not change canned answers of this line or organisation")
        return {"title": title, "text": text, "line": line, "organisation": organisation}

    async def _canned_doc(self, user: User, answer_id: str) -> Doc:
        doc = await self.repo.db[reference.CANNED].find_one({"_id": answer_id})
        visible = doc is not None and (
            is_administrator(user)
            or (doc.get("line") in user.lines and doc.get("organisation") in (None, user.organisation))
        )
        if doc is None or not visible:
            raise web.HTTPNotFound(text="no such canned answer")
        if not may_edit_organisation(user, doc.get("organisation")):
            raise web.HTTPForbidden(text="you may not change this canned answer")
        return doc

    async def _changed(self, kind: reference.Kind) -> None:
        await reference.bump(self.repo.db, kind)
        self.api.reference.forget(kind)

    async def create_canned(self, request: web.Request) -> web.Response:
        user = self._staff(request)
        fields = self._canned_fields(user, await self.api.json_body(request), None)
        if isinstance(fields, web.Response):
            return fields
        order = await self.repo.db[reference.CANNED].count_documents({"line": fields["line"]})
        doc = {"_id": new_id(), **fields, "order": order, "updated_at": utcnow(), "updated_by": user.login}
        await self.repo.db[reference.CANNED].insert_one(doc)
        await self._changed("canned")
        await self._record(
            user, "canned", doc["_id"], "created", organisation=fields["organisation"], line=fields["line"]
        )
        return web.json_response(jsonable(doc), status=201)

    async def update_canned(self, request: web.Request) -> web.Response:
        user = self._staff(request)
        current = await self._canned_doc(user, request.match_info["item"])
        body = await self.api.json_body(request)
        fields = self._canned_fields(user, body, current)
        if isinstance(fields, web.Response):
            return fields
        changed = {k: v for k, v in fields.items() if current.get(k) != v}
        await self.repo.db[reference.CANNED].update_one(
            {"_id": current["_id"]}, {"$set": {**changed, "updated_at": utcnow(), "updated_by": user.login}}
        )
        await self._changed("canned")
        await self._record(
            user,
            "canned",
            current["_id"],
            "updated",
            organisation=fields["organisation"],
            line=fields["line"],
            fields=sorted(changed),
        )
        return web.json_response(jsonable({**current, **fields}))

    async def delete_canned(self, request: web.Request) -> web.Response:
        user = self._staff(request)
        current = await self._canned_doc(user, request.match_info["item"])
        await self.repo.db[reference.CANNED].delete_one({"_id": current["_id"]})
        await self._changed("canned")
        await self._record(
            user,
            "canned",
            current["_id"],
            "deleted",
            organisation=current.get("organisation"),
            line=current.get("line"),
        )
        return web.Response(status=204)

    # --- the directory --------------------------------------------------------------------

    async def directory(self, request: web.Request) -> web.Response:
        """Every directory entry, with its section (emergency, national, region) and region."""
        user = self._staff(request)
        docs = await self.api.reference.directory_docs()
        docs = sorted(docs, key=lambda d: (d.get("section", ""), d.get("region") or "", d.get("order", 0)))
        return web.json_response([{**jsonable(d), "editable": is_administrator(user)} for d in docs])

    def _entry_fields(self, body: dict[str, Any], current: Doc | None) -> Doc | web.Response:
        merged = {**(current or {}), **body}
        section, region = merged.get("section"), merged.get("region")
        invalid = []
        if section not in reference.SECTIONS:
            invalid.append("section")
        if section == "region" and region not in self.config.regions:
            invalid.append("region")
        entry = {
            k: merged.get(k)
            for k in ("name", "phone", "address", "note", "url")
            if merged.get(k) not in (None, "", {})
        }
        try:
            checked = DirectoryEntry(**entry)
        except (ValidationError, TypeError):
            checked = None
            invalid.append("entry")
        if checked is not None:
            languages = self.config.languages
            if (
                set(checked.name) != set(languages)
                or _texts(checked.name, languages, MAX_TITLE, True) is None
            ):
                invalid.append("name")
            for field in ("address", "note"):
                if (
                    getattr(checked, field)
                    and _texts(getattr(checked, field), languages, MAX_TITLE, False) is None
                ):
                    invalid.append(field)
        if invalid:
            return problem(
                422,
                "Invalid directory entry",
                "invalid: "
                + ", ".join(invalid)
                + "; a name in every language: "
                + ", ".join(self.config.languages),
                invalid=invalid,
            )
        assert checked is not None
        return {
            "section": section,
            "region": region if section == "region" else None,
            **checked.model_dump(exclude={"id"}),
        }

    async def create_entry(self, request: web.Request) -> web.Response:
        user = self._administrator(request)
        body = await self.api.json_body(request)
        entry_id = body.get("id")
        if not isinstance(entry_id, str) or not re.match(r"^[a-z][a-z0-9_]{0,39}$", entry_id):
            return problem(
                422, "id: a lower-case letter, then letters, digits or _ (up to 40)", invalid=["id"]
            )
        fields = self._entry_fields({k: v for k, v in body.items() if k != "id"}, None)
        if isinstance(fields, web.Response):
            return fields
        collection = self.repo.db[reference.DIRECTORY]
        order = await collection.count_documents({"section": fields["section"], "region": fields["region"]})
        doc = {"_id": entry_id, **fields, "order": order, "updated_at": utcnow(), "updated_by": user.login}
        try:
            await collection.insert_one(doc)
        except DuplicateKeyError:
            return problem(409, "This id is taken", invalid=["id"])
        await self._changed("directory")
        await self._record(user, "directory", entry_id, "created")
        return web.json_response(jsonable(doc), status=201)

    async def _entry(self, request: web.Request) -> tuple[User, Doc]:
        user = self._administrator(request)
        doc = await self.repo.db[reference.DIRECTORY].find_one({"_id": request.match_info["item"]})
        if doc is None:
            raise web.HTTPNotFound(text="no such directory entry")
        return user, doc

    async def update_entry(self, request: web.Request) -> web.Response:
        user, current = await self._entry(request)
        body = await self.api.json_body(request)
        if "id" in body and body["id"] != current["_id"]:
            return problem(422, "An entry's id does not change (cases name it)", invalid=["id"])
        fields = self._entry_fields({k: v for k, v in body.items() if k != "id"}, current)
        if isinstance(fields, web.Response):
            return fields
        changed = sorted(k for k, v in fields.items() if current.get(k) != v)
        order = current.get("order", 0)
        if (fields["section"], fields["region"]) != (current.get("section"), current.get("region")):
            order = await self.repo.db[reference.DIRECTORY].count_documents(
                {"section": fields["section"], "region": fields["region"]}
            )
        doc = {**fields, "order": order, "updated_at": utcnow(), "updated_by": user.login}
        await self.repo.db[reference.DIRECTORY].replace_one({"_id": current["_id"]}, doc)
        await self._changed("directory")
        await self._record(user, "directory", current["_id"], "updated", fields=changed)
        return web.json_response(jsonable({"_id": current["_id"], **doc}))

    async def delete_entry(self, request: web.Request) -> web.Response:
        user, current = await self._entry(request)
        await self.repo.db[reference.DIRECTORY].delete_one({"_id": current["_id"]})
        await self._changed("directory")
        await self._record(user, "directory", current["_id"], "deleted")
        return web.Response(status=204)

    def install(self, app: web.Application) -> None:
        app.middlewares.append(self.middleware)
        r = app.router
        r.add_put("/api/me/password", self.change_own_password)
        r.add_get("/api/admin/accounts", self.accounts)
        r.add_post("/api/admin/accounts", self.create_account)
        r.add_patch("/api/admin/accounts/{login}", self.update_account)
        r.add_post("/api/admin/accounts/{login}/disable", self.disable_account)
        r.add_post("/api/admin/accounts/{login}/enable", self.enable_account)
        r.add_post("/api/admin/accounts/{login}/password", self.reset_password)
        r.add_get("/api/admin/changes", self.change_log)
        r.add_get("/api/admin/canned", self.canned)
        r.add_post("/api/admin/canned", self.create_canned)
        r.add_put("/api/admin/canned/{item}", self.update_canned)
        r.add_delete("/api/admin/canned/{item}", self.delete_canned)
        r.add_get("/api/admin/directory", self.directory)
        r.add_post("/api/admin/directory", self.create_entry)
        r.add_put("/api/admin/directory/{item}", self.update_entry)
        r.add_delete("/api/admin/directory/{item}", self.delete_entry)
