"""DKIM signing for tests: what a client's outgoing mail server does, so that the local SMTP
relay playing the hotline's receiving server (deploy/local/smtp_relay.py) has something real to
verify."""

from __future__ import annotations

import base64

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

SELECTOR = b"s1"
SIGNED_FIELDS = [b"from", b"to", b"subject", b"message-id", b"in-reply-to", b"references"]


def new_key() -> tuple[bytes, bytes]:
    """A new signing key: (its PEM, the TXT record of ``<selector>._domainkey.<domain>`` that
    publishes it)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)


def signed(raw: bytes, domain: str, key: bytes, selector: bytes = SELECTOR) -> bytes:
    """``raw`` (CRLF line ends made sure of) with a DKIM signature of ``domain`` on top."""
    raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    signature = dkim.sign(raw, selector, domain.encode(), key, include_headers=SIGNED_FIELDS)
    return bytes(signature) + raw
