"""The reports' words: every text in every language, names from the configuration per language,
and the XLSX of a statistics table read back cell by cell."""

from __future__ import annotations

import io
import string
from datetime import date

from openpyxl import load_workbook

from services.store import report_text, spreadsheet
from services.store.reports import Labels
from shared.config import load_config
from shared.settings import DEFAULT_CONFIG_PATH

CONFIG = load_config(DEFAULT_CONFIG_PATH)


def fields_of(words: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(words) if name}


def test_every_text_is_in_every_language_with_the_same_placeholders() -> None:
    for key in report_text.keys():
        english = report_text.text("en", key)
        for lang in report_text.LANGUAGES:
            words = report_text._TABLE[key][report_text._INDEX[lang]]
            assert words.strip(), (key, lang)
            assert fields_of(words) == fields_of(english), (key, lang)
    for lang in ("ru", "be"):
        assert "{n}" in report_text.SUPPRESSED[lang]
    assert all(len(m) == 12 for m in report_text.MONTHS.values())
    assert set(report_text.CHANNELS) == set(report_text.LANGUAGES)


def test_labels_come_from_the_configuration_in_the_language_asked() -> None:
    be, ru, en = (Labels(CONFIG, lang) for lang in ("be", "ru", "en"))
    assert (be.value("gender", "f"), ru.value("gender", "f"), en.value("gender", "f")) == (
        "Жанчына",
        "Женщина",
        "Woman",
    )
    assert be.dimension("gender") == "Пол" and en.dimension("gender") == "Gender"
    assert be.value("channel", "email") == "Эл. пошта" and ru.value("channel", "phone") == "Телефон"
    assert be.value("gender", None) == "няма адказу" and en.value("gender", None) == "not answered"
    assert be.reason("spam") == "Спам або робат" and ru.reason("test") == "Тест"
    assert ru.dimension("channel") == "Канал" and be.dimension("organisation") == "Арганізацыя"
    assert "ад 1 да 4" in be.suppression_note(5) and "from 1 to 4" in en.suppression_note(5)
    # Every question and answer of the case form has its Belarusian name.
    for field in CONFIG.case_form.fields.values():
        assert "be" in dict(field.label or {}), field
        for names in (field.options or {}).values():
            assert "be" in dict(names), names


def test_language_accepts_only_the_three() -> None:
    assert [report_text.language(x) for x in (None, "", "ru", "be", "en", "de")] == [
        "en",
        "en",
        "ru",
        "be",
        "en",
        None,
    ]


def table(published: bool) -> dict[str, object]:
    rows = [
        {"period": "2025-01", "gender": "f", "count": 12, "share": 60.0, "previous": 9, "change": 33.3},
        {
            "period": "2025-01",
            "gender": "m",
            "count": None,
            "share": None,
            "previous": None,
            "change": None,
            "suppressed": True,
        },
        {"period": "2025-01", "gender": None, "count": 6, "share": 30.0, "previous": 0, "change": None},
    ]
    return {
        "from": date(2025, 1, 1),
        "to": date(2025, 1, 31),
        "by": ["gender"],
        "period": "month",
        "compare": True,
        "published": published,
        "min_cell": 5 if published else None,
        "rows": rows,
        "total": {"count": 20, "people": None, "without_known_person": 20, "previous": 15, "change": 33.3},
        "no_consultation": {
            "count": 7,
            "rows": [{"period": "2025-01", "reason": "spam", "count": None, "suppressed": True}],
        },
        "filters": {"channel": ["email"]},
        "note": "Exact figures for internal use: do not publish; use publish=1 for publication.",
    }


def test_the_xlsx_holds_numbers_as_numbers_and_hidden_cells_as_in_the_csv() -> None:
    data = spreadsheet.to_xlsx(table(True), Labels(CONFIG, "be"))
    sheet = load_workbook(io.BytesIO(data)).active
    assert sheet is not None
    rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert rows[0] == ["Перыяд", "Пол", "Колькасць", "Доля, %", "Мінулы год", "Змена, %"]
    assert rows[1] == ["2025-01", "Жанчына", 12, 60.0, 9, 33.3]
    assert rows[2] == ["2025-01", "Мужчына", None, None, None, None]  # hidden: empty, as in the CSV
    assert rows[3] == ["2025-01", "няма адказу", 6, 30.0, 0, None]
    assert all(v is None for v in rows[4])
    tail = {r[0]: r[1:] for r in rows[5:]}
    assert "ад 1 да 4" in tail["Заўвага"][0]
    assert tail["Кансультацыі"][0] == 20 and tail["Людзі"][0] is None
    assert tail["Кансультацыі, дзе чалавек невядомы"][0] == 20
    assert tail["Кансультацыі, мінулы год"][0] == 15 and tail["Змена, %"][0] == 33.3
    assert [r[1:4] for r in rows if r[0] == "Звароты без кансультацыі"] == [
        [7, None, None],
        ["2025-01", "Спам або робат", None],
    ]
    assert tail["Фільтр"][0] == "Канал = Эл. пошта"
    assert tail["Перыяд"][0] == "з 2025-01-01 па 2025-01-31"
    exact = load_workbook(io.BytesIO(spreadsheet.to_xlsx(table(False), Labels(CONFIG, "en")))).active
    assert exact is not None
    cells = {r[0]: r[1] for r in exact.iter_rows(values_only=True) if r and r[0]}
    assert cells["Note"] == table(False)["note"]
