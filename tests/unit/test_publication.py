"""Figures for publication, tried as a publisher who downloads every table of a year, in every
scope, and solves for the hidden cells (pure logic: the catalogue, the routes' mapping, the
published form of a table; the routes themselves are in tests/integration)."""

from __future__ import annotations

import csv
import io
import itertools
import random
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from services.store import publication, stats
from services.store.publication import Catalogue, NotPublishable
from tests.attacker import interval

MINSK = ZoneInfo("Europe/Minsk")
YEAR = 2025
TODAY = date(2026, 3, 1)
LINES = ["113", "dv"]


def consultation(
    at: datetime, org: str = "lastrada", line: str = "113", **fields: list[str]
) -> dict[str, Any]:
    return {"at": at, "line": line, "channel": "email", "organisation": org, "fields": fields}


def download(docs: list[dict[str, Any]], lines: list[str], org: str | None, **params: str) -> dict[str, Any]:
    """What a person of scope (``lines``, ``org``) gets from ``/api/stats?publish=1&...``."""
    query = stats.parse_query(
        {"from": f"{YEAR}-01-01", "to": f"{YEAR}-12-31", "publish": "1", **params}, TODAY, MINSK
    )
    request = publication.request_of(query, lines, org, LINES)
    publication.whole_year(query, TODAY)
    tallies = [stats.Tally(q) for q in ([query, query.previous_year()] if query.compare else [query])]
    for d in docs:
        if d["line"] in lines and (org is None or d["organisation"] == org):
            for t in tallies:
                t.add(d)
    exact = stats.build_table(tallies[0], tallies[1] if query.compare else None)
    now, before = catalogue(docs, YEAR), catalogue(docs, YEAR - 1)
    return publication.publish_table(exact, request, now, before if query.compare else None, 5)


def catalogue(docs: list[dict[str, Any]], year: int) -> Catalogue:
    cat = Catalogue(year, MINSK)
    for d in docs:
        cat.add(d)
    return cat


def generated(seed: int, n: int) -> list[dict[str, Any]]:
    """A year of both lines, with rare genders and ages (small cells)."""
    rnd = random.Random(seed)
    docs = []
    for _ in range(n):
        at = datetime(YEAR, 1, 1, tzinfo=MINSK) + timedelta(minutes=rnd.randrange(365 * 24 * 60))
        docs.append(
            consultation(
                at.astimezone(UTC),
                org=rnd.choice(["lastrada", "bwc"]),
                line=rnd.choices(LINES, weights=[60, 40])[0],
                gender=[rnd.choices(["f", "m", "x"], weights=[70, 27, 3])[0]],
                age_group=[rnd.choices(["18", "27", "41", "60"], weights=[30, 40, 27, 3])[0]],
            )
        )
    return docs


def test_small_cells_and_what_would_give_them_away_are_hidden() -> None:
    at = datetime(YEAR, 5, 5, 12, tzinfo=UTC)
    docs = (
        [consultation(at, gender=["female"]) for _ in range(20)]
        + [consultation(at, gender=["male"]) for _ in range(6)]
        + [consultation(at, gender=["other"]) for _ in range(2)]
    )
    result = download(docs, ["113"], None, by="gender")
    rows = {r["gender"]: r for r in result["rows"]}
    assert rows["other"]["count"] is None and rows["other"]["suppressed"]
    # 28 - 20 - 6 would give "other" away: the next smallest cell is hidden as well.
    assert rows["male"]["count"] is None and rows["male"]["share"] is None and rows["male"]["suppressed"]
    assert rows["female"]["count"] == 20 and rows["female"]["share"] == 71.4
    assert result["total"]["count"] == 28
    assert result["published"] and result["min_cell"] == 5 and "from 1 to 4" in result["note"]
    # Empty in the CSV: "<5" would itself tell that the count is below 5.
    lines = list(csv.reader(io.StringIO(stats.to_csv(result))))
    body = {r[0]: r[1:] for r in lines[1 : lines.index([])]}
    assert body["other"] == ["", ""] and body["male"] == ["", ""] and body["female"] == ["20", "71.4"]


def test_a_previous_year_is_published_as_its_own_year_was() -> None:
    at = datetime(YEAR, 5, 5, tzinfo=UTC)
    docs = [consultation(at, gender=["female"]) for _ in range(30)] + [consultation(at, gender=["male"])] * 9
    docs += [consultation(at - timedelta(days=365), gender=["female"]) for _ in range(2)]
    docs += [consultation(at - timedelta(days=365), gender=["male"]) for _ in range(9)]
    result = download(docs, ["113"], None, by="gender", compare="1")
    before = download(
        [{**d, "at": d["at"] + timedelta(days=365)} for d in docs if d["at"].year == YEAR - 1],
        ["113"],
        None,
        by="gender",
    )
    rows = {r["gender"]: r for r in result["rows"]}
    assert rows["female"]["count"] == 30 and rows["female"]["previous"] is None
    assert rows["female"]["change"] is None and rows["female"]["suppressed"]
    assert {r["gender"]: r["previous"] for r in result["rows"]} == {
        r["gender"]: r["count"] for r in before["rows"]
    }
    assert result["total"]["previous"] == 11 and result["total"]["change"] == round(100 * (39 - 11) / 11, 1)


def test_contacts_without_a_consultation_are_published_by_reason_for_the_year() -> None:
    at = datetime(YEAR, 3, 10, 12, tzinfo=UTC)
    docs = [consultation(at, gender=["f"])] * 12
    docs += [
        stats.no_consultation_facts(r, at=at, line="113", channel="email", organisation="lastrada")
        for r in ["spam"] * 6 + ["test"]
    ]
    result = download(docs, ["113"], None, period="month")
    assert result["no_consultation"]["rows"] == [
        {"period": str(YEAR), "reason": "spam", "count": None, "suppressed": True},
        {"period": str(YEAR), "reason": "test", "count": None, "suppressed": True},
    ]
    assert result["no_consultation"]["count"] == 7


@pytest.mark.parametrize(
    ("params", "lines", "org", "says"),
    [
        ({"from": f"{TODAY.year}-01-01", "to": f"{TODAY.year}-12-31"}, ["113"], None, "a year that is over"),
        ({"from": f"{YEAR}-01-01", "to": f"{YEAR}-06-30"}, ["113"], None, "one whole year"),
        ({"gender": "f"}, ["113"], None, "the only filter is one line"),
        ({"by": "gender,topics"}, ["113"], None, "gender by"),
        ({"by": "age_group", "period": "month"}, ["113"], None, "channel by month"),
        ({}, ["113"], "lastrada", "published per line and for all lines"),
        ({"organisation": "bwc"}, ["113"], None, "published per line and for all lines"),
        ({"by": "organisation"}, ["113"], None, "published per line and for all lines"),
        ({"channel": "email"}, ["113"], None, "the only filter is one line"),
        ({"by": "line"}, ["113"], None, "by line from all lines"),
    ],
)
def test_what_is_outside_the_catalogue_is_refused_saying_what_can_be(
    params: dict[str, str], lines: list[str], org: str | None, says: str
) -> None:
    query = stats.parse_query(
        {"from": f"{YEAR}-01-01", "to": f"{YEAR}-12-31", "publish": "1", **params}, TODAY, MINSK
    )
    with pytest.raises(NotPublishable, match=says):
        publication.whole_year(query, TODAY)
        publication.request_of(query, lines, org, LINES)


def attack(
    published: list[tuple[str, tuple[str | None, str | None], int | None]], atoms: list[tuple[str, str, str]]
):
    """Every published (scope, (gender, age) or margins, count) as a sum of non-negative atoms
    (line, gender, age); (min, max) of each hidden one."""

    def covers(scope: str, cell: tuple[str | None, str | None], atom: tuple[str, str, str]) -> bool:
        return scope in ("all", atom[0]) and cell[0] in (None, atom[1]) and cell[1] in (None, atom[2])

    shown = [(s, c, n) for s, c, n in published if n is not None]
    hidden = {(s, c) for s, c, n in published if n is None}
    a_eq = [[1.0 if covers(s, c, a) else 0.0 for a in atoms] for s, c, _ in shown]
    b_eq = [float(n) for _, _, n in shown]
    return {
        (s, c): interval([1.0 if covers(s, c, a) else 0.0 for a in atoms], a_eq, b_eq)
        for s, c in sorted(hidden, key=repr)
    }


@pytest.mark.parametrize("seed", range(4))
def test_no_hidden_cell_can_be_worked_out_from_everything_published_for_the_year(seed: int) -> None:
    """The issue's attack, across tables and scopes: gender x age, gender, age group and the
    total, downloaded for each line and for both lines together, for one year."""
    docs = generated(seed, 300)
    published: list[tuple[str, tuple[str | None, str | None], int | None]] = []
    for scope, lines in [("113", ["113"]), ("dv", ["dv"]), ("all", LINES)]:
        both = download(docs, lines, None, by="gender,age_group")
        published += [(scope, (r["gender"], r["age_group"]), r["count"]) for r in both["rows"]]
        gender = download(docs, lines, None, by="gender")
        published += [(scope, (r["gender"], None), r["count"]) for r in gender["rows"]]
        age = download(docs, lines, None, by="age_group")
        published += [(scope, (None, r["age_group"]), r["count"]) for r in age["rows"]]
        published.append((scope, (None, None), gender["total"]["count"]))
    exact = Counter((d["line"], d["fields"]["gender"][0], d["fields"]["age_group"][0]) for d in docs)
    hidden = [p for p in published if p[2] is None]
    assert any(0 < exact[("113", g, a)] < 5 for g, a in itertools.product("fmx", ["18", "27", "41", "60"]))
    assert hidden, "the generated year has small cells"
    atoms = [(ln, g, a) for ln in LINES for g in "fmx" for a in ("18", "27", "41", "60")]
    for (scope, cell), (low, high) in attack(published, atoms).items():
        assert high - low >= 5 - 1e-6, (scope, cell, low, high)
    # Nothing below the threshold is shown anywhere, and what is shown is exact.
    for scope, (g, a), n in published:
        if n is not None:
            lines = LINES if scope == "all" else [scope]
            true = sum(
                v for (ln, gg, aa), v in exact.items() if ln in lines and g in (None, gg) and a in (None, aa)
            )
            assert n == true and not 0 < n < 5
