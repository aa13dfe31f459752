"""One line, two organisations: each consultant's reply leaves in the name of their own
organisation, with its From, Reply-To and signature, through its own SMTP account, and never
through the other's. Two real SMTP servers (aiosmtpd), one per organisation's account, the
first with STARTTLS and a login; the mails come in through the real Dovecot."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.conftest import Gateway, SessionCA
from tests.integration.email_support import (
    SMTP_PASSWORD,
    SMTP_USER,
    SmtpRecorder,
    config_with_mailboxes,
    delivery,
    queued_threads,
    reply,
    restart_email_ingest,
    smtp_server,
    supervisor,
)
from tests.integration.helpers import Consultant, Mailbox, mail, new_message_id


@dataclass
class Keeping(SmtpRecorder):
    """Records as SmtpRecorder does, and keeps each mail as its recipient would read it."""

    mails: list[EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        parsed = message_from_bytes(content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.mails.append(parsed)
        return await super().handle_DATA(server, session, envelope)


def body(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


async def test_each_organisation_answers_in_its_own_name_through_its_own_account(
    gateway: Gateway, tls_ca: SessionCA, tmp_path: Path
) -> None:
    lastrada, bwc = Keeping(), Keeping()
    imap = {"imap_host": "127.0.0.1", "imap_port": gateway.urls.imap_port, "imap_tls": False}
    with smtp_server(lastrada, "starttls", tls_ca) as ls_port, smtp_server(bwc, "none") as bwc_port:
        config = config_with_mailboxes(
            tmp_path / "hotline.yaml",
            {
                "infoline_lastrada": {
                    "line": "113",
                    "organisation": "lastrada",
                    **imap,
                    "user": f"{gateway.name}-ls",
                    "password_env": "HOTLINE_TEST_PW_LS",
                    "from_address": "help@lastrada.example",
                    "from_name": "La Strada",
                    "reply_to": "consult@lastrada.example",
                    "signature": "La Strada, infoline 113",
                    "smtp": {
                        "host": "127.0.0.1",
                        "port": ls_port,
                        "security": "starttls",
                        "user": SMTP_USER,
                        "password_env": "HOTLINE_TEST_SMTP_LS",
                        "tls_ca_file": str(tls_ca.file),
                    },
                },
                "infoline_bwc": {
                    "line": "113",
                    "organisation": "bwc",
                    **imap,
                    "user": f"{gateway.name}-bwc",
                    "password_env": "HOTLINE_TEST_PW_BWC",
                    "from_address": "help@bwc.example",
                    "from_name": "BWC",
                    "signature": "Business Women's Club",
                    "smtp": {"host": "127.0.0.1", "port": bwc_port, "security": "none"},
                },
            },
        )
        restart_email_ingest(
            gateway,
            {
                "HOTLINE_TEST_PW_LS": f"{gateway.name}-ls",
                "HOTLINE_TEST_PW_BWC": f"{gateway.name}-bwc",
                "HOTLINE_TEST_SMTP_LS": SMTP_PASSWORD,
            },
            CONFIG_PATH=str(config),
        )
        sofia = await supervisor(gateway)
        anna, boris = Consultant(gateway.store_url), Consultant(gateway.store_url)
        try:
            await anna.login("anna", "anna-demo")
            await boris.login("boris", "boris-demo")
            # Two people write to the shared infoline's two addresses; neither region is known,
            # so both wait in the triage queue both organisations see.
            for user in (f"{gateway.name}-ls", f"{gateway.name}-bwc"):
                box = Mailbox("127.0.0.1", gateway.urls.imap_port, user)
                await box.append(mail("c@example.org", f"{user}@demo.test", "s", "help", new_message_id()))
            first, second = sorted(await queued_threads(sofia, 2))
            answers: dict[str, Any] = {}
            for who, thread_id, text in ((anna, first, "From Anna"), (boris, second, "From Boris")):
                assert (await who.call("POST", f"/api/threads/{thread_id}/claim"))[0] == 200
                answers[text] = await reply(who, thread_id, text)
            for thread_id, text in ((first, "From Anna"), (second, "From Boris")):
                outcome = await delivery(sofia, thread_id, answers[text]["id"])
                assert outcome["status"] == "sent", outcome
        finally:
            await asyncio.gather(sofia.close(), anna.close(), boris.close())

    # The automatic acknowledgements of a line of two organisations speak for neither: they
    # left through the service's own account, so each server holds one consultant's reply.
    assert [body(m).splitlines()[0] for m in lastrada.mails] == ["From Anna"]
    assert [body(m).splitlines()[0] for m in bwc.mails] == ["From Boris"]
    (ls_mail,), (bwc_mail,) = lastrada.mails, bwc.mails
    assert (str(ls_mail["From"]), str(ls_mail["Reply-To"])) == (
        "La Strada <help@lastrada.example>",
        "consult@lastrada.example",
    )
    assert body(ls_mail).splitlines() == ["From Anna", "", "-- ", "La Strada, infoline 113"]
    assert (lastrada.received[0].tls, lastrada.received[0].authenticated) == (True, True)
    assert (str(bwc_mail["From"]), bwc_mail["Reply-To"]) == ("BWC <help@bwc.example>", None)
    assert body(bwc_mail).splitlines() == ["From Boris", "", "-- ", "Business Women's Club"]
    assert "lastrada" not in bwc_mail.as_string().lower()
    assert "bwc" not in ls_mail.as_string().lower()
