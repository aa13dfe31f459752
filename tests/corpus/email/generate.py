"""Writes the e-mail corpus (QUALITY.md 3): ``python -m tests.corpus.email.generate``.

Each ``.eml`` is one case; ``expected.json`` says what must become of it: ``ingested``
(with the kind and a text fragment the client's words must keep) or ``quarantined:<reason>``.
Deterministic: the same files every run, so the corpus is reviewed like code.
"""

from __future__ import annotations

import base64
import io
import json
import zipfile
from email.header import Header
from email.message import EmailMessage
from email.utils import formataddr
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEXT = "Здравствуйте, мне нужна помощь"
CHARSETS = ["utf-8", "windows-1251", "koi8-r", "iso-8859-5"]

cases: dict[str, bytes] = {}
expected: dict[str, dict[str, str]] = {}


def add(
    name: str,
    raw: bytes,
    outcome: str = "ingested",
    kind: str = "person",
    text: str = "",
    sender: str | None = None,
    problems: list[str] | None = None,
) -> None:
    """One case; ``sender`` (the address a reply goes to, "" for none) and ``problems`` (what
    could not be read) are checked when given."""
    assert name not in cases
    cases[name] = raw
    expected[name] = {"outcome": outcome, "kind": kind, "text": text}
    if sender is not None:
        expected[name]["sender"] = sender
    if problems is not None:
        expected[name]["problems"] = problems


def base(n: int, subject: str = "Вопрос") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"client{n}@example.org"
    msg["To"] = "hotline@demo.test"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<corpus-{n}@example.org>"
    msg["Date"] = "Mon, 03 Jun 2024 10:00:00 +0300"
    return msg


n = 0


def nxt() -> int:
    global n
    n += 1
    return n


# Cyrillic bodies: every charset x transfer encoding x plain/html.
for cs in CHARSETS:
    for cte in ("8bit", "base64", "quoted-printable"):
        m = base(nxt())
        m.set_content(TEXT, charset=cs, cte=cte)
        add(f"cyr-{cs}-{cte}-plain", m.as_bytes(), text=TEXT)
        m = base(nxt())
        m.set_content(f"<p>{TEXT}</p>", subtype="html", charset=cs, cte=cte)
        add(f"cyr-{cs}-{cte}-html", m.as_bytes(), text=TEXT)
# RFC 2047 subjects and display names, B and Q.
for cs in CHARSETS:
    for enc in ("B", "Q"):
        words = Header("Помогите срочно", cs).encode()
        if enc == "Q":
            words = "=?{}?Q?{}?=".format(cs, "".join(f"={b:02X}" for b in "Помогите".encode(cs)))
        name = Header("Наталья Петровна", cs).encode()
        raw = (
            f"From: {name} <n{nxt()}@example.org>\r\nTo: hotline@demo.test\r\nSubject: {words}\r\n"
            f"Content-Type: text/plain; charset={cs}\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        ).encode() + TEXT.encode(cs)
        add(f"rfc2047-{cs}-{enc}", raw, text=TEXT)
# Undeclared 8-bit and lying charsets.
for label, body in (("cp1251", TEXT.encode("cp1251")), ("utf8", TEXT.encode())):
    add(
        f"undeclared-8bit-{label}",
        f"From: u{nxt()}@example.org\r\nSubject: x\r\n\r\n".encode() + body,
        text=TEXT,
    )
for bad in ("x-unknown", "utf-99", '"windows-1251'):
    add(
        f"bad-charset-{bad.strip(chr(34))}",
        f"From: b{nxt()}@example.org\r\nContent-Type: text/plain; charset={bad}\r\n\r\n".encode()
        + TEXT.encode("cp1251"),
        text=TEXT,
    )
# Malformed MIME.
add(
    "mime-missing-boundary",
    f"From: m{nxt()}@example.org\r\nContent-Type: multipart/mixed\r\n\r\nHelp me\r\n".encode(),
    problems=["unreadable_part"],
)
add(
    "mime-boundary-never-closed",
    f"From: m{nxt()}@example.org\r\nContent-Type: multipart/mixed; boundary=X\r\n\r\n--X\r\n"
    "Content-Type: text/plain\r\n\r\nHelp me please".encode(),
    text="Help me please",
)
add(
    "mime-duplicate-boundary",
    f"From: m{nxt()}@example.org\r\nContent-Type: multipart/mixed; boundary=X; boundary=Y\r\n\r\n--X\r\n"
    "Content-Type: text/plain\r\n\r\nfirst\r\n--X\r\n--Y\r\nContent-Type: text/plain\r\n\r\nsecond\r\n--X--\r\n".encode(),  # noqa: E501
)
add(
    "mime-nested-same-boundary",
    f"From: m{nxt()}@example.org\r\nContent-Type: multipart/mixed; boundary=X\r\n\r\n--X\r\n"
    "Content-Type: multipart/alternative; boundary=X\r\n\r\n--X\r\nContent-Type: text/plain\r\n\r\ninner\r\n"
    "--X--\r\n--X--\r\n".encode(),
)
add(
    "mime-garbage-base64",
    f"From: m{nxt()}@example.org\r\nContent-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: base64\r\n\r\n!!!not base64@@@\r\n".encode(),
    problems=["unreadable_part"],
)
add(
    "header-without-colon",
    f"From: m{nxt()}@example.org\r\nThis is not a header\r\nSubject: s\r\n\r\nbody text".encode(),
)
add("nul-bytes", f"From: m{nxt()}@example.org\r\nSubject: a\x00b\r\n\r\nbo\x00dy".encode())
add("empty-body", f"From: m{nxt()}@example.org\r\nSubject: only a subject\r\n\r\n".encode())
add(
    "lf-only-line-endings",
    f"From: m{nxt()}@example.org\nSubject: unix\n\nHello from unix".encode(),
    text="Hello from unix",
)
add("long-single-line", f"From: m{nxt()}@example.org\r\n\r\n".encode() + b"a" * 200_000, text="aaaa")
# Structure beyond our limits: quarantined with the reason.
parts = "".join(f"--B\r\nContent-Type: text/plain\r\n\r\n{i}\r\n" for i in range(10_000))
add(
    "ten-thousand-parts",
    f"From: m{nxt()}@example.org\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n{parts}--B--\r\n".encode(),  # noqa: E501
    "quarantined:too_many_parts",
)
deep = f"From: m{nxt()}@example.org\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n"
for d in range(1, 60):
    deep += f"--b{d - 1}\r\nContent-Type: multipart/mixed; boundary=b{d}\r\n\r\n"
add("deep-nesting", deep.encode(), "quarantined:nesting_too_deep")
add(
    "huge-header",
    f"From: m{nxt()}@example.org\r\nX-Big: {'x' * 300_000}\r\n\r\nbody".encode(),
    "quarantined:headers_too_large",
)
# Damaged senders (docs/email.md, "A mail that cannot be fully read"): the mail reaches a
# consultant; the address is recovered where the mail gives one, else the thread says that
# no reply can be sent.
add(
    "no-from",
    b"To: hotline@demo.test\r\nSubject: who am I\r\n\r\nanonymous",
    text="anonymous",
    sender="",
    problems=["no_sender"],
)
add(
    "from-without-address",
    b"From: just a name\r\nSubject: x\r\n\r\nhello",
    text="hello",
    sender="",
    problems=["no_sender"],
)


def encoded(charset: str, text: str, q: str = "B") -> str:
    data = text.encode(charset)
    body = base64.b64encode(data).decode() if q == "B" else "".join(f"={b:02X}" for b in data)
    return f"=?{charset}?{q}?{body}?="


def sender_case(name: str, headers: str, sender: str, problems: list[str] | None = None) -> None:
    raw = f"{headers}\r\nTo: hotline@demo.test\r\nSubject: {name}\r\n\r\n{TEXT}".encode()
    add(name, raw, text=TEXT, sender=sender, problems=problems or [])


# The whole "Name <address>" in one encoded word (RFC 2047 5 forbids it; some mailers do it).
sender_case(
    "from-encoded-whole-utf-8",
    "From: " + encoded("utf-8", "Вера Петрова <vera@example.org>"),
    "vera@example.org",
)
sender_case(
    "from-encoded-whole-windows-1251-q",
    "From: " + encoded("windows-1251", "Вера <vera1251@example.org>", "Q"),
    "vera1251@example.org",
)
sender_case(
    "from-encoded-whole-koi8-r-folded",
    "From: " + encoded("koi8-r", "Вера Петрова") + "\r\n " + encoded("koi8-r", " <verakoi@example.org>"),
    "verakoi@example.org",
)
sender_case("from-encoded-address-only", "From: " + encoded("utf-8", "only@example.org"), "only@example.org")
sender_case(
    "from-encoded-unknown-charset",
    "From: " + encoded("utf-8", "Вера <unknown@example.org>").replace("utf-8", "x-unknown", 1),
    "unknown@example.org",
)
# A broken encoded word in the display name: the address outside it is the sender.
sender_case("from-broken-encoded-name", "From: =?UTF-8?B?broken!!?= <plain@example.org>", "plain@example.org")
# A display name whose quote is never closed, around an encoded word: the address after it.
sender_case(
    "from-unterminated-quote",
    'From: "' + encoded("utf-8", "Вера") + " <unterminated@example.org>",
    "unterminated@example.org",
)
# A display name that looks like an address never replaces the real one.
sender_case(
    "from-name-looks-like-address",
    "From: " + encoded("utf-8", "victim@example.org") + " <writer@example.org>",
    "writer@example.org",
)
# A CR/LF decoded out of the word stays inside the one line it is parsed from.
sender_case(
    "from-encoded-crlf",
    "From: " + encoded("utf-8", "crlf@example.org\r\nBcc: evil@evil.example"),
    "crlf@example.org",
)
sender_case(
    "from-encoded-not-an-address",
    "From: " + encoded("utf-8", "Вера Петрова"),
    "",
    ["no_sender"],
)
# No address in From: Reply-To, then Sender, name where a reply goes (RFC 5322 3.6.2).
sender_case("from-name-only-reply-to", "From: Vera\r\nReply-To: <reply@example.org>", "reply@example.org")
sender_case("no-from-sender", "Sender: agent@example.org", "agent@example.org")
# Return-Path is where delivery errors go (RFC 5321 4.4), never where a reply goes.
sender_case("no-from-return-path-only", "Return-Path: <bounces+x@lists.example>", "", ["no_sender"])
# A part whose bytes did not decode: handed over, marked.
add(
    "part-base64-cut-short",
    (
        "From: cut@example.org\r\nContent-Type: multipart/mixed; boundary=P\r\n\r\n"
        "--P\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nПомогите\r\n"
        "--P\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
        'Content-Disposition: attachment; filename="a.pdf"\r\n\r\nJVBERi0xLjQK1\r\n--P--\r\n'
    ).encode(),
    text="Помогите",
    problems=["unreadable_part"],
)
# HTML that must be defanged (the console renders the sanitised HTML).
xss = {
    "script": "<script>alert(1)</script>",
    "onerror": '<img src=x onerror="alert(1)">',
    "javascript-link": '<a href="javascript:alert(1)">click</a>',
    "remote-image": '<img src="https://tracker.example/pixel.gif" width="1" height="1">',
    "css-url": '<div style="background:url(https://tracker.example/bg)">x</div>',
    "style-tag": "<style>@import url(https://tracker.example/s.css);</style>",
    "iframe": '<iframe src="https://evil.example/"></iframe>',
    "svg-onload": '<svg onload="alert(1)"><circle r=1></svg>',
    "meta-refresh": '<meta http-equiv="refresh" content="0;url=https://evil.example/">',
    "form": '<form action="https://evil.example/"><input name=p></form>',
    "link-stylesheet": '<link rel="stylesheet" href="https://tracker.example/x.css">',
    "data-uri-image": '<img src="data:image/png;base64,iVBORw0KGgo=">',
}
for label, html in xss.items():
    m = base(nxt())
    m.set_content(f"<p>Помогите</p>{html}", subtype="html")
    add(f"html-{label}", m.as_bytes(), text="Помогите")
# Robots: never answered automatically.
robots = {
    "auto-replied": ("Auto-Submitted", "auto-replied", "auto_reply"),
    "auto-generated": ("Auto-Submitted", "auto-generated", "auto_reply"),
    "precedence-auto-reply": ("Precedence", "auto_reply", "auto_reply"),
    "x-autoreply": ("X-Autoreply", "yes", "auto_reply"),
    "precedence-bulk": ("Precedence", "bulk", "bulk"),
    "precedence-junk": ("Precedence", "junk", "bulk"),
    "precedence-list": ("Precedence", "list", "bulk"),
    "list-id": ("List-Id", "<news.example.org>", "bulk"),
    "list-unsubscribe": ("List-Unsubscribe", "<mailto:unsub@example.org>", "bulk"),
}
for label, (h, v, kind) in robots.items():
    m = base(nxt(), "Out of office")
    m[h] = v
    m.set_content("I am away until Monday.")
    add(f"robot-{label}", m.as_bytes(), kind=kind)
for label, inner_type in (
    ("dsn-rfc822-headers", "text/rfc822-headers"),
    ("dsn-message-rfc822", "message/rfc822"),
):
    add(
        f"bounce-{label}",
        (
            f"From: MAILER-DAEMON@mx{nxt()}.example.org\r\nSubject: Undelivered Mail\r\n"
            'Content-Type: multipart/report; report-type=delivery-status; boundary="R"\r\n\r\n'
            "--R\r\nContent-Type: text/plain\r\n\r\nCould not deliver.\r\n"
            "--R\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n\r\n"
            "Final-Recipient: rfc822; gone@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
            f"--R\r\nContent-Type: {inner_type}\r\n\r\nFrom: hotline@demo.test\r\n"
            "Message-ID: <not-one-of-ours@demo.test>\r\nSubject: Re: x\r\n\r\nbody\r\n--R--\r\n"
        ).encode(),
        kind="bounce",
    )
# A mail loop with an auto-responder: its reply to our reply.
m = base(nxt(), "Re: Re: Auto: Re: Ваш вопрос")
m["Auto-Submitted"] = "auto-replied"
m["In-Reply-To"] = "<" + "b" * 32 + ".abcdefghijklmnop@demo.test>"
m.set_content("Автоответ: я в отпуске.")
add("loop-auto-responder", m.as_bytes(), kind="auto_reply")
# CR/LF injection that would reach reply headers.
INJECT = base64.b64encode(b"Hi\r\nBcc: spy@evil.example").decode()
add(
    "crlf-encoded-subject",
    f"From: c{nxt()}@example.org\r\nSubject: =?utf-8?B?{INJECT}?=\r\n\r\nx".encode(),
)
add(
    "crlf-encoded-display-name",
    f"From: =?utf-8?B?{INJECT}?= <c{nxt()}@example.org>\r\n\r\nx".encode(),
)
add(
    "crlf-in-message-id",
    f"From: c{nxt()}@example.org\r\nMessage-ID: <a@b>\r\n\tBcc: spy@evil.example\r\n\r\nx".encode(),
)
add(
    "crlf-references", f"From: c{nxt()}@example.org\r\nReferences: <a@b>\r\n Bcc: x@y <c@d>\r\n\r\nx".encode()
)
# Message-IDs and dates: each still ingested exactly once.
for i in range(5):
    m = base(nxt())
    del m["Message-ID"]
    m.set_content(f"no message id {i}")
    add(f"no-message-id-{i}", m.as_bytes(), text=f"no message id {i}")
for i in range(5):
    m = base(nxt())
    m.replace_header("Message-ID", "<reused@example.org>")
    m.set_content(f"reused id, different content {i}")
    add(f"reused-message-id-{i}", m.as_bytes(), text=f"reused id, different content {i}")
for label, date in (
    ("1970", "Thu, 01 Jan 1970 00:00:00 +0000"),
    ("2099", "Fri, 01 Jan 2099 00:00:00 +0000"),
    ("garbage", "yesterday-ish"),
    ("missing", None),
):
    m = base(nxt())
    del m["Date"]
    if date:
        m["Date"] = date
    m.set_content(f"date {label}")
    add(f"date-{label}", m.as_bytes(), text=f"date {label}")
# Attachments: stored outside the broker, capped, typed.
att = {
    "pdf": (b"%PDF-1.4\n" + b"0" * 2000, "application", "pdf", "заявление.pdf"),
    "jpeg": (b"\xff\xd8\xff\xe0" + b"1" * 5000, "image", "jpeg", "photo.jpg"),
    "large": (b"L" * 300_000, "application", "octet-stream", "big.bin"),
    "path-name": (b"x", "text", "plain", "../../etc/passwd"),
}
for label, (data, main, sub, fname) in att.items():
    m = base(nxt())
    m.set_content("see attachment")
    m.add_attachment(data, maintype=main, subtype=sub, filename=fname)
    add(f"attachment-{label}", m.as_bytes(), text="see attachment")
bomb = io.BytesIO()
with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("zeros.txt", b"\0" * 20_000_000)
m = base(nxt())
m.set_content("zip")
m.add_attachment(bomb.getvalue(), maintype="application", subtype="zip", filename="bomb.zip")
add("attachment-zip-bomb", m.as_bytes(), text="zip")
m = base(nxt())
m.set_content("inline")
m.add_related(b"\x89PNG\r\n", maintype="image", subtype="png", cid="<img1>")
add("inline-image", m.as_bytes())
# Quoted history.
quotes = {
    "gmail-en": "On Mon, 3 Jun 2024 at 10:00, Hotline <hotline@demo.test> wrote:",
    "yandex-ru": '03.06.2024, 10:00, "Горячая линия" <hotline@demo.test> пишет:',
    "outlook": "-----Original Message-----",
    "mailru-fwd": "-------- Пересылаемое сообщение --------",
}
for label, attribution in quotes.items():
    m = base(nxt(), "Re: Ваш вопрос")
    m.set_content(f"Спасибо, поняла.\n\n{attribution}\n> Здравствуйте! Это ответ консультанта.\n")
    add(f"quoted-{label}", m.as_bytes(), text="Спасибо, поняла.")
m = base(nxt())
m.set_content("Это текст.")
m.add_alternative("<p>Это <b>текст</b>.</p>", subtype="html")
add("alternative-plain-and-html", m.as_bytes(), text="Это текст.")
for i in range(4):
    m = base(nxt())
    m.replace_header("From", formataddr((f"Имя {i}", f"named{i}@example.org")))
    m.set_content(f"Обычное письмо {i}")
    add(f"plain-named-sender-{i}", m.as_bytes(), text=f"Обычное письмо {i}")

# Issue 13: raw UTF-8 (RFC 6532) and undeclared 8-bit in headers are read, never a reason to
# stop; client ids and subjects that would inject headers into our replies are neutralised;
# HTML nested beyond the sanitiser's budget is read within it.
add(
    "utf8-idn-from",
    f"From: Иван <ivan@пример.бел>\r\nTo: Линия <hotline@demo.test>\r\nSubject: Помогите\r\n"
    f"Message-ID: <corpus-{nxt()}@example.org>\r\nMIME-Version: 1.0\r\n"
    f"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{TEXT}".encode(),
    text=TEXT,
)
add(
    "eightbit-to",
    f"From: m{nxt()}@example.org\r\nSubject: x\r\nTo: ".encode()
    + "Линия".encode("cp1251")
    + b" <hotline@demo.test>, \xff\xfe@\xc0\r\nMIME-Version: 1.0\r\n\r\nto 8-bit",
    text="to 8-bit",
)
add(
    "eightbit-attachment-name",
    f"From: m{nxt()}@example.org\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\n"
    "see the report\r\n--B\r\nContent-Type: application/pdf\r\n".encode()
    + 'Content-Disposition: attachment; filename="отчёт.pdf"\r\n'.encode("cp1251")
    + b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--B--\r\n",
    text="see the report",
)
injected = "x\r\nBcc: victim@evil.example\r\nContent-Type: text/html\r\n\r\n<h1>evil.example</h1>"
word = "=?utf-8?b?" + base64.b64encode(injected.encode()).decode() + "?="
add(
    "crlf-nested-encoded-subject",
    f"From: m{nxt()}@example.org\r\nSubject: =?utf-8?b?{base64.b64encode(word.encode()).decode()}?=\r\n"
    "Message-ID: <c9.=?utf-8?b?DQpCY2M6IC4uLg==?=.x@y>\r\n"
    "In-Reply-To: <c9.=?utf-8?b?DQpCY2M6IC4uLg==?=.x@y>\r\n"
    "References: <c9.=?utf-8?b?DQpCY2M6IC4uLg==?=.x@y> <ok.1@example.org>\r\n\r\nnested".encode(),
    text="nested",
)
m = base(nxt())
m.set_content("<div>" * 30_000 + "<p>Помогите</p>", subtype="html")
add("html-nested-30000-div", m.as_bytes(), text="Помогите")


def main() -> None:
    for old in HERE.glob("*.eml"):
        old.unlink()
    for name, raw in cases.items():
        (HERE / f"{name}.eml").write_bytes(raw)
    (HERE / "expected.json").write_text(
        json.dumps(expected, indent=1, ensure_ascii=False, sort_keys=True) + "\n"
    )
    print(f"{len(cases)} mails")


if __name__ == "__main__":
    main()
