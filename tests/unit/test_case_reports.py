"""Case reports, the pure parts: people per kind of service, cases by kind, status and
duration, referrals by destination; suppression for publication; CSV; the query."""

from __future__ import annotations

import csv
import io
import itertools
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from services.store.case_reports import (
    CaseQuery,
    QueryError,
    assistance,
    case_counts,
    duration_band,
    duration_days,
    parse_case_query,
    protect,
    referral_counts,
    to_csv,
)

MINSK = ZoneInfo("Europe/Minsk")
NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
Q = CaseQuery(2026, MINSK)
_n = itertools.count(1)


def case(
    org: str = "lastrada", kind: str = "presumed_trafficking", client: str | None = None, **more: Any
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "_id": f"c{next(_n)}",
        "organisation": org,
        "line": "113",
        "kind": kind,
        "status": "active",
        "client_id": client,
        "opened_at": datetime(2026, 3, 1, 9, tzinfo=UTC),
        "closed_at": None,
        "services": [],
        "external_referrals": [],
    }
    doc.update(more)
    return doc


def service(kind: str, day: str = "2026-04-01", amount: float | None = None) -> dict[str, Any]:
    return {"id": "s", "kind": kind, "date": day, "by": "x", "amount": amount, "note": "free text"}


def test_people_per_kind_count_a_person_once_however_many_cases_and_services() -> None:
    cases = [
        # One person (a known client) in two cases, counselled three times in all.
        case(
            client="p1",
            services=[service("counselling"), service("counselling"), service("shelter", amount=50)],
        ),
        case(client="p1", services=[service("counselling"), service("legal_aid")]),
        # A person nobody linked to a client: the case is the person.
        case(services=[service("counselling"), service("shelter", amount=25.5)]),
        # A service of last year and one of next year: not this year's.
        case(client="p3", services=[service("medical", "2025-12-31"), service("medical", "2027-01-01")]),
        case("bwc", client="p1", services=[service("counselling")]),
    ]
    r = assistance(
        cases, Q, 5, {"lastrada": ["counselling", "shelter", "legal_aid", "medical"], "bwc": ["shelter"]}
    )
    people = {(row["organisation"], row["assistance"]): row["people"] for row in r["rows"]}
    assert people == {
        ("lastrada", "counselling"): 2,
        ("lastrada", "shelter"): 2,
        ("lastrada", "legal_aid"): 1,
        ("lastrada", "medical"): 0,  # offered, given to nobody this year: still a row
        ("bwc", "counselling"): 1,
        ("bwc", "shelter"): 0,
    }
    row = next(x for x in r["rows"] if x["assistance"] == "counselling" and x["organisation"] == "lastrada")
    assert row["services"] == 4
    shelter = next(x for x in r["rows"] if x["assistance"] == "shelter" and x["organisation"] == "lastrada")
    assert shelter["amount"] == 75.5
    assert {o["organisation"]: o["people"] for o in r["organisations"]} == {"lastrada": 2, "bwc": 1}
    # The same person helped by two organisations is one person of all.
    assert r["total"] == {"people": 2}
    assert r["note"].startswith("Exact figures") and "free text" not in str(r)


def test_filters_by_kind_line_and_organisation() -> None:
    cases = [
        case(kind="crisis_abroad", services=[service("counselling")]),
        case(kind="presumed_trafficking", services=[service("counselling")]),
        case(kind="presumed_trafficking", line="dv", services=[service("counselling")]),
    ]
    only = CaseQuery(2026, MINSK, kinds=frozenset({"presumed_trafficking"}), lines=frozenset({"113"}))
    assert assistance(cases, only, 5)["total"] == {"people": 1}
    assert assistance(cases, Q, 5)["total"] == {"people": 3}
    assert assistance(cases, CaseQuery(2026, MINSK, organisations=frozenset({"bwc"})), 5)["total"] == {
        "people": 0
    }


def test_cases_by_kind_status_and_duration() -> None:
    opened = datetime(2026, 3, 1, 9, tzinfo=UTC)
    cases = [
        case(status="closed", closed_at=opened + timedelta(days=3)),
        case(status="closed", closed_at=opened + timedelta(days=8)),
        case(status="monitoring"),  # open since March: 275 days to NOW
        case(kind="crisis_abroad", status="open", opened_at=NOW - timedelta(hours=2)),
        case(opened_at=datetime(2025, 12, 31, 12, tzinfo=UTC)),  # last year
        case(opened_at=datetime(2025, 12, 31, 22, 30, tzinfo=UTC)),  # 1 January in Minsk: this year
    ]
    r = case_counts(cases, Q, NOW, 5)
    got = {(x["kind"], x["status"], x["duration"]): x["cases"] for x in r["rows"]}
    assert got == {
        ("presumed_trafficking", "active", "181-365"): 1,
        ("presumed_trafficking", "monitoring", "181-365"): 1,
        ("presumed_trafficking", "closed", "0-7"): 1,
        ("presumed_trafficking", "closed", "8-30"): 1,
        ("crisis_abroad", "open", "0-7"): 1,
    }
    assert {(k["kind"], k["cases"]) for k in r["kinds"]} == {
        ("presumed_trafficking", 4),
        ("crisis_abroad", 1),
    }
    assert r["total"] == {"cases": 5}


def test_duration_bands_and_days() -> None:
    days = (0, 7, 8, 30, 31, 90, 91, 180, 181, 365, 366, 5000)
    bands = ["0-7", "8-30", "31-90", "91-180", "181-365", "366+"]
    assert [duration_band(d) for d in days] == [b for b in bands for _ in (1, 2)]
    assert duration_band(-1) == "0-7"
    # By the local calendar: 23:30 UTC is the next day in Minsk.
    c = {
        "opened_at": datetime(2026, 1, 1, 20, 30, tzinfo=UTC),
        "closed_at": datetime(2026, 1, 1, 21, 30, tzinfo=UTC),
    }
    assert duration_days(c, NOW, MINSK) == 1


def test_referrals_by_destination() -> None:
    at = datetime(2026, 5, 1, tzinfo=UTC)
    cases = [
        case(external_referrals=[{"to": "police", "at": at}, {"to": "crisis_room_minsk", "at": at}]),
        case(
            external_referrals=[
                {"to": "police", "at": at},
                {"to": "police", "at": datetime(2025, 5, 1, tzinfo=UTC)},
            ]
        ),
        case("bwc", external_referrals=[{"to": "police", "at": at}]),
    ]
    r = referral_counts(cases, Q, 5)
    assert [(x["organisation"], x["destination"], x["referrals"]) for x in r["rows"]] == [
        ("bwc", "police", 1),
        ("lastrada", "police", 2),
        ("lastrada", "crisis_room_minsk", 1),
    ]
    assert r["total"] == {"referrals": 4}


# --- publication ---------------------------------------------------------------------------


def test_a_single_small_cell_takes_the_next_smallest_with_it() -> None:
    counts = {("a", "x"): 3, ("a", "y"): 7, ("a", "z"): 20, ("a",): 30, (): 30}
    groups = [(("a",), [("a", "x"), ("a", "y"), ("a", "z")]), ((), [("a",)])]
    assert protect(counts, groups, 5) == {("a", "x"), ("a", "y")}


def test_a_small_cell_alone_in_its_group_hides_the_total_and_the_level_above_protects_it() -> None:
    counts = {("a", "x"): 3, ("a",): 3, ("b", "x"): 40, ("b",): 40, (): 43}
    groups = [(("a",), [("a", "x")]), (("b",), [("b", "x")]), ((), [("a",), ("b",)])]
    hidden = protect(counts, groups, 5)
    # a's total is small itself; then the total of all would give it away: b's total goes too,
    # and then b's only cell, which equals it.
    assert {("a", "x"), ("a",), ("b",), ("b", "x")} <= hidden


@given(
    st.lists(st.lists(st.integers(0, 12), min_size=1, max_size=6), min_size=1, max_size=5),
    st.integers(2, 6),
)
# Once ended "Unknown" in the solver's warm start (services/store/disclosure.py solves it again).
@example([[1], [2], [2, 2]], 2)
def test_no_group_holds_exactly_one_hidden_count(table: list[list[int]], min_cell: int) -> None:
    counts: dict[Any, int] = {}
    groups = []
    for g, row in enumerate(table):
        parts = [(str(g), str(i)) for i in range(len(row))]
        counts.update(zip(parts, row, strict=True))
        counts[(str(g),)] = sum(row)
        groups.append(((str(g),), parts))
    counts[()] = sum(map(sum, table))
    groups.append(((), [(str(g),) for g in range(len(table))]))
    hidden = protect(counts, groups, min_cell)
    assert all(not 0 < n < min_cell or k in hidden for k, n in counts.items())
    for total, parts in groups:
        assert sum(1 for k in (total, *parts) if k in hidden) != 1, (total, parts, hidden)


def test_published_assistance_hides_small_counts_and_shows_no_services_or_amounts() -> None:
    cases = [case(client=f"p{i}", services=[service("counselling")]) for i in range(12)]
    cases += [case(client=f"p{i}", services=[service("shelter", amount=10)]) for i in range(2)]
    cases += [case(client=f"p{i}", services=[service("legal_aid")]) for i in range(6)]
    q = CaseQuery(2026, MINSK, publish=True)
    r = assistance(cases, q, 5)
    rows = {x["assistance"]: x for x in r["rows"]}
    assert rows["shelter"]["people"] is None and rows["shelter"]["suppressed"]
    # A person may be given several kinds, so the kinds add up to at least the total, not to
    # it: shelter can be anything from 0 to 12 given the rest, and nothing more is hidden.
    assert rows["legal_aid"]["people"] == 6 and rows["counselling"]["people"] == 12
    assert all("services" not in x and "amount" not in x for x in r["rows"])
    assert r["total"] == {"people": 12} and r["min_cell"] == 5 and "suppressed" in r["note"]


def test_csv_of_a_published_report() -> None:
    cases = [case(client=f"p{i}", services=[service("counselling")]) for i in range(7)]
    cases.append(case(client="x", services=[service("shelter")]))
    q = CaseQuery(2026, MINSK, publish=True, kinds=frozenset({"presumed_trafficking"}))
    text = to_csv(assistance(cases, q, 5))
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["organisation", "assistance", "people"]
    # Empty where hidden: "<5" would itself tell the bound. Shelter (1) is hidden; 7 given
    # counselling and 8 people leave it anywhere from 1 to 8.
    assert ["lastrada", "shelter", ""] in rows and ["lastrada", "counselling", "7"] in rows
    assert ["total", "all", "8"] in rows and ["filter", "kind = presumed_trafficking"] in rows
    assert rows[-1][0] == "note"
    empty = list(csv.reader(io.StringIO(to_csv(referral_counts([], Q, 5)))))
    assert empty[0] == ["organisation", "referrals"] and ["total", "all", "0"] in empty


def test_the_query() -> None:
    today = date(2026, 12, 7)
    known = {
        "kinds": ["crisis_abroad", "presumed_trafficking"],
        "lines": ["113"],
        "organisations": ["lastrada"],
    }
    q = parse_case_query({"year": "2025", "publish": "1", "kind": "crisis_abroad"}, today, MINSK, **known)
    assert (q.year, q.publish, q.kinds) == (2025, True, frozenset({"crisis_abroad"}))
    assert parse_case_query({}, today, MINSK, **known).year == 2026
    for params, word in [
        ({"year": "1999"}, "year"),
        ({"year": "2027"}, "year"),
        ({"year": "x"}, "year"),
        ({"publish": "yes"}, "publish"),
        ({"kind": "shelter"}, "kind"),
        ({"line": "dv"}, "line"),
        ({"organisation": "bwc"}, "organisation"),
        ({"from": "2026-01-01"}, "from"),
    ]:
        with pytest.raises(QueryError, match=word):
            parse_case_query(params, today, MINSK, **known)
