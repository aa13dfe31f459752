"""Envelopes sealed for the broker (shared/transit.py): open only with the key, unchanged, as
the kind they were sealed as; plain ones from before are read as they are."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from deploy.local.services import new_master_key
from shared.envelope import Channel, ChatFacts, InboundMessage, decode, encode, message_id_for, utcnow
from shared.transit import TransitError, TransitSeal, is_sealed

CANARY = "Transit-canary-Ж"
# Long enough that random ciphertext never holds it by chance (a two-byte id would, once in a
# few hundred seals).
SENDER = "transit-sender-canary-42"


def key() -> bytes:
    return base64.b64decode(new_master_key())


def envelope() -> InboundMessage:
    return InboundMessage(
        message_id=message_id_for("chat:1"),
        source_id="chat:1",
        channel=Channel.CHAT,
        line="dv",
        received_at=utcnow(),
        sender=SENDER,
        text=CANARY,
        chat=ChatFacts(session=SENDER),
    )


def test_a_sealed_envelope_holds_nothing_readable_and_opens_as_it_was() -> None:
    seal = TransitSeal(key())
    msg = envelope()
    body = seal.seal(encode(msg), msg.kind)
    assert is_sealed(body) and CANARY.encode() not in body and SENDER.encode() not in body
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


def test_with_a_kmip_server_the_key_vaults_transit_key_seals_and_a_local_keys_messages_still_open() -> None:
    """*_KMS_PROVIDER=kmip: nothing seals before the key vault's transit key is given (never a
    plain body); then it seals; what the local master key's derived key sealed before the move
    still opens while that key is given, and no longer once it is removed."""
    from shared.settings import KmipServer, MasterKeys
    from shared.transit import for_master_keys

    msg = envelope()
    local = key()
    before = TransitSeal(local).seal(encode(msg), msg.kind)
    server = KmipServer("127.0.0.1:5696", Path("ca.pem"), Path("client.pem"), "1")
    moving = for_master_keys(MasterKeys("kmip", local, None, server))
    with pytest.raises(TransitError):
        moving.seal(encode(msg), msg.kind)
    stored = os.urandom(32)
    moving.use(stored)
    assert moving.open(before, msg.kind) == encode(msg)
    after = moving.seal(encode(msg), msg.kind)
    assert is_sealed(after) and after[4:12] != before[4:12]

    moved = for_master_keys(MasterKeys("kmip", None, None, server))
    moved.use(stored)
    assert moved.open(after, msg.kind) == encode(msg)
    with pytest.raises(TransitError):
        moved.open(before, msg.kind)
    # kmip to local: the local key's derived key seals again; the stored key still opens.
    back = for_master_keys(MasterKeys("local", local, None, server))
    back.use(stored, seal=False)
    assert back.open(after, msg.kind) == encode(msg)
    assert TransitSeal(local).open(back.seal(encode(msg), msg.kind), msg.kind) == encode(msg)
