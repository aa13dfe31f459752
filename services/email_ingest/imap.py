"""Watching a line's mailbox over IMAP and handing each new mail to the broker.

Order of effects for one mail (so nothing is lost and nothing doubled):
1. fetch it by UID (``BODY.PEEK[]``, so fetching alone changes nothing on the server);
2. publish one InboundMessage and wait for the broker's confirm;
3. flag it ``$HotlineIngested`` on the server and advance the cursor (UIDVALIDITY + last
   UID) in the database.
A crash between 2 and 3 re-publishes the mail with the same source id
(mailbox/UIDVALIDITY/UID), which the dispatcher stores once.

New mail is found by UID, never by date (STYLE.md): the cursor says where to resume; a
changed UIDVALIDITY starts from UID 1 again and relies on the keyword and the source id.
IDLE (RFC 2177) pushes new mail; it is re-issued every ``idle_seconds`` and a watchdog
treats a silent connection as dead.
"""

from __future__ import annotations

import asyncio
import random
import re
import ssl
from typing import Any

from aioimaplib import IMAP4, STOP_WAIT_SERVER_PUSH, Abort, CommandTimeout
from prometheus_client import CollectorRegistry, Counter, Gauge
from pymongo.asynchronous.collection import AsyncCollection

from services.email_ingest.mime import parse_mail
from services.email_ingest.settings import EmailIngestSettings
from shared import topology
from shared.broker import Broker
from shared.envelope import Channel, EmailFacts, InboundMessage, message_id_for, utcnow
from shared.logs import get_logger

log = get_logger(__name__)

KEYWORD = "$HotlineIngested"
_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")
_FETCH_UID = re.compile(rb"UID (\d+)")


class ImapAuthError(Exception):
    """The server refused our credentials: an operator must fix the settings."""


class ImapProtocolError(Exception):
    """The server answered a command with NO/BAD."""


class ImapMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.ingested = Counter(
            "hotline_mail_ingested_total", "Mails handed to the broker", registry=registry
        )
        self.refused = Counter("hotline_mail_refused_total", "Mails too large to ingest", registry=registry)
        self.connected = Gauge("hotline_imap_connected", "1 while the IMAP session is up", registry=registry)
        self.reconnects = Counter(
            "hotline_imap_reconnects_total", "IMAP reconnects, by reason", ["reason"], registry=registry
        )


def parse_fetch(lines: list[Any]) -> list[tuple[int, bytes]]:
    """(uid, raw mail) pairs from an aioimaplib FETCH response.

    aioimaplib returns the ``* n FETCH (UID u BODY[] {size}`` line as bytes, the literal
    as a bytearray, then the closing line (which may carry the UID instead).
    """
    out: list[tuple[int, bytes]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if (
            isinstance(line, bytes)
            and b"FETCH" in line
            and i + 1 < len(lines)
            and isinstance(lines[i + 1], bytearray)
        ):
            literal = bytes(lines[i + 1])
            m = _FETCH_UID.search(line)
            if m is None and i + 2 < len(lines) and isinstance(lines[i + 2], bytes):
                m = _FETCH_UID.search(lines[i + 2])
            if m is not None:
                out.append((int(m.group(1)), literal))
            i += 2
            continue
        i += 1
    return out


def parse_search(lines: list[Any]) -> list[int]:
    """UIDs from an aioimaplib SEARCH response: the untagged ``* SEARCH`` line arrives with
    its keyword stripped (``b"3 7 12"``); the last line is the tagged completion."""
    return sorted(
        int(tok) for line in lines[:-1] if isinstance(line, bytes) for tok in line.split() if tok.isdigit()
    )


class MailboxWatcher:
    def __init__(
        self,
        settings: EmailIngestSettings,
        broker: Broker,
        cursors: AsyncCollection[dict[str, Any]],
        metrics: ImapMetrics,
    ) -> None:
        self.s = settings
        self.broker = broker
        self.cursors = cursors
        self.metrics = metrics
        self.key = f"{settings.imap_user}@{settings.imap_host}:{settings.imap_port}/{settings.imap_mailbox}"

    async def run(self) -> None:
        """Watch the mailbox until cancelled, reconnecting with jittered backoff."""
        delay = 1.0
        while True:
            try:
                await self._session()
            except ImapAuthError:
                log.error("imap_login_refused", mailbox=self.key)
                self.metrics.reconnects.labels("auth").inc()
                delay = self.s.reconnect_max_seconds
            except (OSError, TimeoutError, Abort, CommandTimeout, ImapProtocolError) as exc:
                log.warning("imap_connection_lost", mailbox=self.key, error=type(exc).__name__)
                self.metrics.reconnects.labels("network").inc()
            finally:
                self.metrics.connected.set(0)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 (jitter, not crypto)
            delay = min(delay * 2, self.s.reconnect_max_seconds)

    async def _session(self) -> None:
        context = ssl.create_default_context() if self.s.imap_tls else None
        imap = IMAP4(self.s.imap_host, self.s.imap_port, timeout=30, ssl_context=context)
        try:
            await imap.wait_hello_from_server()
            if (await imap.login(self.s.imap_user, self.s.imap_password.get_secret_value())).result != "OK":
                raise ImapAuthError
            selected = await imap.select(self.s.imap_mailbox)
            if selected.result != "OK":
                raise ImapProtocolError(f"SELECT {self.s.imap_mailbox} refused")
            uidvalidity = next(
                (
                    int(m.group(1))
                    for line in selected.lines
                    if isinstance(line, bytes) and (m := _UIDVALIDITY.search(line))
                ),
                0,
            )
            self.metrics.connected.set(1)
            log.info("imap_connected", mailbox=self.key, uidvalidity=uidvalidity)
            while True:
                await self._sync(imap, uidvalidity)
                await self._idle(imap)
        finally:
            try:
                await asyncio.wait_for(imap.logout(), 5)
            except (OSError, TimeoutError, Abort, CommandTimeout, asyncio.CancelledError):
                pass

    async def _idle(self, imap: IMAP4) -> None:
        """Wait for the server to push a change, at most ``idle_seconds``."""
        idle = await imap.idle_start(timeout=self.s.idle_seconds)
        # Watchdog: idle_start stops the wait after idle_seconds; if even that does not
        # come back, the connection is dead and wait_for raises TimeoutError.
        push = await imap.wait_server_push(timeout=self.s.idle_seconds + 30)
        imap.idle_done()
        await asyncio.wait_for(idle, 30)
        if push != STOP_WAIT_SERVER_PUSH:
            log.debug("imap_push", mailbox=self.key)

    async def _cursor(self, uidvalidity: int) -> int:
        doc = await self.cursors.find_one({"_id": self.key})
        if doc is None or doc.get("uidvalidity") != uidvalidity:
            if doc is not None:
                log.warning(
                    "imap_uidvalidity_changed", mailbox=self.key, old=doc.get("uidvalidity"), new=uidvalidity
                )
            # A new UIDVALIDITY makes old UIDs meaningless: start over from UID 1.
            await self.cursors.replace_one(
                {"_id": self.key},
                {"uidvalidity": uidvalidity, "last_uid": 0, "updated_at": utcnow()},
                upsert=True,
            )
            return 0
        return int(doc.get("last_uid", 0))

    async def _sync(self, imap: IMAP4, uidvalidity: int) -> None:
        last_uid = await self._cursor(uidvalidity)
        found = await imap.uid_search(f"UID {last_uid + 1}:*", "UNKEYWORD", KEYWORD, charset=None)
        if found.result != "OK":
            raise ImapProtocolError("UID SEARCH refused")
        uids = parse_search(found.lines)
        # "n:*" always includes the highest UID, even below n (RFC 3501 6.4.8).
        for uid in (u for u in uids if u > last_uid):
            await self._ingest_one(imap, uidvalidity, uid)

    async def _ingest_one(self, imap: IMAP4, uidvalidity: int, uid: int) -> None:
        size_resp = await imap.uid("fetch", str(uid), "(RFC822.SIZE)")
        size_match = re.search(
            rb"RFC822\.SIZE (\d+)",
            b" ".join(bytes(line) for line in size_resp.lines if isinstance(line, bytes | bytearray)),
        )
        source_id = f"imap:{self.key}:{uidvalidity}:{uid}"
        if size_match and int(size_match.group(1)) > self.s.max_mail_bytes:
            # Never parse what we cannot afford to; flagged so it does not block the mailbox.
            log.error("mail_too_large", uid=uid, size=int(size_match.group(1)))
            self.metrics.refused.inc()
            await self._done(imap, uidvalidity, uid)
            return
        resp = await imap.uid("fetch", str(uid), "(UID BODY.PEEK[])")
        fetched = parse_fetch(resp.lines)
        if resp.result != "OK" or not fetched:
            raise ImapProtocolError(f"UID FETCH {uid} gave nothing")
        raw = fetched[0][1]
        mail = parse_mail(raw)
        message_id = message_id_for(source_id)
        envelope = InboundMessage(
            message_id=message_id,
            source_id=source_id,
            channel=Channel.EMAIL,
            line=self.s.line,
            received_at=utcnow(),
            sender=mail.from_address,
            text=mail.text,
            subject=mail.subject,
            html=mail.html,
            email=EmailFacts(
                header_message_id=mail.message_id,
                in_reply_to=mail.in_reply_to,
                references=mail.references,
                to=mail.to,
                auto_submitted=mail.auto_submitted,
            ),
        )
        await self.broker.publish(
            envelope,
            topology.INBOUND,
            topology.inbound_key(Channel.EMAIL, self.s.line),
            message_id=message_id,
            headers={"channel": Channel.EMAIL.value, "line": self.s.line},
        )
        await self._done(imap, uidvalidity, uid)
        self.metrics.ingested.inc()
        log.info("mail_ingested", message_id=message_id, uid=uid, size=len(raw))

    async def _done(self, imap: IMAP4, uidvalidity: int, uid: int) -> None:
        stored = await imap.uid("store", str(uid), "+FLAGS.SILENT", f"({KEYWORD} \\Seen)")
        if stored.result != "OK":
            raise ImapProtocolError(f"UID STORE {uid} refused")
        await self.cursors.update_one(
            {"_id": self.key},
            {"$set": {"uidvalidity": uidvalidity, "updated_at": utcnow()}, "$max": {"last_uid": uid}},
            upsert=True,
        )
