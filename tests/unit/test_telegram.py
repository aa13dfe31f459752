"""The bot's pure decisions: parsing updates, the menu, the directory, the questions, and "not
safe now" (which messages may still be deleted, in which calls)."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.chat_ingest.telegram import (
    TEXT,
    BadUpdate,
    Update,
    batches,
    decide,
    deletable_after,
    parse_update,
    unix_time,
)
from shared.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
CONFIG = load_config(ROOT / "deploy" / "config" / "hotline.yaml")


def text(t: str, lang: str = "ru") -> Update:
    return Update(1, 42, "text", text=t, language_code=lang)


def button(data: str, lang: str = "ru") -> Update:
    return Update(2, 42, "callback", data=data, callback_id="q", language_code=lang)


def test_parse_a_text_and_a_button() -> None:
    body = {
        "update_id": 9,
        "message": {"chat": {"id": 5, "type": "private"}, "from": {"language_code": "be-BY"}, "text": "hi"},
    }
    assert parse_update(json.dumps(body).encode()) == Update(9, 5, "text", text="hi", language_code="be")
    # The client's message id and its date: what "not safe now" deletes, while it may.
    body["message"] |= {"message_id": 77, "date": 1_800_000_000}
    assert parse_update(json.dumps(body).encode()) == Update(
        9,
        5,
        "text",
        text="hi",
        language_code="be",
        message_id=77,
        sent_at=datetime.fromtimestamp(1_800_000_000, UTC),
    )
    cq = {"update_id": 10, "callback_query": {"id": "x", "data": "e", "message": {"chat": {"id": 5}}}}
    assert parse_update(json.dumps(cq).encode()) == Update(10, 5, "callback", data="e", callback_id="x")
    assert parse_update(b'{"update_id": 11, "edited_message": {}}') is None


@pytest.mark.parametrize(
    "body", [b"", b"[]", b"{}", b'{"update_id": "1"}', b'{"update_id": 1, "message": {}}']
)
def test_what_is_not_an_update_is_refused(body: bytes) -> None:
    with pytest.raises(BadUpdate):
        parse_update(body)


@given(st.binary(max_size=300))
def test_parsing_never_fails_otherwise(body: bytes) -> None:
    try:
        parse_update(body)
    except BadUpdate:
        pass


def test_start_gives_the_menu_in_the_users_language() -> None:
    d = decide(CONFIG, "dv", {}, text("/start", "en"), True)
    assert d.forward is None and d.remember == {"language": "en"}
    assert [row[0][1] for row in d.replies[0].keyboard] == ["e", "d", "c", "x"]
    assert d.replies[0].keyboard[-1][0][0] == "Not safe now: hide this chat"


def test_emergency_contacts_come_from_the_directory() -> None:
    (reply,) = decide(CONFIG, "dv", {"language": "ru"}, button("e"), True).replies
    assert all(n in reply.text for n in ("102", "103", "8-801-100-8-801", "113"))


def test_talk_to_a_consultant_asks_region_then_topic_then_remembers_them() -> None:
    regions = decide(CONFIG, "dv", {}, button("c"), True).replies[0].keyboard
    assert [r[0][1] for r in regions][-1] == "c:-"
    topics = decide(CONFIG, "dv", {}, button("c:brest"), True).replies[0].keyboard
    assert "t:brest:legal" in [r[0][1] for r in topics]
    done = decide(CONFIG, "dv", {"language": "ru"}, button("t:brest:legal"), False)
    assert done.remember == {"region": "brest", "topic": "legal"}
    assert "08:00-20:00" in done.replies[0].text
    skipped = decide(CONFIG, "dv", {"language": "ru"}, button("t:-:-"), True)
    assert skipped.remember == {"region": None, "topic": None}


def test_forged_buttons_fall_back_to_the_menu() -> None:
    for data in ("t:atlantis:legal", "t:brest:nope", "d:atlantis", "c:atlantis", "zzz", ""):
        d = decide(CONFIG, "dv", {"language": "ru"}, button(data), True)
        assert d.forward is None and d.remember == {}


def test_any_other_text_goes_to_a_consultant() -> None:
    assert decide(CONFIG, "dv", {"language": "ru"}, text("Помогите"), True).forward == "Помогите"


def test_a_directory_entry_needs_every_language(tmp_path: Path) -> None:
    raw = (ROOT / "deploy" / "config" / "hotline.yaml").read_text(encoding="utf-8")
    bad = raw.replace("name: {ru: Милиция, be: Міліцыя, en: Police}", "name: {ru: Милиция}")
    (tmp_path / "h.yaml").write_text(bad, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"directory\.emergency"):
        load_config(tmp_path / "h.yaml")


@pytest.mark.parametrize("command", ["/start", "/start@hotline_bot", "/start from-site", " /menu"])
def test_commands_with_a_bot_name_or_payload_are_commands(command: str) -> None:
    d = decide(CONFIG, "dv", {"language": "ru"}, text(command.strip()), True)
    assert d.forward is None and d.replies[0].keyboard


def test_the_emergency_command() -> None:
    (reply,) = decide(CONFIG, "dv", {"language": "ru"}, text("/emergency@hotline_bot"), True).replies
    assert "102" in reply.text


@pytest.mark.parametrize("update", [text("/notsafe"), text("/notsafe@hotline_bot"), button("x")])
def test_not_safe_hides_the_chat_and_answers_nothing(update: Update) -> None:
    d = decide(CONFIG, "dv", {"language": "ru"}, update, True)
    assert d.hide and d.replies == [] and d.forward is None


def test_a_text_is_not_a_request_to_hide() -> None:
    assert not decide(CONFIG, "dv", {"language": "ru"}, text("notsafe"), True).hide


def test_only_messages_younger_than_48_hours_are_deleted_in_calls_of_at_most_100() -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    cutoff = deletable_after(now)
    assert now - timedelta(hours=48) < cutoff < now - timedelta(hours=47, minutes=50)
    assert [len(b) for b in batches(list(range(250)))] == [100, 100, 50]
    assert list(batches([])) == []
    assert unix_time(1_800_000_000) == datetime.fromtimestamp(1_800_000_000, UTC)
    assert unix_time("1800000000") is None and unix_time(True) is None and unix_time(-5) is None


def test_a_text_with_a_lone_surrogate_goes_on_repaired_and_its_sender_is_told() -> None:
    body = '{"update_id": 3, "message": {"chat": {"id": 7}, "text": "help \\ud800 me"}}'
    update = parse_update(body.encode())
    assert update is not None and update.repaired and update.text == "help \ufffd me"
    d = decide(CONFIG, "dv", {"language": "be"}, update, True)
    assert d.forward == "help \ufffd me"
    assert [r.text for r in d.replies] == [TEXT["be"]["unreadable"]]
    whole = decide(CONFIG, "dv", {"language": "be"}, text("help me", "be"), True)
    assert whole.forward == "help me" and whole.replies == []
