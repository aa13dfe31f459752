"""E-mail parsing, threading and sending decisions, without servers (issue 3, items 2-5)."""

from __future__ import annotations

import ssl
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.header import Header
from email.message import EmailMessage
from email.utils import formataddr

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from conversations.email_threading import is_bounce_of_ours, may_answer_automatically, may_join, reply_tokens
from deploy.local.services import new_master_key
from services.email_ingest.imap import Mailbox, mailboxes_from, parse_meta
from services.email_ingest.inbound import is_backlog, to_envelope
from services.email_ingest.mime import (
    _ATTRIBUTION,
    AUTO_REPLY,
    BOUNCE,
    BULK,
    MAX_PARTS,
    PERSON,
    Unparseable,
    _may_attribute,
    parse_mail,
    split_quoted,
)
from services.email_ingest.settings import EmailIngestSettings
from services.email_ingest.smtp import (
    InvalidRecipient,
    UnsafeReply,
    accounts_from,
    build_reply,
    checked,
    identity_for,
)
from shared.config import ConfigError, HotlineConfig, load_config
from shared.envelope import Channel, OutboundMessage, utcnow
from shared.settings import DEFAULT_CONFIG_PATH

CYRILLIC = ["utf-8", "windows-1251", "koi8-r", "iso-8859-5"]
TEXT = "Здравствуйте, мне нужна помощь. Ёжик"


def _settings(**kw: object) -> EmailIngestSettings:
    base: dict[str, object] = {
        "amqp_url": "amqp://x",
        "mongo_url": "mongodb://x",
        "from_address": "fallback@demo.test",
        "master_key": new_master_key(),
    }
    return EmailIngestSettings(**{**base, **kw})  # type: ignore[arg-type]


def _config(**mailboxes: dict[str, object]) -> HotlineConfig:
    raw = load_config(DEFAULT_CONFIG_PATH).model_dump()
    raw["mailboxes"] = mailboxes
    return HotlineConfig.model_validate(raw)


# --- Cyrillic bodies and headers ----------------------------------------------------------------


@pytest.mark.parametrize("charset", CYRILLIC)
@pytest.mark.parametrize("cte", ["8bit", "base64", "quoted-printable"])
def test_cyrillic_bodies_in_every_common_encoding(charset: str, cte: str) -> None:
    msg = EmailMessage()
    msg["From"] = formataddr((str(Header("Наталья", charset)), "n@example.org"))
    msg["Subject"] = Header("Помогите, срочно", charset).encode()
    msg.set_content(TEXT, charset=charset, cte=cte)
    mail = parse_mail(msg.as_bytes())
    assert mail.text == TEXT
    assert mail.subject == "Помогите, срочно"
    assert mail.from_address == "n@example.org"


@pytest.mark.parametrize("charset", ["windows-1251", "koi8-r", "iso-8859-5"])
def test_undeclared_8bit_and_lying_charsets_stay_readable(charset: str) -> None:
    body = TEXT.encode("cp1251")
    raw = b"From: a@example.org\r\nSubject: x\r\nContent-Type: text/plain\r\n\r\n" + body
    assert parse_mail(raw).text == TEXT  # undeclared 8-bit: windows-1251
    lying = b"From: a@example.org\r\nContent-Type: text/plain; charset=x-unknown-42\r\n\r\n" + body
    assert parse_mail(lying).text == TEXT


@given(
    st.text(alphabet=st.characters(whitelist_categories=("Lu", "Ll", "Nd", "Zs")), min_size=1, max_size=60),
    st.sampled_from(CYRILLIC),
)
def test_rfc2047_subjects_round_trip(subject: str, charset: str) -> None:
    try:
        encoded = Header(subject, charset).encode()
    except UnicodeEncodeError:
        encoded = Header(subject, "utf-8").encode()
    raw = f"From: a@example.org\r\nSubject: {encoded}\r\n\r\nbody".encode("ascii")
    assert parse_mail(raw).subject == " ".join(subject.split())


@given(
    st.text(min_size=0, max_size=40),
    st.from_regex(r"[a-z0-9._%+-]{1,20}@[a-z0-9-]{1,20}\.[a-z]{2,6}", fullmatch=True),
)
def test_addresses_round_trip_with_any_display_name(name: str, address: str) -> None:
    # The standard library's generator can write a name with a parenthesis unquoted next to an
    # encoded word, i.e. an unterminated RFC 5322 comment that swallows the address; such a
    # mail has no readable sender on the wire and is quarantined as no_sender (corpus test).
    assume("(" not in name and ")" not in name)
    msg = EmailMessage()
    msg["From"] = formataddr((" ".join(name.split()), address))
    msg.set_content("x")
    assert parse_mail(msg.as_bytes()).from_address == address


@given(st.binary(max_size=300))
def test_any_header_bytes_never_crash_and_never_leak_a_newline(value: bytes) -> None:
    raw = b"From: " + value + b"\r\nSubject: " + value + b"\r\nTo: " + value + b"\r\n\r\nbody"
    try:
        mail = parse_mail(raw)
    except Unparseable:
        return
    for header in (mail.subject or "", mail.from_address, mail.to or ""):
        assert "\r" not in header and "\n" not in header


# --- structure limits -----------------------------------------------------------------------------


def test_ten_thousand_parts_are_refused_with_a_reason() -> None:
    boundary = "b"
    parts = "".join(f"--{boundary}\r\nContent-Type: text/plain\r\n\r\npart {i}\r\n" for i in range(10_000))
    raw = (
        f"From: a@example.org\r\nContent-Type: multipart/mixed; boundary={boundary}\r\n\r\n"
        f"{parts}--{boundary}--\r\n"
    ).encode()
    with pytest.raises(Unparseable) as err:
        parse_mail(raw)
    assert err.value.reason == "too_many_parts"
    assert MAX_PARTS < 10_000


def test_deep_nesting_is_refused() -> None:
    raw = b"From: a@example.org\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n"
    for depth in range(1, 40):
        raw += f"--b{depth - 1}\r\nContent-Type: multipart/mixed; boundary=b{depth}\r\n\r\n".encode()
    with pytest.raises(Unparseable) as err:
        parse_mail(raw)
    assert err.value.reason == "nesting_too_deep"


def test_huge_headers_are_refused() -> None:
    raw = b"From: a@example.org\r\nX-Junk: " + b"a" * 300_000 + b"\r\n\r\nbody"
    with pytest.raises(Unparseable) as err:
        parse_mail(raw)
    assert err.value.reason == "headers_too_large"


def test_missing_boundary_still_gives_the_text() -> None:
    raw = b"From: a@example.org\r\nContent-Type: multipart/mixed\r\n\r\nHelp me\r\n"
    assert isinstance(parse_mail(raw).text, str)


# --- robots and bounces ------------------------------------------------------------------------


def _bounce(original_id: str) -> bytes:
    return (
        "From: MAILER-DAEMON@mx.example.org\r\n"
        "To: hotline@demo.test\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Auto-Submitted: auto-replied\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="R"\r\n\r\n'
        "--R\r\nContent-Type: text/plain\r\n\r\nThe mail could not be delivered.\r\n"
        "--R\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.org\r\n\r\n"
        "Final-Recipient: rfc822; gone@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        "--R\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: hotline@demo.test\r\nTo: gone@example.org\r\nMessage-ID: {original_id}\r\n\r\n"
        "--R--\r\n"
    ).encode()


def test_bounce_names_the_reply_it_reports_on() -> None:
    ours = "<" + "a" * 32 + ".TOKENtoken12345@demo.test>"
    mail = parse_mail(_bounce(ours))
    assert mail.kind == BOUNCE and mail.auto_submitted
    assert mail.bounce_of == [ours]
    assert mail.bounce_action == "failed"


@pytest.mark.parametrize(
    ("header", "value", "kind"),
    [
        ("Auto-Submitted", "auto-replied", AUTO_REPLY),
        ("Auto-Submitted", "auto-generated", AUTO_REPLY),
        ("Precedence", "auto_reply", AUTO_REPLY),
        ("X-Autoreply", "yes", AUTO_REPLY),
        ("Precedence", "bulk", BULK),
        ("Precedence", "list", BULK),
        ("List-Id", "<news.example.org>", BULK),
        ("List-Unsubscribe", "<mailto:u@example.org>", BULK),
        ("Auto-Submitted", "no", PERSON),
    ],
)
def test_robot_headers(header: str, value: str, kind: str) -> None:
    msg = EmailMessage()
    msg["From"] = "x@example.org"
    msg[header] = value
    msg.set_content("Out of office")
    assert parse_mail(msg.as_bytes()).kind == kind


# --- quoted history, attachments, HTML ---------------------------------------------------------


@pytest.mark.parametrize(
    "attribution",
    [
        "On Mon, 3 Jun 2024 at 10:00, Hotline <hotline@demo.test> wrote:",
        "3 июня 2024 г., в 10:00, Горячая линия <hotline@demo.test> пишет:",
        "-----Original Message-----",
        "-------- Пересылаемое сообщение --------",
    ],
)
def test_quoted_history_is_separated(attribution: str) -> None:
    text = f"Спасибо, я поняла.\nА что с документами?\n\n{attribution}\n> Здравствуйте!\n> Ответ"
    new, quoted = split_quoted(text)
    assert new == "Спасибо, я поняла.\nА что с документами?"
    assert quoted.startswith(attribution.strip())


def test_trailing_quote_marks_and_all_quoted() -> None:
    assert split_quoted("Yes\n\n> old\n> older") == ("Yes", "> old\n> older")
    assert split_quoted("> only quoted") == ("> only quoted", "")
    assert split_quoted("a > b\n> inline quote\nmore") == ("a > b\n> inline quote\nmore", "")


def _split_quoted_by_definition(text: str) -> tuple[str, str]:
    """The rule of split_quoted, line by line as stated (quadratic in quoted lines)."""
    lines = text.split("\n")
    cut = None
    for i, line in enumerate(lines):
        stripped = line.strip()
        if len(stripped) <= 400 and _ATTRIBUTION.match(stripped):
            cut = i
            break
        if stripped.startswith(">") and all(not r.strip() or r.lstrip().startswith(">") for r in lines[i:]):
            cut = i
            break
    if cut is None:
        return text, ""
    new, quoted = "\n".join(lines[:cut]).strip(), "\n".join(lines[cut:]).strip()
    return (new, quoted) if new else (text, "")


_QUOTE_PIECES = st.sampled_from(
    [
        "> ",
        ">",
        " ",
        "\t",
        "\r",
        "-",
        "--",
        ":",
        "wrote:",
        "On Mon ",
        "пишет:",
        "написала:",
        "From: ",
        "FROM: ",
        "от: ",
        "От: ",
        "Original Message",
        "исходное сообщение",
        "text",
        "ёж",
    ]
)
_QUOTE_LINES = st.lists(_QUOTE_PIECES, max_size=6).map("".join)


@given(st.lists(_QUOTE_LINES, max_size=12).map("\n".join))
def test_split_quoted_keeps_its_rule(text: str) -> None:
    assert split_quoted(text) == _split_quoted_by_definition(text)


@given(_QUOTE_LINES)
def test_attribution_lines_pass_the_quick_check(line: str) -> None:
    stripped = line.strip()
    if _ATTRIBUTION.match(stripped):
        assert _may_attribute(stripped)


def test_split_quoted_is_linear_in_interleaved_quotes() -> None:
    # Quoted lines each followed by an answer: the old rule re-read the rest of the mail
    # at every quoted line (2e8 line reads here, minutes).
    text = "\n".join(["> quoted", "answer"] * 20_000)
    began = time.perf_counter()
    assert split_quoted(text) == (text, "")
    assert time.perf_counter() - began < 5.0


def test_attachments_keep_name_type_and_bytes_and_names_are_not_paths() -> None:
    msg = EmailMessage()
    msg["From"] = "a@example.org"
    msg.set_content("see attached")
    msg.add_attachment(
        b"%PDF-1.4 data", maintype="application", subtype="pdf", filename="../../etc/паспорт.pdf"
    )
    msg.add_attachment(b"\x89PNG", maintype="image", subtype="png", filename="a.png")
    mail = parse_mail(msg.as_bytes())
    assert [(a.filename, a.content_type, a.data) for a in mail.attachments] == [
        (".._.._etc_паспорт.pdf", "application/pdf", b"%PDF-1.4 data"),
        ("a.png", "image/png", b"\x89PNG"),
    ]
    assert mail.text == "see attached"


def test_remote_content_is_blocked_in_html() -> None:
    msg = EmailMessage()
    msg["From"] = "a@example.org"
    msg.set_content(
        '<div style="background:url(https://t.example/a)">Hi<img src="https://t.example/p.gif" width=1>'
        '<a href="javascript:x()" onmouseover="x()">l</a><link rel=stylesheet href="https://t.example/c">'
        "<iframe src=https://t.example></iframe></div>",
        subtype="html",
    )
    html = parse_mail(msg.as_bytes()).html or ""
    assert "t.example" not in html and "javascript" not in html and "onmouseover" not in html
    assert "Hi" in html


# --- threading decisions --------------------------------------------------------------------------


def _inbound(sender: str, refs: list[str], kind: str = "person", backlog: bool = False, line: str = "113"):
    mail = parse_mail(f"From: {sender}\r\nSubject: Re: Help\r\n\r\nhello".encode())
    env = to_envelope(
        mail,
        source_id="imap:box:1:1",
        line=line,
        mailbox="box",
        now=utcnow(),
        internaldate=None,
        backlog=backlog,
        attachments=[],
        trusted_authserv_id=None,
    )
    assert env.email is not None
    facts = env.email.model_copy(update={"references": refs, "kind": kind, "bounce_of": refs})
    return env.model_copy(update={"email": facts})


def test_reply_tokens_come_only_from_our_message_id_shape() -> None:
    ours = "<" + "0123456789abcdef" * 2 + ".AbC-_123xyzXYZ09@demo.test>"
    assert reply_tokens([ours, "<CAF=abc@mail.gmail.com>", "<x.y@z>"]) == ["AbC-_123xyzXYZ09"]


def test_only_the_threads_client_may_join_it() -> None:
    thread = {"channel": "email", "line": "113", "client": {"address": "Client@Example.org"}}
    assert may_join(thread, _inbound("client@example.org", []))
    assert not may_join(thread, _inbound("stranger@example.org", []))
    assert not may_join(thread, _inbound("client@example.org", [], line="dv"))
    assert not may_join({**thread, "client": {"address": ""}}, _inbound("client@example.org", []))


def test_robots_and_backlog_are_never_answered_automatically() -> None:
    assert may_answer_automatically(_inbound("a@example.org", []))
    assert not may_answer_automatically(_inbound("a@example.org", [], backlog=True))
    for kind in ("auto_reply", "bulk", "bounce"):
        assert not may_answer_automatically(_inbound("a@example.org", [], kind=kind))
    assert is_bounce_of_ours(_inbound("d@example.org", ["<x@y>"], kind="bounce"))


def test_backlog_is_decided_by_the_servers_arrival_time_only() -> None:
    now = datetime(2024, 6, 1, tzinfo=UTC)
    assert is_backlog(now - timedelta(hours=2), now, 3600)
    assert not is_backlog(now - timedelta(minutes=5), now, 3600)
    assert not is_backlog(None, now, 3600)


# --- mailboxes from configuration ------------------------------------------------------------------


def test_several_mailboxes_from_configuration_with_passwords_from_the_environment() -> None:
    config = _config(
        inbox113={"line": "113", "imap_host": "imap.example.org", "user": "113", "password_env": "PW_113"},
        dv={
            "line": "dv",
            "organisation": "gp",
            "imap_host": "imap.example.org",
            "user": "dv",
            "password_env": "PW_DV",
        },
    )
    boxes = mailboxes_from(_settings(), config, {"PW_113": "a", "PW_DV": "b"})
    assert [(b.name, b.line, b.password) for b in boxes] == [("inbox113", "113", "a"), ("dv", "dv", "b")]
    with pytest.raises(ConfigError, match="PW_DV"):
        mailboxes_from(_settings(), config, {"PW_113": "a"})
    with pytest.raises(ConfigError, match="no mailbox"):
        mailboxes_from(_settings(), _config(), {})
    (env_box,) = mailboxes_from(_settings(imap_user="hotline", imap_password="pw"), _config(), {})
    assert replace(env_box, tls_context=None) == Mailbox(
        "hotline@127.0.0.1:993/INBOX", "113", "127.0.0.1", 993, True, "hotline", "pw", "INBOX"
    )
    assert env_box.tls_context is not None and env_box.tls_context.verify_mode is ssl.CERT_REQUIRED


def test_a_mailbox_of_an_unknown_line_is_refused() -> None:
    with pytest.raises(ValueError, match=r"mailboxes\.x\.line"):
        _config(x={"line": "nope", "imap_host": "h", "user": "u", "password_env": "P"})


def test_parse_meta_reads_size_and_internaldate() -> None:
    lines = [b'3 FETCH (UID 17 RFC822.SIZE 2048 INTERNALDATE "17-Jul-1996 02:44:25 -0700")', b"done"]
    size, when = parse_meta(lines)[17]
    assert size == 2048 and when == datetime(1996, 7, 17, 9, 44, 25, tzinfo=UTC)


# --- sending ------------------------------------------------------------------------------------------


def _out(**kw: object) -> OutboundMessage:
    base: dict[str, object] = {
        "message_id": "m1",
        "thread_id": "t1",
        "channel": Channel.EMAIL,
        "line": "dv",
        "recipient": "client@example.org",
        "text": "Ответ",
        "sent_at": utcnow(),
        "subject": "Муж угрожает",
        "email_message_id": "<m1.tok@demo.test>",
    }
    return OutboundMessage(**{**base, **kw})  # type: ignore[arg-type]


def test_neutral_identity_and_subject_per_line() -> None:
    config = _config(
        dv={
            "line": "dv",
            "imap_host": "h",
            "user": "dv",
            "password_env": "P",
            "from_address": "info@neutral.example",
            "from_name": "",
            "reply_subject": "Your enquiry",
            "send_per_minute": 5,
        }
    )
    who = identity_for("dv", _settings(from_name="Hotline"), config)
    assert (who.from_address, who.from_name, who.subject, who.per_minute) == (
        "info@neutral.example",
        "",
        "Your enquiry",
        5,
    )
    mail = build_reply(_out(), who.from_address, who.from_name, who.subject)
    assert mail["From"] == "info@neutral.example" and mail["Subject"] == "Your enquiry"
    # Without a mailbox entry: the line's address and the settings' defaults.
    plain = identity_for("113", _settings(from_name="Hotline"), _config())
    assert (plain.from_address, plain.from_name, plain.subject) == ("hotline@demo.test", "Hotline", None)


def _shared_line(**extra: dict[str, object]) -> HotlineConfig:
    """The infoline 113 with a mailbox per organisation, each with its own SMTP account."""
    return _config(
        infoline_lastrada={
            "line": "113",
            "organisation": "lastrada",
            "imap_host": "h",
            "user": "ls",
            "password_env": "P",
            "from_address": "help@lastrada.example",
            "from_name": "La Strada",
            "reply_to": "consult@lastrada.example",
            "signature": "La Strada, infoline 113",
            "smtp": {"host": "smtp.lastrada.example", "user": "ls", "password_env": "SMTP_LS"},
        },
        infoline_bwc={
            "line": "113",
            "organisation": "bwc",
            "imap_host": "h",
            "user": "bwc",
            "password_env": "P",
            "from_address": "help@bwc.example",
            "from_name": "BWC",
            "signature": "Business Women's Club",
            "smtp": {"host": "smtp.bwc.example", "port": 465, "security": "tls"},
            "send_per_minute": 7,
        },
        **extra,
    )


def test_each_organisation_answers_a_shared_line_in_its_own_name() -> None:
    config, settings = _shared_line(), _settings(from_name="Hotline")
    ls = identity_for("113", settings, config, "lastrada")
    bwc = identity_for("113", settings, config, "bwc")
    assert (ls.from_address, ls.from_name, ls.reply_to, ls.account, ls.limit_key) == (
        "help@lastrada.example",
        "La Strada",
        "consult@lastrada.example",
        "infoline_lastrada",
        "mailbox:infoline_lastrada",
    )
    assert (bwc.from_address, bwc.reply_to, bwc.account, bwc.per_minute) == (
        "help@bwc.example",
        None,
        "infoline_bwc",
        7,
    )
    # An organisation with no mailbox on the line never borrows another's: the line's address.
    gp = identity_for("113", settings, config, "gp")
    assert (gp.from_address, gp.account, gp.signature, gp.limit_key) == (
        "hotline@demo.test",
        "default",
        None,
        "113",
    )
    # A shared mailbox (no organisation) is the line's voice for anyone without their own.
    shared = _shared_line(
        infoline={
            "line": "113",
            "imap_host": "h",
            "user": "i",
            "password_env": "P",
            "from_address": "i@113.example",
        }
    )
    assert identity_for("113", settings, shared, "gp").from_address == "i@113.example"
    assert identity_for("113", settings, shared, None).from_address == "i@113.example"
    assert identity_for("113", settings, shared, "bwc").from_address == "help@bwc.example"
    # An automatic answer on a line of two organisations and no shared mailbox: the line's voice.
    assert identity_for("113", settings, config, None).from_address == "hotline@demo.test"
    # On a line that is one organisation's, its automatic answers are in that organisation's name.
    dv = _config(dv={"line": "dv", "organisation": "gp", "imap_host": "h", "user": "d", "password_env": "P",
                     "from_address": "info@neutral.example"})  # fmt: skip
    assert identity_for("dv", settings, dv, None).from_address == "info@neutral.example"


def test_signature_under_a_consultants_reply_only_and_never_against_a_neutral_plan() -> None:
    who = identity_for("113", _settings(), _shared_line(), "lastrada")

    def body(out: OutboundMessage) -> str:
        mail = build_reply(
            out, who.from_address, who.from_name, None, reply_to=who.reply_to, signature=who.signature
        )
        text = checked(mail).data.decode()
        assert "Reply-To: consult@lastrada.example" in text
        part = mail.get_body(("plain",))
        assert part is not None
        return str(part.get_content())

    assert body(_out(line="113", text="Answer")).endswith("Answer\n\n-- \nLa Strada, infoline 113\n")
    assert "La Strada" not in body(_out(line="113", text="Answer", sender_role="bot"))
    assert "La Strada" not in body(_out(line="113", text="Answer", sender_name="A friend"))
    assert "La Strada" not in body(_out(line="113", text="Answer", neutral_subject="Your order"))


def test_each_mailboxs_smtp_account_is_read_at_start() -> None:
    settings = _settings(smtp_host="smtp.default.example", smtp_security="none")
    with pytest.raises(ConfigError, match=r"mailboxes\.infoline_lastrada\.smtp\.password_env: .*SMTP_LS"):
        accounts_from(settings, _shared_line(), None, environ={})
    accounts = accounts_from(settings, _shared_line(), None, environ={"SMTP_LS": "secret"})
    assert {n: (a.host, a.port, a.security, a.user, a.password) for n, a in accounts.items()} == {
        "default": ("smtp.default.example", 587, "none", None, None),
        "infoline_lastrada": ("smtp.lastrada.example", 587, "starttls", "ls", "secret"),
        "infoline_bwc": ("smtp.bwc.example", 465, "tls", None, None),
    }
    assert all(a.tls_context is not None for n, a in accounts.items() if n != "default")
    with pytest.raises(ValueError, match="user and password_env go together"):
        _config(
            x={
                "line": "dv",
                "imap_host": "h",
                "user": "u",
                "password_env": "P",
                "smtp": {"host": "s", "user": "u"},
            }
        )


@given(st.text(max_size=80), st.text(max_size=80))
def test_no_cr_or_lf_ever_reaches_a_reply_header(subject: str, recipient: str) -> None:
    out = _out(subject=subject, recipient=recipient or "x@example.org", email_message_id="<a@b>")
    with pytest.raises(UnsafeReply):  # a Message-ID outside the msg-id grammar is refused
        build_reply(out.model_copy(update={"email_message_id": "<a@b>\r\nBcc: x@y"}), "h@demo.test", "")
    try:
        mail = build_reply(out, "hotline@demo.test", "Name\r\nBcc: z@y")
    except InvalidRecipient:
        return  # an address that cannot be a To header is refused: the reply is reported failed
    head = mail.as_bytes().split(b"\n\n", 1)[0]
    assert b"\nBcc:" not in head
    for name in ("Subject", "To", "From", "Message-ID"):
        assert "\n" not in str(mail[name]) and "\r" not in str(mail[name])


def test_invalid_client_address_is_refused_not_crashed() -> None:
    with pytest.raises(InvalidRecipient):
        build_reply(_out(recipient="0@"), "hotline@demo.test", "")
    with pytest.raises(InvalidRecipient):
        build_reply(_out(recipient="no address at all"), "hotline@demo.test", "")
    assert (
        build_reply(_out(recipient="Анна <anna@example.org>"), "hotline@demo.test", "")["To"]
        == "anna@example.org"
    )
