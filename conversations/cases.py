"""Cases: the work that follows a consultation when more than a conversation is needed.

A case (PRODUCT.md 3.5) belongs to one organisation and one line. It is opened from a
consultation or an open thread with a configured kind and the kind's intake answers, referred
to a specialist role of the organisation with a time by which someone of that role must take
it, and then logs each service given, each external referral (to a directory entry) and each
follow-up, with notes, until it is closed with a configured reason.

Collections (only :class:`CaseRepository` touches them):

- ``cases``: one document per case (:func:`new_case` names its fields). ``v`` counts its
  changes: every change reads the case, decides with a pure function of this module what to
  set, and writes only if ``v`` is still what it read (:meth:`CaseRepository.change`), so two
  people acting at once never undo each other's work, on MongoDB as on FerretDB v1 (which has
  no positional ``$`` update).
- ``case_counters`` ``{_id: organisation, seq}``: the per-organisation case numbers.
- ``case_events`` ``{case_id, name, at, by, ...ids and kinds}``: what happened, when, by whom.

Who sees a case: :func:`case_viewer`. Free text (notes, the intake's text answers, service
notes, follow-up notes, external referral results) is deleted by retention once the case has
been closed long enough (:meth:`CaseRepository.delete_free_text`); categorical answers stay.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, cast

from bson.binary import Binary
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from conversations.identity import new_id
from conversations.vault import ENCRYPTED_SUBTYPE, Vault
from shared.envelope import utcnow

Doc = dict[str, Any]


# The free text of a case's arrays (the intake's text answers are named by the configuration).
_CASE_TEXT = (
    ("notes", "text"),
    ("services", "note"),
    ("followups", "note"),
    ("external_referrals", "result"),
)


class CaseStatus(StrEnum):
    OPEN = "open"  # referred, nobody has taken it yet
    ACTIVE = "active"  # taken: someone works on it
    MONITORING = "monitoring"  # help given; followed up on dates
    CLOSED = "closed"  # with a configured reason


OPEN_STATUSES = [CaseStatus.OPEN.value, CaseStatus.ACTIVE.value, CaseStatus.MONITORING.value]


class CaseEvent(StrEnum):
    """Facts about a case, in the past tense: kept in ``case_events`` and announced to the
    consoles of those who may see the case."""

    CASE_OPENED = "CaseOpened"
    CASE_REFERRED = "CaseReferred"
    CASE_TAKEN = "CaseTaken"
    SERVICE_LOGGED = "CaseServiceLogged"
    EXTERNAL_REFERRAL_MADE = "CaseExternalReferralMade"
    EXTERNAL_REFERRAL_UPDATED = "CaseExternalReferralUpdated"
    FOLLOW_UP_SCHEDULED = "CaseFollowUpScheduled"
    FOLLOW_UP_DONE = "CaseFollowUpDone"
    NOTE_ADDED = "CaseNoteAdded"
    STATUS_CHANGED = "CaseStatusChanged"
    REFERRAL_OVERDUE = "CaseReferralOverdue"  # nobody took a referral in time
    FOLLOW_UP_DUE = "CaseFollowUpDue"


CASE_EVENTS = frozenset(e.value for e in CaseEvent)
# Roles that may see cases at all (of their organisation; see case_viewer).
CASE_ROLES = frozenset({"specialist", "supervisor", "admin", "national_admin"})
SUPERVISING = frozenset({"supervisor", "admin", "national_admin"})


class CaseConflict(Exception):
    """The case's state refuses the change (closed, taken by someone else, ...): answered 409."""


class NoSuchItem(LookupError):
    """No service, referral or follow-up of the case has that id."""


@dataclass(frozen=True)
class CaseViewer:
    """Whose cases a person sees: those of ``organisation`` on ``lines``; ``organisation`` None
    (a national administrator, who sees every organisation's threads there too) means every
    organisation's of those lines."""

    organisation: str | None
    lines: frozenset[str]

    def sees(self, organisation: str | None, line: str | None) -> bool:
        return line in self.lines and (self.organisation is None or organisation == self.organisation)

    def sees_case(self, case: Mapping[str, Any]) -> bool:
        return self.sees(case.get("organisation"), case.get("line"))

    def filter(self) -> Doc:
        query: Doc = {"line": {"$in": sorted(self.lines)}}
        if self.organisation is not None:
            query = {"organisation": self.organisation, **query}
        return query


def case_viewer(role: str, organisation: str | None, lines: Iterable[str]) -> CaseViewer | None:
    """The cases a person of ``role`` in ``organisation`` working on ``lines`` may see, or None
    for none: consultants see no case (they open one and hand it over), a specialist those of
    their organisation, a supervisor or admin those of their organisation, a national
    administrator those of every organisation."""
    if role not in CASE_ROLES or (organisation is None and role != "national_admin"):
        return None
    return CaseViewer(organisation, frozenset(lines))


def case_reference(organisation: str, number: int) -> str:
    """How people name a case: ``LASTRADA-17``."""
    return f"{organisation.upper()}-{number}"


# --- documents -------------------------------------------------------------------------------


def new_case(
    *,
    number: int,
    organisation: str,
    line: str,
    kind: str,
    intake: Mapping[str, Any],
    opened_by: str,
    at: datetime,
    thread_id: str | None,
    consultation_id: str | None,
    client_id: str | None,
    referral: Doc,
) -> Doc:
    """A new case, referred (``referral``, from :func:`new_referral`) and not taken."""
    return {
        "_id": new_id(),
        "number": number,
        "organisation": organisation,
        "line": line,
        "kind": kind,
        "status": CaseStatus.OPEN.value,
        "close_reason": None,
        "opened_at": at,
        "opened_by": opened_by,
        "consultation_id": consultation_id,
        "thread_id": thread_id,
        "client_id": client_id,
        # One case of a kind per consultation: a retried open finds the first.
        "open_key": f"{consultation_id}:{kind}" if consultation_id else new_id(),
        "intake": dict(intake),
        "referral": referral,
        "assignee": None,
        "services": [],
        "external_referrals": [],
        "followups": [],
        "notes": [],
        "next_followup_at": None,
        "followup_alert_at": None,
        "updated_at": at,
        "closed_at": None,
        "v": 1,
    }


def new_referral(role: str, due_at: datetime, by: str, at: datetime) -> Doc:
    return {
        "role": role,
        "due_at": due_at,
        "referred_at": at,
        "referred_by": by,
        "taken_by": None,
        "taken_at": None,
        "alerted_at": None,
    }


def new_service(kind: str, on: str, by: str, at: datetime, amount: float | None, note: str | None) -> Doc:
    return {"id": new_id()[:12], "kind": kind, "date": on, "by": by, "at": at, "amount": amount, "note": note}


def new_external_referral(to: str, at: datetime, by: str, result: str | None, now: datetime) -> Doc:
    return {
        "id": new_id()[:12],
        "to": to,
        "at": at,
        "by": by,
        "result": result,
        "result_at": now if result else None,
    }


def new_followup(due: datetime, note: str | None, by: str, at: datetime) -> Doc:
    return {
        "id": new_id()[:12],
        "due": due,
        "note": note,
        "by": by,
        "at": at,
        "done_at": None,
        "done_by": None,
        "alerted_at": None,
    }


def new_note(text: str, by: str, at: datetime) -> Doc:
    return {"id": new_id()[:12], "at": at, "by": by, "text": text}


# --- changes: pure decisions, each returning the fields to set -------------------------------


def _open(case: Mapping[str, Any]) -> None:
    if case["status"] == CaseStatus.CLOSED:
        raise CaseConflict("the case is closed")


def followup_times(followups: list[Doc]) -> Doc:
    """The case's ``next_followup_at`` (the earliest follow-up not done) and
    ``followup_alert_at`` (the earliest not done nor yet announced as due)."""
    pending = [f["due"] for f in followups if f.get("done_at") is None]
    unannounced = [f["due"] for f in followups if f.get("done_at") is None and f.get("alerted_at") is None]
    return {
        "next_followup_at": min(pending) if pending else None,
        "followup_alert_at": min(unannounced) if unannounced else None,
    }


def refer(case: Mapping[str, Any], role: str, due_at: datetime, by: str, now: datetime) -> Doc:
    """Hand the case to ``role``: nobody holds it until someone of that role takes it."""
    _open(case)
    return {
        "referral": new_referral(role, due_at, by, now),
        "assignee": None,
        "status": CaseStatus.OPEN.value,
    }


def take(case: Mapping[str, Any], login: str, roles: Iterable[str], supervising: bool, now: datetime) -> Doc:
    """``login`` takes the case's referral: someone of its role, or a supervisor. Taking a
    case one already holds changes nothing (a retry)."""
    _open(case)
    referral = case.get("referral")
    if not referral:
        raise CaseConflict("the case is not referred to anyone")
    if referral.get("taken_by") is not None:
        if referral["taken_by"] == login:
            return {}
        raise CaseConflict("someone else has taken this referral")
    if not supervising and referral["role"] not in set(roles):
        raise CaseConflict(f"the case is referred to {referral['role']}, a role you do not fill")
    return {
        "referral": {**referral, "taken_by": login, "taken_at": now},
        "assignee": login,
        "status": CaseStatus.ACTIVE.value,
    }


def append(case: Mapping[str, Any], field: str, item: Doc) -> Doc:
    """Add ``item`` to the case's list ``field`` (services, external_referrals, followups,
    notes)."""
    _open(case)
    items = [*case.get(field, []), item]
    changed: Doc = {field: items}
    if field == "followups":
        changed.update(followup_times(items))
    return changed


def _item(case: Mapping[str, Any], field: str, item_id: str) -> tuple[list[Doc], int]:
    items = [dict(i) for i in case.get(field, [])]
    for n, item in enumerate(items):
        if item.get("id") == item_id:
            return items, n
    raise NoSuchItem(item_id)


def record_result(case: Mapping[str, Any], referral_id: str, result: str, now: datetime) -> Doc:
    """What came of an external referral. Raises NoSuchItem for an unknown referral."""
    _open(case)
    items, n = _item(case, "external_referrals", referral_id)
    items[n].update(result=result, result_at=now)
    return {"external_referrals": items}


def followup_done(case: Mapping[str, Any], followup_id: str, login: str, now: datetime) -> Doc:
    """Mark a follow-up done (done again: nothing changes). Raises NoSuchItem for an unknown
    follow-up."""
    _open(case)
    items, n = _item(case, "followups", followup_id)
    if items[n].get("done_at") is not None:
        return {}
    items[n].update(done_at=now, done_by=login)
    return {"followups": items, **followup_times(items)}


# Where a case may go from each status by POST /api/cases/{id}/status (taking and referring
# have their own routes).
STATUS_MOVES: dict[str, set[str]] = {
    CaseStatus.OPEN: {CaseStatus.CLOSED},
    CaseStatus.ACTIVE: {CaseStatus.MONITORING, CaseStatus.CLOSED},
    CaseStatus.MONITORING: {CaseStatus.ACTIVE, CaseStatus.CLOSED},
    CaseStatus.CLOSED: set(),
}


def set_status(case: Mapping[str, Any], status: str, reason: str | None, now: datetime) -> Doc:
    """Move the case to ``status`` (``reason``: a configured close reason, for closed only)."""
    _open(case)
    if status == case["status"]:
        return {}
    if status not in STATUS_MOVES[case["status"]]:
        raise CaseConflict(f"a case cannot go from {case['status']} to {status}")
    changed: Doc = {"status": status}
    if status == CaseStatus.CLOSED:
        changed.update(close_reason=reason, closed_at=now, followup_alert_at=None)
    return changed


def followups_now_due(case: Mapping[str, Any], now: datetime) -> tuple[Doc, list[str]]:
    """The follow-ups of ``case`` due by ``now`` and not yet announced: (fields that mark them
    announced, their ids)."""
    items = [dict(f) for f in case.get("followups", [])]
    due = [f for f in items if f.get("done_at") is None and f.get("alerted_at") is None and f["due"] <= now]
    if case["status"] == CaseStatus.CLOSED or not due:
        return {}, []
    for f in due:
        f["alerted_at"] = now
    return {"followups": items, **followup_times(items)}, [f["id"] for f in due]


def late_referral(case: Mapping[str, Any], now: datetime) -> bool:
    """An open case whose referral nobody took by its time."""
    referral = case.get("referral") or {}
    return (
        case["status"] == CaseStatus.OPEN
        and referral.get("taken_by") is None
        and referral.get("due_at") is not None
        and referral["due_at"] <= now
    )


def due_followups(case: Mapping[str, Any], now: datetime) -> list[Doc]:
    """The follow-ups of a case not closed that are due by ``now`` and not done."""
    if case["status"] == CaseStatus.CLOSED:
        return []
    return [f for f in case.get("followups", []) if f.get("done_at") is None and f["due"] <= now]


def overdue(case: Mapping[str, Any], now: datetime) -> bool:
    """An untaken referral past its time, or a follow-up that is due."""
    return late_referral(case, now) or bool(due_followups(case, now))


def work_filter(viewer: CaseViewer, login: str, roles: Iterable[str], supervising: bool) -> Doc:
    """The cases a person works on: a supervisor's, all they see; a specialist's, those they
    hold and those referred to a role they fill and not taken yet."""
    query = viewer.filter()
    if not supervising:
        query["$or"] = [
            {"assignee": login},
            {"status": CaseStatus.OPEN.value, "referral.role": {"$in": sorted(roles)}},
        ]
    return query


def work_order(case: Mapping[str, Any], now: datetime) -> tuple[bool, datetime, int]:
    """Sort key of "my cases": overdue ones first, then by the nearest deadline (the referral's
    time while untaken, the next follow-up), then by number."""
    referral = case.get("referral") or {}
    deadlines = [case.get("next_followup_at")]
    if case["status"] == CaseStatus.OPEN and referral.get("taken_by") is None:
        deadlines.append(referral.get("due_at"))
    known = [d for d in deadlines if d is not None]
    return (
        not overdue(case, now),
        min(known) if known else datetime.max.replace(tzinfo=now.tzinfo),
        case["number"],
    )


# --- the repository --------------------------------------------------------------------------


class CaseRepository:
    """Cases, their numbers and their event log: the only door to those collections."""

    RETRIES = 8  # versioned writes lost to a concurrent change before giving up (CaseConflict)

    def __init__(
        self,
        db: AsyncDatabase[Doc],
        vault: Vault | None = None,
        text_fields: Callable[[str], list[str]] = lambda kind: [],
    ) -> None:
        """``vault`` seals a case's free text under the case's own data key
        (conversations/vault.py): the intake's text answers (``text_fields(kind)``), notes, the
        notes of services and follow-ups, the results of external referrals. Without one (a
        tool that only reads categories or only deletes text) nothing new is sealed and what
        is sealed stays so."""
        self.vault = vault
        self.text_fields = text_fields
        self.cases: AsyncCollection[Doc] = db["cases"]
        self.counters: AsyncCollection[Doc] = db["case_counters"]
        self.events: AsyncCollection[Doc] = db["case_events"]

    # --- sealing ------------------------------------------------------------------------------

    async def _seal(self, kind: str, key: Binary | None, fields: Doc) -> Doc:
        """``fields`` (a case, or the fields of a change) with each free text sealed."""
        if self.vault is None or key is None:
            return fields
        vault = self.vault

        async def seal(value: Any) -> Any:
            return await vault.seal(key, {"v": value}) if isinstance(value, str) else value

        out = dict(fields)
        if isinstance(out.get("intake"), dict):
            texts = set(self.text_fields(kind))
            out["intake"] = {k: (await seal(v) if k in texts else v) for k, v in out["intake"].items()}
        for array, field in _CASE_TEXT:
            if isinstance(out.get(array), list):
                out[array] = [
                    {**item, field: await seal(item.get(field))} if isinstance(item, dict) else item
                    for item in out[array]
                ]
        return out

    async def _open(self, case: Doc | None) -> Doc | None:
        """A stored case with its free text as written (a sealed text whose key was erased
        reads as None); without a vault, as stored."""
        if case is None or self.vault is None:
            return case
        vault = self.vault

        async def open_(value: Any) -> Any:
            if isinstance(value, Binary) and value.subtype == ENCRYPTED_SUBTYPE:
                opened = await vault.open(value)
                return opened.get("v") if opened is not None else None
            if isinstance(value, dict):
                return {k: await open_(v) for k, v in value.items()}
            if isinstance(value, list):
                return [await open_(v) for v in value]
            return value

        return cast(Doc, await open_(case))

    async def _key(self, case: Doc) -> Binary | None:
        """The case's data key, made now for a case stored before cases were sealed."""
        if self.vault is None:
            return None
        if isinstance(case.get("data_key"), Binary):
            return cast(Binary, case["data_key"])
        key = await self.vault.new_key()
        done = await self.cases.update_one(
            {"_id": case["_id"], "data_key": {"$exists": False}}, {"$set": {"data_key": key}}
        )
        if done.modified_count:
            return key
        await self.vault.erase([key])
        current = await self.cases.find_one({"_id": case["_id"]}, {"data_key": 1})
        found = (current or {}).get("data_key")
        return found if isinstance(found, Binary) else None

    async def erase_text(self, case_ids: list[str]) -> int:
        """Delete these cases' data keys: their sealed text is unreadable everywhere, backups
        included. Returns how many keys were deleted."""
        if self.vault is None:
            raise RuntimeError("erasing text needs the vault")
        keys = []
        for case_id in case_ids:
            case = await self.cases.find_one_and_update(
                {"_id": case_id, "data_key": {"$exists": True}}, {"$unset": {"data_key": ""}}
            )
            if case is not None:
                keys.append(case["data_key"])
        return await self.vault.erase(keys)

    async def ensure_indexes(self) -> None:
        c = self.cases
        await c.create_index([("organisation", ASCENDING), ("number", ASCENDING)], unique=True, name="number")
        await c.create_index([("open_key", ASCENDING)], unique=True, name="open_key")
        # An organisation's open cases, or its closed ones latest first; the same for a
        # supervisor of whole lines.
        await c.create_index(
            [("organisation", ASCENDING), ("status", ASCENDING), ("closed_at", DESCENDING)], name="org_status"
        )
        await c.create_index(
            [("line", ASCENDING), ("status", ASCENDING), ("closed_at", DESCENDING)], name="line_status"
        )
        # The store's check for referrals nobody took in time, and for follow-ups come due.
        await c.create_index([("status", ASCENDING), ("referral.due_at", ASCENDING)], name="referral_due")
        await c.create_index([("followup_alert_at", ASCENDING)], name="followup_alert")
        # Retention: cases closed before a date.
        await c.create_index([("status", ASCENDING), ("closed_at", ASCENDING)], name="closed")
        # A person's cases, and a thread's.
        await c.create_index([("client_id", ASCENDING), ("opened_at", DESCENDING)], name="client")
        await c.create_index([("thread_id", ASCENDING)], name="thread")
        await self.events.create_index([("case_id", ASCENDING), ("at", ASCENDING)], name="case_events")

    async def next_number(self, organisation: str) -> int:
        """The next number of ``organisation``'s cases (1, 2, ...): atomic per organisation."""
        doc = await self.counters.find_one_and_update(
            {"_id": organisation}, {"$inc": {"seq": 1}}, upsert=True, return_document=ReturnDocument.AFTER
        )
        assert doc is not None  # upserted
        return int(doc["seq"])

    async def by_open_key(self, key: str) -> Doc | None:
        return await self._open(await self.cases.find_one({"open_key": key}))

    async def insert(self, doc: Doc) -> tuple[Doc, bool]:
        """Store a new case; (case, created). A case of the same kind opened from the same
        consultation meanwhile is returned instead (its number is the one that counts)."""
        key = await self.vault.new_key() if self.vault is not None else None
        stored = await self._seal(doc["kind"], key, {**doc, **({"data_key": key} if key else {})})
        try:
            await self.cases.insert_one(stored)
        except DuplicateKeyError:
            if self.vault is not None and key is not None:
                await self.vault.erase([key])
            existing = await self.by_open_key(doc["open_key"])
            if existing is None:
                raise
            return existing, False
        return doc, True

    async def case(self, case_id: str) -> Doc | None:
        return await self._open(await self.cases.find_one({"_id": case_id}))

    async def change(self, case_id: str, decide: Callable[[Doc], Doc]) -> tuple[Doc, bool] | None:
        """Apply ``decide(case)`` (the fields to set; {} for nothing to do) to the case as it is
        now: (case after, changed), or None when there is no such case. ``decide`` raises
        CaseConflict or NoSuchItem to refuse; a write that lost a race is decided again."""
        for _ in range(self.RETRIES):
            case = await self.case(case_id)
            if case is None:
                return None
            fields = decide(case)
            if not fields:
                return case, False
            sealed = await self._seal(case["kind"], await self._key(case), fields)
            after = await self.cases.find_one_and_update(
                {"_id": case_id, "v": case["v"]},
                {"$set": {**sealed, "updated_at": utcnow()}, "$inc": {"v": 1}},
                return_document=ReturnDocument.AFTER,
            )
            if after is not None:
                return cast(Doc, await self._open(after)), True
        raise CaseConflict("the case is being changed by others; try again")

    async def listed(self, query: Doc, limit: int) -> list[Doc]:
        """Cases matching ``query`` (a visibility filter with a status condition), without the
        free text a list does not show."""
        cursor = self.cases.find(query, {"intake": 0, "notes": 0}).limit(limit)
        return await self._open_all([c async for c in cursor])

    async def _open_all(self, cases: list[Doc]) -> list[Doc]:
        return [cast(Doc, await self._open(c)) for c in cases]

    async def closed(self, visible: Doc, limit: int) -> list[Doc]:
        """Closed cases matching ``visible``, latest closed first."""
        cursor = (
            self.cases.find({**visible, "status": CaseStatus.CLOSED.value}, {"intake": 0, "notes": 0})
            .sort("closed_at", DESCENDING)
            .limit(limit)
        )
        return await self._open_all([c async for c in cursor])

    async def late_referrals(self, now: datetime, limit: int = 200) -> list[Doc]:
        """Open cases whose referral nobody took by its time and that were not alerted yet."""
        query = {
            "status": CaseStatus.OPEN.value,
            "referral.due_at": {"$lte": now},
            "referral.alerted_at": None,
            "referral.taken_by": None,
        }
        return await self._open_all(
            [c async for c in self.cases.find(query, {"intake": 0, "notes": 0}).limit(limit)]
        )

    async def mark_referral_alerted(self, case: Doc, now: datetime) -> Doc | None:
        """Mark ``case``'s referral as alerted, once: None when it was taken, referred anew or
        alerted meanwhile (another store replica)."""
        referral = case["referral"]
        after = await self.cases.find_one_and_update(
            {
                "_id": case["_id"],
                "status": CaseStatus.OPEN.value,
                "referral.referred_at": referral["referred_at"],
                "referral.alerted_at": None,
            },
            {"$set": {"referral.alerted_at": now}, "$inc": {"v": 1}},
            return_document=ReturnDocument.AFTER,
        )
        return await self._open(after)

    async def followups_coming_due(self, now: datetime, limit: int = 200) -> list[Doc]:
        query = {"followup_alert_at": {"$lte": now}}
        return await self._open_all(
            [c async for c in self.cases.find(query, {"intake": 0, "notes": 0}).limit(limit)]
        )

    async def record_event(self, case: Doc, name: str, by: str | None, **data: Any) -> Doc:
        """Keep the fact ``name`` about ``case``. ``data`` holds ids and kinds, never free text."""
        event = {"_id": new_id(), "case_id": case["_id"], "name": name, "at": utcnow(), "by": by, **data}
        await self.events.insert_one(event)
        return event

    async def history(self, case_id: str) -> list[Doc]:
        return [e async for e in self.events.find({"case_id": case_id}).sort("at", ASCENDING)]

    async def delete_free_text(self, closed_before: datetime, text_fields: Callable[[str], list[str]]) -> int:
        """Delete the free text of cases closed before ``closed_before``: notes, the intake's
        text answers (``text_fields(kind)``), the notes of services and follow-ups and the
        results of external referrals. Categorical answers, dates, kinds and amounts stay. A
        case is marked ``text_deleted_at`` in the same write, so a run that stops half-way is
        finished by the next. Returns how many cases were cleared."""
        query = {
            "status": CaseStatus.CLOSED.value,
            "closed_at": {"$lt": closed_before},
            "text_deleted_at": {"$exists": False},
        }
        cleared = 0
        async for case in self.cases.find(query, {"_id": 1}, batch_size=200):
            cleared += await self.clear_free_text(case["_id"], text_fields)
        return cleared

    async def clear_free_text(self, case_id: str, text_fields: Callable[[str], list[str]]) -> bool:
        """Delete one case's free text (see :meth:`delete_free_text`); True when it changed."""

        def clear(c: Doc) -> Doc:
            drop = set(text_fields(c["kind"]))
            return {
                "intake": {k: v for k, v in (c.get("intake") or {}).items() if k not in drop},
                "notes": [{**n, "text": None} for n in c.get("notes", [])],
                "services": [{**s, "note": None} for s in c.get("services", [])],
                "followups": [{**f, "note": None} for f in c.get("followups", [])],
                "external_referrals": [{**r, "result": None} for r in c.get("external_referrals", [])],
                "text_deleted_at": utcnow(),
            }

        done = await self.change(case_id, clear)
        return done is not None and done[1]

    async def of_client(self, client_id: str) -> list[Doc]:
        """Every case of a client, latest first (the ``client`` index): an erasure or an
        export must reach them all, so there is no page here."""
        cursor = self.cases.find({"client_id": client_id}).sort("opened_at", DESCENDING)
        return await self._open_all([c async for c in cursor])
