"""The sender check of a mail (services/email_ingest/authresults.py, issue 20 item 4): which
Authentication-Results fields count, and the verdict, on fields as real receiving servers write
them. Threading by the verdict is in tests/integration/test_email_sender_auth.py."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from conversations.email_threading import may_join, sender_unverified
from deploy.local.services import new_master_key
from services.email_ingest.authresults import aligned, sender_auth
from services.email_ingest.imap import mailboxes_from
from services.email_ingest.inbound import to_envelope
from services.email_ingest.mime import parse_mail
from services.email_ingest.settings import EmailIngestSettings
from shared.config import HotlineConfig, load_config
from shared.envelope import InboundMessage, decode, encode
from shared.settings import DEFAULT_CONFIG_PATH

GMAIL_PASS = (
    "mx.google.com;\r\n"
    "       dkim=pass header.i=@gmail.com header.s=20230601 header.b=AbCd1234;\r\n"
    "       spf=pass (google.com: domain of olga.k@gmail.com designates 209.85.220.41 as permitted"
    " sender) smtp.mailfrom=olga.k@gmail.com;\r\n"
    "       dmarc=pass (p=NONE sp=QUARANTINE dis=NONE) header.from=gmail.com"
)
# A forged From: gmail.com, sent from another network, as Gmail records it.
GMAIL_FORGED = (
    "mx.google.com;\r\n"
    "       spf=softfail (google.com: domain of transitioning olga.k@gmail.com does not designate"
    " 198.51.100.7 as permitted sender) smtp.mailfrom=olga.k@gmail.com;\r\n"
    "       dmarc=fail (p=NONE sp=QUARANTINE dis=QUARANTINE) header.from=gmail.com"
)
# Microsoft 365 (Exchange Online) writes its field with no authserv-id at all.
M365 = (
    "spf=pass (sender IP is 40.107.22.50) smtp.mailfrom=outlook.com; dkim=pass (signature was"
    " verified) header.d=outlook.com;dmarc=pass action=none header.from=outlook.com;compauth=pass"
    " reason=100"
)
# As Microsoft's servers write it where they name themselves (their ARC form, and on-premises).
MICROSOFT_NAMED = (
    "mx.microsoft.com 1; spf=pass smtp.mailfrom=outlook.com; dmarc=pass action=none"
    " header.from=outlook.com; dkim=pass header.d=outlook.com; arc=none"
)
# Yandex: no DMARC result, SPF's envelope sender as smtp.mail, DKIM by header.i.
YANDEX_DKIM = (
    "mxback3o.mail.yandex.net; spf=pass (mxback3o.mail.yandex.net: domain of yandex.ru designates"
    " 77.88.21.37 as permitted sender, rule=[ip4:77.88.0.0/18]) smtp.mail=ivan@yandex.ru;"
    " dkim=pass header.i=@yandex.ru"
)
YANDEX_SPF_ONLY = (
    "mxback3o.mail.yandex.net; spf=pass (mxback3o.mail.yandex.net: domain of yandex.ru designates"
    " 77.88.21.37 as permitted sender) smtp.mail=ivan@yandex.ru; dkim=none"
)
# Mail.ru: header.from with the whole address.
MAILRU_PASS = (
    "mxs.mail.ru; spf=pass (mx180.i.mail.ru: domain of bk.ru designates 217.69.139.1 as permitted"
    " sender) smtp.mailfrom=anna@bk.ru smtp.helo=smtp41.i.mail.ru; dkim=pass header.d=bk.ru;"
    " dmarc=pass header.from=anna@bk.ru"
)
MAILRU_FORGED = (
    "mxs.mail.ru; spf=fail (mx180.i.mail.ru: domain of bk.ru does not designate 203.0.113.9 as"
    " permitted sender) smtp.mailfrom=anna@bk.ru smtp.helo=evil.example; dkim=none;"
    " dmarc=fail header.from=anna@bk.ru"
)


def _mail(sender: str, fields: list[tuple[str, str]]) -> bytes:
    """A mail whose header holds ``fields`` (name, value) in order, above From and the rest."""
    head = "".join(f"{name}: {value}\r\n" for name, value in fields)
    return (head + f"From: {sender}\r\nTo: h@demo.test\r\nSubject: Re: help\r\n\r\nhello\r\n").encode()


def _verdict(sender: str, fields: list[tuple[str, str]], trusted: str | None) -> tuple[str, str]:
    mail = parse_mail(_mail(sender, fields))
    auth = sender_auth(mail.auth_results, mail.author, mail.from_address, trusted)
    return auth.verdict, auth.detail


AR = "Authentication-Results"
DMARC_FAIL = "dmarc=fail header.from=example.org"
RECEIVED = ("Received", "from mx.hotline.test by imap.hotline.test (Dovecot) with LMTP; Mon, 7 Dec 2026")


@pytest.mark.parametrize(
    ("sender", "fields", "trusted", "verdict"),
    [
        # Real servers' fields, for their own users' domains.
        ("olga.k@gmail.com", [(AR, GMAIL_PASS)], "mx.google.com", "verified"),
        ("Olga <olga.k@gmail.com>", [(AR, GMAIL_FORGED)], "mx.google.com", "failed"),
        ("x@outlook.com", [(AR, MICROSOFT_NAMED)], "mx.microsoft.com", "verified"),
        ("ivan@yandex.ru", [(AR, YANDEX_DKIM)], "mxback3o.mail.yandex.net", "verified"),
        ("ivan@yandex.ru", [(AR, YANDEX_SPF_ONLY)], "mxback3o.mail.yandex.net", "verified"),
        ("anna@bk.ru", [(AR, MAILRU_PASS)], "mxs.mail.ru", "verified"),
        ("anna@bk.ru", [(AR, MAILRU_FORGED)], "mxs.mail.ru", "failed"),
        # The authserv-id is compared without regard to case.
        ("anna@bk.ru", [(AR, MAILRU_PASS)], "MXS.Mail.RU", "verified"),
        # Microsoft 365's field names no server: it cannot be told from a forged one.
        ("x@outlook.com", [(AR, M365)], "outlook.com", "failed"),
        # No server trusted: nothing is read, whatever the mail carries.
        ("x@outlook.com", [(AR, M365)], None, "unknown"),
        ("olga.k@gmail.com", [(AR, GMAIL_FORGED)], None, "unknown"),
        ("olga.k@gmail.com", [], None, "unknown"),
        # A trusted server, but no result of it: not verified.
        ("olga.k@gmail.com", [], "mx.google.com", "failed"),
        ("olga.k@gmail.com", [(AR, "mx.google.com; none")], "mx.google.com", "failed"),
        # A DMARC result for another From domain says nothing of this one.
        (
            "olga.k@gmail.com",
            [(AR, "mx.google.com; dmarc=pass header.from=evil.example")],
            "mx.google.com",
            "failed",
        ),
        # Alignment where no DMARC verdict was given: the From domain or a parent of it.
        ("a@mail.example.org", [(AR, "mx.t; dkim=pass header.d=example.org")], "mx.t", "verified"),
        ("a@example.org", [(AR, "mx.t; dkim=pass header.d=mail.example.org")], "mx.t", "failed"),
        ("a@example.org", [(AR, "mx.t; dkim=pass header.d=evil.example")], "mx.t", "failed"),
        ("a@example.org", [(AR, "mx.t; dkim=pass header.d=org")], "mx.t", "failed"),
        ("a@example.org", [(AR, "mx.t; spf=pass smtp.helo=example.org")], "mx.t", "failed"),
        ("a@example.org", [(AR, "mx.t; spf=pass smtp.mailfrom=bounce@evil.example")], "mx.t", "failed"),
        ("a@example.org", [(AR, "mx.t; spf=fail smtp.mailfrom=a@example.org; dkim=none")], "mx.t", "failed"),
        # DMARC decides over SPF and DKIM, and a DMARC failure over a pass.
        ("a@example.org", [(AR, "mx.t; dkim=pass header.d=example.org; " + DMARC_FAIL)], "mx.t", "failed"),
        (
            "a@example.org",
            [(AR, "mx.t; dmarc=pass header.from=example.org; " + DMARC_FAIL)],
            "mx.t",
            "failed",
        ),
    ],
)
def test_verdict_on_real_world_results(
    sender: str, fields: list[tuple[str, str]], trusted: str | None, verdict: str
) -> None:
    assert _verdict(sender, fields, trusted)[0] == verdict


def test_fields_of_another_server_are_ignored_above_and_below() -> None:
    forged = (AR, "mx.google.com.evil.example; dmarc=pass header.from=gmail.com")
    # A forged field with another id says pass: the trusted server's failure stands.
    assert _verdict("olga.k@gmail.com", [(AR, GMAIL_FORGED), forged], "mx.google.com")[0] == "failed"
    # The trusted field below an untrusted one (an internal filter's) is read all the same...
    filter_pass = (AR, "spamfilter.hotline.test; dmarc=pass header.from=gmail.com")
    assert _verdict("olga.k@gmail.com", [filter_pass, (AR, GMAIL_FORGED)], "mx.google.com")[0] == "failed"
    filter_fail = (AR, "spamfilter.hotline.test; dmarc=fail header.from=gmail.com")
    assert _verdict("olga.k@gmail.com", [filter_fail, (AR, GMAIL_PASS)], "mx.google.com")[0] == "verified"
    # ...and under Dovecot's Received, as a mailbox holds it.
    assert _verdict("olga.k@gmail.com", [RECEIVED, (AR, GMAIL_PASS)], "mx.google.com")[0] == "verified"


def test_only_the_topmost_fields_of_the_trusted_server_count() -> None:
    forged_pass = (AR, "mx.hotline.test; dmarc=pass header.from=example.org")
    sender_hop = ("Received", "from evil.example by relay.evil.example; Mon, 7 Dec 2026")
    real_fail = (AR, "mx.hotline.test; spf=softfail smtp.mailfrom=a@example.org; dkim=none")
    # The sender's own field with the trusted id, below the receiving server's: not read.
    fields = [RECEIVED, real_fail, sender_hop, forged_pass]
    assert _verdict("a@example.org", fields, "mx.hotline.test")[0] == "failed"
    # A server that writes its results in several fields, one after the other: all are read.
    split = [(AR, "mx.hotline.test; dkim=pass header.d=example.org"), (AR, "mx.hotline.test; dmarc=none")]
    assert _verdict("a@example.org", [RECEIVED, *split], "mx.hotline.test")[0] == "verified"
    # An unreadable field of the trusted server fails the mail: never a reason to read further.
    broken = (AR, "mx.hotline.test; dmarc=pass (unclosed comment header.from=example.org")
    assert _verdict("a@example.org", [broken, sender_hop, forged_pass], "mx.hotline.test") == (
        "failed",
        "the trusted mail server's result cannot be read",
    )


def test_a_mail_without_a_single_author_is_never_verified() -> None:
    two_from = (
        f"{AR}: {MAILRU_PASS}\r\nFrom: anna@bk.ru\r\nFrom: olga.k@gmail.com\r\nSubject: s\r\n\r\nhi\r\n"
    ).encode()
    mail = parse_mail(two_from)
    assert sender_auth(mail.auth_results, mail.author, mail.from_address, "mxs.mail.ru").verdict == "failed"
    two_addresses = parse_mail(_mail("anna@bk.ru, olga.k@gmail.com", [(AR, MAILRU_PASS)]))
    assert not two_addresses.author
    # The servers check From: an address to reply to taken from anywhere else is not verified.
    assert sender_auth([(0, MAILRU_PASS)], "anna@bk.ru", "someone@bk.ru", "mxs.mail.ru").verdict == "failed"


def test_hostile_fields_end_in_a_verdict_quickly() -> None:
    deep = "mx.t; dmarc=pass " + "(" * 5000 + ")" * 5000
    long = "mx.t; dkim=pass header.d=example.org " + "x" * 100_000
    odd = "mx.t; dmarc=pass header.from=пример.бел"
    for value in (deep, long, odd):
        assert _verdict("a@example.org", [(AR, value)], "mx.t")[0] == "failed"
    # An internationalised From domain is compared in its A-label form.
    idn = "mx.t; dmarc=pass header.from=xn--e1afmkfd.xn--90ais"
    assert _verdict("ivan@пример.бел", [(AR, idn)], "mx.t")[0] == "verified"


@given(st.lists(st.text(max_size=300), max_size=5), st.sampled_from(["mx.t", None]))
def test_any_field_values_give_a_verdict(values: list[str], trusted: str | None) -> None:
    auth = sender_auth(list(enumerate(values)), "a@example.org", "a@example.org", trusted)
    assert auth.verdict in {"verified", "failed", "unknown"}
    assert auth.detail.isascii() and len(auth.detail) <= 200


def test_alignment_is_the_from_domain_or_a_parent() -> None:
    assert aligned("example.org", "example.org")
    assert aligned("example.org", "lists.example.org")
    assert not aligned("lists.example.org", "example.org")
    assert not aligned("other.example.org", "lists.example.org")
    assert not aligned("org", "example.org")
    assert not aligned("", "example.org")


NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _envelope(raw: bytes, trusted: str | None) -> InboundMessage:
    return to_envelope(
        parse_mail(raw),
        source_id="imap:box:1:2",
        line="113",
        mailbox="box",
        now=NOW,
        internaldate=None,
        backlog=False,
        attachments=[],
        trusted_authserv_id=trusted,
    )


def test_the_verdict_travels_in_the_envelope_and_old_envelopes_still_read() -> None:
    env = _envelope(_mail("anna@bk.ru", [(AR, MAILRU_FORGED)]), "mxs.mail.ru")
    again = decode("inbound_message", encode(env))
    assert isinstance(again, InboundMessage) and again.email is not None
    assert again.email.sender_auth is not None and again.email.sender_auth.verdict == "failed"
    assert "dmarc=fail" in again.email.sender_auth.detail and "bk.ru" not in again.email.sender_auth.detail
    # An envelope written before the check (no sender_auth) reads as not checked.
    body = env.model_dump(mode="json")
    del body["email"]["sender_auth"]
    old = decode("inbound_message", InboundMessage.model_validate(body).model_dump_json().encode())
    assert isinstance(old, InboundMessage) and old.email is not None and old.email.sender_auth is None
    assert not sender_unverified(old)


def test_a_failed_sender_joins_only_a_thread_of_unverified_mail() -> None:
    thread = {"channel": "email", "line": "113", "client": {"address": "anna@bk.ru"}}
    forged = _envelope(_mail("anna@bk.ru", [(AR, MAILRU_FORGED)]), "mxs.mail.ru")
    verified = _envelope(_mail("anna@bk.ru", [(AR, MAILRU_PASS)]), "mxs.mail.ru")
    unchecked = _envelope(_mail("anna@bk.ru", [(AR, MAILRU_FORGED)]), None)
    assert sender_unverified(forged) and not sender_unverified(verified) and not sender_unverified(unchecked)
    assert not may_join(thread, forged)
    assert may_join(thread, verified) and may_join(thread, unchecked)
    marked = {**thread, "sender_unverified": True}
    assert may_join(marked, forged)
    assert not may_join(marked, verified) and not may_join(marked, unchecked)


def test_the_trusted_server_is_a_setting_of_each_mailbox() -> None:
    raw = load_config(DEFAULT_CONFIG_PATH).model_dump()
    base = {"line": "113", "imap_host": "imap.example.org", "user": "u", "password_env": "PW"}
    raw["mailboxes"] = {"trusting": {**base, "trusted_authserv_id": "mx.example.org"}, "open": base}
    settings = {
        "amqp_url": "amqp://x",
        "mongo_url": "mongodb://x",
        "from_address": "h@demo.test",
        "master_key": new_master_key(),
        "imap_user": "hotline",
        "imap_password": "pw",
    }
    boxes = mailboxes_from(
        EmailIngestSettings(**settings, trusted_authserv_id="MX.hotline.test"),  # type: ignore[arg-type]
        HotlineConfig.model_validate(raw),
        {"PW": "x"},
    )
    assert [b.trusted_authserv_id for b in boxes] == ["MX.hotline.test", "mx.example.org", None]
    # Empty (compose passes the variable unset as ""): no server trusted.
    (env_box,) = mailboxes_from(
        EmailIngestSettings(**settings, trusted_authserv_id=""),  # type: ignore[arg-type]
        HotlineConfig.model_validate({**raw, "mailboxes": {}}),
        {},
    )
    assert env_box.trusted_authserv_id is None
    # Anything but a host-name-like id is refused at start, naming the key.
    with pytest.raises(ValidationError, match="trusted_authserv_id"):
        HotlineConfig.model_validate({**raw, "mailboxes": {"bad": {**base, "trusted_authserv_id": "a; b"}}})
