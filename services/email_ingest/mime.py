"""Turning raw RFC 5322 bytes into what the gateway needs of a mail. Pure: no I/O.

The standard library's parser with the modern policy does the MIME work; HTML is
sanitised (with a size and nesting budget, then nh3: no scripts, no event handlers, no
remote images, only the tags and attributes a reader needs) before it leaves this module,
by the one sanitiser the console's HTML goes through (shared/html.py), whose version
travels with it so that the store never sanitises it again.

What this module decides, and why:
- a mail is *quarantined* (:class:`Unparseable`) rather than half-read when its structure
  is beyond what we afford (too many parts, nesting too deep, headers too large): the raw
  bytes are kept by the caller, an operator sees the reason and can replay it;
- robots are classified (:func:`classify`): RFC 3834 ``Auto-Submitted``, ``Precedence``,
  list headers and RFC 3464 delivery-status reports are never answered automatically;
- attachments are returned as bytes for the caller to store outside the broker;
- quoted history is split from the new text (:func:`split_quoted`) so the console folds it;
- headers are text in UTF-8 where they are (RFC 6532 3.2 allows raw UTF-8 in header values),
  and nothing that leaves this module holds a lone surrogate (:func:`repair`): the parser
  keeps undecodable bytes as surrogates, which neither JSON nor BSON can carry;
- Message-IDs are accepted only in the strict RFC 5322 3.6.4 grammar, read from the raw
  header (:func:`is_msg_id`): they are written back into our replies' headers;
- a mail a person wrote reaches a person even when it cannot be fully read: the sender's
  address is recovered where it can be (:func:`sender_of`), and what could not be read is
  named in ``ParsedMail.problems`` (``no_sender``: nothing to reply to; ``unreadable_part``:
  a part whose bytes did not decode), which the console shows with the thread. Only mail
  beyond our limits raises :class:`Unparseable`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from datetime import datetime
from email import errors, policy
from email.header import decode_header
from email.message import EmailMessage, Message, MIMEPart
from email.parser import BytesParser
from email.policy import EmailPolicy
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

import nh3

from services.email_ingest.authresults import header_fields
from shared.html import VERSION as SANITISER_VERSION
from shared.html import sanitise

# RFC 5322 3.6.4: msg-id = "<" id-left "@" id-right ">", id-left = dot-atom-text, id-right =
# dot-atom-text / no-fold-literal; ASCII only (atext, 3.2.3). "." and "@" are not atext, so
# matching is linear. RFC 2047 5 forbids encoded words in a msg-id, yet "=?" is atext: an id
# holding one is refused, as a parser that decodes it would put its CR/LF into our reply's
# In-Reply-To (CVE-2024-6923 on Python before 3.11.10).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DOT_ATOM = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_MSGID = re.compile(rf"<{_DOT_ATOM}@(?:{_DOT_ATOM}|\[[\x21-\x5a\x5e-\x7e]*\])>")
MAX_MSGID_CHARS = 250
_MAX_REFS = 50
# Structure we refuse to walk (QUALITY.md 3: 10,000 parts, deep nesting, huge headers).
MAX_PARTS = 500
MAX_DEPTH = 20
MAX_HEADER_BYTES = 256 * 1024
# Text we keep per mail; the raw mail stays whole in the raw-mail store.
MAX_TEXT_CHARS = 200_000

# What could not be read of a mail that is still handed over (ParsedMail.problems).
NO_SENDER = "no_sender"
UNREADABLE_PART = "unreadable_part"

# Kinds of mail (see classify): only "person" may ever get an automatic answer.
PERSON = "person"
AUTO_REPLY = "auto_reply"
BULK = "bulk"
BOUNCE = "bounce"


class Unparseable(ValueError):
    """The mail cannot be read within our limits; ``reason`` is a short code for operators."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Unencodable(Unparseable):
    """What was read of the mail cannot be written as an envelope (JSON in UTF-8) even after
    :func:`repair`; quarantined with the reason ``unencodable:<field>``, never its content."""

    def __init__(self, field: str) -> None:
        super().__init__(f"unencodable:{field}")


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class ParsedMail:
    from_address: str
    subject: str | None
    text: str
    html: str | None
    message_id: str | None
    in_reply_to: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    to: str | None = None
    # The Authentication-Results fields with their positions (authresults.header_fields), and
    # the From field's one address ("" when it names none or several): the sender check.
    auth_results: list[tuple[int, str]] = field(default_factory=list)
    author: str = ""
    auto_submitted: bool = False
    kind: str = PERSON
    bounce_of: list[str] = field(default_factory=list)
    bounce_action: str | None = None
    quoted: str = ""
    attachments: list[Attachment] = field(default_factory=list)
    date: datetime | None = None
    # The version of the sanitiser ``html`` went through (shared/html.py VERSION).
    html_sanitiser: int | None = None
    # NO_SENDER, UNREADABLE_PART: what could not be read (the mail is handed over anyway).
    problems: list[str] = field(default_factory=list)


def sanitise_html(html: str) -> str:
    """Keep structure and text; drop scripts, handlers, styles and every remote resource.
    Linear in the size of ``html`` whatever its nesting (shared/html.py)."""
    return sanitise(repair(html)) or ""


_SURROGATES = re.compile("[\ud800-\udfff]+")


def _decode_run(match: re.Match[str]) -> str:
    try:
        data = match.group().encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return "\ufffd"  # surrogates that do not stand for bytes: nothing to recover
    return decode_undeclared(data)


def repair(value: str) -> str:
    """``value`` without lone surrogates.

    The parser keeps each byte it could not decode as a surrogate (surrogateescape): raw
    8-bit bytes in a header, or an RFC 2047 word whose bytes are not of its charset. Each run
    of them is decoded as UTF-8 if it is (RFC 6532 3.2: header values may be UTF-8), else as
    windows-1251, the usual undeclared 8-bit of Russian and Belarusian mail. What is still
    unreadable becomes U+FFFD: the mail is kept, its unreadable part marked.
    """
    try:
        value.encode("utf-8")  # in C, and what any surrogate fails: the usual case costs little
    except UnicodeEncodeError:
        return _SURROGATES.sub(_decode_run, value)
    return value


def html_to_text(html: str) -> str:
    text = nh3.clean(re.sub(r"(?i)<br\s*/?>|</p>|</div>|</li>", "\n", html), tags=set())
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def is_msg_id(value: str) -> bool:
    """Whether ``value`` is one msg-id of the strict grammar (see ``_MSGID``), bounded."""
    return len(value) <= MAX_MSGID_CHARS and "=?" not in value and _MSGID.fullmatch(value) is not None


def _ids(value: str | None) -> list[str]:
    """The valid msg-ids in a raw (undecoded) header value, at most ``_MAX_REFS``."""
    found = (m.group() for m in _MSGID.finditer(value or ""))
    return [i for i in found if len(i) <= MAX_MSGID_CHARS and "=?" not in i][:_MAX_REFS]


def _raw_header(msg: Message, name: str) -> str | None:
    """The header's value as it came, undecoded: a msg-id is never RFC 2047-decoded."""
    return next((str(v) for k, v in msg.raw_items() if k.lower() == name.lower()), None)


def _header(msg: Message, name: str) -> str | None:
    try:
        value = msg.get(name)
    except (ValueError, IndexError, TypeError, LookupError, AttributeError):
        # A header the parser could not make sense of (bad RFC 2047 word, broken address).
        return None
    return None if value is None else repair(str(value))


def _addresses(msg: Message, name: str) -> list[str]:
    """addr-specs of an address header: the modern policy's parse (which keeps an encoded
    display name, even one hiding CR/LF, apart from the address), else a lenient one."""
    try:
        value = msg.get(name)
        found = [a.addr_spec for a in getattr(value, "addresses", ()) if a.username and a.domain]
    except (ValueError, IndexError, TypeError, LookupError, AttributeError):
        found = []
    if found:
        return [repair(a) for a in found]
    # The undecoded value: encoded words stay encoded, so a CR/LF hidden in one cannot
    # split the header, and the address itself is plain ASCII (or RFC 6532 UTF-8) anyway.
    raw = repair(_raw_header(msg, name) or "")
    try:
        return [_one_line(a) for _, a in getaddresses([raw]) if a]
    except (ValueError, IndexError, TypeError):
        return []


def _author(msg: Message) -> str:
    """The one address of the one From field, or "" when there are several fields or addresses
    or none (RFC 7489 6.6.1: such a mail has no single author to authenticate)."""
    if sum(1 for name, _ in msg.raw_items() if name.lower() == "from") != 1:
        return ""
    found = [a for a in _addresses(msg, "From") if "@" in a]
    return _one_line(found[0]) if len(found) == 1 else ""


def _one_line(value: str) -> str:
    return " ".join(value.replace("\r", " ").replace("\n", " ").split())


# Where a reply may go, in the order RFC 5322 3.6.2 gives: the author (From), where the
# author asks replies to go (Reply-To), the agent that sent the mail for the author (Sender).
# Return-Path is not one of them: it names where delivery errors go (RFC 5321 4.4), often a
# mailer's bounce-handling (VERP) address, and is empty for robots; a consultant's reply
# there would reach a machine or no one. None of these fields is authenticated, Reply-To and
# Sender no less than From: a reply goes where the mail itself says, as any mailer's would.
_REPLY_FIELDS = ("From", "Reply-To", "Sender")
_MAX_DECODED_HEADER = 4096


def _decoded_addresses(msg: Message, name: str) -> list[str]:
    """addr-specs of an address header whose address hides inside RFC 2047 encoded words.

    Some mailers encode the whole ``Name <address>`` as one encoded word, which RFC 2047 5
    forbids (an encoded word stands only for a phrase or a comment), so a conforming parser
    reads no address in it. Decoded first (a charset Python does not know is read as
    undeclared bytes, see :func:`decode_undeclared`), then parsed as an address list by the
    standard library's header registry, on one line (a CR/LF decoded out of a word cannot
    reach a header of ours)."""
    raw = _raw_header(msg, name)
    if not raw or "=?" not in raw or len(raw) > _MAX_DECODED_HEADER:
        return []
    try:
        text = ""
        for chunk, charset in decode_header(raw):
            if isinstance(chunk, str):
                text += chunk
                continue
            try:
                text += chunk.decode(charset or "ascii")
            except (LookupError, UnicodeDecodeError):
                text += decode_undeclared(chunk)
        value = policy.default.header_factory(name, _one_line(repair(text)))
        return [a.addr_spec for a in value.addresses if a.username and a.domain]
    except (errors.HeaderParseError, ValueError, LookupError, IndexError, TypeError, AttributeError):
        return []


def _usable(address: str) -> bool:
    """An address a reply can be written to: one ``@`` between non-empty parts, no spaces or
    control characters, within RFC 5321 4.5.3.1's length."""
    local, at, domain = address.rpartition("@")
    return (
        bool(at and local and domain)
        and len(address) <= 254
        and not any(c.isspace() or ord(c) < 32 or c == "\x7f" for c in address)
    )


def sender_of(msg: Message) -> str:
    """The address a reply to ``msg`` goes to, or "" when the mail gives none.

    The first field of ``_REPLY_FIELDS`` that holds a usable address, each read as parsed by
    the modern policy, then leniently, then decoded before parsing (:func:`_decoded_addresses`).
    An address outside any encoded word always wins over one decoded out of a word, so a
    display name that looks like an address never replaces the real one."""
    for name in _REPLY_FIELDS:
        for found in (_addresses(msg, name), _decoded_addresses(msg, name)):
            usable = [a for a in map(_one_line, found) if _usable(a)]
            # What a lenient parse took for one address can still hold a name and an address
            # (a display name whose quote is never closed swallows the rest): parsed once more.
            usable = usable or [a for _, a in getaddresses(found) if _usable(a)]
            if usable:
                return usable[0]
    return ""


def sender_address(raw: bytes) -> str:
    """The address a reply to the raw mail would go to (:func:`sender_of`), read from its
    headers alone, within ``MAX_HEADER_BYTES``: for a mail quarantined before or without a
    full parse. "" when it gives none; never an exception for bad input."""
    try:
        head = BytesParser(policy=POLICY).parsebytes(raw[:MAX_HEADER_BYTES], headersonly=True)
        return sender_of(head)
    except (ValueError, LookupError, TypeError, IndexError, AttributeError, errors.MessageError):
        return ""


# Defects the parser records when bytes of a part were lost in decoding: base64 with
# characters dropped or cut short, a multipart whose parts could not be told apart.
_LOST_DEFECTS = (
    errors.InvalidBase64CharactersDefect,
    errors.InvalidBase64LengthDefect,
    errors.StartBoundaryNotFoundDefect,
    errors.NoBoundaryInMultipartDefect,
    errors.MultipartInvariantViolationDefect,
)


def _lost_part(msg: Message) -> bool:
    """Whether a part of ``msg`` that was read could not be decoded whole. Decoding records
    its defects on the part, so this is asked after the body and attachments were read."""
    return any(isinstance(d, _LOST_DEFECTS) for part in msg.walk() for d in part.defects)


# --- robots ---------------------------------------------------------------------------------


def classify(msg: EmailMessage) -> str:
    """person, auto_reply, bulk or bounce.

    RFC 3834 5: any ``Auto-Submitted`` other than ``no`` is automatic; ``Precedence``
    bulk/junk/list (RFC 2076, de facto) and ``List-Id``/``List-Unsubscribe`` (RFC 2919,
    2369) mark list mail; a ``multipart/report`` with ``report-type=delivery-status``
    (RFC 3464) is a bounce, as is mail from the null sender's usual names.
    """
    if msg.get_content_type() == "multipart/report":
        return BOUNCE
    auto = (_header(msg, "Auto-Submitted") or "no").strip().lower()
    precedence = (_header(msg, "Precedence") or "").strip().lower()
    if auto != "no" or precedence == "auto_reply" or _header(msg, "X-Autoreply") is not None:
        return AUTO_REPLY
    if (
        precedence in {"bulk", "junk", "list"}
        or _header(msg, "List-Id") is not None
        or _header(msg, "List-Unsubscribe") is not None
    ):
        return BULK
    return PERSON


def is_automatic(msg: EmailMessage) -> bool:
    """RFC 3834 auto-replies, bulk/list mail and delivery reports are never answered."""
    return classify(msg) != PERSON


_ACTION = re.compile(r"(?im)^action:\s*([a-z]{1,20})")


def _bounce_facts(msg: EmailMessage) -> tuple[list[str], str | None]:
    """(Message-IDs of the mail that bounced, RFC 3464 action) from a delivery report."""
    refs: list[str] = []
    action: str | None = None
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/delivery-status":
            body = part.as_string() if isinstance(part, Message) else ""
            if m := _ACTION.search(body):
                action = m.group(1).lower()
        elif ctype in {"message/rfc822", "text/rfc822-headers", "message/rfc822-headers"}:
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                refs += _ids(_raw_header(payload[0], "Message-ID"))
            else:
                text = payload if isinstance(payload, str) else ""
                inner = BytesParser(policy=policy.default).parsebytes(
                    text.encode("utf-8", "replace"), headersonly=True
                )
                refs += _ids(_raw_header(inner, "Message-ID"))
    return refs[:_MAX_REFS], action


# --- quoted history ---------------------------------------------------------------------------

# Lines that introduce quoted history in the mailers hotline clients use (Gmail, Outlook,
# Yandex, Mail.ru, Apple Mail), in English, Russian and Belarusian. Anchored, bounded.
_ATTRIBUTION = re.compile(
    r"(?i)^(?:"
    r"-{2,}\s*(?:original message|исходное сообщение|пересылаемое сообщение|forwarded message)\s*-{2,}"
    r"|on .{1,300} wrote:"
    r"|.{1,300}\s(?:пишет|написал|написала|напісаў|напісала):"
    r"|from:\s.{1,300}"
    r"|от:\s.{1,300}"
    r")\s*$"
)


def _may_attribute(line: str) -> bool:
    """Whether ``_ATTRIBUTION`` can match the stripped line: each of its forms ends with ":"
    or "-", or starts with "from:"/"от:". Checked first, so the bounded but backtracking
    pattern runs on a few lines of a long mail, not on every line."""
    return line.endswith((":", "-")) or line[:5].lower().startswith(("from:", "от:"))


def split_quoted(text: str) -> tuple[str, str]:
    """(new text, quoted history). The history starts at the first attribution line or
    at the first run of ``>`` lines that continues to the end (ignoring blank lines and a
    signature marker). When everything looks quoted, it is all new text. Linear in the
    number of lines."""
    lines = text.split("\n")
    # tail: the first line from which every line to the end is blank or quoted.
    tail = len(lines)
    while tail > 0 and (not (rest := lines[tail - 1].strip()) or rest.startswith(">")):
        tail -= 1
    cut = None
    for i, line in enumerate(lines):
        stripped = line.strip()
        if len(stripped) <= 400 and _may_attribute(stripped) and _ATTRIBUTION.match(stripped):
            cut = i
            break
        if stripped.startswith(">") and i >= tail:
            cut = i
            break
    if cut is None:
        return text, ""
    new, quoted = "\n".join(lines[:cut]).strip(), "\n".join(lines[cut:]).strip()
    return (new, quoted) if new else (text, "")


# --- bodies -------------------------------------------------------------------------------------


def decode_undeclared(payload: bytes) -> str:
    """Bytes whose charset is missing or lying: UTF-8 if valid, else windows-1251 (the
    usual undeclared 8-bit of Russian and Belarusian mail), never an exception."""
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return payload.decode("cp1251", "replace")


def _decode_part(part: MIMEPart) -> str:
    try:
        content = part.get_content()
    except (LookupError, UnicodeError, AssertionError, ValueError):
        content = None
    if isinstance(content, str) and "\ufffd" not in content:
        # repair: a charset such as UTF-7 can decode to lone surrogates.
        return repair(content)
    # Unknown or lying charset, or undeclared 8-bit: keep the text readable, never lose the mail.
    payload = part.get_payload(decode=True)
    return decode_undeclared(payload) if isinstance(payload, bytes) else repair(content or "")


def _check_structure(msg: EmailMessage, raw: bytes) -> None:
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    if len(head) > MAX_HEADER_BYTES:
        raise Unparseable("headers_too_large")
    parts = 0
    stack: list[tuple[Message, int]] = [(msg, 0)]
    while stack:
        part, depth = stack.pop()
        parts += 1
        if parts > MAX_PARTS:
            raise Unparseable("too_many_parts")
        if depth > MAX_DEPTH:
            raise Unparseable("nesting_too_deep")
        if part.is_multipart():
            payload = part.get_payload()
            if isinstance(payload, list):
                stack.extend((p, depth + 1) for p in payload if isinstance(p, Message))


def _filename(part: MIMEPart) -> str:
    try:
        name = part.get_filename() or ""
    except (ValueError, LookupError, TypeError):
        name = ""
    # A name for display only, never a path: no directories, no control characters; 8-bit
    # bytes in it (no RFC 2231 encoding) are read as UTF-8 where they are (repair).
    name = re.sub(r"[\x00-\x1f\x7f/\\]", "_", repair(name)).strip()[:200]
    return name or "attachment"


def _attachments(msg: EmailMessage) -> list[Attachment]:
    out: list[Attachment] = []
    for part in msg.iter_attachments():
        if not isinstance(part, MIMEPart):
            continue
        ctype = part.get_content_type()
        if part.is_multipart() or ctype.startswith("message/"):
            data = part.as_bytes(policy=policy.SMTP) if ctype.startswith("message/") else b""
        else:
            payload = part.get_payload(decode=True)
            data = payload if isinstance(payload, bytes) else b""
        out.append(Attachment(_filename(part), repair(ctype), data))
    return out


class _ParseOncePolicy(EmailPolicy):
    """The modern policy, with each distinct short header value parsed once.

    ``EmailMessage`` parses a header again at every read (``msg.get``, every
    ``get_content_type`` while looking for the body), which was most of the time spent on a
    mail. Header objects are immutable, so the parsed value is reused; long values (a huge
    header in a hostile mail) are parsed as usual and never kept.
    """

    def header_fetch_parse(self, name: str, value: str) -> Any:
        if hasattr(value, "name"):
            return super().header_fetch_parse(name, value)
        # Raw 8-bit bytes come as surrogates: the header is parsed as the text they are
        # (RFC 6532 3.2), so an address in an internationalised domain is an address.
        value = repair(value)
        if len(value) > _CACHED_HEADER_CHARS:
            return super().header_fetch_parse(name, value)
        return _parsed_header(name, value)


_CACHED_HEADER_CHARS = 512


@functools.lru_cache(maxsize=2048)
def _parsed_header(name: str, value: str) -> Any:
    return policy.default.header_fetch_parse(name, value)


POLICY = _ParseOncePolicy()


def parse_mail(raw: bytes) -> ParsedMail:
    """Everything the gateway needs of one mail. Raises :class:`Unparseable` (with a reason
    an operator can read) for mail beyond our limits; never anything else for bad input."""
    msg = BytesParser(policy=POLICY).parsebytes(raw)
    assert isinstance(msg, EmailMessage)
    _check_structure(msg, raw)
    sender = sender_of(msg)
    to_addresses = _addresses(msg, "To")
    text = ""
    html = None
    kind = classify(msg)
    try:
        plain = msg.get_body(preferencelist=("plain",))
        rich = msg.get_body(preferencelist=("html",))
        attachments = [] if kind == BOUNCE else _attachments(msg)
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise Unparseable(f"mime_structure:{type(exc).__name__}") from None
    if rich is not None:
        html = sanitise_html(_decode_part(rich)[:MAX_TEXT_CHARS])  # linear: see sanitise_html
    if plain is not None:
        text = _decode_part(plain)[:MAX_TEXT_CHARS]
    elif html is not None:
        text = html_to_text(html)
    text = text.replace("\r\n", "\n").strip()
    new_text, quoted = split_quoted(text)
    bounce_of, action = _bounce_facts(msg) if kind == BOUNCE else ([], None)
    mids = _ids(_raw_header(msg, "Message-ID"))
    subject = _header(msg, "Subject")
    date = None
    try:
        date_header = _header(msg, "Date")
        date = parsedate_to_datetime(date_header) if date_header else None
    except (ValueError, TypeError, IndexError):
        date = None
    return ParsedMail(
        from_address=sender,
        subject=_one_line(subject) if subject else None,
        text=new_text,
        html=html,
        message_id=mids[0] if mids else None,
        in_reply_to=_ids(_raw_header(msg, "In-Reply-To")),
        references=_ids(_raw_header(msg, "References")),
        to=_one_line(to_addresses[0]) if to_addresses else None,
        auto_submitted=kind != PERSON,
        kind=kind,
        bounce_of=bounce_of,
        bounce_action=action,
        quoted=quoted,
        auth_results=header_fields(msg),
        author=_author(msg),
        attachments=attachments,
        date=date,
        html_sanitiser=SANITISER_VERSION if html is not None else None,
        problems=[p for p, wrong in ((NO_SENDER, not sender), (UNREADABLE_PART, _lost_part(msg))) if wrong],
    )
