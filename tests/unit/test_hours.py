from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.config import Hours
from shared.hours import is_open, next_opening

MINSK = ZoneInfo("Europe/Minsk")
HOURS = Hours(
    timezone="Europe/Minsk", open=time(8), close=time(20), holidays=[date(2026, 1, 1), date(2026, 1, 2)]
)


def at(y, mo, d, h, mi=0, s=0):
    return datetime(y, mo, d, h, mi, s, tzinfo=MINSK)


@pytest.mark.parametrize(
    ("when", "open_"),
    [
        (at(2026, 3, 10, 7, 59, 59), False),
        (at(2026, 3, 10, 8, 0, 0), True),
        (at(2026, 3, 10, 19, 59, 59), True),
        (at(2026, 3, 10, 20, 0, 0), False),
        (at(2026, 1, 1, 12), False),  # a holiday: closed all day
        (at(2026, 1, 3, 12), True),
    ],
)
def test_duty_boundaries(when, open_):
    assert is_open(HOURS, when) is open_


def test_times_in_other_zones_are_converted():
    # 05:00 UTC is 08:00 in Minsk (UTC+3).
    assert is_open(HOURS, datetime(2026, 3, 10, 5, 0, tzinfo=UTC))
    assert not is_open(HOURS, datetime(2026, 3, 10, 4, 59, tzinfo=UTC))


def test_next_opening_skips_the_holidays():
    assert next_opening(HOURS, at(2025, 12, 31, 21)) == at(2026, 1, 3, 8)
    assert next_opening(HOURS, at(2026, 1, 1, 9)) == at(2026, 1, 3, 8)


def test_next_opening_same_morning_and_next_morning():
    assert next_opening(HOURS, at(2026, 3, 10, 6)) == at(2026, 3, 10, 8)
    assert next_opening(HOURS, at(2026, 3, 10, 20, 0)) == at(2026, 3, 11, 8)


@given(st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2028, 1, 1), timezones=st.just(UTC)))
def test_one_closed_period_has_one_next_opening(now):
    opens = next_opening(HOURS, now)
    assert opens >= now or is_open(HOURS, now)
    assert is_open(HOURS, opens)
    if not is_open(HOURS, now):
        # Every later closed moment before the opening names the same period.
        later = now + (opens - now) / 2
        assert next_opening(HOURS, later) == opens


def test_bad_hours_are_refused():
    with pytest.raises(ValueError, match="open must be before close"):
        Hours(open=time(20), close=time(8))
    with pytest.raises(ValueError, match="unknown time zone"):
        Hours(timezone="Mars/Olympus")
