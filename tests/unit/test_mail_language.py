"""A mail's language, read from it (services/dispatcher/language.py): each of the languages a
hotline answers in, told apart from its neighbours, and nothing guessed from too little."""

from __future__ import annotations

import pytest

from services.dispatcher.language import MAX_CHARS, MailLanguage
from shared.config import load_config
from shared.settings import DEFAULT_CONFIG_PATH

LANGUAGES = load_config(DEFAULT_CONFIG_PATH).languages


@pytest.fixture(scope="module")
def detector() -> MailLanguage:
    return MailLanguage(LANGUAGES)


@pytest.mark.parametrize(
    ("subject", "text", "language"),
    [
        ("Помогите", "Здравствуйте, муж угрожает мне, я не знаю, куда обратиться.", "ru"),
        (None, "Я хочу поехать работать в Польшу, что нужно знать?", "ru"),
        ("Дапамажыце", "Добры дзень, муж пагражае мне, я не ведаю, куды звярнуцца.", "be"),
        (None, "Прывітанне! Я хачу паехаць працаваць у Польшчу, што трэба ведаць?", "be"),
        (None, "Мне патрэбна дапамога", "be"),
        ("Help", "Hello, my employer abroad took my passport and I cannot leave.", "en"),
        # Neighbours are recognised, not taken for ours: the line's first language answers.
        (None, "Доброго дня, мені потрібна допомога, чоловік погрожує.", None),
        (None, "Dzień dobry, potrzebuję pomocy, mój pracodawca zabrał mi paszport.", None),
        # Too little to tell.
        (None, "Ок", None),
        (None, "12345 !!!", None),
        (None, "", None),
    ],
)
def test_the_language_a_mail_is_written_in(
    detector: MailLanguage, subject: str | None, text: str, language: str | None
) -> None:
    assert detector.detect(subject, text) == language


def test_only_the_start_of_a_long_mail_is_read(detector: MailLanguage) -> None:
    belarusian = "Добры дзень, муж пагражае мне, я не ведаю, куды звярнуцца. "
    english = "Please help me, my employer abroad took my passport away. "
    # Mostly English by volume, but read only as far as MAX_CHARS: Belarusian, and quick.
    long = belarusian * (MAX_CHARS // len(belarusian) + 1) + english * 100_000  # ~6 MB
    assert detector.detect(None, long) == "be"


def test_languages_it_cannot_detect_are_left_out() -> None:
    assert MailLanguage(["xx"]).detect(None, "Здравствуйте, мне нужна помощь") is None
    assert MailLanguage(["ru", "xx"]).languages == ["ru"]
