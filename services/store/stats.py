"""Statistics from case forms: pure counting, no I/O (PRODUCT.md 3.5).

What is counted is a *consultation*: one episode of contact in a thread (an e-mail
conversation, a chat session, a Telegram chat holds one or more, in order), dated by its
start, the first client message of the episode. When a consultation is closed, or a phone
consultation is registered, the store keeps beside its case form a ``facts`` document made
only of categorical values, fit for grouping and free of any text a client or consultant
wrote::

    facts: {at, line, channel, organisation, fields: {gender: ["female"], topics: [...]}}

Every field is a list (a topic question may have several answers); a thread with two
topics counts once under each, so topic shares can add up to more than 100 %. Retention
deletes free text but never ``facts``, so statistics outlive the conversations.

A contact closed without a consultation (spam, a test, a client who left...) has no case
form. Its ``facts`` say so and name the configured reason, and nothing else::

    facts: {at, line, channel, organisation, outcome: "no_consultation", reason: "spam"}

A *person* is a client record (conversations/clients.py) that links the threads of one
person: the same e-mail address or Telegram user, or a chat a consultant linked by hand.
:class:`Tally` counts distinct people among the consultations whose person is known, and
how many consultations had no known person (a widget chat nobody linked, a phone call).

:class:`Tally` never counts such a contact among consultations (rows, periods, total); it
counts it apart, by reason, in the same window and scope (``no_consultation`` in the result).

:func:`parse_query` turns request parameters into a :class:`Query`, :class:`Tally` counts
streamed ``facts`` documents, and :func:`build_table` turns one or two tallies (this
window and the same window a year earlier) into rows with shares, year-on-year change
and, for publication, small cells suppressed.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

Doc = dict[str, Any]

# A categorical answer is an identifier-like code ("female", "18_26", "PL"); anything else
# (a sentence typed into a comment box) is free text and never becomes a statistic.
_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,63}$")
_FIELD = re.compile(r"^[a-z][a-z0-9_]{0,39}$")

# Dimensions every thread has besides its case form.
THREAD_DIMENSIONS = ("channel", "line", "organisation")
PERIODS = ("day", "month", "year")
# Column names of a row; a case field may not be called like one of them.
RESERVED = frozenset({"count", "share", "previous", "change", "suppressed", "period"})
# Request parameters that are not filters.
PARAMETERS = frozenset({"from", "to", "by", "period", "compare", "publish", "lang"})
MAX_DIMENSIONS = 3
MAX_VALUES_PER_FIELD = 50


class QueryError(ValueError):
    """A statistics request that cannot be answered; the message says which parameter."""


def categorical(value: Any) -> list[str] | None:
    """The codes an answer stands for, or None when the answer is free text.

    ``True``/``False`` become ``yes``/``no``; a list keeps its codes once each, in order.
    """
    if isinstance(value, bool):
        return ["yes" if value else "no"]
    if isinstance(value, int):
        return [str(value)]
    if isinstance(value, str):
        return [value] if _CODE.match(value) else None
    if isinstance(value, list):
        codes: list[str] = []
        for item in value[:MAX_VALUES_PER_FIELD]:
            if isinstance(item, bool) or not isinstance(item, str | int) or not _CODE.match(str(item)):
                return None
            if str(item) not in codes:
                codes.append(str(item))
        return codes
    return None


def case_fields(case: Mapping[str, Any]) -> dict[str, list[str]]:
    """The categorical answers of a case form (free-text answers left out)."""
    fields: dict[str, list[str]] = {}
    for name, value in case.items():
        if not isinstance(name, str) or not _FIELD.match(name) or name in RESERVED:
            continue
        if name in THREAD_DIMENSIONS:
            continue
        codes = categorical(value)
        if codes is not None:
            fields[name] = codes
    return fields


def make_facts(
    case: Mapping[str, Any], *, at: datetime, line: str, channel: str, organisation: str | None
) -> Doc:
    """The ``facts`` document stored with a closed thread."""
    return {
        "at": at,
        "line": line,
        "channel": channel,
        "organisation": organisation or "unknown",
        "fields": case_fields(case),
    }


NO_CONSULTATION = "no_consultation"


def no_consultation_facts(
    reason: str, *, at: datetime, line: str, channel: str, organisation: str | None
) -> Doc:
    """The ``facts`` of a contact closed without a consultation: where and when (as for a
    consultation, without its answers), and why."""
    facts = make_facts({}, at=at, line=line, channel=channel, organisation=organisation)
    del facts["fields"]
    return {**facts, "outcome": NO_CONSULTATION, "reason": reason}


def organisation_of(
    thread_organisations: list[str], closer_organisation: str | None, region_organisations: list[str]
) -> str | None:
    """Which organisation a consultation counts for: the closing consultant's; else the only
    organisation of the thread's queue; else the only one serving the client's region (a
    supervisor closing a thread of the shared triage queue); else unknown (None)."""
    if closer_organisation:
        return closer_organisation
    if len(thread_organisations) == 1:
        return thread_organisations[0]
    if len(region_organisations) == 1:
        return region_organisations[0]
    return None


# --- queries --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """One statistics request. ``first``/``last`` are local dates, both included."""

    first: date
    last: date
    tz: ZoneInfo
    by: tuple[str, ...] = ()
    period: str | None = None
    filters: Mapping[str, frozenset[str]] = field(default_factory=dict)
    compare: bool = False
    publish: bool = False

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, time(0), self.tz).astimezone(UTC)

    @property
    def end(self) -> datetime:
        """Exclusive end in UTC: midnight after ``last``."""
        return datetime.combine(self.last + timedelta(days=1), time(0), self.tz).astimezone(UTC)

    def previous_year(self) -> Query:
        """The same window a year earlier (29 February becomes 28 February)."""
        return Query(
            _year_back(self.first),
            _year_back(self.last),
            self.tz,
            self.by,
            self.period,
            self.filters,
            False,
            self.publish,
        )


def _year_back(d: date) -> date:
    try:
        return d.replace(year=d.year - 1)
    except ValueError:  # 29 February
        return d.replace(year=d.year - 1, day=28)


# Dates a query may name: wider than any hotline's records, and far enough inside the
# calendar that a window's UTC bounds, the day after it and the year before it all exist
# (0001-01-01 in Minsk begins in year 0, which datetime cannot hold).
FIRST_DATE = date(1900, 1, 1)
LAST_DATE = date(2999, 12, 31)


def _date(params: Mapping[str, str], name: str, default: date) -> date:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise QueryError(f"{name}: a date like 2026-01-31") from None
    if not FIRST_DATE <= day <= LAST_DATE:
        raise QueryError(f"{name}: a date from {FIRST_DATE} to {LAST_DATE}")
    return day


def _flag(params: Mapping[str, str], name: str) -> bool:
    raw = params.get(name, "0")
    if raw not in {"0", "1", "true", "false", ""}:
        raise QueryError(f"{name}: 1 or 0")
    return raw in {"1", "true"}


def parse_query(
    params: Mapping[str, str], today: date, tz: ZoneInfo, known_fields: Iterable[str] | None = None
) -> Query:
    """Read ``from``, ``to`` (dates from 1900-01-01 to 2999-12-31, both included, at most twenty
    years apart; default: this year to today), ``by``
    (up to three comma-separated dimensions), ``period`` (day, month or year), ``compare``
    (1: add the same window a year earlier), ``publish`` (1: suppress small cells) and
    filters: any other parameter names a dimension and its accepted values, comma-separated.

    ``known_fields``: the case-form fields the configuration defines, when it defines them;
    other names are refused. Raises :class:`QueryError`.
    """
    first = _date(params, "from", today.replace(month=1, day=1))
    last = _date(params, "to", today)
    if last < first:
        raise QueryError("to: must not be before from")
    if (last - first).days > 366 * 20:
        raise QueryError("to: at most twenty years at once")
    known = None if known_fields is None else set(known_fields) | set(THREAD_DIMENSIONS)

    def dimension(name: str, param: str) -> str:
        if not _FIELD.match(name) or name in RESERVED:
            raise QueryError(f"{param}: {name!r} is not a dimension")
        if known is not None and name not in known:
            raise QueryError(f"{param}: unknown field {name!r}")
        return name

    by_raw = params.get("by", "")
    by = tuple(dimension(b.strip(), "by") for b in by_raw.split(",") if b.strip())
    if len(by) > MAX_DIMENSIONS:
        raise QueryError(f"by: at most {MAX_DIMENSIONS} dimensions")
    if len(set(by)) != len(by):
        raise QueryError("by: a dimension is named twice")
    period = params.get("period") or None
    if period is not None and period not in PERIODS:
        raise QueryError("period: day, month or year")
    filters: dict[str, frozenset[str]] = {}
    for name, raw in params.items():
        if name in PARAMETERS:
            continue
        values = frozenset(v.strip() for v in raw.split(",") if v.strip())
        if not values or len(values) > MAX_VALUES_PER_FIELD or not all(_CODE.match(v) for v in values):
            raise QueryError(f"{name}: comma-separated codes")
        filters[dimension(name, name)] = values
    return Query(first, last, tz, by, period, filters, _flag(params, "compare"), _flag(params, "publish"))


def period_key(at: datetime, period: str, tz: ZoneInfo) -> str:
    local = (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(tz)
    if period == "day":
        return local.strftime("%Y-%m-%d")
    if period == "month":
        return local.strftime("%Y-%m")
    return local.strftime("%Y")


def _shift_key(key: str) -> str:
    """The key of the same period a year later ("2025-03" -> "2026-03")."""
    year, sep, rest = key.partition("-")
    return f"{int(year) + 1}{sep}{rest}"


def values_of(facts: Mapping[str, Any], name: str) -> list[str]:
    """The values of one dimension of a thread ([] when the form left it unanswered)."""
    if name in THREAD_DIMENSIONS:
        value = facts.get(name)
        return [value] if isinstance(value, str) else []
    fields = facts.get("fields") or {}
    found = fields.get(name)
    # Each answer once: a list that names one twice still counts the thread once under it.
    return list(dict.fromkeys(v for v in found if isinstance(v, str))) if isinstance(found, list) else []


def matches(facts: Mapping[str, Any], filters: Mapping[str, frozenset[str]]) -> bool:
    """A thread passes a filter when one of its values is among the accepted ones."""
    return all(any(v in accepted for v in values_of(facts, name)) for name, accepted in filters.items())


# --- counting -------------------------------------------------------------------------------

Cell = tuple[str | None, ...]


class Tally:
    """Counts of threads per cell (period, then one value per ``by`` dimension) and per
    period. Memory is bounded by the number of distinct cells, not of threads."""

    def __init__(self, query: Query) -> None:
        self.query = query
        self.cells: Counter[Cell] = Counter()
        self.periods: Counter[str | None] = Counter()
        self.threads = 0
        # Contacts closed without a consultation, per (period, reason): never among the above.
        self.no_consultation: Counter[tuple[str | None, str]] = Counter()
        # Distinct people among the consultations counted, overall and per period (memory
        # grows with the people in the window), and consultations without a known person.
        self.people: set[str] = set()
        self.period_people: dict[str | None, set[str]] = {}
        self.unknown_people = 0

    def add(self, facts: Mapping[str, Any], person: str | None = None) -> None:
        q = self.query
        if not matches(facts, q.filters):
            return
        at = facts.get("at")
        if not isinstance(at, datetime):
            return
        aware = at if at.tzinfo else at.replace(tzinfo=UTC)
        if not q.start <= aware < q.end:
            return
        key = period_key(aware, q.period, q.tz) if q.period else None
        if facts.get("outcome") == NO_CONSULTATION:
            reason = facts.get("reason")
            self.no_consultation[(key, reason if isinstance(reason, str) else "unknown")] += 1
            return
        self.threads += 1
        self.periods[key] += 1
        if isinstance(person, str) and person:
            self.people.add(person)
            self.period_people.setdefault(key, set()).add(person)
        else:
            self.unknown_people += 1
        # A thread adds one to each combination of its values; an unanswered
        # dimension counts under None ("not answered") so totals stay visible.
        choices: list[list[str | None]] = []
        for name in q.by:
            found: list[str | None] = list(values_of(facts, name))
            choices.append(found or [None])
        for combo in itertools.product(*choices):
            self.cells[(key, *combo)] += 1

    def add_all(self, docs: Iterable[Mapping[str, Any]]) -> Tally:
        for doc in docs:
            self.add(doc)
        return self


def change(now: int, before: int) -> float | None:
    """Year-on-year change in percent, one decimal; None when there was nothing before."""
    if before == 0:
        return None
    return round(100 * (now - before) / before, 1)


def _share(count: int, total: int) -> float | None:
    return round(100 * count / total, 1) if total else None


def build_table(current: Tally, previous: Tally | None) -> Doc:
    """Rows with counts, shares of the period's threads and, with ``previous``, the count a
    year earlier and the change: exact figures, for internal use. What may be published is
    made from them by :func:`services.store.publication.publish_table`."""
    q = current.query
    prev_cells: dict[Cell, int] = {}
    prev_periods: dict[str | None, int] = {}
    if previous is not None:
        for cell, n in previous.cells.items():
            key = cell[0] if cell[0] is None else _shift_key(cell[0])
            prev_cells[(key, *cell[1:])] = n
        for pkey, n in previous.periods.items():
            prev_periods[pkey if pkey is None else _shift_key(pkey)] = n
    keys = set(current.cells) | set(prev_cells)
    now_counts = {c: current.cells.get(c, 0) for c in keys}
    before_counts = {c: prev_cells.get(c, 0) for c in keys}

    def order(cell: Cell) -> tuple[Any, ...]:
        return (cell[0] or "", -now_counts[cell], *[v if v is not None else "~" for v in cell[1:]])

    rows: list[Doc] = []
    for cell in sorted(keys, key=order):
        n = now_counts[cell]
        row: Doc = {}
        if q.period:
            row["period"] = cell[0]
        row.update(zip(q.by, cell[1:], strict=True))
        row["count"] = n
        row["share"] = _share(n, current.periods.get(cell[0], 0))
        if previous is not None:
            b = before_counts[cell]
            row["previous"] = b
            row["change"] = change(n, b)
        rows.append(row)

    periods: list[Doc] = []
    for pkey in sorted(set(current.periods) | set(prev_periods), key=lambda p: p or ""):
        n = current.periods.get(pkey, 0)
        entry: Doc = {"period": pkey, "count": n, "people": len(current.period_people.get(pkey, ()))}
        if previous is not None:
            b = prev_periods.get(pkey, 0)
            entry["previous"] = b
            entry["change"] = change(n, b)
        periods.append(entry)

    total: Doc = {"count": current.threads}
    if previous is not None:
        total["previous"] = previous.threads
        total["change"] = change(current.threads, previous.threads)
    # Distinct people where known; a person with consultations in several periods counts
    # once here and once in each of those periods.
    total["people"] = len(current.people)
    total["without_known_person"] = current.unknown_people
    return {
        "no_consultation": _no_consultation(current),
        "from": q.first.isoformat(),
        "to": q.last.isoformat(),
        "by": list(q.by),
        "period": q.period,
        "filters": {k: sorted(v) for k, v in sorted(q.filters.items())},
        "compare": previous is not None,
        "published": False,
        "total": total,
        "periods": periods if q.period else [],
        "rows": rows,
        "note": "Exact figures for internal use: do not publish; use publish=1 for publication.",
    }


def _no_consultation(tally: Tally) -> Doc:
    """Contacts without a consultation: the total and one row per reason (and period, when
    the query has one), most first."""
    q = tally.query
    counts: dict[Cell, int] = {cell: n for cell, n in tally.no_consultation.items()}
    rows: list[Doc] = []
    for cell in sorted(counts, key=lambda c: (c[0] or "", -counts[c], c[1])):
        row: Doc = {"period": cell[0]} if q.period else {}
        row["reason"] = cell[1]
        row["count"] = counts[cell]
        rows.append(row)
    return {"count": sum(counts.values()), "rows": rows}


def suppression_note(min_cell: int) -> str:
    return (
        f"Published figures: counts from 1 to {min_cell - 1} are suppressed, and so are other cells chosen "
        f"so that no suppressed cell can be worked out to within {min_cell} from all the figures published "
        "for the year, in any table or scope (secondary suppression, checked by linear programming). "
        "Suppressed cells are empty in data files and marked x in reports. A consultation with "
        "several answers to one question counts under each, so such shares can add up to more than 100 %."
    )


# --- CSV -------------------------------------------------------------------------------------


def _cell_text(value: Any) -> str:
    """A number, or nothing where it is suppressed (or there is none, as a change from 0)."""
    return "" if value is None else str(value)


def to_csv(result: Mapping[str, Any]) -> str:
    """The rows as CSV: dimensions, count, share (%), and with ``compare`` the previous
    year's count and the change (%). Unanswered values are ``not answered``. A note
    (suppression for publication, "not for publication" otherwise) follows a blank line."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    dims = (["period"] if result["period"] else []) + list(result["by"])
    head = [*dims, "count", "share_percent"]
    if result["compare"]:
        head += ["previous_year", "change_percent"]
    w.writerow(head)
    for row in result["rows"]:
        line = [row[d] if row[d] is not None else "not answered" for d in dims]
        line += [
            _cell_text(row["count"]),
            _cell_text(row["share"]),
        ]
        if result["compare"]:
            line += [
                _cell_text(row["previous"]),
                _cell_text(row["change"]),
            ]
        w.writerow(line)
    w.writerow([])
    total = result["total"]
    w.writerow(["note", result["note"]])
    w.writerow(["consultations", _cell_text(total["count"])])
    w.writerow(["people", _cell_text(total.get("people"))])
    w.writerow(["consultations_without_known_person", _cell_text(total.get("without_known_person"))])
    if result["compare"]:
        w.writerow(["consultations_previous_year", _cell_text(total.get("previous"))])
        w.writerow(["change_percent", _cell_text(total.get("change"))])
    # Contacts without a consultation, apart from the consultations counted above.
    other = result.get("no_consultation") or {"count": 0, "rows": []}
    w.writerow(["no_consultation", _cell_text(other["count"])])
    for row in other["rows"]:
        label = [row["period"]] if result["period"] else []
        w.writerow(
            [
                "no_consultation",
                *label,
                row["reason"],
                _cell_text(row["count"]),
            ]
        )
    w.writerow(["period", f"{result['from']} to {result['to']}"])
    for name, values in result["filters"].items():
        w.writerow(["filter", f"{name} = {' or '.join(values)}"])
    return out.getvalue()


def _counted_organisation(
    config: Any, thread: Mapping[str, Any], closer_organisation: str | None, region: Any
) -> str | None:
    line = config.lines.get(thread["line"])
    region_orgs: list[str] = []
    if line is not None and isinstance(region, str) and region in line.region_queues:
        region_orgs = list(config.queues[line.region_queues[region]].organisations)
    return organisation_of(list(thread.get("organisations") or []), closer_organisation, region_orgs)


def consultation_start(thread: Mapping[str, Any]) -> datetime:
    """When ``thread``'s current consultation started: its first client message, or the
    first after the thread was last closed (the thread's creation for older threads)."""
    started = (thread.get("consultation") or {}).get("started_at")
    return started if isinstance(started, datetime) else thread["created_at"]


def no_consultation_facts_for(
    config: Any, thread: Mapping[str, Any], closer_organisation: str | None, reason: str
) -> Doc:
    """The ``facts`` of ``thread`` closed without a consultation for ``reason``: counted for
    the same organisation a consultation would have been (the client's region, if known)."""
    return no_consultation_facts(
        reason,
        at=consultation_start(thread),
        line=thread["line"],
        channel=thread["channel"],
        organisation=_counted_organisation(config, thread, closer_organisation, thread.get("region")),
    )


def facts_for(
    config: Any, thread: Mapping[str, Any], closer_organisation: str | None, case: Mapping[str, Any]
) -> Doc:
    """The ``facts`` of ``thread`` closed with ``case`` by a member of ``closer_organisation``
    (None for a supervisor of whole lines). ``config`` is the :class:`HotlineConfig`: it says
    which organisation serves the client's region on a shared line."""
    region = case.get("region") or thread.get("region")
    organisation = _counted_organisation(config, thread, closer_organisation, region)
    return make_facts(
        case,
        at=consultation_start(thread),
        line=thread["line"],
        channel=thread["channel"],
        organisation=organisation,
    )
