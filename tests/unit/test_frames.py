import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.chat_ingest.frames import End, FrameError, Message, Resume, Start, parse_client_frame, repaired


def parse(frame: object) -> object:
    return parse_client_frame(json.dumps(frame), max_text_chars=100)


def test_start_with_all_choices():
    assert parse(
        {"type": "start", "line": "113", "language": "ru", "region": "minsk", "topic": "work_abroad"}
    ) == Start("113", "ru", "minsk", "work_abroad")


def test_start_with_nothing_chosen():
    assert parse({"type": "start"}) == Start(None, None, None, None)


def test_unknown_fields_are_ignored():
    assert parse({"type": "end", "extra": [1, 2]}) == End()


def test_an_end_says_when_it_is_not_safe_and_any_other_reason_is_a_plain_end():
    assert parse({"type": "end", "reason": "not_safe"}) == End("not_safe")
    assert parse({"type": "end", "reason": "bored"}) == End() == End(None)
    assert parse({"type": "end", "reason": ["not_safe"]}) == End()


def test_message_and_resume():
    assert parse({"type": "message", "id": "6b0f2d0e-1c7e-4a53-9e70-2f2d9a3c4b10", "text": "hi"}) == Message(
        "6b0f2d0e-1c7e-4a53-9e70-2f2d9a3c4b10", "hi"
    )
    assert parse({"type": "resume", "token": "abc_DEF-1"}) == Resume("abc_DEF-1")


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("not json", "bad_json"),
        ("[1, 2]", "bad_frame"),
        ('{"type": 5}', "bad_frame"),
        ('{"type": "launch"}', "unknown_type"),
        ('{"type": "message", "id": "x"}', "bad_field"),
        ('{"type": "message", "id": "x", "text": "   "}', "bad_field"),
        ('{"type": "message", "id": "../../etc", "text": "a"}', "bad_field"),
        ('{"type": "message", "id": "x", "text": "' + "a" * 101 + '"}', "too_long"),
        ('{"type": "start", "region": {"$ne": 1}}', "bad_field"),
        ('{"type": "resume"}', "bad_field"),
        ("[" * 100_000, "bad_json"),
    ],
)
def test_bad_frames_get_a_code(raw, code):
    with pytest.raises(FrameError) as info:
        parse_client_frame(raw, max_text_chars=100)
    assert info.value.code == code


@given(st.text(max_size=300))
def test_any_text_either_parses_or_raises_frame_error(raw):
    try:
        parse_client_frame(raw, max_text_chars=100)
    except FrameError as exc:
        assert exc.code


def test_repaired_replaces_each_lone_surrogate_and_leaves_text_alone() -> None:
    assert repaired("help \ud800 me \udfff") == "help \ufffd me \ufffd"
    assert repaired("\udc00\ud800") == "\ufffd\ufffd"  # a low before a high is no pair either
    text = "Привет 👋 ok"  # a real pair (the emoji) is text, not a surrogate
    assert repaired(text) is text, "unbroken text is returned as it is, not copied"
    repaired("a\ud800").encode("utf-8")  # what the broker's JSON and the database need


def test_a_message_with_a_lone_surrogate_is_accepted_and_marked_repaired() -> None:
    broken = parse_client_frame('{"type": "message", "id": "m1", "text": "a \\ud800 b"}', 4000)
    assert broken == Message("m1", "a \ufffd b", repaired=True)
    whole = parse_client_frame('{"type": "message", "id": "m2", "text": "a \\ud83d\\udc4b b"}', 4000)
    assert whole == Message("m2", "a \U0001f44b b") and not whole.repaired


@given(st.text(alphabet=st.characters(min_codepoint=0xD000, max_codepoint=0xE000), max_size=40))
def test_repaired_text_always_encodes_and_keeps_its_length(text: str) -> None:
    fixed = repaired(text)
    fixed.encode("utf-8")
    assert len(fixed) == len(text)
    assert (fixed is text) == (text == text.encode("utf-8", "replace").decode("utf-8"))
