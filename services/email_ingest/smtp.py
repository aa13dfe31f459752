"""Sending consultants' replies by SMTP.

Ack policy: an outbound message is acked after the mail was handed to the SMTP server
and the delivery report was published (confirmed). A temporary failure (4xx, network)
is retried here with backoff; once the attempts are spent, or on a permanent failure
(5xx), the reply is reported ``failed`` so the consultant sees it. The Message-ID comes
from the store, so a resend after a crash carries the same Message-ID and the client's
mailer shows one mail.

A connection lost after the mail went out with DATA and before the server's reply is
ambiguous: the server may have accepted it (RFC 5321 4.1.1.4 gives the reply only after
the final "."; RFC 1047 describes exactly this duplicate). Such a reply is resent at most
once, with the same Message-ID; a second such loss reports it ``failed`` with a detail
saying it may have arrived, instead of sending it a third time. The count holds across
restarts: every DATA is recorded in the database before it starts (``DataAttempts``), so a
process killed while waiting for the answer, and the one that takes the reply over, count
the same sends.

TLS: ``starttls`` requires the server's STARTTLS (never a fallback to plain) and ``tls``
is implicit TLS; either way the certificate is verified (tls.py). A certificate that does
not verify is logged with the server's address and counts as a connection failure: retried
with backoff, then reported ``failed``. Nothing is sent before the handshake, so a reply
never leaves in clear.

Rate: each send waits for its place in the line's shared limit (ratelimit.py).

Exactly once, whatever fails around the send (issue 14):
- the outcome of a send (accepted, or failed for good) is recorded in ``smtp_sent`` with
  bounded retries of that write alone, never of the send; while they last the process also
  remembers the accepted reply, so a handler run again in this process (its database write
  failed for longer) records it without sending it again;
- one delivery of a reply at a time (a send lease, shared/lease.py): a copy of a reply published twice (the
  dispatcher published an answer again after a failure, or two replicas got copies) waits for
  the first one's outcome instead of sending beside it. A redelivery of the same publish (its
  sender died) takes the lease over at once; a lease whose holder vanished lapses after
  ``LEASE_SECONDS`` since its last renewal.

Headers no client text can break (QUALITY.md 3, issue 13), on any supported interpreter,
including those before the fix of CVE-2024-6923 (Python 3.11.10), whose policy decodes an
RFC 2047 word in a header value it is given and writes a CR/LF found in it back out raw:
- In-Reply-To and References carry only msg-ids of the strict RFC 5322 3.6.4 grammar (ASCII,
  no "=?", bounded; mime.is_msg_id); any other is left out;
- the client's text reaches one header only, the Subject, as the decoded subject reduced to
  one line of printable characters in which no "=?" remains, so nothing in it can be
  decoded again; the recipient is a plain addr-spec (RFC 5322 3.4.1, RFC 6532 3.2) with its
  domain in IDNA form;
- the mail is serialised once and read back before it is sent (:func:`checked`): the same
  header fields as built, none with a CR or LF in its value, one text part with the text we
  wrote. A mail that fails is reported ``failed`` and never sent; the bytes checked are the
  bytes sent, to the one recipient we chose (never recipients read from the headers).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from email import policy
from email.errors import HeaderParseError, MessageError
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, formataddr, parseaddr
from pathlib import Path
from typing import Any

import aiosmtplib
from aio_pika.abc import AbstractIncomingMessage
from prometheus_client import CollectorRegistry, Counter
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from conversations.rawmail import ATTACHMENT_DATA, ATTACHMENTS, Erased, open_value
from conversations.vault import Vault
from services.email_ingest.mime import is_msg_id
from services.email_ingest.ratelimit import WINDOW_SECONDS, SendLimit
from services.email_ingest.settings import EmailIngestSettings
from services.email_ingest.tls import certificate_failure, client_context, log_refused
from shared import topology
from shared.broker import PUBLISH_ID, Broker
from shared.config import ConfigError, HotlineConfig
from shared.envelope import DeliveryReport, DeliveryStatus, Envelope, OutboundMessage, utcnow
from shared.lease import Lease
from shared.logs import get_logger
from shared.mongo import is_transient_database_error

log = get_logger(__name__)


MAX_SUBJECT_CHARS = 200


def _one_line(value: str) -> str:
    # CR/LF must never reach a header (header injection); the policy also refuses them.
    return " ".join(value.replace("\r", " ").replace("\n", " ").split())


def header_text(value: str) -> str:
    """Text for an unstructured header of ours: one line of printable characters (no CR, LF,
    NEL, U+2028 or other control a parser could split at), no "=?" (so no RFC 2047 word,
    which an unpatched policy would decode and fold back with its CR/LF raw), bounded."""
    printable = "".join(c if c.isprintable() else " " for c in value)
    return " ".join(printable.split()).replace("=?", "= ?")[:MAX_SUBJECT_CHARS]


class UnsafeReply(ValueError):
    """The reply cannot be written as a mail that says only what we built: reported failed,
    never sent. The message is a fixed sentence, never the client's text."""


class InvalidRecipient(UnsafeReply):
    """The client's address cannot be written as a To header: the reply is reported failed."""


# RFC 5322 3.4.1 dot-atom-text for the local part. A quoted local part is refused: the
# parser decodes RFC 2047 words inside quoted strings, so one could carry CR/LF into the To
# header. So is a UTF-8 one (RFC 6532), which the standard library cannot write in a header
# (NonASCIILocalPartDefect): the consultant sees the reply failed.
_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
# A host name in ASCII (IDNA A-labels, RFC 5890) or an address literal.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*|\[[\x21-\x5a\x5e-\x7e]+\]")


def _recipient(value: str) -> str:
    """The client's addr-spec as we write it: domain in IDNA form, local part a dot-atom."""
    _name, address = parseaddr(_one_line(value))
    local, at, domain = address.rpartition("@")
    if not (at and local and domain) or "=?" in address or not address.isprintable():
        raise InvalidRecipient("the client's address is not a usable mail address")
    try:
        # An internationalised domain (RFC 6532 mail from a .бел address) is answered at its
        # A-label form, which every SMTP server routes (RFC 5891 4.4).
        domain = domain if domain.isascii() else domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidRecipient("the client's address is not a usable mail address") from None
    if not (_LOCAL.fullmatch(local) and _DOMAIN.fullmatch(domain)) or len(local) > 64 or len(domain) > 255:
        raise InvalidRecipient("the client's address is not a usable mail address")
    address = f"{local}@{domain}"
    try:
        # Parse it as the header will be parsed; the standard library's parser raises more
        # than one kind of error on malformed addresses (and IndexError on some).
        Address(addr_spec=address)
    except (HeaderParseError, ValueError, IndexError):
        raise InvalidRecipient("the client's address is not a usable mail address") from None
    return address


@dataclass(frozen=True)
class File:
    """A file a consultant attached (services/store/reply_files.py), cleaned when it was stored."""

    filename: str
    content_type: str
    data: bytes


def build_reply(
    out: OutboundMessage,
    from_address: str,
    from_name: str,
    fixed_subject: str | None = None,
    files: Sequence[File] = (),
    reply_to: str | None = None,
    signature: str | None = None,
) -> EmailMessage:
    """The reply mail: our Message-ID, threaded to the client's last mail.

    ``fixed_subject`` replaces "Re: <client's subject>" with a neutral subject, for lines
    whose clients may read mail on a watched device. Raises :class:`UnsafeReply` (or its
    :class:`InvalidRecipient`) when the reply cannot be written safely; send only what
    :func:`checked` passes.

    ``reply_to`` and ``signature`` are the answering organisation's (its mailbox's); the
    signature goes under a consultant's text after the usual ``-- `` line, never under an
    automatic answer, and never when the client's safe-contact plan names a neutral sender or
    subject (a signature names the organisation the plan hides).
    """
    mail = EmailMessage()
    name = header_text(from_name)
    mail["From"] = formataddr((name, from_address)) if name else from_address
    mail["To"] = _recipient(out.recipient)
    if fixed_subject is not None:
        subject = header_text(fixed_subject)
    else:
        # Decoded once at ingest (RFC 2047), then made a line of plain text here, AFTER
        # decoding: a word that decodes to another word is text, never decoded again.
        subject = header_text(out.subject or "")
        if subject and not subject.lower().startswith("re:"):
            subject = f"Re: {subject}"
    mail["Subject"] = subject or "Re:"
    if reply_to:
        mail["Reply-To"] = reply_to
    mail["Date"] = format_datetime(out.sent_at)
    if out.email_message_id:
        if not is_msg_id(out.email_message_id):
            raise UnsafeReply("the reply's Message-ID is not a valid msg-id")
        mail["Message-ID"] = out.email_message_id
    # The client's ids: only those of the strict grammar (a stored one may predate it).
    if out.in_reply_to and is_msg_id(out.in_reply_to):
        mail["In-Reply-To"] = out.in_reply_to
    refs = [r for r in out.references if is_msg_id(r)][-_MAX_REFERENCES:]
    if refs:
        mail["References"] = " ".join(refs)
    # RFC 3834 5: an automatic answer says so (``auto-replied``), so a well-behaved responder
    # never answers it and no loop starts; a consultant's reply is a person's, marked nothing
    # (absent means ``no``). No read-receipt or tracking headers are ever added (QUALITY.md 4).
    if out.sender_role == "bot":
        mail["Auto-Submitted"] = "auto-replied"
    # Base64 for any non-ASCII text: the mail is then 7-bit (headers are encoded words), so no
    # server needs 8BITMIME (RFC 6152) for it; ASCII text goes as it is.
    text = out.text
    neutral = out.sender_name is not None or out.neutral_subject is not None
    if signature and out.sender_role == "consultant" and not neutral:
        text = f"{text.rstrip()}\n\n-- \n{signature.strip()}"
    mail.set_content(text, cte=None if text.isascii() else "base64")
    for f in files:
        maintype, _, subtype = f.content_type.partition("/")
        mail.add_attachment(
            f.data, maintype=maintype, subtype=subtype, filename=header_text(f.filename) or "attachment"
        )
    return mail


_MAX_REFERENCES = 20


@dataclass(frozen=True)
class Outgoing:
    """A reply as it goes on the wire: the checked bytes and the SMTP envelope."""

    sender: str
    recipient: str
    data: bytes


def _lines(text: object) -> object:
    return text.replace("\r\n", "\n") if isinstance(text, str) else text


def checked(mail: EmailMessage) -> Outgoing:
    """Serialise ``mail`` once, read the bytes back as a recipient's mailer would, and
    return them only if they say what was built: the same header fields in the same order,
    no CR or LF in any value, the one recipient, one text/plain part with the same text.
    Raises :class:`UnsafeReply` otherwise."""
    recipient = str(mail["To"])
    sender = parseaddr(str(mail["From"]))[1]
    try:
        data = mail.as_bytes(policy=policy.SMTP)
        again = BytesParser(policy=policy.default).parsebytes(data)
        built = [(k.lower(), str(v)) for k, v in mail.items()]
        read = [(k.lower(), str(v)) for k, v in again.items()]
        text_built, files_built = _parts(mail)
        text_read, files_read = _parts(again)
    except (MessageError, ValueError, LookupError, TypeError, IndexError, AttributeError, KeyError) as exc:
        raise UnsafeReply(f"the reply could not be serialised ({type(exc).__name__})") from None
    if read != built or any("\r" in v or "\n" in v for _, v in read):
        raise UnsafeReply("the reply's headers did not read back as built")
    if [a.addr_spec for a in getattr(again["To"], "addresses", ())] != [recipient]:
        raise UnsafeReply("the reply's recipient did not read back as built")
    if text_read is None or _lines(text_read) != _lines(text_built):
        raise UnsafeReply("the reply's body did not read back as built")
    if files_read != files_built:
        raise UnsafeReply("the reply's files did not read back as built")
    return Outgoing(sender, recipient, data)


def _parts(mail: EmailMessage) -> tuple[object, list[tuple[str, str | None, bytes]]]:
    """A reply's text (None unless it is one text/plain part, alone or first of a
    multipart/mixed) and its files (content type, name, bytes), in order."""
    if not mail.is_multipart():
        return (mail.get_content() if mail.get_content_type() == "text/plain" else None), []
    if mail.get_content_type() != "multipart/mixed":
        return None, []
    parts = list(mail.iter_parts())
    if not parts or parts[0].get_content_type() != "text/plain" or parts[0].is_attachment():
        return None, []
    files = []
    for part in parts[1:]:
        if not part.is_attachment() or part.is_multipart():
            return None, []
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            return None, []
        files.append((part.get_content_type(), part.get_filename(), payload))
    return parts[0].get_content(), files


@dataclass(frozen=True)
class Account:
    """An SMTP server and the login a mailbox's replies leave through (``mailboxes.<name>.smtp``),
    or the service's own (``EMAIL_INGEST_SMTP_*``, named ``default``)."""

    name: str
    host: str
    port: int
    security: str  # starttls | tls | none
    user: str | None
    password: str | None
    tls_context: ssl.SSLContext | None


DEFAULT_ACCOUNT = "default"


def accounts_from(
    settings: EmailIngestSettings,
    config: HotlineConfig,
    default_tls: ssl.SSLContext | None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Account]:
    """The SMTP accounts replies may leave through, by name: ``default`` and one per mailbox
    that has its own ``smtp``. Read (passwords, CA bundles) at start, so a missing password or
    a bad file stops the start naming its key: raises ConfigError."""
    env = os.environ if environ is None else environ
    accounts = {
        DEFAULT_ACCOUNT: Account(
            DEFAULT_ACCOUNT,
            settings.smtp_host,
            settings.smtp_port,
            settings.smtp_security,
            settings.smtp_user,
            settings.smtp_password.get_secret_value() if settings.smtp_password else None,
            default_tls,
        )
    }
    for name, box in config.mailboxes.items():
        spec = box.smtp
        if spec is None:
            continue
        password = None
        if spec.password_env is not None:
            password = env.get(spec.password_env)
            if not password:
                raise ConfigError(
                    f"mailboxes.{name}.smtp.password_env: environment variable {spec.password_env} is not set"
                )
        context = None
        if spec.security != "none":  # the mailbox's own CA bundle, else the service's, else the system's
            context = (
                client_context(Path(spec.tls_ca_file), f"mailboxes.{name}.smtp.tls_ca_file")
                if spec.tls_ca_file
                else client_context(settings.tls_ca_file, "EMAIL_INGEST_TLS_CA_FILE")
            )
        accounts[name] = Account(name, spec.host, spec.port, spec.security, spec.user, password, context)
    return accounts


@dataclass(frozen=True)
class Identity:
    """How a reply looks, which SMTP account it leaves through and how fast it may leave."""

    from_address: str
    from_name: str
    subject: str | None
    per_minute: int
    reply_to: str | None = None
    signature: str | None = None
    account: str = DEFAULT_ACCOUNT
    # What the send limit counts per: the line for the service's account (as before mailboxes
    # had their own), the mailbox for one with its own account (a provider's limit is per login).
    limit_key: str = ""


def identity_for(
    line: str, settings: EmailIngestSettings, config: HotlineConfig, organisation: str | None = None
) -> Identity:
    """The identity of a reply on ``line`` written by someone of ``organisation``.

    The mailbox of that organisation on the line wins; then the line's shared mailbox (one with
    no organisation); for an automatic answer (no organisation) on a line whose mailboxes are
    all one organisation's, that organisation's. Nobody answers in another organisation's
    name: otherwise the line's address (``lines.<line>.email``) and the service's account,
    then the settings."""
    boxes = [(name, m) for name, m in config.mailboxes.items() if m.line == line]
    chosen = next(((n, m) for n, m in boxes if organisation and m.organisation == organisation), None)
    chosen = chosen or next(((n, m) for n, m in boxes if m.organisation is None), None)
    if chosen is None and organisation is None and len({m.organisation for _, m in boxes}) == 1:
        chosen = boxes[0]  # the line is one organisation's: its automatic answers are in its name
    name, spec = chosen if chosen is not None else (None, None)
    line_spec = config.lines.get(line)
    account = name if spec is not None and spec.smtp is not None and name is not None else DEFAULT_ACCOUNT
    return Identity(
        from_address=(spec.from_address if spec else None)
        or (line_spec.email if line_spec else None)
        or settings.from_address,
        from_name=spec.from_name if spec and spec.from_name is not None else settings.from_name,
        subject=(spec.reply_subject if spec else None) or settings.reply_subject,
        per_minute=(spec.send_per_minute if spec else None) or settings.send_per_minute,
        reply_to=spec.reply_to if spec else None,
        signature=spec.signature if spec else None,
        account=account,
        limit_key=line if account == DEFAULT_ACCOUNT else f"mailbox:{account}",
    )


class UnconfirmedAfterData(Exception):
    """The whole mail was sent with DATA, then the connection failed before the reply."""


class DataAttempts:
    """Every DATA of a reply, recorded before it starts; insert-only, so it is exact on
    FerretDB v1 too (which may apply a concurrent conditional update twice).

    A ``data`` record per DATA, and an ``answered`` record for one the server answered with
    a refusal; an accepted one is recorded in ``smtp_sent``. So for a reply not yet in
    ``smtp_sent``, data records without an answer are the copies that may have reached the
    server unconfirmed, counted the same by every process that ever handled the reply.
    """

    def __init__(self, records: AsyncCollection[dict[str, Any]]) -> None:
        self.records = records

    async def ensure_indexes(self) -> None:
        await self.records.create_index("message_id")

    async def begin(self, message_id: str) -> str:
        """Record that DATA of this reply starts now; returns the attempt's id."""
        attempt = f"{message_id}:{uuid.uuid4().hex}"
        await self.records.insert_one(
            {"_id": attempt, "message_id": message_id, "kind": "data", "at": utcnow()}
        )
        return attempt

    async def answered(self, message_id: str, attempt: str) -> None:
        """Record that the server refused that DATA (so it did not deliver it)."""
        await self.records.insert_one(
            {"_id": f"{attempt}:answered", "message_id": message_id, "kind": "answered", "at": utcnow()}
        )

    async def unconfirmed(self, message_id: str) -> int:
        kinds = [d["kind"] async for d in self.records.find({"message_id": message_id}, {"kind": 1})]
        return kinds.count("data") - kinds.count("answered")


ACCEPTED = "accepted by SMTP server"
RECORD_ATTEMPTS = 12  # about a minute and a half of backoff for one outcome record
# A send lease (shared/lease.py) per reply, keyed by its message id, held by the publish id of
# the broker message (Broker.publish stamps one on each publish), so the broker's redelivery of
# the same publish is recognised as the holder itself. A send renews it before each attempt
# (an attempt takes at most 30 s).
LEASE_SECONDS = 600.0


class _Client(aiosmtplib.SMTP):
    """An SMTP client that records each DATA before it starts (``before_data``) and tells
    whether DATA was under way when a failure happened."""

    data_started = False
    data_answered = False
    before_data: Callable[[], Awaitable[None]] | None = None

    async def data(self, message: str | bytes, /, **kwargs: Any) -> aiosmtplib.SMTPResponse:
        if self.before_data is not None:
            await self.before_data()  # a database failure here stops the send before DATA
        self.data_started = True
        response = await super().data(message, **kwargs)
        self.data_answered = True
        return response


class SmtpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.sent = Counter(
            "hotline_mail_sent_total", "Replies accepted by the SMTP server", registry=registry
        )
        self.failures = Counter(
            "hotline_smtp_failures_total", "SMTP failures, by kind", ["kind"], registry=registry
        )
        self.throttled = Counter(
            "hotline_smtp_throttled_total", "Sends delayed by the per-line rate limit", registry=registry
        )


class ReplySender:
    """Sends each reply at most once per message id.

    ``sent`` records the message ids the SMTP server accepted; a redelivered outbound
    message whose id is there is reported again but not sent again. Only a crash between
    the server's acceptance and that record can resend a reply, and only once, with the
    same Message-ID: ``attempts`` counts its unconfirmed copies across processes
    (QUALITY.md F10).

    ``tls_context`` verifies the SMTP server's certificate (tls.py); None only with
    ``smtp_security`` ``none``.
    """

    def __init__(
        self,
        settings: EmailIngestSettings,
        config: HotlineConfig,
        broker: Broker,
        sent: AsyncCollection[dict[str, Any]],
        attempts: DataAttempts,
        limit: SendLimit,
        tls_context: ssl.SSLContext | None,
        metrics: SmtpMetrics,
        leases: Lease,
        files: AsyncCollection[dict[str, Any]] | None = None,
        vault: Vault | None = None,
        accounts: Mapping[str, Account] | None = None,
    ) -> None:
        """``files`` and ``vault``: where the files consultants attach are kept, and what opens
        them (services/store/reply_files.py); a reply that names one needs both. ``accounts``:
        the SMTP accounts (:func:`accounts_from`; by default read here, with ``tls_context``
        for the service's own)."""
        self.accounts = accounts if accounts is not None else accounts_from(settings, config, tls_context)
        self.files = files
        self.vault = vault
        self.s = settings
        self.sent = sent
        self.attempts = attempts
        self.leases = leases
        # Replies the SMTP server accepted whose outcome is not recorded yet (see module doc).
        self._accepted: set[str] = set()
        self.limit = limit
        self.tls_context = tls_context
        self.config = config
        self.broker = broker
        self.metrics = metrics

    @classmethod
    def on(
        cls,
        db: AsyncDatabase[dict[str, Any]],
        settings: EmailIngestSettings,
        config: HotlineConfig,
        broker: Broker,
        tls_context: ssl.SSLContext | None,
        metrics: SmtpMetrics,
        window: float = WINDOW_SECONDS,
        vault: Vault | None = None,
        accounts: Mapping[str, Account] | None = None,
    ) -> ReplySender:
        """The sender on the service's collections; ``window``: the rate limit's (tests shorten it)."""
        return cls(
            settings,
            config,
            broker,
            db["smtp_sent"],
            DataAttempts(db["smtp_data_attempts"]),
            SendLimit(db["smtp_send_slots"], window),
            tls_context,
            metrics,
            Lease(db["smtp_send_leases"], LEASE_SECONDS),
            db[ATTACHMENTS],
            vault,
            accounts,
        )

    async def ensure_indexes(self) -> None:
        await self.attempts.ensure_indexes()
        await self.limit.ensure_indexes()

    async def _wait_turn(self, line: str, per_minute: int) -> None:
        delay = await self.limit.reserve(line, per_minute) - time.time()
        if delay > 0:
            self.metrics.throttled.inc()
            await asyncio.sleep(delay)  # a point in time, not an event: nothing to await instead

    async def _send(self, mail: Outgoing, message_id: str, account: Account) -> None:
        """Hand one mail to ``account``'s server; raise UnconfirmedAfterData when the connection
        failed between DATA and its reply, the server's SMTPResponseException on a refusal."""
        client = _Client(
            hostname=account.host,
            port=account.port,
            username=account.user,
            password=account.password,
            use_tls=account.security == "tls",
            start_tls=account.security == "starttls",
            tls_context=account.tls_context,
            timeout=30,
        )
        attempt: str | None = None

        async def before_data() -> None:
            nonlocal attempt
            attempt = await self.attempts.begin(message_id)

        client.before_data = before_data
        try:
            async with client:
                # The checked bytes, to the recipient we chose: never recipients read from
                # headers (as send_message would take them from To/Cc/Bcc).
                await client.sendmail(mail.sender, [mail.recipient], mail.data)
        except aiosmtplib.SMTPResponseException:
            # The server answered: not ambiguous. A refused DATA cannot have delivered.
            if attempt is not None:
                await self.attempts.answered(message_id, attempt)
            raise
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            if client.data_started and not client.data_answered:
                raise UnconfirmedAfterData(type(exc).__name__) from exc
            raise

    async def handle(self, envelope: Envelope, message: AbstractIncomingMessage) -> None:
        if not isinstance(envelope, OutboundMessage):
            await message.reject(requeue=False)
            return
        publish_id = str((message.headers or {}).get(PUBLISH_ID) or uuid.uuid4().hex)
        await self.process(envelope, publish_id)

    async def process(self, out: OutboundMessage, publish_id: str | None = None) -> DeliveryStatus:
        """Deliver one reply (unless it was already) and publish its delivery report."""
        if out.hold is not None:
            # Held by the client's safe-contact plan: the store never publishes one, so this is a
            # bug elsewhere; sending could reach whoever watches the client's mail. The store's
            # record says held; no report changes that.
            log.warning("reply_held_not_sent", message_id=out.message_id, thread_id=out.thread_id)
            return DeliveryStatus.HELD
        holder = publish_id or uuid.uuid4().hex
        if out.message_id in self._accepted:  # accepted here; only its record is missing
            await self._record(out.message_id, DeliveryStatus.SENT, ACCEPTED)
        recorded = await self._outcome(out.message_id)
        if recorded is None:
            recorded = await self._wait_turn_to_send(out.message_id, holder)
        if recorded is not None:
            status, detail = recorded
            await self._report(out, status, detail)
            return status
        try:
            status, detail = await self._deliver(out, holder)
            if status is DeliveryStatus.SENT:
                self._accepted.add(out.message_id)
            await self._record(out.message_id, status, detail)
            self._accepted.discard(out.message_id)
        finally:
            with contextlib.suppress(PyMongoError):  # it lapses by itself otherwise
                await self.leases.release(out.message_id, holder)
        log.info(
            "reply_delivery",
            message_id=out.message_id,
            thread_id=out.thread_id,
            status=status.value,
            detail=detail,
        )
        await self._report(out, status, detail)
        return status

    async def _outcome(self, message_id: str) -> tuple[DeliveryStatus, str] | None:
        """The recorded outcome of a reply's send, if any (a record without a status is from
        before failures were recorded: those were all accepted)."""
        doc = await self.sent.find_one({"_id": message_id})
        if doc is None:
            return None
        status = DeliveryStatus(doc.get("status", DeliveryStatus.SENT.value))
        return status, str(doc.get("detail", ACCEPTED))

    async def _wait_turn_to_send(self, message_id: str, holder: str) -> tuple[DeliveryStatus, str] | None:
        """Take the reply's lease (None: go ahead and send), or, while another delivery of it
        holds the lease, wait for that one's outcome and return it."""
        delay = 0.5
        while not await self.leases.take(message_id, holder):
            if (recorded := await self._outcome(message_id)) is not None:
                return recorded
            # Another process sends this reply now; its outcome (or its lease's lapse) is
            # in the database, which offers no event to await.
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
        return await self._outcome(message_id)  # recorded just before the lease was released

    async def _record(self, message_id: str, status: DeliveryStatus, detail: str = "") -> None:
        """Record a send's final outcome, retrying this write alone while the database is
        away or busy (bounded); the send itself is never repeated for it."""
        delay = 0.5
        for attempt in range(RECORD_ATTEMPTS):
            try:
                await self.sent.update_one(
                    {"_id": message_id},
                    {"$setOnInsert": {"at": utcnow(), "status": status.value, "detail": detail}},
                    upsert=True,
                )
                return
            except PyMongoError as exc:
                if not is_transient_database_error(exc) or attempt == RECORD_ATTEMPTS - 1:
                    raise
                if attempt == 0:
                    log.warning(
                        "reply_outcome_not_recorded_yet", message_id=message_id, error=type(exc).__name__
                    )
                await asyncio.sleep(delay)  # backoff while the database is away
                delay = min(delay * 2, 10.0)

    async def _attached(self, out: OutboundMessage) -> list[File] | None:
        """The files the reply names, opened; None when one is no longer kept (retention or
        an erasure cleared the thread). Raises what the database raises (then the reply is
        tried again)."""
        files = []
        for ref in out.attachments:
            doc = None
            if self.files is not None:
                doc = await self.files.find_one({"_id": ref.id, "thread_id": out.thread_id})
            try:
                data = await open_value(self.vault, (doc or {}).get("data"), ATTACHMENT_DATA)
            except Erased:
                data = None
            if not isinstance(data, bytes):
                return None
            files.append(File(ref.filename, ref.content_type, data))
        return files

    async def _report(self, out: OutboundMessage, status: DeliveryStatus, detail: str) -> None:
        report = DeliveryReport(
            message_id=out.message_id, thread_id=out.thread_id, status=status, at=utcnow(), detail=detail
        )
        await self.broker.publish(report, topology.EVENTS, topology.delivery_key(status.value))

    async def _deliver(self, out: OutboundMessage, holder: str) -> tuple[DeliveryStatus, str]:
        """Hand the mail to the SMTP server, retrying temporary failures with backoff."""
        # The organisation whose consultant wrote it answers in its own name, through its own
        # account (docs/email.md, "One line, several organisations").
        who = identity_for(out.line, self.s, self.config, out.organisation)
        account = self.accounts[who.account]
        files = await self._attached(out)
        if files is None:
            self.metrics.failures.labels("unsafe").inc()
            return DeliveryStatus.FAILED, "a file attached to it is no longer kept"
        try:
            # The client's safe-contact plan may name a neutral sender and subject.
            mail = checked(
                build_reply(
                    out,
                    who.from_address,
                    out.sender_name or who.from_name,
                    out.neutral_subject or who.subject,
                    files,
                    reply_to=who.reply_to,
                    signature=who.signature,
                )
            )
        except UnsafeReply as exc:
            self.metrics.failures.labels("unsafe").inc()
            return DeliveryStatus.FAILED, str(exc)
        detail = "not sent"
        attempt = 0
        while True:
            if await self.attempts.unconfirmed(out.message_id) >= 2:
                # Twice sent, never answered (here or in a process before a crash): a third
                # copy could be a third mail in the client's inbox. The consultant decides.
                return DeliveryStatus.FAILED, "no reply after DATA; may have arrived"
            if attempt == self.s.smtp_attempts:
                return DeliveryStatus.FAILED, detail
            if attempt:
                await asyncio.sleep(self.s.smtp_retry_seconds * 2 ** (attempt - 1))
            attempt += 1
            await self.leases.renew(out.message_id, holder)
            await self._wait_turn(who.limit_key, who.per_minute)
            try:
                await self._send(mail, out.message_id, account)
            except UnconfirmedAfterData as exc:
                self.metrics.failures.labels("unconfirmed").inc()
                log.warning("smtp_no_reply_after_data", message_id=out.message_id, error=str(exc))
                detail = "no reply after DATA"
            except aiosmtplib.SMTPResponseException as exc:
                if 500 <= exc.code < 600:
                    self.metrics.failures.labels("permanent").inc()
                    return DeliveryStatus.FAILED, f"SMTP {exc.code}"
                self.metrics.failures.labels("temporary").inc()
                detail = f"SMTP {exc.code}"
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                if (cert := certificate_failure(exc)) is not None:
                    self.metrics.failures.labels("tls").inc()
                    log_refused("smtp", account.host, account.port, cert, message_id=out.message_id)
                    detail = "SMTP server's TLS certificate not trusted"
                else:
                    self.metrics.failures.labels("network").inc()
                    detail = type(exc).__name__
            else:
                self.metrics.sent.inc()
                return DeliveryStatus.SENT, ACCEPTED
