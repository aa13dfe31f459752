"""Finding a record, the pure parts: words, tokens, postings, criteria, intersection."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conversations.search import (
    SearchKey,
    consultation_postings,
    message_postings,
    months,
    posting_key,
    split_ref,
    words,
)
from services.store.search import Criteria, Invalid, all_of, hits, newest_first, parse_criteria

MINSK = ZoneInfo("Europe/Minsk")
KEY = SearchKey(b"s" * 32)


def test_words_are_case_folded_whole_words_without_the_most_common_ones() -> None:
    assert words("Паспорт забрали в ВАРШАВЕ, тел. +375-29-123") == {
        "паспорт",
        "забрали",
        "варшаве",
        "тел",
        "375",
        "29",
        "123",
    }
    assert words("Ёлка и елка") == {"елка"}
    assert words("anna@example.com") == {"anna", "example", "com"}
    assert words("the and of") == set()
    assert words("") == set() and words(None) == set()
    assert words("a" * 41 + " ok") == {"ok"}
    assert words("snake_case") == {"snake", "case"}


@given(st.text(max_size=300))
def test_words_of_any_text_are_bounded_and_stable(text: str) -> None:
    found = words(text)
    assert all(2 <= len(w) <= 40 and w == w.casefold() for w in found)
    assert words(" ".join(sorted(found))) == found


def test_tokens_are_keyed_and_say_nothing_of_the_word() -> None:
    other = SearchKey(b"t" * 32)
    assert KEY.word("паспорт") == KEY.word("паспорт")
    assert KEY.word("паспорт") != other.word("паспорт")
    assert KEY.word("паспорт") != KEY.word("паспорта")
    # Terms of different kinds never meet, even on the same text.
    assert len({KEY.word("lastrada"), KEY.consultations("lastrada"), KEY.answer("lastrada", "x", "y")}) == 3
    token = KEY.word("паспорт")
    assert len(token) == 12 and "паспорт" not in token and "~" not in token


def test_postings_of_a_message_point_at_its_thread_on_its_local_day() -> None:
    # 22:30 UTC on 31 January is 1 February in Minsk.
    msg = {
        "thread_id": "t1",
        "created_at": datetime(2026, 1, 31, 22, 30, tzinfo=UTC),
        "text": "Паспорт паспорт",
    }
    assert message_postings(msg, KEY, MINSK) == {
        posting_key(KEY.word("паспорт"), date(2026, 2, 1)): {"01|t1"}
    }
    assert message_postings({"thread_id": "t1", "text": "no date"}, KEY, MINSK) == {}


def test_postings_of_a_consultation_name_its_organisation_and_answers() -> None:
    at = datetime(2026, 3, 10, 9, tzinfo=UTC)
    c = {
        "_id": "t1:2",
        "facts": {"at": at, "organisation": "bwc", "fields": {"gender": ["female"], "topics": ["a", "b"]}},
    }
    got = consultation_postings(c, KEY, MINSK)
    day = date(2026, 3, 10)
    assert got == {
        posting_key(KEY.consultations("bwc"), day): {"10|t1:2"},
        posting_key(KEY.answer("bwc", "gender", "female"), day): {"10|t1:2"},
        posting_key(KEY.answer("bwc", "topics", "a"), day): {"10|t1:2"},
        posting_key(KEY.answer("bwc", "topics", "b"), day): {"10|t1:2"},
    }
    assert split_ref("10|t1:2") == (10, "t1:2")


def test_months_and_day_filters() -> None:
    assert months(date(2025, 11, 30), date(2026, 2, 1)) == ["2025-11", "2025-12", "2026-01", "2026-02"]
    c = Criteria(first=date(2026, 3, 5), last=date(2026, 3, 20))
    assert hits(["04|a", "05|a", "21|b", "20|c", "06|a"], "2026-03", c) == {
        "a": date(2026, 3, 6),
        "c": date(2026, 3, 20),
    }
    found = all_of([{"a": date(2026, 1, 2), "b": date(2026, 1, 3)}, {"a": date(2026, 2, 1)}])
    assert found == {"a": date(2026, 2, 1)}
    assert all_of([]) == {}
    assert newest_first({"a": date(2026, 1, 2), "b": date(2026, 1, 3), "c": date(2026, 1, 2)}) == [
        "b",
        "c",
        "a",
    ]


FIELDS = ["gender", "topics"]


def test_criteria_are_read_and_bad_ones_refused_by_name() -> None:
    c = parse_criteria(
        {"text": "Паспорт, Варшава", "from": "2026-01-01", "answers": {"gender": "female"}, "line": "113"},
        FIELDS,
        ["113"],
    )
    assert c.words == {"паспорт", "варшава"} and c.first == date(2026, 1, 1) and c.last is None
    assert c.answers == {"gender": frozenset({"female"})} and c.line == "113" and c.limit == 20
    assert c.names() == ["text", "from", "answers", "line"]
    assert parse_criteria({"number": " LASTRADA-7 "}, FIELDS, []).number == "LASTRADA-7"
    for body, word in [
        ({}, "give"),
        ({"line": "113"}, "give"),
        ({"text": "и на the"}, "text"),
        ({"text": " ".join(f"w{i}x" for i in range(11))}, "text"),
        ({"number": 7}, "number"),
        ({"number": ""}, "number"),
        ({"from": "2026-02-30"}, "from"),
        ({"from": "2026-02-02", "to": "2026-02-01"}, "to"),
        ({"answers": {"region": ["x"]}}, "answers"),
        ({"answers": {"gender": ["<script>"]}}, "answers.gender"),
        ({"answers": []}, "answers"),
        ({"text": "ok", "line": "dv"}, "line"),
        ({"text": "ok", "limit": 51}, "limit"),
        ({"text": "ok", "limit": True}, "limit"),
    ]:
        with pytest.raises(Invalid, match=word):
            parse_criteria(body, FIELDS, ["113"])
