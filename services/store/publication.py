"""What may be published for a year, protected as one (pure computation, no I/O).

Everything a publisher can take out with the publication switch for one calendar year (the
statistics routes in JSON, CSV and XLSX, the reports page, the yearly report and its PDF),
for every person allowed to publish, is one set of linked tables, the *catalogue*:

- scopes: all lines together and each line. Figures are published per line, by a supervisor
  of the line (a national administrator); an organisation's own figures are for internal use. Each
  organisation's tables would split every cell of its line in two or three, and keeping the
  small cells of those splits from being worked out from the line's figures would hide most
  of the line's tables: measured on the demo's year, 215 small cells instead of 72, and 1,068
  of 1,247 cells hidden instead of 150 of 645;
- in each scope: the total; consultations per month; months by channel; one table per
  dimension (channel and every case-form question); gender by age group and by destination
  country (:data:`BY_GENDER`); consultations without a known person; contacts without a
  consultation by reason.

:class:`Catalogue` counts a year's consultations into every cell of it once, and
:meth:`Catalogue.protect` runs secondary suppression (:mod:`services.store.disclosure`) over
all of it, so a cell hidden in one table cannot be worked out from any other table, scope or
download of the same year. A request for publication is answered from the protected
catalogue (:func:`publish_table`); a request outside it is refused with the list of what
can be published (:class:`NotPublishable`). Only a year that is over can be published: a
year in progress changes every day, and two downloads a day apart would give that day away.
Distinct people are not additive (one person may come in several months or scopes), so their
counts are only hidden below the threshold.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from services.store import stats
from services.store.disclosure import Cover, Problem, Relation, Sum, protect

Node = tuple[str | None, ...]  # () for all lines together, (line,)
Table = tuple[str, ...]  # dimension names, in catalogue order
Key = tuple[Node, Table, tuple[str | None, ...]]
TOTAL: Table = ()
MONTH = "month"
GENDER = "gender"
PERSON = "person"  # known / unknown: only "unknown" is shown
REASON = "reason"
NO_CONSULTATION: Table = ("no_consultation",)
# The two-way tables the hotlines print besides months by channel: women and men by age
# group, and destination countries by gender. Each table published adds relations that
# make more cells to hide, so the catalogue holds what is printed, not every pair.
BY_GENDER = frozenset({"age_group", "destination_country"})


class NotPublishable(ValueError):
    """A request for publication outside the catalogue; the message says what can be."""


def catalogue_table(dims: Sequence[str], period: str | None) -> Table:
    """The catalogue's name for a table of ``dims`` (and months with ``period=month``)."""
    rest = sorted(d for d in dims if d != GENDER)
    named = ((MONTH,) if period == "month" else ()) + ((GENDER,) if GENDER in dims else ()) + tuple(rest)
    if named in {(), (MONTH,), (MONTH, "channel")}:
        return named
    if period != "month" and (
        len(named) == 1 or (len(named) == 2 and named[0] == GENDER and named[1] in BY_GENDER)
    ):
        return named
    raise NotPublishable(
        "for publication: by at most one dimension, gender by "
        + " or ".join(sorted(BY_GENDER))
        + ", or channel by month (period=month); line may be added to by for all lines"
    )


class Catalogue:
    """Every cell of a year's catalogue, counted from consultations' facts."""

    def __init__(self, year: int, tz: ZoneInfo, questions: Iterable[str] = ()) -> None:
        """``questions``: the case form's (configured) questions; a question nobody answered
        that year still has its table, every consultation under "not answered"."""
        self.year = year
        self.tz = tz
        self.questions = frozenset(q for q in questions if q not in stats.THREAD_DIMENSIONS)
        # Per consultation: its scope nodes, month, person known, and answers by question.
        self._seen: list[tuple[list[Node], str, bool, dict[str, list[str | None]]]] = []
        self._other: Counter[Key] = Counter()  # contacts without a consultation
        self._counts: Counter[Key] | None = None
        self.multiple: set[str] = set()  # questions some consultation answered more than once
        self._hidden: frozenset[Key] | None = None

    def add(self, facts: Mapping[str, Any], person: str | None = None) -> None:
        at = facts.get("at")
        line = facts.get("line")
        if not isinstance(at, datetime) or not isinstance(line, str):
            return
        if stats.period_key(at, "year", self.tz) != str(self.year):
            return
        nodes: list[Node] = [(), (line,)]
        self._counts = self._hidden = None
        if facts.get("outcome") == stats.NO_CONSULTATION:
            reason = facts.get("reason")
            for node in nodes:
                self._other[(node, NO_CONSULTATION, ())] += 1
                self._other[(node, (REASON,), (reason if isinstance(reason, str) else "unknown",))] += 1
            return
        answers: dict[str, list[str | None]] = {"channel": [*stats.values_of(facts, "channel")] or [None]}
        for name in (facts.get("fields") or {}).keys():
            if isinstance(name, str) and name not in stats.THREAD_DIMENSIONS:
                answers[name] = [*stats.values_of(facts, name)] or [None]
        self._seen.append((nodes, stats.period_key(at, "month", self.tz), bool(person), answers))

    @property
    def counts(self) -> Counter[Key]:
        """Every cell's count. A question some consultation left out of its form counts, for
        the others, under "not answered" (None), so each table adds up to its total."""
        if self._counts is not None:
            return self._counts
        counts: Counter[Key] = Counter(self._other)
        questions = sorted(self.questions | {name for *_, answers in self._seen for name in answers})
        self.multiple = set()
        for nodes, month, known, given in self._seen:
            answers = {name: given.get(name) or [None] for name in questions}
            keys: list[tuple[Table, tuple[str | None, ...]]] = [
                (TOTAL, ()),
                ((MONTH,), (month,)),
                ((PERSON,), ("known" if known else "unknown",)),
            ]
            keys += [((MONTH, "channel"), (month, c)) for c in answers["channel"]]
            for name, values in answers.items():
                if len(values) > 1:
                    self.multiple.add(name)
                keys += [((name,), (v,)) for v in values]
            for g in answers.get(GENDER, ()):
                for name, values in answers.items():
                    if name in BY_GENDER:
                        keys += [((GENDER, name), (g, v)) for v in values]
            for node in nodes:
                for table, cell in keys:
                    counts[(node, table, cell)] += 1
        self._counts = counts
        return counts

    def problem(self) -> Problem:
        """The catalogue as cells and the relations anyone can see between them."""
        rels: list[Relation] = []
        by_cell: dict[tuple[Table, tuple[str | None, ...]], list[Node]] = {}
        within: dict[tuple[Node, Table], list[tuple[str | None, ...]]] = {}
        counts = self.counts
        for node, table, values in counts:
            by_cell.setdefault((table, values), []).append(node)
            within.setdefault((node, table), []).append(values)
        # All lines together are the sum of the lines.
        for (table, values), nodes in by_cell.items():
            lines = sorted({n[0] for n in nodes if len(n) == 1}, key=str)
            rels.append(Sum(((), table, values), tuple(((ln,), table, values) for ln in lines)))

        def relation(name: str, total: Key, parts: list[Key]) -> Relation:
            return (Cover if name in self.multiple else Sum)(total, tuple(parts))

        for (node, table), cells in within.items():
            total: Key = (node, TOTAL, ())
            if table in {(MONTH,), (PERSON,)}:
                rels.append(Sum(total, tuple((node, table, v) for v in cells)))
            elif table == (REASON,):
                rels.append(Sum((node, NO_CONSULTATION, ()), tuple((node, table, v) for v in cells)))
            elif table == (MONTH, "channel") or (len(table) == 2 and table[0] == GENDER):
                first, second = table
                for i, name in ((0, second), (1, first)):  # rows sum over one, columns over the other
                    groups: dict[str | None, list[Key]] = {}
                    for v in cells:
                        groups.setdefault(v[i], []).append((node, table, v))
                    for fixed, parts in groups.items():
                        margin_table = (table[i],)
                        rels.append(relation(name, (node, margin_table, (fixed,)), parts))
            elif len(table) == 1 and table != NO_CONSULTATION:
                rels.append(relation(table[0], total, [(node, table, v) for v in cells]))
        unpublished = {k for k in counts if k[1] == (PERSON,) and k[2] == ("known",)}
        return Problem(dict(counts), rels, unpublished)

    def protect(self, threshold: int) -> frozenset[Key]:
        if self._hidden is None:
            self._hidden = frozenset(protect(self.problem(), threshold))
        return self._hidden

    def use(self, hidden: frozenset[Key]) -> None:
        """Take a protection computed before for the same counts and threshold."""
        self._hidden = hidden

    def shown(self, key: Key, threshold: int) -> int | None:
        """The published count of a cell: None when it is hidden, 0 when nothing is there."""
        return None if key in self.protect(threshold) else self.counts.get(key, 0)


@dataclass(frozen=True)
class Request:
    """A request for publication, mapped onto the catalogue: its scope node, the table and
    which of ``by`` names the scope (line) rather than the table."""

    node: Node
    table: Table
    by: tuple[str, ...]
    period: str | None


def whole_year(query: stats.Query, today: date) -> int:
    """The year a request for publication covers; refused unless it is one whole year that is
    over (a year in progress changes daily: two downloads would give a day away)."""
    first, last = query.first, query.last
    if first.year >= today.year:
        raise NotPublishable(
            f"for publication: a year that is over ({first.year} ends on {first.year}-12-31)"
        )
    if (first.month, first.day, last.month, last.day) != (1, 1, 12, 31) or first.year != last.year:
        raise NotPublishable("for publication: from=YYYY-01-01 and to=YYYY-12-31, one whole year")
    return first.year


def request_of(
    query: stats.Query, lines: Sequence[str], organisation: str | None, all_lines: Sequence[str]
) -> Request:
    """Map a request (already within a person's scope: ``lines``, ``organisation``) onto the
    catalogue, or refuse it."""
    filters = dict(query.filters)
    if organisation is not None or "organisation" in filters or "organisation" in query.by:
        raise NotPublishable(
            "for publication: figures are published per line and for all lines, by a supervisor of "
            "the line; an organisation's own figures are for internal use"
        )
    if set(filters) - {"line"} or any(len(v) != 1 for v in filters.values()):
        raise NotPublishable("for publication: the only filter is one line")
    chosen = [ln for ln in lines if "line" not in filters or ln in filters["line"]]
    node: Node
    if sorted(chosen) == sorted(all_lines) and len(chosen) > 1:
        node = ()
    elif len(chosen) == 1:
        node = (chosen[0],)
    else:
        raise NotPublishable("for publication: one line (line=), or all of them")
    if "line" in query.by and node != ():
        raise NotPublishable("for publication: by line from all lines")
    table_by = [d for d in query.by if d != "line"]
    period = query.period if query.period == "month" else None
    return Request(node, catalogue_table(table_by, period), tuple(query.by), period)


def _row_key(req: Request, row: Mapping[str, Any], year: int) -> Key:
    node = (row.get("line"),) if "line" in req.by else req.node
    values: list[str | None] = []
    for dim in req.table:
        if dim == MONTH:
            values.append(_in_year(row.get("period"), year))
        else:
            values.append(row.get(dim))
    return (node, req.table, tuple(values))


def _in_year(period: Any, year: int) -> str | None:
    """A row's month key in the catalogue of ``year`` (rows of a comparison carry this year's)."""
    if not isinstance(period, str):
        return None
    return f"{year}{period[4:]}"


def publish_table(
    exact: stats.Doc,
    req: Request,
    now: Catalogue,
    before: Catalogue | None,
    threshold: int,
) -> stats.Doc:
    """The published form of an exact table (``stats.build_table`` without suppression) of a
    request within the catalogue: every count from the protected catalogue, hidden cells None
    and flagged, shares and changes hidden wherever a number they are made of is."""
    out = dict(exact)
    rows: list[stats.Doc] = []
    for row in exact["rows"]:
        key = _row_key(req, row, now.year)
        n = now.shown(key, threshold)
        new = dict(row)
        new["count"] = n
        period_total = _period_total(req, row, now, threshold)
        new["share"] = None if n is None or not period_total else round(100 * n / period_total, 1)
        hidden = n is None
        if before is not None:
            bkey = _row_key(req, row, before.year)
            b = before.shown(bkey, threshold)
            new["previous"] = b
            new["change"] = None if n is None or b is None else stats.change(n, b)
            hidden = hidden or b is None
        new["suppressed"] = hidden
        rows.append(new)
    out["rows"] = rows
    periods = []
    for entry in exact["periods"]:
        new = dict(entry)
        new["count"] = now.shown(_period_key(req, entry["period"], now.year), threshold)
        new["people"] = _people(entry.get("people"), threshold)
        if before is not None:
            b = before.shown(_period_key(req, entry["period"], before.year), threshold)
            new["previous"] = b
            new["change"] = None if new["count"] is None or b is None else stats.change(new["count"], b)
        periods.append(new)
    out["periods"] = periods
    total = dict(exact["total"])
    total["count"] = now.shown((req.node, TOTAL, ()), threshold)
    total["people"] = _people(total.get("people"), threshold)
    total["without_known_person"] = now.shown((req.node, (PERSON,), ("unknown",)), threshold)
    if before is not None:
        total["previous"] = before.shown((req.node, TOTAL, ()), threshold)
        total["change"] = (
            None
            if total["count"] is None or total["previous"] is None
            else stats.change(total["count"], total["previous"])
        )
    out["total"] = total
    # Contacts without a consultation are published by reason for the whole year.
    reasons = [(n, k[2]) for k, n in now.counts.items() if k[0] == req.node and k[1] == (REASON,)]
    other_rows = []
    for _, (reason,) in sorted(reasons, key=lambda r: (-r[0], str(r[1]))):
        reason_row: stats.Doc = {"period": str(now.year)} if exact["period"] else {}
        reason_row["reason"] = reason
        reason_row["count"] = now.shown((req.node, (REASON,), (reason,)), threshold)
        reason_row["suppressed"] = reason_row["count"] is None
        other_rows.append(reason_row)
    out["no_consultation"] = {
        "count": now.shown((req.node, NO_CONSULTATION, ()), threshold),
        "rows": other_rows,
    }
    out["published"] = True
    out["min_cell"] = threshold
    out["note"] = stats.suppression_note(threshold)
    return out


def _period_key(req: Request, period: Any, year: int) -> Key:
    """The catalogue cell of a period's count: a month, or the year's total."""
    if req.period == "month":
        return (req.node, (MONTH,), (_in_year(period, year),))
    return (req.node, TOTAL, ())


def _period_total(req: Request, row: Mapping[str, Any], cat: Catalogue, threshold: int) -> int | None:
    """What a row's share is of: its period's count in the request's scope (a share of a hidden
    total would give the total away, so there is none)."""
    return cat.shown(_period_key(req, row.get("period"), cat.year), threshold)


def _people(n: Any, threshold: int) -> int | None:
    if not isinstance(n, int):
        return None
    return None if 0 < n < threshold else n
