"""What the e-mail tests share: restarting email_ingest with other settings, the database,
counting live events, a consultant's reply and its outcome, SMTP servers (aiosmtpd) that
record how each mail arrived, with STARTTLS or implicit TLS and authentication."""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from pathlib import Path
from typing import Any, Literal

import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from pymongo import AsyncMongoClient

from shared.settings import DEFAULT_CONFIG_PATH
from tests.conftest import Gateway, SessionCA, free_ports
from tests.integration.helpers import Consultant, Mailbox, mail, new_message_id

SMTP_USER, SMTP_PASSWORD = "hotline-relay", "relay-secret"


def restart_email_ingest(gw: Gateway, environ: dict[str, str] | None = None, **overrides: str) -> None:
    """Restart email_ingest with ``EMAIL_INGEST_<key>`` overrides and other ``environ``."""
    code = gw.processes.stop("email_ingest")
    assert code == 0, gw.logs()[-3000:]
    env = {
        **gw.env["email_ingest"],
        **(environ or {}),
        **{f"EMAIL_INGEST_{k}": v for k, v in overrides.items()},
    }
    gw.env["email_ingest"] = env
    gw.processes.start("email_ingest", env)
    gw.processes.wait_ready(gw.ports)


def config_with_mailboxes(path: Path, mailboxes: dict[str, dict[str, Any]]) -> Path:
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text(encoding="utf-8"))
    raw["mailboxes"] = mailboxes
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def database(gw: Gateway) -> tuple[AsyncMongoClient[dict[str, Any]], Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(gw.stack.mongo_url)
    return client, client[gw.database]


async def queued_threads(who: Consultant, count: int, within: float = 120) -> set[str]:
    """Wait for ``count`` distinct threads to be announced as queued; return their ids."""
    seen: set[str] = set()

    async def loop() -> None:
        while len(seen) < count:
            event = await who.wait_event(lambda e: e["name"] == "ThreadQueued", within)
            seen.add(event["thread_id"])

    await asyncio.wait_for(loop(), within)
    return seen


async def supervisor(gw: Gateway) -> Consultant:
    """Sofia (supervisor of every line), logged in and listening to live events."""
    await asyncio.to_thread(gw.seed_demo_accounts)
    sofia = Consultant(gw.store_url)
    await sofia.login("sofia", "sofia-demo")
    await sofia.open_events()
    return sofia


async def claimed_mail_thread(gw: Gateway, who: Consultant, text: str = "help") -> str:
    """A client's mail (its body ``text``) arrives in the line's mailbox; ``who`` claims its
    thread (returned)."""
    inbox = Mailbox("127.0.0.1", gw.urls.imap_port, gw.line_mailbox)
    await inbox.append(mail("c@example.org", "h@demo.test", "s", text, new_message_id()))
    (thread_id,) = await queued_threads(who, 1)
    assert (await who.call("POST", f"/api/threads/{thread_id}/claim"))[0] == 200
    return thread_id


async def reply(who: Consultant, thread_id: str, text: str = "answer") -> dict[str, Any]:
    """``who`` replies in the thread; returns the stored reply (its ``id`` is the message id)."""
    status, body = await who.call(
        "POST", f"/api/threads/{thread_id}/messages", {"text": text}, {"Idempotency-Key": uuid.uuid4().hex}
    )
    assert status == 202, body
    return dict(body)


async def delivery(who: Consultant, thread_id: str, message_id: str, within: float = 60) -> dict[str, Any]:
    """Wait until the reply is reported sent or failed; return its delivery as the thread shows
    it to the consultant (``status``, ``detail``)."""
    await who.wait_event(
        lambda e: (
            e["name"] == "MessageDelivered"
            and e["message_id"] == message_id
            and e["data"]["status"] != "queued"
        ),
        within=within,
    )
    status, thread = await who.call("GET", f"/api/threads/{thread_id}")
    assert status == 200, thread
    return dict(next(m for m in thread["messages"] if m["id"] == message_id)["delivery"])


@dataclass(frozen=True)
class Received:
    """One mail as an SMTP server took it, and how it came."""

    message_id: str
    tls: bool
    authenticated: bool
    at: float  # the server's loop clock


@dataclass
class SmtpRecorder:
    """An aiosmtpd handler that accepts every mail and records how it came, and an
    authenticator that takes only SMTP_USER / SMTP_PASSWORD and counts every AUTH."""

    received: list[Received] = field(default_factory=list)
    logins: int = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        transport = server.transport
        self.received.append(
            Received(
                str(message_from_bytes(content).get("Message-ID", "")),
                transport is not None and transport.get_extra_info("ssl_object") is not None,
                bool(session.authenticated),
                asyncio.get_running_loop().time(),
            )
        )
        return "250 OK"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        self.logins += 1
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            SMTP_USER.encode(),
            SMTP_PASSWORD.encode(),
        )
        return AuthResult(success=ok)


@contextmanager
def smtp_server(
    handler: Any, mode: Literal["starttls", "tls", "none"], ca: SessionCA | None = None
) -> Iterator[int]:
    """A real SMTP server on a free loopback port (yielded) for the test's duration.

    ``starttls``: STARTTLS required before anything else, then AUTH (RFC 3207, RFC 4954);
    ``tls``: implicit TLS from the first byte, with AUTH; both with a certificate ``ca``
    issued for 127.0.0.1. ``none``: plain, no AUTH. With AUTH the handler's ``authenticate``
    decides. aiosmtpd offers AUTH over implicit TLS only with ``auth_require_tls=False``
    (it does not see that connection as TLS, aio-libs/aiosmtpd#281), and then warns: a test
    of ``tls`` mode marks that warning ignored.
    """
    (port,) = free_ports(1)
    kwargs: dict[str, Any] = {}
    if mode != "none":
        assert ca is not None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.ca.issue_cert("127.0.0.1").configure_cert(context)
        kwargs = {"auth_required": True, "authenticator": handler.authenticate}
        if mode == "starttls":
            kwargs |= {"tls_context": context, "require_starttls": True}
        else:
            kwargs |= {"ssl_context": context, "auth_require_tls": False}
    controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()
