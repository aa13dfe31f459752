"""Decisions of the e-mail sending side without servers: the shared rate limit's schedule,
TLS contexts that always verify, and which CA bundle each mailbox trusts (issue 3, item 5)."""

from __future__ import annotations

import ssl
from pathlib import Path

import aiosmtplib
import pytest
import trustme

from deploy.local.services import new_master_key
from services.email_ingest.imap import mailboxes_from
from services.email_ingest.ratelimit import send_time
from services.email_ingest.settings import EmailIngestSettings
from services.email_ingest.tls import certificate_failure, client_context, failure_reason
from shared.config import ConfigError, HotlineConfig, load_config
from shared.settings import DEFAULT_CONFIG_PATH


def _settings(**kw: object) -> EmailIngestSettings:
    base: dict[str, object] = {
        "amqp_url": "amqp://x",
        "mongo_url": "mongodb://x",
        "from_address": "h@x.test",
        "master_key": new_master_key(),
    }
    return EmailIngestSettings(**{**base, **kw})  # type: ignore[arg-type]


def _config(**mailboxes: dict[str, object]) -> HotlineConfig:
    raw = load_config(DEFAULT_CONFIG_PATH).model_dump()
    raw["mailboxes"] = mailboxes
    return HotlineConfig.model_validate(raw)


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return path


def test_a_send_waits_one_window_after_the_send_per_minute_places_before_it() -> None:
    assert send_time(100.0, None) == 100.0  # fewer than per_minute sends so far: at once
    assert send_time(100.0, 30.0) == 100.0  # that one left more than a minute ago
    assert send_time(100.0, 70.0) == 130.0  # it left 30 s ago: wait the rest of its minute
    assert send_time(100.0, 98.0, window=5.0) == 103.0


def test_tls_contexts_always_verify_and_a_bad_ca_bundle_names_its_setting(
    ca_file: Path, tmp_path: Path
) -> None:
    for context in (client_context(None, "X"), client_context(ca_file, "X")):
        assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
        assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert client_context(ca_file, "X").cert_store_stats()["x509"] == 1  # only that CA
    (tmp_path / "empty.pem").write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="EMAIL_INGEST_TLS_CA_FILE"):
        client_context(tmp_path / "empty.pem", "EMAIL_INGEST_TLS_CA_FILE")


def test_each_mailbox_trusts_its_own_ca_bundle_else_the_service_one(ca_file: Path, tmp_path: Path) -> None:
    service_ca = tmp_path / "service-ca.pem"
    for _ in range(2):  # a bundle of two CAs
        trustme.CA().cert_pem.write_to_path(str(service_ca), append=True)
    box = {"imap_host": "imap.example.org", "user": "u", "password_env": "PW"}
    config = _config(
        own={"line": "113", **box, "tls_ca_file": str(ca_file)},
        default={"line": "dv", **box},
        plain={"line": "dv", **box, "imap_tls": False, "imap_host": "127.0.0.1"},
    )
    boxes = {b.name: b for b in mailboxes_from(_settings(tls_ca_file=service_ca), config, {"PW": "p"})}
    stats = {n: b.tls_context.cert_store_stats()["x509"] for n, b in boxes.items() if b.tls_context}
    assert stats == {"own": 1, "default": 2}
    assert boxes["plain"].tls_context is None
    missing = _config(x={"line": "113", **box, "tls_ca_file": str(tmp_path / "nope.pem")})
    with pytest.raises(ConfigError, match=r"mailboxes\.x\.tls_ca_file"):
        mailboxes_from(_settings(), missing, {"PW": "p"})


def test_a_certificate_failure_is_recognised_however_the_library_wraps_it() -> None:
    error = ssl.SSLCertVerificationError(1, "certificate verify failed")
    error.verify_message = "unable to get local issuer certificate"
    try:
        try:
            raise error
        except ssl.SSLError as exc:
            raise aiosmtplib.SMTPConnectError("Error connecting") from exc
    except aiosmtplib.SMTPConnectError as wrapped:
        assert certificate_failure(wrapped) is error
    assert failure_reason(error) == "unable to get local issuer certificate"
    assert certificate_failure(aiosmtplib.SMTPConnectError("refused")) is None
    assert certificate_failure(ConnectionRefusedError()) is None
