"""Finding a record: ``POST /api/search`` (docs/cases.md, "Finding a record").

Criteria, in a JSON body (never in the URL: what people search for is not written into
access logs, proxies or a browser's history, and this module logs only which criteria were
used and how many records came back):

- ``number``: a thread id, a consultation number ``<thread>:<n>``, or a case number
  (``LASTRADA-17``, or ``17`` in one's own organisation); when given, the other criteria
  are not used;
- ``text``: words that must all occur in a thread's messages (whole words, any case);
- ``from``/``to``: local dates, both included (the day a message was stored, the day a
  consultation started, the day a case was opened);
- ``answers``: case-form answers, ``{"gender": ["female"], "topics": ["work_abroad"]}``: a
  consultation matches when, for every field named, it gave one of the codes listed;
- ``line``: one of the person's lines; ``limit``: at most :data:`MAX_LIMIT` records.

Who finds what: a person finds only what they could open. A thread is found when
:meth:`ConsultantApi.visible_thread` would show it (the queues of their lines that list their
organisation, and the rule for shared queues); a supervisor who belongs to an organisation
finds only threads and consultations of that organisation. Cases are found only by the
owning organisation's specialists and supervisors (:func:`conversations.cases.case_viewer`);
to anyone else a case number finds nothing, as a number that does not exist.

Every read is by ``_id`` (conversations/search.py says why): the postings of each term and
month, then each candidate thread or consultation, newest first, until ``limit`` records are
found or :data:`MAX_CHECKED` candidates were checked (``truncated`` then says the criteria
should be narrowed).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from conversations.cases import CaseRepository, CaseViewer, case_reference, case_viewer
from conversations.repository import Doc
from conversations.search import SearchIndex, SearchKey, Terms, months, split_ref, words
from services.store.api import ConsultantApi, thread_view
from services.store.auth import SUPERVISORS, User
from services.store.clients import consultation_view
from services.store.search_index import LEASE_SECONDS, SearchIndexer
from services.store.stats import FIRST_DATE, LAST_DATE
from shared.envelope import utcnow
from shared.http import problem
from shared.lease import Lease
from shared.logs import get_logger
from shared.supervise import Supervisor

log = get_logger(__name__)

MAX_LIMIT = 50
DEFAULT_LIMIT = 20
MAX_WORDS = 10
MAX_CHECKED = 300  # candidates checked one by one at most, newest first
CHECK_AT_ONCE = 20
MAX_CASES_READ = 5000
_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,63}$")
_CASE_NUMBER = re.compile(r"^(?:([A-Za-z][A-Za-z0-9_]{0,39})-)?([0-9]{1,9})$")
_CONSULTATION = re.compile(r"^([0-9a-f]{32}):([0-9]{1,6})$")
_THREAD = re.compile(r"^[0-9a-f]{32}$")
# The organisation a consultation counts for when none could be told (services/store/stats.py).
UNKNOWN = "unknown"


class Invalid(ValueError):
    """A search that cannot be run; the message names the criterion."""


@dataclass(frozen=True)
class Criteria:
    number: str | None = None
    words: frozenset[str] = frozenset()
    first: date | None = None
    last: date | None = None
    answers: Mapping[str, frozenset[str]] = field(default_factory=dict)
    line: str | None = None
    limit: int = DEFAULT_LIMIT

    def names(self) -> list[str]:
        """Which criteria were given (for the log: never their values)."""
        given = {
            "number": self.number is not None,
            "text": bool(self.words),
            "from": self.first is not None,
            "to": self.last is not None,
            "answers": bool(self.answers),
            "line": self.line is not None,
        }
        return [k for k, v in given.items() if v]

    def covers(self, day: date) -> bool:
        return (self.first is None or day >= self.first) and (self.last is None or day <= self.last)


def _day(body: Mapping[str, Any], name: str) -> date | None:
    raw = body.get(name)
    if raw in (None, ""):
        return None
    try:
        day = date.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        day = None
    if day is None or not FIRST_DATE <= day <= LAST_DATE:
        raise Invalid(f"{name}: a date like 2026-01-31")
    return day


def parse_criteria(body: Mapping[str, Any], fields: Iterable[str], lines: Iterable[str]) -> Criteria:
    """Read a search body; ``fields``: the case-form fields that may be asked about; ``lines``:
    the person's lines. Raises :class:`Invalid`."""
    number = body.get("number")
    if number is not None and (not isinstance(number, str) or not 0 < len(number.strip()) <= 100):
        raise Invalid("number: a thread, consultation or case number")
    text = body.get("text")
    if text is not None and (not isinstance(text, str) or len(text) > 500):
        raise Invalid("text: at most 500 characters")
    found = words(text)
    if text and text.strip() and not found:
        raise Invalid("text: only words too short or too common to search for")
    if len(found) > MAX_WORDS:
        raise Invalid(f"text: at most {MAX_WORDS} words")
    first, last = _day(body, "from"), _day(body, "to")
    if first and last and last < first:
        raise Invalid("to: must not be before from")
    raw_answers = body.get("answers") or {}
    if not isinstance(raw_answers, dict):
        raise Invalid("answers: an object of field -> list of codes")
    known = set(fields)
    answers: dict[str, frozenset[str]] = {}
    for name, codes in raw_answers.items():
        if name not in known:
            raise Invalid(f"answers: unknown field {name!r}")
        values = [codes] if isinstance(codes, str) else codes
        if (
            not isinstance(values, list)
            or not 0 < len(values) <= 50
            or not all(isinstance(v, str) and _CODE.match(v) for v in values)
        ):
            raise Invalid(f"answers.{name}: a list of codes")
        answers[name] = frozenset(values)
    line = body.get("line") or None
    if line is not None and line not in set(lines):
        raise Invalid("line: one of your lines")
    limit = body.get("limit", DEFAULT_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise Invalid(f"limit: 1 to {MAX_LIMIT}")
    criteria = Criteria(
        number.strip() if isinstance(number, str) else None,
        frozenset(found),
        first,
        last,
        answers,
        line,
        limit,
    )
    if not criteria.names() or criteria.names() == ["line"]:
        raise Invalid("give a number, words, dates or case-form answers")
    return criteria


def newest_first(days: Mapping[str, date]) -> list[str]:
    return sorted(days, key=lambda target: (days[target], target), reverse=True)


def hits(refs: Iterable[str], month: str, criteria: Criteria) -> dict[str, date]:
    """The targets of the refs of one ``month`` posting on days the criteria cover, with their
    latest such day."""
    year, mon = int(month[:4]), int(month[5:7])
    out: dict[str, date] = {}
    for value in refs:
        d, target = split_ref(value)
        day = date(year, mon, d)
        if criteria.covers(day) and (target not in out or out[target] < day):
            out[target] = day
    return out


def all_of(sets: list[dict[str, date]]) -> dict[str, date]:
    """Targets found under every term, with their latest day under any."""
    if not sets:
        return {}
    common = set(sets[0]).intersection(*sets[1:])
    return {t: max(s[t] for s in sets) for t in common}


async def _one(found: dict[str, date]) -> AsyncIterator[dict[str, date]]:
    yield found


def thread_of(consultation_id: str) -> str:
    return consultation_id.rpartition(":")[0]


class SearchRoutes:
    def __init__(self, api: ConsultantApi) -> None:
        self.api = api
        self.config = api.config
        self.repo = api.repo
        self.index: SearchIndex = api.repo.search
        self.cases = CaseRepository(api.repo.db, api.repo.vault, api.config.cases.free_text_fields)
        self.key = SearchKey(api.s.client_key_secret.get_secret_value().encode())
        self.tz = ZoneInfo(api.s.stats_timezone)
        # The repository's index gets the same terms as the indexer: whatever clears text in
        # this store (retention, an erasure) takes it out of the index (conversations/search.py).
        self.index.use(Terms(self.key, self.tz))
        fields = getattr(self.config.case_form, "fields", None) or {}
        self.fields = list(fields)

    def install(self, app: web.Application, supervisor: Supervisor) -> None:
        """Add the route, and, once the store's resources are up, the supervised indexer."""
        app.router.add_post("/api/search", self.search)

        async def running(app: web.Application) -> Any:
            lease = Lease(self.repo.db["leases"], LEASE_SECONDS)
            indexer = SearchIndexer(self.index, self.key, self.tz, lease, self.api.s.instance_id)
            supervisor.start("search_index", indexer.run, interval=300)
            yield

        app.cleanup_ctx.append(running)

    # --- the route ----------------------------------------------------------------------------

    async def search(self, request: web.Request) -> web.Response:
        user: User = request["user"]
        began = time.monotonic()
        body = await self.api.json_body(request)
        try:
            criteria = parse_criteria(body, self.fields, user.lines)
        except Invalid as exc:
            return problem(422, "Bad search", str(exc))
        finder = _Finder(self, user, criteria)
        result = await finder.run()
        log.info(
            "search",
            consultant=user.login,
            criteria=criteria.names(),
            records=len(result["records"]),
            cases=len(result["cases"]),
            checked=finder.checked,
            ms=round(1000 * (time.monotonic() - began)),
        )
        return web.json_response(result)


class _Finder:
    """One search by one person."""

    def __init__(self, routes: SearchRoutes, user: User, criteria: Criteria) -> None:
        self.r = routes
        self.user = user
        self.c = criteria
        self.viewer: CaseViewer | None = case_viewer(user.role, user.organisation, user.lines)
        self.checked = 0
        self.truncated = False

    # The organisations whose consultations this person finds: their own (and those no
    # organisation could be told for, which their queues may hold); every one for a person of
    # no organisation.
    def organisations(self) -> list[str]:
        if self.user.organisation is None:
            return [*self.r.config.organisations, UNKNOWN]
        return [self.user.organisation, UNKNOWN]

    async def run(self) -> Doc:
        if self.c.number is not None:
            records, cases = await self._by_number(self.c.number)
        else:
            records = await self._by_criteria()
            cases = await self._cases_of(records) if self.viewer is not None else []
        return {"records": records, "cases": cases, "truncated": self.truncated}

    # --- visibility ---------------------------------------------------------------------------

    async def _thread(self, thread_id: str, text_day: date | None = None) -> Doc | None:
        """The thread if this person could open it and it meets the line criterion; a thread
        found by its words is not found once retention deleted its text that day or before."""
        thread = await self.r.api.visible_thread(self.user, thread_id)
        if thread is None:
            return None
        org = self.user.organisation
        if self.user.role in SUPERVISORS and org is not None:
            # A supervisor finds their organisation's work: a thread counted for it, or one not
            # yet counted for anyone in a queue it serves (a shared queue holds the others').
            counted = (thread.get("facts") or {}).get("organisation")
            if counted not in (org, None, UNKNOWN) or org not in (thread.get("organisations") or [counted]):
                return None
        if self.c.line is not None and thread.get("line") != self.c.line:
            return None
        # How far retention cleared the thread's text (a thread cleared only up to a date keeps
        # the newer text, and loses its full mark when text arrives after a pass).
        deleted = thread.get("text_cleared_to") or thread.get("text_deleted_at")
        if text_day is not None and deleted is not None and text_day <= deleted.astimezone(self.r.tz).date():
            return None
        return thread

    async def _consultation(
        self, consultation_id: str, text_day: date | None = None
    ) -> tuple[Doc, Doc] | None:
        consultation = await self.r.repo.consultations.find_one({"_id": consultation_id})
        if consultation is None:
            return None
        facts = consultation.get("facts") or {}
        if facts.get("organisation", UNKNOWN) not in self.organisations():
            return None
        thread = await self._thread(consultation["thread_id"], text_day)
        return (thread, consultation) if thread is not None else None

    # --- by number ------------------------------------------------------------------------------

    async def _by_number(self, number: str) -> tuple[list[Doc], list[Doc]]:
        if _CONSULTATION.match(number):
            found = await self._consultation(number)
            return ([record(found[0], found[1])] if found else []), []
        if _THREAD.match(number):
            thread = await self._thread(number)
            if thread is None:
                return [], []
            cases = await self._cases_of([record(thread, None)]) if self.viewer else []
            return [record(thread, None)], cases
        if (m := _CASE_NUMBER.match(number)) is not None and self.viewer is not None:
            prefix, n = m.group(1), int(m.group(2))
            orgs = [o for o in self.r.config.organisations if prefix is None or o == prefix.lower()]
            cases = []
            for org in orgs:
                if self.viewer.organisation is not None and org != self.viewer.organisation:
                    continue
                query = {**self.viewer.filter(), "organisation": org, "number": n}
                cases += [
                    case_item(c) for c in await self.r.cases.listed(query, 1) if self.viewer.sees_case(c)
                ]
            return [], cases
        return [], []

    # --- by words, dates and answers --------------------------------------------------------------

    async def _months(self) -> list[str]:
        stored = await self.r.index.months()
        if not stored:
            return []
        first = self.c.first or date.fromisoformat(stored[0] + "-01")
        last = self.c.last or utcnow().astimezone(self.r.tz).date()
        wanted = set(months(first, last))
        return [m for m in stored if m in wanted]

    async def _in_month(self, tokens: list[str], month: str) -> dict[str, date]:
        """Targets of any of ``tokens`` in ``month``, on days the criteria cover, with their
        latest such day."""
        refs = await self.r.index.refs([f"{token}:{month}" for token in tokens])
        return hits(refs, month, self.c)

    async def _all_months(self, tokens: list[str], in_months: list[str]) -> dict[str, date]:
        out: dict[str, date] = {}
        for month in in_months:
            for target, day in (await self._in_month(tokens, month)).items():
                if target not in out or out[target] < day:
                    out[target] = day
        return out

    async def _by_criteria(self) -> list[Doc]:
        """Words give threads, answers and dates consultations. Where one month's postings
        decide alone (one word; answers; dates), months are read newest first and reading stops
        once enough records are found; several words may meet in a thread across months, so
        they are read for every month first."""
        in_months = await self._months()
        key = self.r.key
        words = sorted(self.c.words)
        threads: dict[str, date] | None = None
        if len(words) > 1:
            threads = all_of([await self._all_months([key.word(w)], in_months) for w in words])
        if words and not self.c.answers:
            batches: AsyncIterator[dict[str, date]]
            if threads is None:
                token = key.word(words[0])
                batches = (await self._in_month([token], m) for m in reversed(in_months))
            else:
                batches = _one(threads)
            return await self._newest_first(batches, self._thread_record)
        if threads is None and words:
            threads = await self._all_months([key.word(words[0])], in_months)
        orgs = self.organisations()
        fields = sorted(self.c.answers.items())

        async def consultations() -> AsyncIterator[dict[str, date]]:
            for month in reversed(in_months):
                if fields:
                    per_field = [
                        await self._in_month(
                            [key.answer(o, f, code) for o in orgs for code in sorted(codes)], month
                        )
                        for f, codes in fields
                    ]
                    found = all_of(per_field)
                else:
                    found = await self._in_month([key.consultations(o) for o in orgs], month)
                if threads is not None:
                    found = {c: d for c, d in found.items() if thread_of(c) in threads}
                yield found

        async def make(consultation_id: str, _: date) -> Doc | None:
            text_day = threads[thread_of(consultation_id)] if threads is not None else None
            return await self._consultation_record(consultation_id, text_day)

        return await self._newest_first(consultations(), make)

    async def _thread_record(self, thread_id: str, text_day: date) -> Doc | None:
        thread = await self._thread(thread_id, text_day)
        return record(thread, None) if thread is not None else None

    async def _consultation_record(self, consultation_id: str, text_day: date | None = None) -> Doc | None:
        found = await self._consultation(consultation_id, text_day)
        return record(found[0], found[1]) if found is not None else None

    async def _newest_first(
        self,
        batches: AsyncIterator[dict[str, date]],
        make: Callable[[str, date], Awaitable[Doc | None]],
    ) -> list[Doc]:
        """Records for the candidates of each batch (a month, newest first), newest day first,
        checked a few at once, until the limit or :data:`MAX_CHECKED` candidates checked;
        ``truncated`` when it stopped there, as more may match."""
        out: list[Doc] = []
        async for found in batches:
            ordered = newest_first(found)
            for start in range(0, len(ordered), CHECK_AT_ONCE):
                if len(out) >= self.c.limit or self.checked >= MAX_CHECKED:
                    self.truncated = True
                    return out[: self.c.limit]
                chunk = ordered[start : start + CHECK_AT_ONCE]
                self.checked += len(chunk)
                out += [r for r in await asyncio.gather(*(make(t, found[t]) for t in chunk)) if r is not None]
            if len(out) >= self.c.limit:
                self.truncated = True
                return out[: self.c.limit]
        return out

    # --- cases --------------------------------------------------------------------------------------

    async def _cases_of(self, records: list[Doc]) -> list[Doc]:
        """The cases this person may see that were opened from the records found, or, for a
        search by dates alone, opened on those days."""
        assert self.viewer is not None
        threads = {r["thread"]["id"] for r in records}
        consultations = {r["consultation"]["id"] for r in records if r.get("consultation")}
        by_dates = not self.c.words and not self.c.answers
        out = []
        for case in await self.r.cases.listed(self.viewer.filter(), MAX_CASES_READ):
            if not self.viewer.sees_case(case) or (self.c.line and case.get("line") != self.c.line):
                continue
            opened = case.get("opened_at")
            on_day = opened is not None and self.c.covers(opened.astimezone(self.r.tz).date())
            if case.get("thread_id") in threads or case.get("consultation_id") in consultations:
                out.append(case)
            elif by_dates and on_day:
                out.append(case)
        out.sort(key=lambda c: c.get("opened_at") or utcnow(), reverse=True)
        return [case_item(c) for c in out[: self.c.limit]]


def record(thread: Doc, consultation: Doc | None) -> Doc:
    """What a search shows of a record: where and when, never what anyone wrote."""
    t = thread_view(thread)
    item: Doc = {
        "thread": {
            "id": t["id"],
            "line": t.get("line"),
            "channel": t.get("channel"),
            "queue": t.get("queue"),
            "status": t.get("status"),
            "created_at": t.get("created_at"),
            "closed_at": t.get("closed_at"),
            "consultation": (t.get("consultation") or {}).get("n"),
        },
        "consultation": None,
    }
    if consultation is not None:
        item["consultation"] = {**consultation_view(consultation), "n": consultation.get("n")}
    return item


def case_item(case: Doc) -> Doc:
    return {
        "id": case["_id"],
        "reference": case_reference(case["organisation"], case["number"]),
        "organisation": case["organisation"],
        "line": case.get("line"),
        "kind": case.get("kind"),
        "status": case.get("status"),
        "opened_at": _iso(case.get("opened_at")),
        "closed_at": _iso(case.get("closed_at")),
        "thread_id": case.get("thread_id"),
        "consultation_id": case.get("consultation_id"),
    }


def _iso(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value
