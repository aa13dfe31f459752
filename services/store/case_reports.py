"""Case reports: pure counting, no I/O (docs/statistics.md, "Case reports").

Three tables of a year, from the case documents (conversations/cases.py), each per
organisation with the organisation's total and the total of all:

- ``assistance``: the infoline's "types of assistance provided": how many *people* were given
  each kind of service in the year (a service counts in the year of its date). A person is the
  case's client where one is known, else the case itself, so one person helped in two cases
  counts once, and a person given three kinds counts under each kind and once in the total:
  the kinds add up to more than the total. Exact figures also say how many services were
  logged and the amounts spent;
- ``cases``: cases opened in the year by kind, status (now) and duration: days from the
  opening to the close, or to now for a case still open, in bands (:data:`DURATION_BANDS`);
- ``referrals``: external referrals made in the year, by destination (a directory entry).

Publication (``publish=1``) follows the rules statistics follow (services/store/publication.py):
a whole year that is over, every organisation's table protected together with the total of
all by secondary cell suppression (:func:`protect`, services/store/disclosure.py), so no
hidden count can be worked out to within ``min_cell`` from the organisations' tables and
totals; a reader sees the organisations of their scope. Exact figures are for internal use
and say so.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

from services.store import disclosure
from services.store.disclosure import Cover, Problem, Sum

Doc = dict[str, Any]
Key = tuple[str | None, ...]

REPORTS = ("assistance", "cases", "referrals")
# (first day, last day or None, label) of each duration band.
DURATION_BANDS: list[tuple[int, int | None, str]] = [
    (0, 7, "0-7"),
    (8, 30, "8-30"),
    (31, 90, "31-90"),
    (91, 180, "91-180"),
    (181, 365, "181-365"),
    (366, None, "366+"),
]
STATUSES = ("open", "active", "monitoring", "closed")
EXACT_NOTE = "Exact figures for internal use: do not publish; use publish=1 for publication."
# Request parameters; anything else is refused.
PARAMETERS = frozenset({"year", "publish", "kind", "line", "organisation", "lang"})


class QueryError(ValueError):
    """A report request that cannot be answered; the message names the parameter."""


@dataclass(frozen=True)
class CaseQuery:
    year: int
    tz: ZoneInfo
    publish: bool = False
    kinds: frozenset[str] = frozenset()  # case kinds; empty: every kind
    lines: frozenset[str] = frozenset()  # within the reader's lines; empty: all of them
    organisations: frozenset[str] = frozenset()  # within the reader's scope; empty: all

    def wants(self, case: Mapping[str, Any]) -> bool:
        return (
            (not self.kinds or case.get("kind") in self.kinds)
            and (not self.lines or case.get("line") in self.lines)
            and (not self.organisations or case.get("organisation") in self.organisations)
        )


def _codes(params: Mapping[str, str], name: str, known: Iterable[str]) -> frozenset[str]:
    raw = params.get(name, "")
    values = frozenset(v.strip() for v in raw.split(",") if v.strip())
    unknown = values - set(known)
    if unknown:
        raise QueryError(f"{name}: unknown {', '.join(sorted(unknown))}")
    return values


def parse_case_query(
    params: Mapping[str, str],
    today: date,
    tz: ZoneInfo,
    *,
    kinds: Iterable[str],
    lines: Iterable[str],
    organisations: Iterable[str],
) -> CaseQuery:
    """Read ``year`` (2000 to this year; default this year), ``publish`` (1: suppress small
    cells), and filters ``kind``, ``line``, ``organisation`` (comma-separated ids among those
    given: the configured kinds, the reader's lines and organisations). Raises
    :class:`QueryError`."""
    extra = set(params) - PARAMETERS
    if extra:
        raise QueryError(f"{sorted(extra)[0]}: not a parameter of case reports")
    raw = params.get("year") or str(today.year)
    if not raw.isdigit() or not 2000 <= int(raw) <= today.year:
        raise QueryError(f"year: 2000 to {today.year}")
    publish = params.get("publish", "0")
    if publish not in {"0", "1", "true", "false", ""}:
        raise QueryError("publish: 1 or 0")
    return CaseQuery(
        int(raw),
        tz,
        publish in {"1", "true"},
        _codes(params, "kind", kinds),
        _codes(params, "line", lines),
        _codes(params, "organisation", organisations),
    )


def person_of(case: Mapping[str, Any]) -> str:
    """Who a case helps, for counting people: its client, else the case itself."""
    client = case.get("client_id")
    return f"client:{client}" if isinstance(client, str) and client else f"case:{case['_id']}"


def local_year(at: Any, tz: ZoneInfo) -> int | None:
    if not isinstance(at, datetime):
        return None
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(tz).year


def duration_band(days: int) -> str:
    for first, last, label in DURATION_BANDS:
        if days >= first and (last is None or days <= last):
            return label
    return DURATION_BANDS[0][2]  # a case closed before it opened (a clock set back): shortest


def duration_days(case: Mapping[str, Any], now: datetime, tz: ZoneInfo) -> int:
    """Whole days from the case's opening to its close, or to ``now`` while it is open, by the
    local calendar."""
    opened = case["opened_at"]
    closed = case.get("closed_at")
    end = closed if isinstance(closed, datetime) else now

    def day(at: datetime) -> date:
        return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(tz).date()

    return (day(end) - day(opened)).days


# --- suppression ----------------------------------------------------------------------------


def protect(
    counts: Mapping[Key, int],
    groups: Iterable[tuple[Key, Sequence[Key]]],
    min_cell: int,
    *,
    several: bool = False,
) -> set[Key]:
    """The keys to hide: secondary cell suppression over the table and its totals
    (:func:`services.store.disclosure.protect`), so no hidden count can be narrowed to an
    interval shorter than ``min_cell`` from the counts shown. ``groups``: (total, its parts)
    for each total published with its parts; ``several``: the parts may count one unit more
    than once (a person given several kinds of service), so they add up to at least the total."""
    relation = Cover if several else Sum
    problem = Problem(dict(counts), [relation(total, tuple(parts)) for total, parts in groups])
    return set(disclosure.protect(problem, min_cell))


def _shown(n: int, key: Key, hidden: set[Key]) -> int | None:
    return None if key in hidden else n


def _result(name: str, q: CaseQuery, min_cell: int) -> Doc:
    out: Doc = {
        "report": name,
        "year": q.year,
        "published": q.publish,
        "filters": {
            k: sorted(v)
            for k, v in (("kind", q.kinds), ("line", q.lines), ("organisation", q.organisations))
            if v
        },
    }
    if q.publish:
        out["min_cell"] = min_cell
        out["note"] = publication_note(min_cell)
    else:
        out["note"] = EXACT_NOTE
    return out


def publication_note(min_cell: int) -> str:
    return (
        f"Published figures: counts from 1 to {min_cell - 1} are suppressed, and so are other counts "
        f"chosen so that no suppressed one can be worked out to within {min_cell} from the figures "
        "published for the year (secondary suppression, checked by linear programming). Suppressed "
        "counts are empty in data files and marked x in reports. Published for whole years that are "
        "over, per organisation and for all organisations together."
    )


def _org_groups(
    cells: Mapping[Key, int], per_org: Mapping[str, int], everyone: int
) -> tuple[dict[Key, int], list[tuple[Key, list[Key]]]]:
    """Counts and groups of a table of (organisation, ...) cells with the organisations'
    totals and the total of all."""
    counts: dict[Key, int] = dict(cells)
    groups: list[tuple[Key, list[Key]]] = []
    for org, n in per_org.items():
        counts[(org,)] = n
        groups.append(((org,), [k for k in cells if k[0] == org]))
    counts[()] = everyone
    groups.append(((), [(org,) for org in per_org]))
    return counts, groups


# --- the three tables -------------------------------------------------------------------------


def assistance(
    cases: Iterable[Mapping[str, Any]],
    q: CaseQuery,
    min_cell: int,
    offered: Mapping[str, Sequence[str]] | None = None,
) -> Doc:
    """People given each kind of service in ``q.year``, per organisation. ``offered``: the
    assistance kinds each organisation logs, so a kind nobody was given still has its row (0)."""
    people: dict[Key, set[str]] = defaultdict(set)
    services: dict[Key, int] = defaultdict(int)
    amounts: dict[Key, float] = defaultdict(float)
    org_people: dict[str, set[str]] = defaultdict(set)
    everyone: set[str] = set()
    for case in cases:
        if not q.wants(case):
            continue
        org = str(case.get("organisation"))
        person = person_of(case)
        for service in case.get("services") or []:
            day = str(service.get("date") or "")
            if day[:4] != str(q.year):
                continue
            key: Key = (org, str(service.get("kind")))
            people[key].add(person)
            services[key] += 1
            if isinstance(service.get("amount"), int | float):
                amounts[key] += float(service["amount"])
            org_people[org].add(person)
            everyone.add(person)
    for org, kinds in (offered or {}).items():
        if q.organisations and org not in q.organisations:
            continue
        org_people.setdefault(org, set())
        for kind in kinds:
            people.setdefault((org, kind), set())
    cells = {k: len(v) for k, v in people.items()}
    counts, groups = _org_groups(cells, {o: len(p) for o, p in org_people.items()}, len(everyone))
    hidden = protect(counts, groups, min_cell, several=True) if q.publish else set()
    rows = []
    for key in sorted(cells, key=lambda k: (k[0] or "", -cells[k], k[1] or "")):
        row: Doc = {"organisation": key[0], "assistance": key[1], "people": _shown(cells[key], key, hidden)}
        if q.publish:
            row["suppressed"] = key in hidden
        else:
            row["services"] = services.get(key, 0)
            row["amount"] = round(amounts.get(key, 0.0), 2)
        rows.append(row)
    result = _result("assistance", q, min_cell)
    result["rows"] = rows
    result["organisations"] = [
        {"organisation": org, "people": _shown(len(p), (org,), hidden)}
        for org, p in sorted(org_people.items())
    ]
    result["total"] = {"people": _shown(len(everyone), (), hidden)}
    return result


def case_counts(cases: Iterable[Mapping[str, Any]], q: CaseQuery, now: datetime, min_cell: int) -> Doc:
    """Cases opened in ``q.year`` by organisation, kind, status and duration band."""
    cells: dict[Key, int] = defaultdict(int)
    for case in cases:
        if not q.wants(case) or local_year(case.get("opened_at"), q.tz) != q.year:
            continue
        band = duration_band(duration_days(case, now, q.tz))
        cells[(str(case.get("organisation")), str(case.get("kind")), str(case.get("status")), band)] += 1
    by_kind: dict[Key, int] = defaultdict(int)
    per_org: dict[str, int] = defaultdict(int)
    for (org, kind, _, _), n in cells.items():
        by_kind[(org, kind)] += n
        per_org[str(org)] += n
    # Three levels: a kind's cells, an organisation's kinds, all organisations.
    counts, groups = _org_groups(by_kind, per_org, sum(per_org.values()))
    counts.update(cells)
    groups += [(k, [c for c in cells if c[:2] == k]) for k in by_kind]
    hidden = protect(counts, groups, min_cell) if q.publish else set()

    def order(k: Key) -> tuple[Any, ...]:
        status = STATUSES.index(k[2]) if k[2] in STATUSES else len(STATUSES)
        band = [b[2] for b in DURATION_BANDS].index(k[3]) if k[3] in [b[2] for b in DURATION_BANDS] else 99
        return (k[0] or "", k[1] or "", status, band)

    rows = []
    for key in sorted(cells, key=order):
        row: Doc = dict(zip(("organisation", "kind", "status", "duration"), key, strict=True))
        row["cases"] = _shown(cells[key], key, hidden)
        if q.publish:
            row["suppressed"] = key in hidden
        rows.append(row)
    result = _result("cases", q, min_cell)
    result["duration_bands"] = [label for _, _, label in DURATION_BANDS]
    result["rows"] = rows
    result["kinds"] = [
        {"organisation": k[0], "kind": k[1], "cases": _shown(n, k, hidden)}
        for k, n in sorted(by_kind.items())
    ]
    result["organisations"] = [
        {"organisation": org, "cases": _shown(n, (org,), hidden)} for org, n in sorted(per_org.items())
    ]
    result["total"] = {"cases": _shown(sum(per_org.values()), (), hidden)}
    return result


def referral_counts(cases: Iterable[Mapping[str, Any]], q: CaseQuery, min_cell: int) -> Doc:
    """External referrals made in ``q.year`` by organisation and destination."""
    cells: dict[Key, int] = defaultdict(int)
    for case in cases:
        if not q.wants(case):
            continue
        for referral in case.get("external_referrals") or []:
            if local_year(referral.get("at"), q.tz) == q.year:
                cells[(str(case.get("organisation")), str(referral.get("to")))] += 1
    per_org: dict[str, int] = defaultdict(int)
    for (org, _), n in cells.items():
        per_org[str(org)] += n
    counts, groups = _org_groups(cells, per_org, sum(per_org.values()))
    hidden = protect(counts, groups, min_cell) if q.publish else set()
    rows = []
    for key in sorted(cells, key=lambda k: (k[0] or "", -cells[k], k[1] or "")):
        row: Doc = {
            "organisation": key[0],
            "destination": key[1],
            "referrals": _shown(cells[key], key, hidden),
        }
        if q.publish:
            row["suppressed"] = key in hidden
        rows.append(row)
    result = _result("referrals", q, min_cell)
    result["rows"] = rows
    result["organisations"] = [
        {"organisation": org, "referrals": _shown(n, (org,), hidden)} for org, n in sorted(per_org.items())
    ]
    result["total"] = {"referrals": _shown(sum(per_org.values()), (), hidden)}
    return result


def restricted(result: Doc, visible: frozenset[str], everyone: frozenset[str]) -> Doc:
    """A report of every organisation, published, as a reader of ``visible`` organisations
    sees it: their rows and totals; the total of all only when they see every organisation
    (the sum of some organisations is not among the protected counts)."""
    out = dict(result)
    out["rows"] = [r for r in result["rows"] if r.get("organisation") in visible]
    if "kinds" in result:
        out["kinds"] = [r for r in result["kinds"] if r.get("organisation") in visible]
    out["organisations"] = [o for o in result["organisations"] if o["organisation"] in visible]
    if not everyone <= visible:
        out["total"] = {k: None for k in result["total"]}
    if visible != everyone:
        out["filters"] = {**result["filters"], "organisation": sorted(visible)}
    return out


# --- the section of the reports page ----------------------------------------------------------


def assistance_section(result: Mapping[str, Any], config: Any, labels: Any, hidden: str) -> str:
    """The table "types of assistance provided": people per kind (rows) and organisation, in
    the language of ``labels`` (a :class:`services.store.reports.Labels`)."""
    t = labels.text

    def label(names: dict[str, str], fallback: str) -> str:
        return str(labels.pick(names, fallback))

    orgs = [o["organisation"] for o in result["organisations"]]
    cells = {(r["organisation"], r["assistance"]): r["people"] for r in result["rows"]}
    kinds = [k for k in config.cases.assistance_kinds if any((o, k) in cells for o in orgs)]

    def num(v: Any) -> str:
        return escape(hidden) if v is None else str(v)

    head = "".join(
        f"<th>{escape(config.organisations[o].name if o in config.organisations else o)}</th>" for o in orgs
    )
    out = [
        f'<section id="assistance"><h2>{escape(t("assistance title"))}</h2>',
        f"<p>{escape(t('assistance note'))}</p>",
        f'<table class="figures"><tr><th>{escape(t("Assistance"))}</th>{head}</tr>',
    ]
    for kind in kinds:
        title = label(dict(config.cases.assistance_kinds[kind].title), kind)
        row = "".join(
            f"<td>{num(cells.get((o, kind)))}</td>" if (o, kind) in cells else "<td>-</td>" for o in orgs
        )
        out.append(f"<tr><td>{escape(title)}</td>{row}</tr>")
    totals = "".join(f"<th>{num(o['people'])}</th>" for o in result["organisations"])
    out.append(f"<tr><th>{escape(t('People assisted'))}</th>{totals}</tr></table>")
    if not (result.get("published") and "organisation" in result["filters"]):  # else not theirs to see
        out.append(
            f"<p>{escape(t('all organisations people', n=_plain(result['total']['people'], hidden)))}</p>"
        )
    out.append("</section>")
    return "".join(out)


def _plain(v: Any, hidden: str) -> str:
    return hidden if v is None else str(v)


# --- CSV -------------------------------------------------------------------------------------

_COUNTS = ("people", "services", "amount", "cases", "referrals")


def to_csv(result: Mapping[str, Any]) -> str:
    """A report as CSV: its rows, then the totals per organisation and of all, the filters and
    the note (suppression, or "not for publication")."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    hidden = ""  # a suppressed count is empty, as in the statistics' CSV

    def cell(v: Any) -> str:
        return hidden if v is None else str(v)

    rows = result["rows"]
    head = [k for k in (rows[0] if rows else {}) if k != "suppressed"]
    if not head:
        head = ["organisation", next(k for k in _COUNTS if k in result["total"])]
    w.writerow(head)
    for row in rows:
        w.writerow([cell(row[k]) if k in _COUNTS else row[k] for k in head])
    w.writerow([])
    count = next(k for k in _COUNTS if k in result["total"])
    for org in result.get("organisations", []):
        w.writerow(["total", org["organisation"], cell(org[count])])
    w.writerow(["total", "all", cell(result["total"][count])])
    w.writerow(["year", result["year"]])
    for name, values in result["filters"].items():
        w.writerow(["filter", f"{name} = {' or '.join(values)}"])
    w.writerow(["note", result["note"]])
    return out.getvalue()
