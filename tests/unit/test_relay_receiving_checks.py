"""The local SMTP relay as the receiving server (deploy/local/smtp_relay.py ``ReceivingChecks``):
what it writes for a mail's DKIM signatures, and which incoming fields it deletes."""

from __future__ import annotations

from deploy.local.smtp_relay import ReceivingChecks
from tests.dkim_signing import new_key, signed

MAIL = b"From: her@demo.test\r\nTo: h@demo.test\r\nSubject: x\r\n\r\nhello\r\n"


def top_field(raw: bytes) -> bytes:
    return raw.split(b"\r\n", 1)[0]


def test_a_signature_is_verified_against_the_published_key_and_a_change_breaks_it() -> None:
    pem, record = new_key()
    checks = ReceivingChecks("mx.hotline.test", {b"s1._domainkey.demo.test.": record})
    good = signed(MAIL, "demo.test", pem)
    assert top_field(checks.stamp(good)) == (
        b"Authentication-Results: mx.hotline.test; dkim=pass header.d=demo.test header.s=s1"
    )
    assert b"dkim=fail header.d=demo.test" in top_field(checks.stamp(good.replace(b"hello", b"stop")))
    # A key nobody published (DNS has no record for the selector): fail, not pass.
    other = signed(MAIL, "demo.test", pem, selector=b"s2")
    assert b"dkim=fail" in top_field(checks.stamp(other))
    assert top_field(checks.stamp(MAIL)) == b"Authentication-Results: mx.hotline.test; dkim=none"


def test_fields_of_its_own_id_that_came_with_the_mail_are_deleted_and_others_kept() -> None:
    checks = ReceivingChecks("mx.hotline.test", {})
    forged = (
        b"Authentication-Results: mx.hotline.test; dkim=pass header.d=demo.test\r\n"
        b"Authentication-Results: (a comment) MX.HOTLINE.TEST;\r\n dmarc=pass header.from=demo.test\r\n"
        b"Authentication-Results: mx.hotline.test.evil.example; dmarc=pass\r\n"
    )
    out = checks.stamp(forged + MAIL)
    assert out == (
        b"Authentication-Results: mx.hotline.test; dkim=none\r\n"
        b"Authentication-Results: mx.hotline.test.evil.example; dmarc=pass\r\n" + MAIL
    )
