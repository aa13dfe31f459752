"""TLS towards the mail servers, for real: a consultant's reply leaves over STARTTLS and over
implicit TLS with authentication, and mail is read over IMAPS from the local Dovecot, each
with the certificate verified against the private CA the operator names. A server whose
certificate does not verify gets nothing: no password, no mail, and the operator is told
which server it was. The test CA is made at test time (conftest ``tls_ca``)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Gateway, SessionCA, new_ca
from tests.integration.email_support import (
    SMTP_PASSWORD,
    SMTP_USER,
    SmtpRecorder,
    claimed_mail_thread,
    config_with_mailboxes,
    delivery,
    queued_threads,
    reply,
    restart_email_ingest,
    smtp_server,
    supervisor,
)
from tests.integration.helpers import Mailbox, mail, new_message_id


async def logged(gw: Gateway, event: str, within: float = 30) -> list[dict[str, Any]]:
    """email_ingest's log records (JSON lines) of ``event``, once there is one. Another
    process's log has no event to await: it is read again until the record appears."""
    path = gw.processes.log_dir / "email_ingest.log"
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        records = [
            json.loads(line)
            for line in path.read_text(errors="replace").splitlines()
            if line.startswith("{") and f'"{event}"' in line
        ]
        if records:
            return records
        await asyncio.sleep(0.2)
    raise AssertionError(f"{event} not logged within {within} s")


@pytest.mark.parametrize(
    "security",
    [
        "starttls",
        # aiosmtpd warns when AUTH is offered without its own STARTTLS, even inside implicit TLS.
        pytest.param(
            "tls", marks=pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
        ),
    ],
)
async def test_a_reply_leaves_over_verified_tls_with_auth_and_never_to_an_unverified_server(
    gateway: Gateway, tls_ca: SessionCA, tmp_path: Path, security: str
) -> None:
    recorder = SmtpRecorder()
    with smtp_server(recorder, security, tls_ca) as port:  # type: ignore[arg-type]
        restart_email_ingest(
            gateway,
            SMTP_HOST="127.0.0.1",
            SMTP_PORT=str(port),
            SMTP_SECURITY=security,
            SMTP_USER=SMTP_USER,
            SMTP_PASSWORD=SMTP_PASSWORD,
            TLS_CA_FILE=str(tls_ca.file),
            SMTP_ATTEMPTS="2",
            SMTP_RETRY_SECONDS="0.2",
        )
        sofia = await supervisor(gateway)
        try:
            thread_id = await claimed_mail_thread(gateway, sofia)
            first = await reply(sofia, thread_id, "first answer")
            outcome = await delivery(sofia, thread_id, first["id"])
            assert (outcome["status"], outcome["detail"]) == ("sent", "accepted by SMTP server")
            # The first-contact acknowledgement went the same way; every mail under TLS, logged in.
            assert sum(first["id"] in r.message_id for r in recorder.received) == 1
            assert all(r.tls and r.authenticated for r in recorder.received)
            received, logins = len(recorder.received), recorder.logins

            # The same server, but the service trusts another CA (as when the operator has not
            # named the server's): refused before a password or a byte of the mail is sent.
            other = new_ca(tmp_path / "other-ca")
            restart_email_ingest(gateway, TLS_CA_FILE=str(other.file))
            canary = f"canary-{new_message_id()}"
            second = await reply(sofia, thread_id, canary)
            outcome = await delivery(sofia, thread_id, second["id"])
            assert (outcome["status"], outcome["detail"]) == (
                "failed",
                "SMTP server's TLS certificate not trusted",
            )
        finally:
            await sofia.close()
    assert (len(recorder.received), recorder.logins) == (received, logins)
    refused = await logged(gateway, "smtp_tls_certificate_refused")
    assert len(refused) == 2  # one per attempt (SMTP_ATTEMPTS=2), then shown failed
    assert {(r["host"], r["port"], r["reason"]) for r in refused} == {
        ("127.0.0.1", port, "unable to get local issuer certificate")
    }
    assert canary not in gateway.logs()


async def test_mail_is_read_over_imaps_verified_with_the_mailbox_or_service_ca(
    gateway: Gateway, tls_ca: SessionCA, tmp_path: Path
) -> None:
    imaps = gateway.stack.imaps_port
    dv_user = f"{gateway.name}-dv"
    config = config_with_mailboxes(
        tmp_path / "hotline.yaml",
        {
            "dv": {
                "line": "dv",
                "organisation": "gp",
                "imap_host": "127.0.0.1",
                "imap_port": imaps,
                "user": dv_user,
                "password_env": "HOTLINE_TEST_PW_DV",
                # This mailbox's own CA bundle wins over EMAIL_INGEST_TLS_CA_FILE.
                "tls_ca_file": str(tls_ca.file),
            }
        },
    )
    # The environment's mailbox over IMAPS too, but trusting a CA that did not sign Dovecot's.
    other = new_ca(tmp_path / "other-ca")
    restart_email_ingest(
        gateway,
        {"HOTLINE_TEST_PW_DV": dv_user},
        CONFIG_PATH=str(config),
        IMAP_PORT=str(imaps),
        IMAP_TLS="true",
        TLS_CA_FILE=str(other.file),
        RECONNECT_MAX_SECONDS="2",
    )
    sofia = await supervisor(gateway)
    canary = f"canary-{new_message_id()}"
    try:
        for user in (dv_user, gateway.line_mailbox):
            box = Mailbox("127.0.0.1", gateway.urls.imap_port, user)
            await box.append(mail("c@demo.test", f"{user}@demo.test", "s", canary, new_message_id()))
        (dv_thread,) = await queued_threads(sofia, 1)
        refused = (await logged(gateway, "imap_tls_certificate_refused"))[0]
        assert (refused["host"], refused["port"], refused["reason"]) == (
            "127.0.0.1",
            imaps,
            "unable to get local issuer certificate",
        )

        # With the right CA the waiting mail is read: refused meant delayed, not lost.
        restart_email_ingest(gateway, TLS_CA_FILE=str(tls_ca.file))
        (line_thread,) = await queued_threads(sofia, 1)
        assert line_thread != dv_thread
        for thread_id, queue in ((dv_thread, "gp-dv"), (line_thread, "113-triage")):
            status, thread = await sofia.call("GET", f"/api/threads/{thread_id}")
            assert status == 200 and thread["queue"] == queue
    finally:
        await sofia.close()
    assert canary not in gateway.logs()
