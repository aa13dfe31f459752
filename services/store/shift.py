"""A consultant's shift: nothing stays stuck with someone who is not there.

Who is at work, and what happens to what they hold when they go (docs/console.md, "A shift"):

- **Logging in** makes a consultant ``available``; a console whose live events socket opens
  (``GET /api/events``: :class:`services.store.events.ConsoleHub`) brings back one who was made
  away by the rules below, never one who said *away* themselves.
- **Going away**: logging out (with no other live session), a session that expires, or a
  console gone (no live events socket on any replica) for ``STORE_CONSOLE_GONE_MINUTES``
  make the consultant ``away``; saying *away* in the console does too. Their chats (web chat
  and Telegram: a person is waiting live) go back to their queues at once, their e-mails once
  they have been away ``STORE_AWAY_EMAIL_MINUTES``, even those they have already answered.
  *Offline* and a disabled account give everything back at once. One code path,
  :meth:`Shift.leave`, whatever the reason, and each thread given back keeps the reason in its
  history (``ThreadReleased`` with ``reason``: ``logout``, ``expired``, ``gone``, ``away``,
  ``offline``, ``disabled``) and is announced, so colleagues see it waiting at once.
- **Presence** is shared by the replicas through the database: each writes
  ``console_seen_at`` of the consultants whose sockets it holds, when a socket opens or closes
  and every few seconds while it lives; the rules above are applied by one replica at a time,
  the one holding the ``shift`` lease (shared/lease.py).

Hand-offs and the urgent mark (issue 21, 4a):

- **Urgent by hand**: anyone who sees a thread may mark it urgent (it goes first, as a crisis
  does, and a long wait escalates it) or take the mark away again (its priority goes back).
- **Hand to a colleague**: the consultant holding a thread offers it to a named colleague of
  their organisation who works on its line. The colleague's console shows the offer live;
  they accept (it is theirs, within their capacity) or decline. An offer nobody answers in
  ``STORE_HANDOFF_MINUTES`` lapses. Declined or lapsed, the thread stays with the one who
  offered it, or goes back to its queue when they are no longer available. An offer is a
  document of ``handoffs`` keyed by the thread: inserted once (one offer at a time), and
  answered by whoever deletes it (``delete_one``'s count is exact on every server we run on,
  reviews/ferretdb.md section 2), so an accept and a lapse never both happen.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, PyMongoError

from conversations import announce
from conversations.model import URGENT, EventName
from conversations.outbound import periodically
from conversations.repository import Doc, Repository
from services.store.auth import User
from shared.broker import Broker
from shared.envelope import ConsoleEvent, utcnow
from shared.http import problem
from shared.lease import Lease
from shared.logs import get_logger
from shared.supervise import Heartbeat

if TYPE_CHECKING:
    from services.store.api import ConsultantApi

log = get_logger(__name__)

LEASE_KEY = "shift"
# Channels where a person waits live: given back at once when their consultant goes away.
LIVE_CHANNELS = ("chat", "telegram")
# Why a consultant was made away without saying so: a console that comes back ends these.
AUTOMATIC = ("logout", "expired", "gone")
# Reasons that give back everything at once, e-mails too.
EVERYTHING = ("offline", "disabled")

MARKED_URGENT = "ThreadMarkedUrgent"
HANDOFF_OFFERED = "HandoffOffered"
HANDOFF_ACCEPTED = "HandoffAccepted"
HANDOFF_DECLINED = "HandoffDeclined"
HANDOFF_LAPSED = "HandoffLapsed"
# Released threads the operator command (no broker) could not announce: the store's next
# pass announces them (a few documents, deleted once announced).
UNANNOUNCED = "shift_unannounced"


class Shift:
    def __init__(
        self,
        repo: Repository,
        broker: Broker | None,
        *,
        gone_minutes: float = 5,
        email_minutes: float = 30,
        handoff_minutes: float = 10,
        lease: Lease | None = None,
        holder: str = "",
    ) -> None:
        self.repo = repo
        self.broker = broker
        self.gone = timedelta(minutes=gone_minutes)
        self.email_after = timedelta(minutes=email_minutes)
        self.handoff_for = timedelta(minutes=handoff_minutes)
        self.lease = lease
        self.holder = holder
        self.handoffs: AsyncCollection[Doc] = repo.db["handoffs"]
        self.unannounced: AsyncCollection[Doc] = repo.db[UNANNOUNCED]
        self.consultant_events: AsyncCollection[Doc] = repo.db["consultant_events"]

    async def ensure_indexes(self) -> None:
        await self.handoffs.create_index([("to", ASCENDING)], name="to")
        await self.handoffs.create_index([("until", ASCENDING)], name="until")
        # A thread's possible colleagues (ShiftRoutes.colleagues).
        await self.repo.consultants.create_index([("organisation", ASCENDING)], name="organisation")
        await self.consultant_events.create_index([("login", ASCENDING), ("at", ASCENDING)], name="login")

    # --- announcing -----------------------------------------------------------------------

    async def _record(self, name: str, thread: Doc, by: str | None, **data: Any) -> None:
        """Keep the fact in the thread's history and tell live consoles (or, without a broker,
        leave it for the store's next pass to announce)."""
        event = await announce.record(self.repo, name, thread, by, **data)
        await self._publish(event)

    async def _publish(self, event: ConsoleEvent) -> None:
        if self.broker is None:
            await self.unannounced.insert_one({"event": event.model_dump(mode="json"), "at": utcnow()})
            return
        await announce.publish_or_log(self.broker, event)

    async def _note(self, login: str, what: str, why: str, **data: Any) -> None:
        """A consultant's own record: when they went away and came back, and why."""
        doc = {"login": login, "what": what, "why": why, "at": utcnow(), **data}
        await self.consultant_events.insert_one(doc)
        log.info("consultant_" + what, consultant=login, why=why, **data)

    # --- coming and going -----------------------------------------------------------------

    async def logged_in(self, login: str) -> None:
        """A log-in starts (or goes on with) a shift: available, seen now."""
        now = utcnow()
        before = await self.repo.consultants.find_one_and_update(
            {"_id": login},
            {
                "$set": {"status": "available", "console_seen_at": now},
                "$unset": {"away_since": "", "away_reason": ""},
            },
        )
        if before is not None and before.get("status") != "available":
            await self._note(login, "back", "login")

    async def seen(self, login: str, back: bool = True) -> None:
        """A console of ``login`` is open now (or just closed: ``back`` False); one made away
        by the rules comes back when it opens."""
        now = utcnow()
        await self.repo.consultants.update_one({"_id": login}, {"$set": {"console_seen_at": now}})
        if not back:
            return
        came = await self.repo.consultants.update_one(
            {"_id": login, "status": "away", "away_reason": {"$in": list(AUTOMATIC)}},
            {"$set": {"status": "available"}, "$unset": {"away_since": "", "away_reason": ""}},
        )
        if came.modified_count:
            await self._note(login, "back", "console")

    async def seen_all(self, logins: Iterable[str]) -> None:
        """The consoles of ``logins`` are still open (one replica's periodic word)."""
        names = sorted(set(logins))
        if names:
            await self.repo.consultants.update_many(
                {"_id": {"$in": names}}, {"$set": {"console_seen_at": utcnow()}}
            )

    async def available(self, login: str) -> None:
        """The consultant says they are available again."""
        await self.repo.consultants.update_one(
            {"_id": login},
            {"$set": {"status": "available"}, "$unset": {"away_since": "", "away_reason": ""}},
        )

    async def leave(
        self, login: str, why: str, by: str | None = None, expect: Doc | None = None
    ) -> list[Doc] | None:
        """``login`` is no longer at work, for ``why``: away (or offline, for ``offline`` and
        ``disabled``), and their chats (everything, for those two) go back to their queues.
        ``expect``: fields the account must still have (a rule that read it a moment ago);
        None is returned, and nothing done, when it changed meanwhile. ``by``: who did it
        (an admin disabling the account), else the consultant themselves or nobody."""
        now = utcnow()
        status = "offline" if why in EVERYTHING else "away"
        query: Doc = {"_id": login, **(expect or {})}
        if expect is None and why in AUTOMATIC:
            query["status"] = {"$ne": "offline"}  # offline already gave everything back
        # The first time away counts: saying "away" and then logging out does not restart it.
        res = await self.repo.consultants.update_one(
            query, {"$set": {"status": status, "away_reason": why}, "$min": {"away_since": now}}
        )
        if expect is not None and res.matched_count == 0:
            return None
        if res.matched_count:
            await self._note(login, "away", why)
        return await self.give_back(login, why, by, None if why in EVERYTHING else LIVE_CHANNELS)

    async def give_back(
        self, login: str, why: str, by: str | None, channels: Iterable[str] | None, **data: Any
    ) -> list[Doc]:
        """Every thread ``login`` holds (of ``channels``; None: all) goes back to its queue,
        keeping its place, with ``why`` in its history; an offer of it lapses."""
        query: Doc = {"status": "active", "assignee": login}
        if channels is not None:
            query["channel"] = {"$in": list(channels)}
        released: list[Doc] = []
        async for t in self.repo.threads.find(query, {"_id": 1}):
            doc = await self.repo.release(t["_id"], login)
            if doc is None:
                continue
            await self.handoffs.delete_one({"_id": doc["_id"]})
            released.append(doc)
            log.info("thread_given_back", thread_id=doc["_id"], consultant=login, reason=why)
            await self._record(EventName.THREAD_RELEASED, doc, by, reason=why, holder=login, **data)
        return released

    # --- the rules, applied by one replica at a time --------------------------------------

    async def sweep(self, now: datetime | None = None) -> None:
        if self.lease is not None and not await self.lease.take(LEASE_KEY, self.holder):
            return  # another replica passes
        now = now or utcnow()
        await self._announce_left_over()
        # The staff accounts, tens of documents: read whole.
        cursor = self.repo.consultants.find(
            {}, {"status": 1, "console_seen_at": 1, "away_since": 1, "away_reason": 1, "disabled": 1}
        )
        async for c in cursor:
            status = c.get("status")
            if c.get("disabled"):
                # An account disabled by a route or command that died half-way holds nothing.
                await self.give_back(c["_id"], "disabled", None, None)
            elif status == "available":
                await self._check_present(c, now)
            elif status in ("away", "offline") and c.get("away_since") is not None:
                if c["away_since"] <= now - self.email_after:
                    why = c.get("away_reason") or status
                    await self.give_back(c["_id"], why, None, None, away_since=c["away_since"].isoformat())
        await self._lapse_offers(now)

    async def _check_present(self, c: Doc, now: datetime) -> None:
        login = c["_id"]
        live = await self.repo.sessions.count_documents({"login": login, "expires_at": {"$gt": now}}, limit=1)
        if not live:
            await self.leave(login, "expired", expect={"status": "available"})
            return
        seen = c.get("console_seen_at")
        if seen is None:  # logged in before presence was kept: the clock starts now
            await self.repo.consultants.update_one(
                {"_id": login, "console_seen_at": None}, {"$set": {"console_seen_at": now}}
            )
        elif seen <= now - self.gone:
            await self.leave(login, "gone", expect={"status": "available", "console_seen_at": seen})

    async def _announce_left_over(self) -> None:
        if self.broker is None:
            return
        async for doc in self.unannounced.find({}).limit(500):
            await announce.publish(self.broker, ConsoleEvent.model_validate(doc["event"]))
            await self.unannounced.delete_one({"_id": doc["_id"]})

    async def run(self, every: float, heartbeat: Heartbeat) -> None:
        # A period: the clock offers no event to wait for.
        await periodically(self.sweep, every, heartbeat, "shift_pass_failed")

    async def run_presence(self, logins: Any, every: float, heartbeat: Heartbeat) -> None:
        """Every ``every`` seconds, say that the consoles this replica holds are still open."""
        await periodically(lambda: self.seen_all(logins()), every, heartbeat, "presence_pass_failed")

    # --- hand-offs --------------------------------------------------------------------------

    async def offer(self, thread: Doc, by: str, to: str) -> Doc | None:
        """Offer ``thread``, which ``by`` holds, to ``to``; None when it is already offered or
        no longer theirs."""
        now = utcnow()
        offer = {"_id": thread["_id"], "from": by, "to": to, "at": now, "until": now + self.handoff_for}
        try:
            await self.handoffs.insert_one(offer)
        except DuplicateKeyError:
            return None
        doc = await self.repo.threads.find_one_and_update(
            {"_id": thread["_id"], "status": "active", "assignee": by},
            {"$set": {"handoff": {k: offer[k] for k in ("from", "to", "at", "until")}}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            await self.handoffs.delete_one({"_id": thread["_id"]})
            return None
        await self._record(HANDOFF_OFFERED, doc, by, to=to, until=offer["until"].isoformat())
        return doc

    async def offers_to(self, login: str) -> list[Doc]:
        return [o async for o in self.handoffs.find({"to": login})]

    async def accept(self, thread_id: str, login: str) -> Doc | None:
        """``login`` takes the thread offered to them; None when no such offer stands."""
        offer = await self.handoffs.find_one({"_id": thread_id, "to": login})
        if offer is None:
            return None
        answered = await self.handoffs.delete_one({"_id": thread_id, "to": login})
        if answered.deleted_count != 1:
            return None  # lapsed or withdrawn meanwhile
        now = utcnow()
        doc = await self.repo.threads.find_one_and_update(
            {"_id": thread_id, "status": "active", "assignee": offer["from"]},
            {
                "$set": {"assignee": login, "claimed_at": now, "updated_at": now},
                "$unset": {"handoff": ""},
            },
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            return None
        await self._record(HANDOFF_ACCEPTED, doc, login, **{"from": offer["from"]}, assignee=login)
        return doc

    async def decline(self, thread_id: str, login: str) -> Doc | None:
        """The colleague declines (or the one who offered withdraws) the offer."""
        offer = await self.handoffs.find_one({"_id": thread_id, "$or": [{"to": login}, {"from": login}]})
        if offer is None:
            return None
        if (await self.handoffs.delete_one({"_id": thread_id})).deleted_count != 1:
            return None
        return await self._returned(offer, HANDOFF_DECLINED, login)

    async def _lapse_offers(self, now: datetime) -> None:
        async for offer in self.handoffs.find({"until": {"$lte": now}}):
            lapsed = await self.handoffs.delete_one({"_id": offer["_id"], "until": {"$lte": now}})
            if lapsed.deleted_count == 1:
                await self._returned(offer, HANDOFF_LAPSED, None)

    async def _returned(self, offer: Doc, name: str, by: str | None) -> Doc | None:
        """An offer that ended unaccepted: the thread stays with the one who offered it while
        they are available, else it goes back to its queue."""
        doc = await self.repo.threads.find_one_and_update(
            {"_id": offer["_id"], "status": "active", "assignee": offer["from"]},
            {"$unset": {"handoff": ""}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            return None  # no longer theirs: released, transferred or closed meanwhile
        holder = await self.repo.consultant(offer["from"]) or {}
        kept = holder.get("status") == "available" and not holder.get("disabled")
        await self._record(name, doc, by, **{"from": offer["from"]}, to=offer["to"], kept=kept)
        if kept:
            return doc
        released = await self.repo.release(doc["_id"], offer["from"])
        if released is None:
            return doc
        await self._record(
            EventName.THREAD_RELEASED, released, None, reason="handoff not accepted", holder=offer["from"]
        )
        return released

    # --- the urgent mark ----------------------------------------------------------------------

    async def mark_urgent(self, thread: Doc, by: str, urgent: bool) -> Doc | None:
        """Mark ``thread`` urgent by hand, or take the mark off; the thread as it is now (None:
        closed meanwhile)."""
        now = utcnow()
        if urgent:
            was = int(thread.get("priority", 0))
            doc = await self.repo.threads.find_one_and_update(
                {"_id": thread["_id"], "status": {"$ne": "closed"}, "urgent_mark": None},
                {
                    "$set": {"urgent_mark": {"by": by, "at": now, "was": was}, "updated_at": now},
                    "$max": {"priority": URGENT},
                },
                return_document=ReturnDocument.AFTER,
            )
        else:
            mark = thread.get("urgent_mark")
            if not isinstance(mark, dict):
                return thread
            doc = await self.repo.threads.find_one_and_update(
                {"_id": thread["_id"], "status": {"$ne": "closed"}, "urgent_mark.at": mark["at"]},
                {
                    "$set": {"priority": int(mark.get("was", 0)), "updated_at": now},
                    "$unset": {"urgent_mark": ""},
                },
                return_document=ReturnDocument.AFTER,
            )
        if doc is None:
            return await self.repo.thread(thread["_id"])
        await self._record(MARKED_URGENT, doc, by, urgent=urgent)
        return doc


class ShiftRoutes:
    """The routes of the urgent mark and hand-offs (docs/console.md)."""

    def __init__(self, api: ConsultantApi, shift: Shift) -> None:
        self.api = api
        self.shift = shift

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_post("/api/threads/{id}/urgent", self.urgent)
        r.add_get("/api/threads/{id}/colleagues", self.colleagues)
        r.add_post("/api/threads/{id}/handoff", self.handoff)
        r.add_post("/api/threads/{id}/handoff/accept", self.accept)
        r.add_post("/api/threads/{id}/handoff/decline", self.decline)
        r.add_get("/api/handoffs", self.offers)

    async def urgent(self, request: web.Request) -> web.Response:
        user, thread = await self.api.thread_of(request)
        urgent = (await self.api.json_body(request)).get("urgent")
        if not isinstance(urgent, bool):
            return problem(422, "urgent must be true or false", invalid=["urgent"])
        if thread["status"] == "closed":
            return problem(409, "A closed thread cannot be marked")
        if (
            not urgent
            and not isinstance(thread.get("urgent_mark"), dict)
            and thread.get("priority", 0) >= URGENT
        ):
            return problem(
                409, "Urgent by its content, not by hand", "only a mark made by hand can be taken off"
            )
        doc = await self.shift.mark_urgent(thread, user.login, urgent)
        if doc is None or doc["status"] == "closed":
            return problem(409, "A closed thread cannot be marked")
        return web.json_response(await self.api.view(doc))

    async def _colleague(self, user: User, thread: Doc, login: str) -> Doc | None:
        """The account ``login`` if it is a colleague ``user`` may hand ``thread`` to: of the
        same organisation, enabled, working on the thread's line and seeing its queue."""
        if user.organisation is None or login == user.login:
            return None
        doc = await self.api.repo.consultant(login)
        if doc is None or doc.get("disabled") or doc.get("organisation") != user.organisation:
            return None
        other = User.from_doc(doc)
        if thread["line"] not in other.lines or thread["queue"] not in self.api.visible_queues(other):
            return None
        return doc

    async def colleagues(self, request: web.Request) -> web.Response:
        """Whom the caller may hand this thread to, with their availability."""
        user, thread = await self.api.thread_of(request)
        out = []
        if user.organisation is not None:
            cursor = self.api.repo.consultants.find(
                {"organisation": user.organisation, "lines": thread["line"], "disabled": {"$ne": True}},
                {"name": 1, "status": 1},
            ).sort("_id", 1)
            async for c in cursor:
                if await self._colleague(user, thread, c["_id"]) is not None:
                    out.append(
                        {
                            "login": c["_id"],
                            "name": c.get("name", c["_id"]),
                            "status": c.get("status", "offline"),
                        }
                    )
        return web.json_response(out)

    async def handoff(self, request: web.Request) -> web.Response:
        user, thread = await self.api.thread_of(request)
        to = (await self.api.json_body(request)).get("to")
        if not isinstance(to, str) or not to or len(to) > 100:
            return problem(422, "to must name a colleague's login", invalid=["to"])
        if thread["status"] != "active" or thread.get("assignee") != user.login:
            return problem(409, "Only the consultant holding the thread can hand it on")
        # One answer for a login that does not exist, of another organisation, without the
        # line or disabled: nobody can learn from it who has an account.
        if await self._colleague(user, thread, to) is None:
            return problem(
                422, "No colleague of yours by that login on this line", "invalid: to", invalid=["to"]
            )
        doc = await self.shift.offer(thread, user.login, to)
        if doc is None:
            return problem(409, "Already offered to someone, or no longer yours")
        return web.json_response(await self.api.view(doc))

    async def accept(self, request: web.Request) -> web.Response:
        user, thread = await self.api.thread_of(request)
        offer = thread.get("handoff") or {}
        if offer.get("to") != user.login:
            return problem(409, "This thread is not offered to you")
        if thread["channel"] in await self.api._full_channels(user):
            return problem(
                409, "At capacity", f"you hold as many {thread['channel']} conversations as you may"
            )
        doc = await self.shift.accept(thread["_id"], user.login)
        if doc is None:
            return problem(409, "The offer has lapsed or was withdrawn")
        return web.json_response(await self.api.view(doc))

    async def decline(self, request: web.Request) -> web.Response:
        user, thread = await self.api.thread_of(request)
        doc = await self.shift.decline(thread["_id"], user.login)
        if doc is None:
            return problem(409, "No offer of this thread to you or from you stands")
        return web.json_response(await self.api.view(doc))

    async def offers(self, request: web.Request) -> web.Response:
        """Threads offered to the caller that still stand."""
        user: User = request["user"]
        out = []
        for offer in await self.shift.offers_to(user.login):
            thread = await self.api.visible_thread(user, offer["_id"])
            if thread is None or thread.get("assignee") != offer["from"] or thread["status"] != "active":
                continue
            out.append(await self.api.view(thread))
        return web.json_response(out)


async def seen_quietly(shift: Shift | None, login: str, back: bool = True) -> None:
    """Presence is a hint: a database that is away must not fail a socket."""
    if shift is None:
        return
    with contextlib.suppress(PyMongoError, asyncio.TimeoutError):
        await shift.seen(login, back)
