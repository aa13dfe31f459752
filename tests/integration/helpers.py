"""Clients the integration tests use: the consultant API, its live events, IMAP mailboxes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
from aioimaplib import IMAP4, STOP_WAIT_SERVER_PUSH, Abort, CommandTimeout

from conversations.repository import Repository
from conversations.search import SearchKey, Terms
from conversations.vault import Vault, open_attachment_names
from services.email_ingest.imap import close_connection, parse_fetch
from services.store.auth import hash_password
from shared.settings import parse_master_key

# The search terms of a test's own database (the ``repo`` fixture): a store takes its own from
# its settings. Clearing text takes it out of the search index with them (conversations/search.py).
SEARCH_TERMS = Terms(SearchKey(b"integration-tests-search-key-secret"), ZoneInfo("Europe/Minsk"))


class Consultant:
    """A logged-in consultant talking to the store's API like the console does."""

    def __init__(self, base_url: str) -> None:
        self.base = base_url
        # unsafe: accept cookies from an IP address host (127.0.0.1).
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""
        self.events: aiohttp.ClientWebSocketResponse | None = None

    async def login(self, login: str, password: str) -> dict[str, Any]:
        async with self.http.post(
            f"{self.base}/api/session", json={"login": login, "password": password}
        ) as resp:
            body = await resp.json(content_type=None)
            assert resp.status == 200, body
        self.csrf = body["csrf_token"]
        return body

    async def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        h = {"X-CSRF-Token": self.csrf, **(headers or {})}
        async with self.http.request(method, f"{self.base}{path}", json=body, headers=h) as resp:
            data = await resp.json(content_type=None) if resp.status != 204 else None
            return resp.status, data

    async def open_events(self) -> None:
        self.events = await self.http.ws_connect(f"{self.base}/api/events")
        hello = await self.events.receive_json(timeout=10)
        assert hello["type"] == "hello"

    async def wait_event(self, match: Callable[[dict[str, Any]], bool], within: float = 30) -> dict[str, Any]:
        """The next live event for which ``match`` is true (others are skipped)."""
        assert self.events is not None

        async def loop() -> dict[str, Any]:
            assert self.events is not None
            while True:
                msg = await self.events.receive()
                assert msg.type is aiohttp.WSMsgType.TEXT, msg
                frame = json.loads(msg.data)
                if frame.get("type") == "event" and match(frame):
                    return frame

        return await asyncio.wait_for(loop(), within)

    async def close(self) -> None:
        if self.events is not None:
            await self.events.close()
        await self.http.close()


async def logged_in(base_url: str, login: str) -> Consultant:
    """``login`` logged in at the store ``base_url``: a demo account, or one made by
    :func:`add_account` (password: login + ``-demo``)."""
    c = Consultant(base_url)
    await c.login(login, f"{login}-demo")
    return c


async def add_account(
    repo: Repository,
    login: str,
    role: str,
    organisation: str | None,
    lines: list[str],
    specialist_roles: Sequence[str] = (),
) -> None:
    """An account beside the demo ones (a supervisor of one organisation, a specialist), as
    ``services.store.admin add-user`` stores it; password: login + ``-demo``."""
    doc = {"_id": login, "name": login, "role": role, "organisation": organisation, "lines": lines}
    doc |= {"password_hash": hash_password(f"{login}-demo"), "specialist_roles": list(specialist_roles)}
    await repo.upsert_consultant(doc)


def mail(
    from_addr: str,
    to_addr: str,
    subject: str,
    body: str,
    message_id: str,
    in_reply_to: str | None = None,
    references: list[str] | None = None,
) -> bytes:
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"] = from_addr
    msg["To"] = to_addr
    msg["Subject"] = subject
    msg["Message-ID"] = message_id
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = " ".join(references)
    msg.set_content(body)
    return msg.as_bytes()


def new_message_id() -> str:
    return f"<{uuid.uuid4().hex}@client.example>"


@contextlib.asynccontextmanager
async def imap_session(host: str, port: int, user: str, command_timeout: float = 10) -> AsyncIterator[IMAP4]:
    """``user`` logged in over IMAP (password: the user name, as on the local Dovecot); on
    exit logged out and the socket closed.

    Closed by us: aioimaplib's LOGOUT leaves the socket open until the server hangs up and
    the event loop reads that, and each test has its own event loop, closed when the test
    ends. A socket left open is found by the garbage collector later, in another test, whose
    ResourceWarning then fails that test. LOGOUT is bounded and its failures ignored: the
    session may be broken already (what a test may be checking)."""
    imap = IMAP4(host, port, timeout=command_timeout)
    try:
        await imap.wait_hello_from_server()
        assert (await imap.login(user, user)).result == "OK"
        yield imap
    finally:
        transport = imap.protocol.transport
        try:
            if transport is not None and not transport.is_closing():
                with contextlib.suppress(Abort, CommandTimeout, OSError, TimeoutError):
                    await asyncio.wait_for(imap.logout(), 2)
        finally:
            await close_connection(imap)


class Mailbox:
    """An IMAP mailbox of the local Dovecot (password = user name)."""

    def __init__(self, host: str, port: int, user: str) -> None:
        self.host, self.port, self.user = host, port, user

    def session(self) -> contextlib.AbstractAsyncContextManager[IMAP4]:
        return imap_session(self.host, self.port, self.user)

    async def append(self, raw: bytes) -> None:
        await self.append_all([raw])

    async def append_all(self, raws: list[bytes]) -> None:
        """Append every mail in one session, one right after the other: a burst, within the
        server's connections per user and address (Dovecot's mail_max_userip_connections, 10)."""
        async with self.session() as imap:
            for raw in raws:
                resp = await imap.append(raw, mailbox="INBOX")
                assert resp.result == "OK", resp

    async def wait_for_mail(self, count: int = 1, within: float = 30) -> list[bytes]:
        """Wait (IMAP IDLE, no polling) until INBOX holds ``count`` mails; return them all."""
        async with self.session() as imap:

            async def loop() -> list[bytes]:
                while True:
                    await imap.select("INBOX")
                    resp = await imap.fetch("1:*", "(UID BODY.PEEK[])")
                    mails = [raw for _, raw in parse_fetch(resp.lines)] if resp.result == "OK" else []
                    if len(mails) >= count:
                        return mails
                    idle = await imap.idle_start(timeout=within)
                    push = await imap.wait_server_push(timeout=within)
                    imap.idle_done()
                    await asyncio.wait_for(idle, 10)
                    assert push != STOP_WAIT_SERVER_PUSH, "no mail arrived"

            return await asyncio.wait_for(loop(), within)


class Frames:
    """Reads a chat socket: ``next(type)`` returns the next frame of that type, keeping every
    frame read in ``seen`` (so a test can check what else arrived, e.g. position updates)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []
        self._pending: list[dict[str, Any]] = []

    async def next(self, kind: str, sender: str | None = None, within: float = 15) -> dict[str, Any]:
        def wanted(f: dict[str, Any]) -> bool:
            return f.get("type") == kind and (sender is None or f.get("from") == sender)

        for f in self._pending:
            if wanted(f):
                self._pending.remove(f)
                return f

        async def loop() -> dict[str, Any]:
            while True:
                frame = await self.ws.receive_json()
                self.seen.append(frame)
                if wanted(frame):
                    return frame
                self._pending.append(frame)

        return await asyncio.wait_for(loop(), within)


def readyz(port: int) -> tuple[int, dict[str, Any]]:
    """A service's /readyz answer: (status, body), a 503 included."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def opened(
    mongo: Any, database: str, master_key: str, docs: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Stored messages as written: opened with the services' master key (conversations/vault.py),
    as the store opens them."""
    vault = Vault(mongo, f"{database}_keys.data_keys", parse_master_key(master_key))
    try:
        return [open_attachment_names(await vault.open_fields(d)) for d in docs]
    finally:
        await vault.close()


async def until(check: Callable[[], Awaitable[bool]], within: float = 30) -> None:
    """Until ``check()`` (a query of a service's work) holds: polled, for what the database
    announces to nobody."""
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "not within time"
        await asyncio.sleep(0.2)
