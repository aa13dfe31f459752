"""Envelopes sealed for the broker (shared/transit.py): open only with the key, unchanged, as
the kind they were sealed as; plain ones from before are read as they are."""

from __future__ import annotations

import base64

import pytest

from deploy.local.services import new_master_key
from shared.envelope import Channel, ChatFacts, InboundMessage, decode, encode, message_id_for, utcnow
from shared.transit import TransitError, TransitSeal, is_sealed

CANARY = "Transit-canary-Ж"


def key() -> bytes:
    return base64.b64decode(new_master_key())


def envelope() -> InboundMessage:
    return InboundMessage(
        message_id=message_id_for("chat:1"),
        source_id="chat:1",
        channel=Channel.CHAT,
        line="dv",
        received_at=utcnow(),
        sender="s1",
        text=CANARY,
        chat=ChatFacts(session="s1"),
    )


def test_a_sealed_envelope_holds_nothing_readable_and_opens_as_it_was() -> None:
    seal = TransitSeal(key())
    msg = envelope()
    body = seal.seal(encode(msg), msg.kind)
    assert is_sealed(body) and CANARY.encode() not in body and b"s1" not in body
    assert body != seal.seal(encode(msg), msg.kind)  # a fresh nonce each time
    assert decode(msg.kind, seal.open(body, msg.kind)) == msg


def test_another_key_a_changed_byte_or_another_kind_is_refused() -> None:
    msg = envelope()
    body = TransitSeal(key()).seal(encode(msg), msg.kind)
    with pytest.raises(TransitError, match="does not hold"):
        TransitSeal(key()).open(body, msg.kind)
    seal = TransitSeal(key())
    body = seal.seal(encode(msg), msg.kind)
    changed = body[:-1] + bytes([body[-1] ^ 1])
    with pytest.raises(TransitError, match="altered"):
        seal.open(changed, msg.kind)
    with pytest.raises(TransitError, match="another kind"):
        seal.open(body, "outbound_message")


def test_while_the_master_key_is_replaced_both_open_and_the_new_one_seals() -> None:
    old, new = key(), key()
    msg = envelope()
    before = TransitSeal(old).seal(encode(msg), msg.kind)
    during = TransitSeal(new, previous_master_key=old)
    assert during.open(before, msg.kind) == encode(msg)
    after = during.seal(encode(msg), msg.kind)
    assert TransitSeal(new).open(after, msg.kind) == encode(msg)
    with pytest.raises(TransitError):
        TransitSeal(old).open(after, msg.kind)


def test_a_plain_envelope_from_before_is_read_as_it_is() -> None:
    msg = envelope()
    assert TransitSeal(key()).open(encode(msg), msg.kind) == encode(msg)
