"""Reasons to close without a consultation: configured and validated, and counted apart from
consultations by statistics (services/store/stats.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from services.store import stats
from shared.config import DEFAULT_CLOSE_REASONS, ConfigError, load_config
from shared.settings import DEFAULT_CONFIG_PATH
from tests.unit.test_config import _example, _write

MINSK = ZoneInfo("Europe/Minsk")


def test_a_configuration_without_close_reasons_gets_the_six_defaults(tmp_path: Path) -> None:
    data = _example()
    del data["close_reasons"]
    config = load_config(_write(tmp_path, data))
    assert list(config.close_reasons) == ["spam", "test", "silent", "wrong_address", "abusive", "duplicate"]
    assert config.close_reasons == DEFAULT_CLOSE_REASONS
    assert all({"ru", "be", "en"} <= set(labels) for labels in config.close_reasons.values())


def test_the_example_lists_the_defaults_with_labels(tmp_path: Path) -> None:
    assert load_config(DEFAULT_CONFIG_PATH).close_reasons == DEFAULT_CLOSE_REASONS


@pytest.mark.parametrize(
    ("reasons", "named"),
    [
        ({"Spam!": {"en": "Spam"}}, r"close_reasons: 'Spam!' is not an id"),
        ({"spam": {}}, r"close_reasons\.spam: no label"),
        ({}, r"close_reasons: "),
        ({"spam": "Spam"}, r"close_reasons\.spam: "),
    ],
)
def test_a_bad_close_reason_is_refused_naming_the_key(tmp_path: Path, reasons: object, named: str) -> None:
    data = _example()
    data["close_reasons"] = reasons
    with pytest.raises(ConfigError, match=named):
        load_config(_write(tmp_path, data))


def _query(**params: str) -> stats.Query:
    return stats.parse_query({"from": "2026-03-01", "to": "2026-03-31", **params}, date(2026, 4, 1), MINSK)


def _contacts() -> list[dict]:
    at = datetime(2026, 3, 10, 12, tzinfo=UTC)
    consultation = stats.make_facts({"gender": "f"}, at=at, line="113", channel="email", organisation="bwc")
    spam = [
        stats.no_consultation_facts("spam", at=at, line="113", channel="email", organisation="bwc")
        for _ in range(6)
    ]
    test = stats.no_consultation_facts("test", at=at, line="113", channel="chat", organisation="bwc")
    return [consultation, *spam, test]


def test_contacts_without_consultation_are_counted_apart_by_reason() -> None:
    result = stats.build_table(stats.Tally(_query(by="gender")).add_all(_contacts()), None)
    assert result["total"] == {"count": 1, "people": 0, "without_known_person": 1}
    assert result["rows"] == [{"gender": "f", "count": 1, "share": 100.0}]
    assert result["no_consultation"] == {
        "count": 7,
        "rows": [{"reason": "spam", "count": 6}, {"reason": "test", "count": 1}],
    }
    # A thread dimension filters them like consultations.
    chat = stats.build_table(stats.Tally(_query(channel="chat")).add_all(_contacts()), None)
    assert chat["total"] == {"count": 0, "people": 0, "without_known_person": 0}
    assert chat["no_consultation"] == {"count": 1, "rows": [{"reason": "test", "count": 1}]}
