from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conversations.model import NORMAL, URGENT
from services.dispatcher.autoanswer import decide
from services.dispatcher.priority import _normalise, danger_in, priority
from services.dispatcher.routing import choose_queue

MINSK = ZoneInfo("Europe/Minsk")
OPEN = datetime(2026, 3, 10, 12, tzinfo=MINSK)
EVENING = datetime(2026, 3, 10, 21, tzinfo=MINSK)
NIGHT = datetime(2026, 3, 11, 3, tzinfo=MINSK)
NEW_YEAR = datetime(2026, 1, 1, 12, tzinfo=MINSK)  # a holiday of line 113


@pytest.mark.parametrize(
    "text",
    [
        "Он сказал, что убьёт меня",
        "муж меня избивает каждый день",
        "Работодатель ОТОБРАЛ ПАСПОРТ... то есть отобрали паспорт!",
        "Ён пагражае мне",
        "He threatens me and I am locked in",
        "please, help me now",
    ],
)
def test_danger_words_in_each_language(config, text):
    assert danger_in(config, text)


@pytest.mark.parametrize(
    "text", ["Хочу учиться в Польше", "Как оформить визу?", "I need advice on au-pair", ""]
)
def test_ordinary_questions_are_not_urgent(config, text):
    assert not danger_in(config, text)
    assert priority(config, "113", "study_abroad", text) == NORMAL


def test_crisis_topic_is_urgent_without_any_word(config):
    assert priority(config, "113", "crisis_abroad", "Здравствуйте") == URGENT
    assert priority(config, "dv", "danger_now", "") == URGENT


def test_long_text_is_scanned_in_bounded_time(config):
    assert not danger_in(config, "a" * 5_000_000)


def test_topic_needing_a_lawyer_goes_to_the_lawyers_queue(config):
    assert choose_queue(config, "dv", None, "legal") == "gp-legal"
    assert choose_queue(config, "dv", "brest", "psychological") == "gp-dv"
    assert choose_queue(config, "113", "brest", "crisis_abroad") == "bwc-migration"


def _decide(config, **kw):
    base = dict(
        line="113",
        language="ru",
        now=OPEN,
        first_message=True,
        last_out_of_hours=None,
        robot=False,
        backlog=False,
    )
    return decide(config, **{**base, **kw})


def test_first_contact_in_hours_is_acknowledged_once(config):
    assert _decide(config).kind == "acknowledgement"
    assert _decide(config, first_message=False) is None


def test_out_of_hours_notice_names_the_opening_and_emergency_numbers(config):
    answer = _decide(config, now=EVENING, language="en")
    assert answer.kind == "out_of_hours"
    assert "11.03 08:00" in answer.text and "102" in answer.text and "103" in answer.text


def test_out_of_hours_notice_once_per_closed_period(config):
    first = _decide(config, now=EVENING)
    assert _decide(config, now=NIGHT, first_message=False, last_out_of_hours=first.period) is None
    next_night = datetime(2026, 3, 11, 22, tzinfo=MINSK)
    assert _decide(config, now=next_night, first_message=False, last_out_of_hours=first.period) is not None


def test_holiday_is_out_of_hours_and_opens_after_it(config):
    answer = _decide(config, now=NEW_YEAR, language="be")
    assert answer.kind == "out_of_hours" and "02.01 08:00" in answer.text


def test_same_morning_opening_is_said_as_a_time(config):
    answer = _decide(config, now=datetime(2026, 3, 10, 6, tzinfo=MINSK))
    assert "08:00" in answer.text and "10.03" not in answer.text


@pytest.mark.parametrize("flags", [{"robot": True}, {"backlog": True}])
def test_robots_and_backlog_get_no_answer(config, flags):
    assert _decide(config, **flags) is None
    assert _decide(config, now=EVENING, **flags) is None


def test_unknown_language_falls_back_to_the_first(config):
    assert _decide(config, language="xx").text == config.auto_answers.acknowledgement["ru"]


def test_mail_to_an_ngos_own_mailbox_goes_to_that_ngo(config):
    assert choose_queue(config, "113", None, None, organisation="bwc") == "bwc-migration"
    assert choose_queue(config, "113", "brest", None, organisation="lastrada") == "lastrada-migration"
    # A specialist topic still wins; an organisation without a queue of its own on the line does not route.
    assert choose_queue(config, "dv", None, "legal", organisation="gp") == "gp-legal"
    assert choose_queue(config, "113", None, None, organisation="gp") == "113-triage"


def _naive_danger_in(config, text: str) -> bool:
    """The rule as written in services/dispatcher/priority.py, checked word by word."""
    normal = _normalise(text)
    words = normal.split()
    for entries in config.danger_words.values():
        for entry in entries:
            e = _normalise(entry)
            if e and " " in e and f" {e}" in f" {normal} ":
                return True
            if e and " " not in e and any(w.startswith(e) for w in words):
                return True
    return False


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.one_of(
            st.sampled_from(["убьёт", "избивает", "паспорт", "help", "me", "now", "locked", "in", "ён"]),
            st.text(alphabet="абвгдеёжзийклмнопрстуфхцчшщыэюяabcdefgh .,!-\n", max_size=12),
        ),
        max_size=30,
    )
)
def test_danger_matching_agrees_with_the_word_by_word_rule(config, words):
    text = " ".join(words)
    assert danger_in(config, text) == _naive_danger_in(config, text)


_SEPARATORS = '.,;:!?()[]{}<>"«»“”—–-/\\|*_~`\n\r\t '


@given(
    st.text(alphabet=st.sampled_from([*_SEPARATORS, "ё", "Ё", "е", "Ж", "ß", "a", "B", "\u00a0", "\u2028"]))
)
def test_text_is_normalised_as_stated(text):
    # Case folded, ё as е, each punctuation mark a space, words separated by one space.
    table = str.maketrans({c: " " for c in _SEPARATORS})
    expected = " ".join(text.casefold().replace("ё", "е").translate(table).split())
    assert _normalise(text) == expected
