"""A client's key: keyed (another secret gives another key), the same for an address however
it is written, and the same for one Telegram user on every bot; none for a web chat or a robot."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from conversations.clients import client_key, identity_of, identity_of_thread, key_of, visible_consultations
from conversations.identity import telegram_session
from shared.envelope import Channel, ChatFacts, EmailFacts, InboundMessage

SECRET = b"s" * 32


def inbound(
    channel: Channel, sender: str, session: str | None = None, kind: str = "person"
) -> InboundMessage:
    return InboundMessage(
        message_id="m",
        source_id="s",
        channel=channel,
        line="dv",
        received_at=datetime(2026, 3, 1, tzinfo=UTC),
        sender=sender,
        text="",
        email=EmailFacts(kind=kind) if channel is Channel.EMAIL else None,  # type: ignore[arg-type]
        chat=ChatFacts(session=session) if session is not None else None,
    )


def test_another_secret_gives_another_key_and_no_key_is_the_plain_hash() -> None:
    key = client_key(SECRET, "email", "olga@example.org")
    assert key == client_key(SECRET, "email", "olga@example.org")
    assert key != client_key(b"t" * 32, "email", "olga@example.org")
    # Without the secret the key is not the hash anyone could compute from a list of addresses.
    assert key not in {
        hashlib.sha256(v.encode()).hexdigest() for v in ("olga@example.org", "email:olga@example.org")
    }
    assert len(key) == 64 and int(key, 16) >= 0


def test_an_address_is_keyed_lower_case_without_surrounding_spaces() -> None:
    one = key_of(SECRET, inbound(Channel.EMAIL, "Olga@Example.ORG"))
    assert one == key_of(SECRET, inbound(Channel.EMAIL, "  olga@example.org\t"))
    assert one != key_of(SECRET, inbound(Channel.EMAIL, "olga2@example.org"))


def test_the_kind_is_part_of_the_key() -> None:
    assert client_key(SECRET, "email", "12345") != client_key(SECRET, "telegram", "12345")


def test_one_telegram_user_is_one_key_on_every_bot() -> None:
    dv = inbound(Channel.TELEGRAM, "dvbot:777", session="dvbot:777")
    migration = inbound(Channel.TELEGRAM, "migbot:777", session="migbot:777")
    assert identity_of(dv) == ("telegram", "777")
    assert key_of(SECRET, dv) == key_of(SECRET, migration)
    assert key_of(SECRET, dv) != key_of(SECRET, inbound(Channel.TELEGRAM, "dvbot:778", session="dvbot:778"))


def test_a_telegram_chat_is_named_by_a_keyed_pseudonym_and_its_person_by_the_chat() -> None:
    session = telegram_session(SECRET, "dvbot", 777)
    assert session.startswith("dvbot:t") and "777" not in session
    assert session == telegram_session(SECRET, "dvbot", "777")  # stable: one thread per chat
    assert session != telegram_session(SECRET, "dvbot", 778)
    assert session != telegram_session(b"another secret of 32 characters!", "dvbot", 777)
    # The person is the chat (the sender), whatever its session is called.
    assert identity_of(inbound(Channel.TELEGRAM, "dvbot:777", session=session)) == ("telegram", "777")


def test_a_web_chat_robot_mail_and_no_sender_name_nobody() -> None:
    assert key_of(SECRET, inbound(Channel.CHAT, "session-1", session="session-1")) is None
    assert key_of(SECRET, inbound(Channel.EMAIL, "mailer-daemon@example.org", kind="bounce")) is None
    assert key_of(SECRET, inbound(Channel.EMAIL, "news@example.org", kind="bulk")) is None
    assert key_of(SECRET, inbound(Channel.EMAIL, "  ")) is None
    assert key_of(SECRET, inbound(Channel.TELEGRAM, "dvbot:", session="dvbot:")) is None
    # A person's own automatic reply (holidays) is still that person.
    assert key_of(SECRET, inbound(Channel.EMAIL, "olga@example.org", kind="auto_reply")) is not None


@given(st.emails())
def test_any_address_keys_as_its_normal_form(address: str) -> None:
    assert key_of(SECRET, inbound(Channel.EMAIL, f" {address.upper()} ")) == client_key(
        SECRET, "email", address.lower()
    )


def test_a_member_of_an_organisation_sees_only_its_consultations_of_their_lines() -> None:
    assert visible_consultations("gp", ["dv"]) == {"line": {"$in": ["dv"]}, "facts.organisation": "gp"}
    assert visible_consultations(None, ["113", "dv"]) == {"line": {"$in": ["113", "dv"]}}


def test_a_thread_stored_before_clients_names_its_person_as_its_messages_would() -> None:
    mail = inbound(Channel.EMAIL, "A.B@Example.org")
    assert identity_of_thread({"channel": "email", "client": {"address": " a.b@example.ORG"}}) == identity_of(
        mail
    )
    tg = inbound(Channel.TELEGRAM, "dvbot:777", session="dvbot:777")
    assert identity_of_thread({"channel": "telegram", "key": "telegram:dvbot:777"}) == identity_of(tg)
    assert identity_of_thread({"channel": "chat", "key": "chat:s1", "client": {"address": "s1"}}) is None
    assert identity_of_thread({"channel": "email", "client": {"address": ""}}) is None
