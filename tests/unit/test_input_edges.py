"""Bad input at the consultant API's edges, as pure logic (issue 15): JSON nesting measured
without recursion, statistics dates at the calendar's edges refused with a reason."""

from __future__ import annotations

import json
import time
from datetime import date
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.store.stats import FIRST_DATE, LAST_DATE, QueryError, parse_query
from shared.http import MAX_JSON_DEPTH, json_too_deep

MINSK = ZoneInfo("Europe/Minsk")
TODAY = date(2026, 6, 30)


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


def test_depth_is_counted_outside_strings_only() -> None:
    assert not json_too_deep(nested(MAX_JSON_DEPTH))
    assert json_too_deep(nested(MAX_JSON_DEPTH + 1))
    assert json_too_deep('{"a":' * 5000 + "1" + "}" * 5000)
    # Brackets inside strings, escaped quotes included, are text.
    text = json.dumps({"text": "[[[{{{" * 1000 + '\\"[[[' + "]" * 10, "n": [[1]]})
    assert not json_too_deep(text)
    # Siblings are not depth.
    assert not json_too_deep(json.dumps([[[i]] for i in range(5000)]))


def test_strings_are_skipped_in_one_pass() -> None:
    # Escaped quotes without the closing one: a pattern tried again at each quote would take
    # minutes over these 200 KiB (quadratic); one pass takes milliseconds.
    started = time.perf_counter()
    assert not json_too_deep('"' + '\\"' * 100_000 + "[" * 40)  # unterminated: the parser's 400
    assert time.perf_counter() - started < 1
    assert json_too_deep('["\\\\",' * 40 + "]" * 40)  # an escaped backslash, then the quote ends


@given(
    st.recursive(st.none() | st.integers() | st.text(), lambda c: st.lists(c) | st.dictionaries(st.text(), c))
)
def test_the_measure_agrees_with_the_parser(value: object) -> None:
    text = json.dumps(value)

    def depth(v: object) -> int:
        if isinstance(v, list):
            return 1 + max((depth(x) for x in v), default=0)
        if isinstance(v, dict):
            return 1 + max((depth(x) for x in v.values()), default=0)
        return 0

    for limit in (1, 3, 8):
        assert json_too_deep(text, limit) == (depth(value) > limit)


@pytest.mark.parametrize(
    "params",
    [
        {"from": "0001-01-01"},
        {"to": "9999-12-31"},
        {"from": "0001-01-01", "to": "0001-12-31"},
        {"from": "9999-01-01", "to": "9999-12-31"},
        {"from": "10000-01-01"},
        {"to": "2026-02-30"},
        {"from": "yesterday"},
        {"from": "1899-12-31", "to": "1900-01-01"},
    ],
)
def test_dates_at_the_calendars_edges_are_refused(params: dict[str, str]) -> None:
    with pytest.raises(QueryError, match=r"^(from|to): "):
        parse_query(params, TODAY, MINSK)


@given(st.dates(FIRST_DATE, LAST_DATE), st.integers(0, 366 * 20), st.booleans())
def test_every_accepted_window_can_be_computed(first: date, days: int, compare: bool) -> None:
    last = date.fromordinal(min(first.toordinal() + days, LAST_DATE.toordinal()))
    params = {"from": first.isoformat(), "to": last.isoformat(), "compare": "1" if compare else "0"}
    query = parse_query(params, TODAY, MINSK)
    for window in (query, query.previous_year()):
        assert window.start < window.end
