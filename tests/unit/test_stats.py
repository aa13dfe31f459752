"""Statistics counting, shares and year-on-year change (pure logic); publication is in
test_publication.py."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.store.stats import (
    QueryError,
    Tally,
    build_table,
    case_fields,
    categorical,
    make_facts,
    organisation_of,
    parse_query,
)

MINSK = ZoneInfo("Europe/Minsk")
TODAY = date(2026, 12, 31)


def facts(at: datetime, channel: str = "email", **fields: list[str]) -> dict:
    return {"at": at, "line": "113", "channel": channel, "organisation": "lastrada", "fields": fields}


def q(**params: str):
    return parse_query(params, TODAY, MINSK)


def test_only_codes_become_statistics_free_text_never_does() -> None:
    case = {
        "gender": "female",
        "topics": ["work_abroad", "au_pair", "work_abroad"],
        "crisis": True,
        "children": 2,
        "comment": "Она боится мужа, звонила из Варшавы",
        "destination": "PL",
        "mixed": ["ok", "not a code"],
        "channel": "forged",
    }
    assert case_fields(case) == {
        "gender": ["female"],
        "topics": ["work_abroad", "au_pair"],
        "crisis": ["yes"],
        "children": ["2"],
        "destination": ["PL"],
    }
    assert categorical({"a": 1}) is None
    at = datetime(2026, 3, 1, tzinfo=UTC)
    made = make_facts(case, at=at, line="dv", channel="phone", organisation=None)
    assert made["organisation"] == "unknown" and made["channel"] == "phone" and made["at"] == at


def test_the_organisation_a_consultation_counts_for() -> None:
    assert organisation_of(["lastrada", "bwc"], "bwc", []) == "bwc"
    assert organisation_of(["gp"], None, []) == "gp"
    assert organisation_of(["lastrada", "bwc"], None, ["bwc"]) == "bwc"
    assert organisation_of(["lastrada", "bwc"], None, []) is None


def test_local_dates_bound_the_window() -> None:
    query = q(**{"from": "2026-01-01", "to": "2026-01-31"})
    # 23:30 UTC on 31 December is already 1 January in Minsk (UTC+3).
    inside = facts(datetime(2025, 12, 31, 22, 0, tzinfo=UTC))
    outside = facts(datetime(2026, 1, 31, 21, 0, tzinfo=UTC))  # 1 February, 00:00 in Minsk
    before = facts(datetime(2025, 12, 31, 20, 59, tzinfo=UTC))
    t = Tally(query).add_all([inside, outside, before])
    assert t.threads == 1


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"from": "2026-13-01"}, "from"),
        ({"from": "2026-02-01", "to": "2026-01-01"}, "to"),
        ({"by": "gender,count"}, "by"),
        ({"by": "a,b,c,d"}, "by"),
        ({"by": "gender,gender"}, "by"),
        ({"period": "week"}, "period"),
        ({"gender": "fe male"}, "gender"),
        ({"Gender": "female"}, "Gender"),
        ({"publish": "yes"}, "publish"),
    ],
)
def test_bad_requests_name_the_parameter(params: dict[str, str], message: str) -> None:
    with pytest.raises(QueryError, match=message):
        q(**params)


def test_fields_outside_the_configured_form_are_refused() -> None:
    with pytest.raises(QueryError, match="unknown field 'shoe_size'"):
        parse_query({"by": "shoe_size"}, TODAY, MINSK, known_fields=["gender"])
    assert parse_query({"by": "gender,channel"}, TODAY, MINSK, known_fields=["gender"]).by == (
        "gender",
        "channel",
    )


def generated_year(seed: int, year: int, n: int) -> list[dict]:
    rnd = random.Random(seed)
    out = []
    start = datetime(year, 1, 1, tzinfo=MINSK)
    for _ in range(n):
        at = start + timedelta(minutes=rnd.randrange(365 * 24 * 60))
        fields: dict[str, list[str]] = {"gender": [rnd.choice(["female", "male", "other"])]}
        if rnd.random() < 0.9:
            fields["topics"] = rnd.sample(["work_abroad", "study_abroad", "au_pair", "crisis_abroad"], 2)
        out.append(facts(at.astimezone(UTC), rnd.choice(["email", "chat", "phone"]), **fields))
    return out


def test_a_generated_year_gives_exact_counts_and_shares_by_month_and_topic() -> None:
    docs = generated_year(7, 2026, 900)
    query = q(**{"from": "2026-01-01", "to": "2026-12-31", "by": "topics", "period": "month"})
    result = build_table(Tally(query).add_all(docs), None)
    # Independently: local month of each thread, one count per topic it names.
    expected: dict[tuple[str, str | None], int] = {}
    per_month: dict[str, int] = {}
    for d in docs:
        month = d["at"].astimezone(MINSK).strftime("%Y-%m")
        per_month[month] = per_month.get(month, 0) + 1
        for topic in d["fields"].get("topics") or [None]:
            expected[(month, topic)] = expected.get((month, topic), 0) + 1
    got = {(r["period"], r["topics"]): r["count"] for r in result["rows"]}
    assert got == expected
    assert result["total"]["count"] == 900
    assert {p["period"]: p["count"] for p in result["periods"]} == per_month
    for r in result["rows"]:
        assert r["share"] == round(100 * r["count"] / per_month[r["period"]], 1)
    assert "do not publish" in result["note"]


def test_filters_keep_threads_with_one_of_the_values() -> None:
    docs = generated_year(3, 2026, 400)
    query = q(by="gender", channel="email,phone", topics="au_pair")
    result = build_table(Tally(query).add_all(docs), None)
    expected: dict[str, int] = {}
    for d in docs:
        if d["channel"] in {"email", "phone"} and "au_pair" in d["fields"].get("topics", []):
            g = d["fields"]["gender"][0]
            expected[g] = expected.get(g, 0) + 1
    assert {r["gender"]: r["count"] for r in result["rows"]} == expected
    assert result["total"]["count"] == sum(expected.values())
    assert result["filters"] == {"channel": ["email", "phone"], "topics": ["au_pair"]}


def test_year_on_year_compares_the_same_window_a_year_earlier() -> None:
    now = generated_year(11, 2026, 600)
    before = generated_year(12, 2025, 500)
    query = q(**{"from": "2026-01-01", "to": "2026-12-31", "by": "channel", "period": "year", "compare": "1"})
    result = build_table(
        Tally(query).add_all(now + before), Tally(query.previous_year()).add_all(now + before)
    )
    count_now = {c: sum(d["channel"] == c for d in now) for c in ("email", "chat", "phone")}
    count_before = {c: sum(d["channel"] == c for d in before) for c in ("email", "chat", "phone")}
    for r in result["rows"]:
        assert r["period"] == "2026"
        assert r["count"] == count_now[r["channel"]]
        assert r["previous"] == count_before[r["channel"]]
        expected = round(
            100 * (count_now[r["channel"]] - count_before[r["channel"]]) / count_before[r["channel"]], 1
        )
        assert r["change"] == expected
    assert result["total"] == {
        "count": 600,
        "previous": 500,
        "change": 20.0,
        "people": 0,
        "without_known_person": 600,
    }
    assert result["periods"] == [
        {"period": "2026", "count": 600, "people": 0, "previous": 500, "change": 20.0}
    ]


def test_a_leap_day_window_compares_with_28_february() -> None:
    query = q(**{"from": "2028-02-29", "to": "2028-02-29"})
    prev = query.previous_year()
    assert (prev.first, prev.last) == (date(2027, 2, 28), date(2027, 2, 28))
