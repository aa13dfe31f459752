from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.envelope import (
    KINDS,
    Channel,
    ChatFacts,
    EmailFacts,
    EnvelopeError,
    InboundMessage,
    decode,
    encode,
    message_id_for,
)

texts = st.text(max_size=200)
aware = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))


@given(
    source=texts,
    text=texts,
    sender=texts,
    when=aware,
    subject=st.none() | texts,
    refs=st.lists(texts, max_size=5),
    region=st.none() | st.sampled_from(["minsk", "brest"]),
)
def test_inbound_round_trip(source, text, sender, when, subject, refs, region):
    msg = InboundMessage(
        message_id=message_id_for(source),
        source_id=source,
        channel=Channel.EMAIL,
        line="113",
        received_at=when,
        sender=sender,
        text=text,
        subject=subject,
        email=EmailFacts(header_message_id="<a@b>", references=refs),
        chat=ChatFacts(session="s1", region=region),
    )
    assert decode(msg.kind, encode(msg)) == msg


def test_message_id_is_stable_per_source_and_differs_between_sources():
    assert message_id_for("imap:a:1:7") == message_id_for("imap:a:1:7")
    assert message_id_for("imap:a:1:7") != message_id_for("imap:a:1:8")


def test_unknown_fields_are_ignored_so_minor_versions_interoperate():
    msg = InboundMessage(
        message_id="m",
        source_id="s",
        channel=Channel.CHAT,
        line="dv",
        received_at=datetime(2026, 1, 1, tzinfo=UTC),
        sender="x",
        text="hi",
    )
    body = encode(msg)[:-1] + b',"added_in_v1_1":true}'
    assert decode("inbound_message", body) == msg


def test_unknown_kind_is_refused():
    with pytest.raises(EnvelopeError, match="unknown envelope kind"):
        decode("pickle", b"{}")


def test_invalid_body_error_does_not_repeat_the_content():
    body = b'{"message_id": 1, "text": "SECRET-CANARY-TEXT"}'
    with pytest.raises(EnvelopeError) as info:
        decode("inbound_message", body)
    assert "SECRET-CANARY-TEXT" not in str(info.value)
    assert "source_id" in str(info.value)


def test_naive_times_are_refused():
    with pytest.raises(ValueError):
        InboundMessage(
            message_id="m",
            source_id="s",
            channel=Channel.CHAT,
            line="dv",
            received_at=datetime(2026, 1, 1),
            sender="x",
            text="hi",
        )


def test_every_kind_is_registered_by_its_name():
    assert set(KINDS) == {"inbound_message", "outbound_message", "delivery_report", "console_event"}
