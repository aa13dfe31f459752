"""Watching the lines' mailboxes over IMAP and handing each new mail to the broker.

Order of effects for one mail (so nothing is lost and nothing doubled):
1. fetch it by UID (``BODY.PEEK[]``, so fetching alone changes nothing on the server);
2. store the raw bytes once in ``mail_raw`` (key: mailbox + UIDVALIDITY + UID), sealed under
   a data key of the mail's own (services/email_ingest/rawstore.py);
3. parse it; a mail we cannot read, or whose records the database refuses for good, is
   marked ``quarantined`` with the reason and goes no further (an operator lists and replays
   it: ``python -m services.email_ingest.quarantine``);
4. publish one InboundMessage and wait for the broker's confirm;
5. flag it ``$HotlineIngested`` on the server (quarantined ones also ``$HotlineQuarantined``),
   mark it ``published`` and advance the cursor (UIDVALIDITY + last UID) in the database.
A crash between 2 and 5 fetches the mail again: its raw record says whether it was
published; if not it is published again with the same source id, which the dispatcher
stores once.

New mail is found by UID, never by date (STYLE.md): the cursor says where to resume. A
changed UIDVALIDITY (RFC 3501 2.3.1.1) starts again from UID 1; mails whose bytes were
already stored under the old UIDVALIDITY are recognised by their SHA-256 and only flagged.

IDLE (RFC 2177) pushes new mail; it is re-issued every ``idle_seconds`` (well inside the
29 minutes a server may allow) and each re-issue also polls. A server without IDLE is
polled every ``poll_seconds``. Watchdog: every command, and the end of every IDLE, must
answer within ``watchdog_seconds``, and a closed socket is noticed at once; otherwise the
session is torn down and rebuilt with jittered exponential backoff.

Deleting old mail from the server (``delete_after_days``, off by default): once a day per
mailbox, and at the first synchronisation after the service starts, the mails that carry
``$HotlineIngested`` (stored and handed over) but not ``$HotlineQuarantined``, and arrived on
the server (internal date) before that many days ago, are flagged ``\\Deleted`` and removed
with UID EXPUNGE (RFC 4315), which removes only those. A server without UIDPLUS keeps every
mail: a plain EXPUNGE would also remove what another client flagged ``\\Deleted``. The pass
runs before the synchronisation, so a mail that arrives with an old internal date is handed
over first and deleted by a later pass.

Failures are told apart: a refused login or folder waits the longest backoff and says so
(an operator must act); a network failure reconnects quickly; a broker or database failure
reconnects once they are back; a mail that does not parse is quarantined, never retried in
a loop, never blocking the mailbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, TypeVar

from aio_pika.exceptions import AMQPError
from aioimaplib import IMAP4, STOP_WAIT_SERVER_PUSH, Abort, CommandTimeout, Response
from bson.errors import InvalidDocument
from prometheus_client import CollectorRegistry, Counter, Gauge
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import PyMongoError

from services.email_ingest.inbound import is_backlog, source_id_for, to_envelope
from services.email_ingest.mime import ParsedMail, Unparseable, parse_mail
from services.email_ingest.rawstore import QUARANTINED, REPLAYED, RawStore, fingerprint
from services.email_ingest.settings import EmailIngestSettings
from services.email_ingest.tls import client_context, log_refused
from shared import topology
from shared.broker import PUBLISH_ERRORS, Broker, BrokerUnavailable
from shared.config import ConfigError, HotlineConfig
from shared.envelope import Channel, InboundMessage, utcnow
from shared.logs import get_logger, place
from shared.mongo import refuses_one_document
from shared.supervise import Heartbeat

log = get_logger(__name__)

KEYWORD = "$HotlineIngested"
QUARANTINE_KEYWORD = "$HotlineQuarantined"
_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")
_FETCH_UID = re.compile(rb"UID (\d+)")
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
_INTERNALDATE = re.compile(rb'INTERNALDATE "([^"]{1,40})"')
# Searches in a row while each finds new mail, before the watcher goes back to IDLE.
MAX_SYNC_ROUNDS = 10
# A UID FETCH of bodies asks for at most this many bytes at once (besides fetch_batch).
_FETCH_BYTES = 8 * 1024 * 1024
# Old mail is deleted from the server this often per mailbox (and once after the start).
DELETE_EVERY_SECONDS = 24 * 3600.0
# Mails flagged \Deleted and expunged per pair of commands.
DELETE_BATCH = 500
# RFC 3501 9 (date-month): English whatever the locale, which strftime's %b would follow.
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

T = TypeVar("T")


class ImapAuthError(Exception):
    """The server refused our credentials: an operator must fix the settings."""


class ImapMailboxError(Exception):
    """The server refused to open the folder: it does not exist or we may not read it."""


class ImapProtocolError(Exception):
    """The server answered a command with NO/BAD. ``command`` names it (our words, never
    the server's, so it may be logged)."""

    def __init__(self, command: str) -> None:
        super().__init__(command)
        self.command = command


class ConnectionLost(Exception):
    """The socket closed, or the watchdog saw no answer in time. ``reason`` says which:
    "closed", "closed during IDLE" or "watchdog" (our words, so it may be logged)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Mailbox:
    """One watched mailbox. ``name`` keys its cursor and its mails' source ids.

    ``tls_context`` (verifying, see tls.py) is used when ``tls`` is on."""

    name: str
    line: str
    host: str
    port: int
    tls: bool
    user: str
    password: str
    folder: str = "INBOX"
    tls_context: ssl.SSLContext | None = None
    # The authserv-id whose Authentication-Results are read (authresults.py); None: none.
    trusted_authserv_id: str | None = None


def mailboxes_from(
    settings: EmailIngestSettings, config: HotlineConfig, environ: Mapping[str, str] | None = None
) -> list[Mailbox]:
    """The mailboxes to watch: the one in the environment (if ``IMAP_USER`` is set) and those of
    the configuration's ``mailboxes``. Raise ConfigError naming what is missing."""
    env = os.environ if environ is None else environ
    boxes: list[Mailbox] = []
    default_ca = "EMAIL_INGEST_TLS_CA_FILE"
    if settings.imap_user:
        if settings.imap_password is None:
            raise ConfigError("EMAIL_INGEST_IMAP_PASSWORD: required when EMAIL_INGEST_IMAP_USER is set")
        boxes.append(
            Mailbox(
                # Kept in this form: earlier versions keyed cursors and source ids by it.
                name=f"{settings.imap_user}@{settings.imap_host}:{settings.imap_port}/{settings.imap_mailbox}",
                line=settings.line,
                host=settings.imap_host,
                port=settings.imap_port,
                tls=settings.imap_tls,
                user=settings.imap_user,
                password=settings.imap_password.get_secret_value(),
                folder=settings.imap_mailbox,
                tls_context=client_context(settings.tls_ca_file, default_ca) if settings.imap_tls else None,
                trusted_authserv_id=settings.trusted_authserv_id or None,
            )
        )
    for name, spec in config.mailboxes.items():
        password = env.get(spec.password_env)
        if not password:
            raise ConfigError(
                f"mailboxes.{name}.password_env: environment variable {spec.password_env} is not set"
            )
        context = None
        if spec.imap_tls:  # the mailbox's own CA bundle, else the service's, else the system's
            context = (
                client_context(Path(spec.tls_ca_file), f"mailboxes.{name}.tls_ca_file")
                if spec.tls_ca_file
                else client_context(settings.tls_ca_file, default_ca)
            )
        boxes.append(
            Mailbox(
                name,
                spec.line,
                spec.imap_host,
                spec.imap_port,
                spec.imap_tls,
                spec.user,
                password,
                spec.folder,
                context,
                spec.trusted_authserv_id or None,
            )
        )
    if not boxes:
        raise ConfigError("no mailbox: set EMAIL_INGEST_IMAP_USER or add mailboxes to the configuration")
    names = [b.name for b in boxes]
    if len(set(names)) != len(names):
        raise ConfigError("mailboxes: two mailboxes have the same name")
    return boxes


class ImapMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.ingested = Counter(
            "hotline_mail_ingested_total", "Mails handed to the broker", ["mailbox"], registry=registry
        )
        self.quarantined = Counter(
            "hotline_mail_quarantined_total",
            "Mails kept but not ingested, by reason",
            ["reason"],
            registry=registry,
        )
        self.lag = Gauge(
            "hotline_imap_lag_seconds",
            "Time from a mail's arrival on the IMAP server to its hand-off, last mail",
            ["mailbox"],
            registry=registry,
        )
        self.refetched = Counter(
            "hotline_mail_refetched_total",
            "Mails the server gave us again (after a crash or drop)",
            registry=registry,
        )
        self.resync_skipped = Counter(
            "hotline_mail_resync_skipped_total",
            "Mails recognised as already ingested after a UIDVALIDITY change",
            registry=registry,
        )
        self.connected = Gauge(
            "hotline_imap_connected", "1 while the IMAP session is up", ["mailbox"], registry=registry
        )
        self.polling = Gauge(
            "hotline_imap_polling",
            "1 while the mailbox is polled (its server offers no IDLE), 0 while it is pushed",
            ["mailbox"],
            registry=registry,
        )
        self.reconnects = Counter(
            "hotline_imap_reconnects_total", "IMAP reconnects, by reason", ["reason"], registry=registry
        )
        self.deleted = Counter(
            "hotline_mail_deleted_total",
            "Handed-over mails deleted from the IMAP server after EMAIL_INGEST_DELETE_AFTER_DAYS",
            ["mailbox"],
            registry=registry,
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


def parse_meta(lines: list[Any]) -> dict[int, tuple[int, datetime | None]]:
    """uid -> (RFC822.SIZE, INTERNALDATE) from a ``UID FETCH (UID RFC822.SIZE INTERNALDATE)``."""
    out: dict[int, tuple[int, datetime | None]] = {}
    for line in lines:
        if not isinstance(line, bytes | bytearray) or b"FETCH" not in line:
            continue
        uid, size = _FETCH_UID.search(line), _SIZE.search(line)
        if uid is None or size is None:
            continue
        when = None
        if (d := _INTERNALDATE.search(line)) is not None:
            try:
                when = datetime.strptime(d.group(1).decode(), "%d-%b-%Y %H:%M:%S %z")
            except ValueError:
                try:
                    when = parsedate_to_datetime(d.group(1).decode())
                except (ValueError, TypeError):
                    when = None
        out[int(uid.group(1))] = (int(size.group(1)), when)
    return out


def parse_search(lines: list[Any]) -> list[int]:
    """UIDs from an aioimaplib SEARCH response: the untagged ``* SEARCH`` line arrives with
    its keyword stripped (``b"3 7 12"``); the last line is the tagged completion."""
    return sorted(
        int(tok) for line in lines[:-1] if isinstance(line, bytes) for tok in line.split() if tok.isdigit()
    )


def uid_set(uids: list[int]) -> str:
    return ",".join(str(u) for u in uids)


def search_date(day: date) -> str:
    """``day`` as an IMAP SEARCH date (RFC 3501 9, ``date``), e.g. ``7-Nov-2026``."""
    return f"{day.day}-{_MONTHS[day.month - 1]}-{day.year}"


def lost_fields(exc: BaseException) -> dict[str, Any]:
    """What a log line may say about why a session ended: the exception's type and place,
    and our own words for it (ConnectionLost's reason, the refused command, an OSError's
    errno); never the exception's message, which may be the server's or a library's text."""
    fields: dict[str, Any] = {"error": type(exc).__name__, "where": place(exc)}
    if isinstance(exc, ConnectionLost):
        fields["reason"] = exc.reason
    elif isinstance(exc, ImapProtocolError):
        fields["command"] = exc.command
    elif isinstance(exc, OSError) and exc.errno is not None:
        fields["errno"] = exc.errno
    return fields


async def delete_handed_over(
    imap: IMAP4, before: date, cmd: Callable[[Awaitable[Response]], Awaitable[Response]]
) -> int:
    """Delete from the selected folder the mails whose internal date is before ``before``
    and which we handed over (``$HotlineIngested``), except quarantined ones
    (``$HotlineQuarantined``: a mail too large was never stored, and an operator may still
    need the original of one we could not read); return how many. Needs UIDPLUS (the
    caller checks): UID EXPUNGE (RFC 4315 2.1) removes these UIDs only, never a mail another
    client flagged ``\\Deleted``.

    SEARCH BEFORE compares the internal date, the mail's arrival on the server, ignoring
    time and time zone (RFC 3501 6.4.4), not its Date header, which the sender writes. A
    batch of DELETE_BATCH at a time, each command under ``cmd`` (the watchdog). A mail
    flagged but not expunged (the connection lost between the two) still matches the
    search and is expunged by the next pass. Raise ImapProtocolError on a refusal."""
    found = await cmd(
        imap.uid_search(
            "KEYWORD", KEYWORD, "UNKEYWORD", QUARANTINE_KEYWORD, "BEFORE", search_date(before), charset=None
        )
    )
    if found.result != "OK":
        raise ImapProtocolError("UID SEARCH BEFORE")
    uids = parse_search(found.lines)
    for start in range(0, len(uids), DELETE_BATCH):
        batch = uid_set(uids[start : start + DELETE_BATCH])
        if (await cmd(imap.uid("store", batch, "+FLAGS.SILENT", "(\\Deleted)"))).result != "OK":
            raise ImapProtocolError("UID STORE \\Deleted")
        if (await cmd(imap.uid("expunge", batch))).result != "OK":
            raise ImapProtocolError("UID EXPUNGE")
    return len(uids)


async def close_connection(imap: IMAP4) -> None:
    """Close ``imap``'s socket without a word to the server; return once it is closed.

    aioimaplib never closes it itself: its LOGOUT waits for the server to hang up and the
    event loop to read that, and until the connection is made the socket is held only by
    its pending connect task, which would still complete after the session gave up on it.
    A session ended without this (cancelled at shutdown, or by a test whose event loop then
    closes) leaves an open socket to the garbage collector."""
    transport = imap.protocol.transport if imap.protocol is not None else None
    if transport is not None:
        transport.abort()
        await asyncio.sleep(0)  # abort() closes the socket in a callback it schedules
        return
    # Not connected yet: a cancelled connect closes the socket it opened (asyncio's
    # create_connection does, on any exception), once the task has run again.
    connecting = imap._client_task
    connecting.cancel()
    await asyncio.wait({connecting})


@dataclass
class _Outcome:
    uid: int
    source_id: str
    envelope: InboundMessage | None = None
    quarantined: bool = False


def _parse(raw: bytes) -> ParsedMail | str:
    """The parsed mail, or the reason it is quarantined."""
    try:
        mail = parse_mail(raw)
    except Unparseable as exc:
        return exc.reason
    except Exception as exc:
        # A parser bug on one mail must not block the mailbox: keep it, say why, move on.
        return f"parser_error:{type(exc).__name__}"
    # A mail without a usable sender is handed over all the same, marked (ParsedMail.problems):
    # a person reads it even if no one can answer it by mail.
    return mail


class MailboxWatcher:
    def __init__(
        self,
        box: Mailbox,
        settings: EmailIngestSettings,
        broker: Broker,
        cursors: AsyncCollection[dict[str, Any]],
        raw: RawStore,
        metrics: ImapMetrics,
    ) -> None:
        self.box = box
        self.s = settings
        self.broker = broker
        self.cursors = cursors
        self.raw = raw
        self.metrics = metrics
        self.key = box.name
        self._lost = asyncio.Event()
        self._dead = False  # the watchdog gave up on this session's connection
        self._heartbeat: Heartbeat | None = None
        self._deleted_at: float | None = None  # time.monotonic() of the last deletion pass
        self._warned_uidplus = False

    async def run(self, heartbeat: Heartbeat) -> None:
        """Watch the mailbox until cancelled, reconnecting with jittered backoff.

        Runs under the service's supervisor: ``heartbeat`` beats after every completed
        synchronisation, and anything this loop does not expect ends it (logged by the
        supervisor, which starts it again). The backoff is reset only by a completed
        synchronisation, not by a login: a session that logs in and then fails (the database
        away) must not log in again every few seconds, which a hosted mailbox answers with
        throttling or a lock-out. After a broker or database failure the watcher waits until
        that dependency answers again before it logs in.
        """
        self._heartbeat = heartbeat
        delay = 1.0
        while True:
            cycles = heartbeat.cycles
            reason = "network"
            try:
                await self._session()
            except ImapAuthError:
                reason = "auth"
                log.error("imap_login_refused", mailbox=self.key)
            except ImapMailboxError:
                reason = "mailbox"
                log.error("imap_folder_refused", mailbox=self.key, folder=self.box.folder)
            except PyMongoError as exc:
                reason = "database"
                log.warning("imap_database_unavailable", mailbox=self.key, error=type(exc).__name__)
            except (AMQPError, BrokerUnavailable) as exc:
                # Before OSError: BrokerUnavailable is a ConnectionError, but not the mailbox's.
                reason = "broker"
                log.warning("imap_broker_unavailable", mailbox=self.key, error=type(exc).__name__)
            except (OSError, TimeoutError, Abort, CommandTimeout, ImapProtocolError, ConnectionLost) as exc:
                log.warning("imap_connection_lost", mailbox=self.key, **lost_fields(exc))
            finally:
                self.metrics.connected.labels(self.key).set(0)
            self.metrics.reconnects.labels(reason).inc()
            if heartbeat.cycles > cycles:
                delay = 1.0  # a whole cycle worked: a fresh failure starts the backoff again
            if reason in {"auth", "mailbox"}:
                delay = self.s.reconnect_max_seconds  # retrying fast cannot fix a setting
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 (jitter, not crypto)
            delay = min(delay * 2, self.s.reconnect_max_seconds)
            if reason in {"broker", "database"}:
                await self._dependency_back(reason)

    async def _dependency_back(self, which: str) -> None:
        """Return once the broker or the database answers again."""
        if which == "broker":
            await self.broker.wait_ready()
            return
        # A database that comes back sends no event: ask it once a second.
        while not await self._database_answers():  # noqa: ASYNC110
            await asyncio.sleep(1.0)

    async def _database_answers(self) -> bool:
        try:
            return bool((await self.cursors.database.command("ping")).get("ok"))
        except PyMongoError:
            return False

    async def _cmd(self, aw: Awaitable[T]) -> T:
        """Run one IMAP command under the watchdog: a closed socket or a silence longer
        than ``watchdog_seconds`` raises ConnectionLost instead of hanging."""
        task = asyncio.ensure_future(aw)
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            done, _ = await asyncio.wait(
                {task, lost}, timeout=self.s.watchdog_seconds, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            lost.cancel()
            # Also when the watcher itself is cancelled: the command must not outlive it.
            task.cancel()
        if task in done:
            return task.result()
        self._dead = True
        raise ConnectionLost("closed" if self._lost.is_set() else "watchdog")

    async def _session(self) -> None:
        context = (self.box.tls_context or client_context(None, "imap_tls")) if self.box.tls else None
        self._lost = asyncio.Event()
        self._dead = False
        lost = self._lost
        imap = IMAP4(
            self.box.host,
            self.box.port,
            timeout=self.s.watchdog_seconds,
            ssl_context=context,
            conn_lost_cb=lambda _exc: lost.set(),
        )
        try:
            try:
                await self._cmd(imap.wait_hello_from_server())
            except ssl.SSLCertVerificationError as exc:
                # Nothing was sent: no login, no command. Said at every attempt; the reconnect
                # backoff follows as for any connection failure.
                log_refused("imap", self.box.host, self.box.port, exc, mailbox=self.key)
                raise
            if (await self._cmd(imap.login(self.box.user, self.box.password))).result != "OK":
                raise ImapAuthError
            selected = await self._cmd(imap.select(self.box.folder))
            if selected.result != "OK":
                raise ImapMailboxError
            uidvalidity = next(
                (
                    int(m.group(1))
                    for line in selected.lines
                    if isinstance(line, bytes) and (m := _UIDVALIDITY.search(line))
                ),
                0,
            )
            self.metrics.connected.labels(self.key).set(1)
            log.info("imap_connected", mailbox=self.key, uidvalidity=uidvalidity)
            can_idle = "IDLE" in imap.protocol.capabilities
            self.metrics.polling.labels(self.key).set(0 if can_idle else 1)
            if not can_idle:
                log.info("imap_polling", mailbox=self.key, every_seconds=self.s.poll_seconds)
            while True:
                await self._delete_old(imap)
                # Search again while a synchronisation found mail: a mail that arrives while a
                # batch is handled is announced (EXISTS, RFC 3501 7.3.1) in the response to one
                # of that batch's commands, which aioimaplib keeps with that command, and IDLE
                # does not announce it again: without this search it would wait for the next
                # IDLE period (EMAIL_INGEST_IDLE_SECONDS). Bounded, so a mail the server lists
                # but never returns cannot keep the watcher from IDLE.
                for _ in range(MAX_SYNC_ROUNDS):
                    if not await self._sync(imap, uidvalidity):
                        break
                if self._heartbeat is not None:
                    self._heartbeat.beat()
                if can_idle:
                    await self._idle(imap)
                else:
                    await self._poll_wait()
        finally:
            await self._close(imap)

    async def _close(self, imap: IMAP4) -> None:
        """End the session. LOGOUT only on a connection that still answers: on a closed or
        silent one it could only wait out its timeout, delaying the reconnect. Cancellation
        (shutdown) is never swallowed here, or the watcher would outlive its service. The
        socket is closed on the way out, also when the session ends before it was connected
        (see close_connection)."""
        transport = imap.protocol.transport if imap.protocol is not None else None
        try:
            if transport is not None and not self._lost.is_set() and not self._dead:
                with contextlib.suppress(OSError, TimeoutError, Abort, CommandTimeout):
                    if imap.has_pending_idle():
                        # Ended in IDLE (a shutdown): the server reads LOGOUT only after DONE,
                        # so without it LOGOUT would wait out its whole timeout.
                        imap.idle_done()
                    await asyncio.wait_for(imap.logout(), 2)
        finally:
            await close_connection(imap)

    async def _poll_wait(self) -> None:
        """The fallback for servers without IDLE: wait ``poll_seconds`` (or a lost socket)."""
        try:
            await asyncio.wait_for(self._lost.wait(), self.s.poll_seconds)
        except TimeoutError:
            return
        raise ConnectionLost("closed")

    async def _idle(self, imap: IMAP4) -> None:
        """Wait for the server to push a change, at most ``idle_seconds``."""
        idle = await self._cmd(imap.idle_start(timeout=self.s.idle_seconds))
        push_task = asyncio.ensure_future(
            imap.wait_server_push(timeout=self.s.idle_seconds + self.s.watchdog_seconds)
        )
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            done, _ = await asyncio.wait({push_task, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
        if push_task not in done:
            push_task.cancel()
            raise ConnectionLost("closed during IDLE")
        push = push_task.result()  # TimeoutError here: not even idle_start's own DONE came back
        if imap.has_pending_idle():
            imap.idle_done()
        # Watchdog: DONE must be answered promptly, or the connection is dead.
        await self._cmd(asyncio.wait_for(idle, self.s.watchdog_seconds))
        if push != STOP_WAIT_SERVER_PUSH:
            log.debug("imap_push", mailbox=self.key)

    async def _delete_old(self, imap: IMAP4) -> None:
        """Delete the handed-over mails older than ``delete_after_days`` (see
        delete_handed_over), if set: at the first synchronisation after the start, then once
        per DELETE_EVERY_SECONDS. The intake never waits on it: a pass the server refuses is
        logged and, like one cut short by a lost connection, tried again a period later (a
        mail it left on the server is deleted then)."""
        days = self.s.delete_after_days
        now = time.monotonic()
        if not days or (self._deleted_at is not None and now - self._deleted_at < DELETE_EVERY_SECONDS):
            return
        self._deleted_at = now
        if not imap.has_capability("UIDPLUS"):
            if not self._warned_uidplus:
                log.warning("imap_delete_needs_uidplus", mailbox=self.key, days=days)
                self._warned_uidplus = True
            return
        try:
            deleted = await delete_handed_over(imap, utcnow().date() - timedelta(days=days), self._cmd)
        except ImapProtocolError as exc:
            log.warning("imap_delete_refused", mailbox=self.key, command=exc.command)
            return
        self.metrics.deleted.labels(self.key).inc(deleted)
        log.info("imap_old_mail_deleted", mailbox=self.key, count=deleted, days=days)

    async def _cursor(self, uidvalidity: int) -> tuple[int, bool]:
        """(last UID, resyncing): where to resume, and whether a UIDVALIDITY change happened."""
        doc = await self.cursors.find_one({"_id": self.key})
        if doc is None or doc.get("uidvalidity") != uidvalidity:
            resync = doc is not None
            if doc is not None:
                log.warning(
                    "imap_uidvalidity_changed", mailbox=self.key, old=doc.get("uidvalidity"), new=uidvalidity
                )
            # A new UIDVALIDITY makes old UIDs meaningless: start over from UID 1.
            await self.cursors.replace_one(
                {"_id": self.key},
                {"uidvalidity": uidvalidity, "last_uid": 0, "resync": resync, "updated_at": utcnow()},
                upsert=True,
            )
            return 0, resync
        return int(doc.get("last_uid", 0)), bool(doc.get("resync"))

    async def _sync(self, imap: IMAP4, uidvalidity: int) -> int:
        """Hand over every mail not yet ingested; return how many the search found."""
        last_uid, resync = await self._cursor(uidvalidity)
        found = await self._cmd(imap.uid_search(f"UID {last_uid + 1}:*", "UNKEYWORD", KEYWORD, charset=None))
        if found.result != "OK":
            raise ImapProtocolError("UID SEARCH")
        # "n:*" always includes the highest UID, even below n (RFC 3501 6.4.8).
        uids = [u for u in parse_search(found.lines) if u > last_uid]
        for start in range(0, len(uids), self.s.fetch_batch):
            await self._batch(imap, uidvalidity, uids[start : start + self.s.fetch_batch], resync)
        return len(uids)

    async def _batch(self, imap: IMAP4, uidvalidity: int, uids: list[int], resync: bool) -> None:
        meta_resp = await self._cmd(imap.uid("fetch", uid_set(uids), "(UID RFC822.SIZE INTERNALDATE)"))
        if meta_resp.result != "OK":
            raise ImapProtocolError("UID FETCH sizes")
        meta = parse_meta(meta_resp.lines)
        outcomes: list[_Outcome] = []
        wanted: list[list[int]] = [[]]
        size_sum = 0
        for uid in uids:
            if uid not in meta:
                continue  # expunged meanwhile
            size = meta[uid][0]
            if size > self.s.max_mail_bytes:
                # Never fetch what we cannot afford to keep; recorded, flagged, left on the server.
                source_id = source_id_for(self.key, uidvalidity, uid)
                await self.raw.record_too_large(source_id, self.key, uidvalidity, uid, size, self.box.line)
                self.metrics.quarantined.labels("too_large").inc()
                log.error("mail_quarantined", mailbox=self.key, uid=uid, reason="too_large", size=size)
                outcomes.append(_Outcome(uid, source_id, quarantined=True))
                continue
            if size_sum + size > _FETCH_BYTES and wanted[-1]:
                wanted.append([])
                size_sum = 0
            wanted[-1].append(uid)
            size_sum += size
        for group in (g for g in wanted if g):
            resp = await self._cmd(imap.uid("fetch", uid_set(group), "(UID BODY.PEEK[])"))
            if resp.result != "OK":
                raise ImapProtocolError("UID FETCH")
            # Each mail is parsed off the event loop (parsing and sanitising its HTML take up
            # to a tenth of a second for a hostile mail, within the sanitiser's budget; the
            # watchdog and /readyz must not wait on it), then kept and handed over by a task
            # of its own, so that while the next one is parsed the database stores the ones
            # before it (together, in one write) and the broker confirms them.
            kept: list[asyncio.Task[_Outcome]] = []
            for uid, raw in parse_fetch(resp.lines):
                parsed = await asyncio.to_thread(_parse, raw)
                kept.append(
                    asyncio.create_task(self._keep(uidvalidity, uid, raw, meta[uid][1], resync, parsed))
                )
            for result in await asyncio.gather(*kept, return_exceptions=True):
                if isinstance(result, BaseException):
                    raise result  # nothing of this batch is flagged: it is fetched again
                outcomes.append(result)
        publish = [o.envelope for o in outcomes if o.envelope is not None]
        done = sorted(o.uid for o in outcomes)
        if not done:
            return
        quarantined = sorted(o.uid for o in outcomes if o.quarantined)
        await self._flag(imap, done, KEYWORD)
        if quarantined:
            await self._flag(imap, quarantined, QUARANTINE_KEYWORD)
        await self.cursors.update_one(
            {"_id": self.key},
            {"$set": {"uidvalidity": uidvalidity, "updated_at": utcnow()}, "$max": {"last_uid": max(done)}},
            upsert=True,
        )
        for envelope in publish:
            self.metrics.ingested.labels(self.key).inc()
            log.info(
                "mail_ingested",
                mailbox=self.key,
                message_id=envelope.message_id,
                backlog=bool(envelope.email and envelope.email.backlog),
            )

    async def _keep(
        self,
        uidvalidity: int,
        uid: int,
        raw: bytes,
        internaldate: datetime | None,
        resync: bool,
        parsed: ParsedMail | str,
    ) -> _Outcome:
        """Store one fetched mail, then hand its envelope over (or quarantine it).

        Isolation: a failure of the broker, or of the database as a whole (away, busy, no
        rights), is raised (nothing of the batch is flagged, it is fetched again once they
        are back); any other failure concerns this mail alone, so this mail is quarantined
        with a reason and the rest of the mailbox flows on: ``database_refused:<type>`` when
        the database refused this mail's records for good (``refuses_one_document``: a write
        error, a document over 16 MiB, a data key deleted under the mail), ``unencodable:<field>``
        for text the envelope cannot carry, ``handover_error:<type>`` for anything else. If the
        database refuses every write, the quarantine's own write fails too and is raised. An
        operator sees the mail (``quarantine list``) and can replay it."""
        try:
            return await self._hand_over(uidvalidity, uid, raw, internaldate, resync, parsed)
        except (PyMongoError, InvalidDocument) as exc:
            if not refuses_one_document(exc):
                raise
            return await self._quarantine(uidvalidity, uid, raw, f"database_refused:{type(exc).__name__}")
        except PUBLISH_ERRORS:
            raise
        except Unparseable as exc:  # the envelope cannot carry it (to_envelope says which field)
            return await self._quarantine(uidvalidity, uid, raw, exc.reason)
        except Exception as exc:
            return await self._quarantine(uidvalidity, uid, raw, f"handover_error:{type(exc).__name__}")

    async def _quarantine(self, uidvalidity: int, uid: int, raw: bytes, reason: str) -> _Outcome:
        source_id = source_id_for(self.key, uidvalidity, uid)
        await self.raw.quarantine(source_id, self.key, uidvalidity, uid, len(raw), reason, self.box.line, raw)
        self.metrics.quarantined.labels(reason.split(":")[0]).inc()
        log.error("mail_quarantined", mailbox=self.key, uid=uid, reason=reason, size=len(raw))
        return _Outcome(uid, source_id, quarantined=True)

    async def _hand_over(
        self,
        uidvalidity: int,
        uid: int,
        raw: bytes,
        internaldate: datetime | None,
        resync: bool,
        parsed: ParsedMail | str,
    ) -> _Outcome:
        source_id = source_id_for(self.key, uidvalidity, uid)
        if resync and await self.raw.seen_under_other_uidvalidity(self.key, fingerprint(raw), uidvalidity):
            self.metrics.resync_skipped.inc()
            return _Outcome(uid, source_id)
        stored = await self.raw.store(source_id, self.key, uidvalidity, uid, raw, internaldate)
        if not stored.created:
            self.metrics.refetched.inc()
            if stored.doc.get("status") == REPLAYED:
                return _Outcome(uid, source_id)
            if stored.doc.get("status") == QUARANTINED:
                return _Outcome(uid, source_id, quarantined=True)
        if isinstance(parsed, str):
            reason = parsed
            await self.raw.quarantine(
                source_id, self.key, uidvalidity, uid, len(raw), reason, self.box.line, raw
            )
            self.metrics.quarantined.labels(reason.split(":")[0]).inc()
            log.error("mail_quarantined", mailbox=self.key, uid=uid, reason=reason, size=len(raw))
            return _Outcome(uid, source_id, quarantined=True)
        mail = parsed
        attachments = await self.raw.store_attachments(
            stored.doc, mail.attachments, self.s.max_attachment_bytes
        )
        now = utcnow()
        if internaldate is not None:
            self.metrics.lag.labels(self.key).set(max(0.0, (now - internaldate).total_seconds()))
        envelope = to_envelope(
            mail,
            source_id=source_id,
            line=self.box.line,
            mailbox=self.key,
            now=now,
            internaldate=internaldate,
            backlog=is_backlog(internaldate, now, self.s.backlog_after_seconds),
            attachments=attachments,
            trusted_authserv_id=self.box.trusted_authserv_id,
        )
        await self._publish(envelope)
        return _Outcome(uid, source_id, envelope=envelope)

    async def _publish(self, envelope: InboundMessage) -> None:
        await self.broker.publish(
            envelope,
            topology.INBOUND,
            topology.inbound_key(Channel.EMAIL, envelope.line),
            message_id=envelope.message_id,
            headers={"channel": Channel.EMAIL.value, "line": envelope.line},
        )

    async def _flag(self, imap: IMAP4, uids: list[int], keyword: str) -> None:
        flags = f"({keyword} \\Seen)" if keyword == KEYWORD else f"({keyword})"
        stored = await self._cmd(imap.uid("store", uid_set(uids), "+FLAGS.SILENT", flags))
        if stored.result != "OK":
            raise ImapProtocolError("UID STORE")
