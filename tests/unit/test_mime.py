from email.message import EmailMessage
from email.utils import make_msgid

from hypothesis import given
from hypothesis import strategies as st

from services.email_ingest.mime import parse_mail, sanitise_html
from services.email_ingest.smtp import build_reply
from shared.envelope import Channel, OutboundMessage, utcnow


def test_windows_1251_body_and_rfc2047_subject():
    raw = (
        b"From: =?koi8-r?B?7sHUwdvB?= <n@example.org>\r\n"
        b"To: hotline@demo.test\r\n"
        b"Subject: =?windows-1251?B?z+7s7uPo8uU=?=\r\n"
        b"Message-ID: <abc@example.org>\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=windows-1251\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\n" + "Здравствуйте, мне нужна помощь".encode("cp1251")
    )
    mail = parse_mail(raw)
    assert mail.subject == "Помогите"
    assert mail.text == "Здравствуйте, мне нужна помощь"
    assert mail.from_address == "n@example.org"
    assert mail.message_id == "<abc@example.org>"


def test_html_only_mail_is_sanitised_and_gives_text():
    msg = EmailMessage()
    msg["From"] = "a@example.org"
    msg.set_content(
        '<p onclick="steal()">Help <b>me</b></p><script>alert(1)</script>'
        '<img src="https://tracker.example/p.gif"><a href="javascript:alert(1)">x</a>'
        "<style>body{background:url(https://t.example/x)}</style>",
        subtype="html",
    )
    mail = parse_mail(msg.as_bytes())
    assert mail.html is not None
    for bad in ("script", "onclick", "tracker.example", "javascript:", "t.example", "<img", "<style"):
        assert bad not in mail.html
    assert "Help" in mail.text and "me" in mail.text
    assert "alert" not in mail.text


def test_auto_replies_and_reports_are_recognised():
    for header, value in [
        ("Auto-Submitted", "auto-replied"),
        ("Precedence", "bulk"),
        ("List-Id", "<list.example.org>"),
    ]:
        msg = EmailMessage()
        msg["From"] = "robot@example.org"
        msg[header] = value
        msg.set_content("Out of office")
        assert parse_mail(msg.as_bytes()).auto_submitted, header
    person = EmailMessage()
    person["From"] = "p@example.org"
    person["Auto-Submitted"] = "no"
    person.set_content("hi")
    assert not parse_mail(person.as_bytes()).auto_submitted


def test_references_are_parsed_and_bounded():
    ids = " ".join(f"<{i}@x>" for i in range(200))
    raw = f"From: a@b.c\r\nIn-Reply-To: <r@x>\r\nReferences: {ids}\r\n\r\nbody".encode()
    mail = parse_mail(raw)
    assert mail.in_reply_to == ["<r@x>"]
    assert len(mail.references) == 50


@given(st.binary(max_size=2000))
def test_any_bytes_parse_without_crashing(raw):
    mail = parse_mail(raw)
    assert isinstance(mail.text, str)


@given(st.text(max_size=200))
def test_sanitiser_never_lets_a_script_tag_through(html):
    assert "<script" not in sanitise_html(html + "<script>x</script>").lower()


def test_reply_headers_cannot_be_injected():
    out = OutboundMessage(
        message_id="m1",
        thread_id="t1",
        channel=Channel.EMAIL,
        line="113",
        recipient="client@demo.test\r\nBcc: victim@example.org",
        text="Answer",
        sent_at=utcnow(),
        subject="Help\r\nBcc: spy@example.org",
        email_message_id=make_msgid(domain="demo.test"),
        in_reply_to="<c1@example.org>",
        references=["<c0@example.org>", "<c1@example.org>"],
    )
    mail = build_reply(out, "hotline@demo.test", "")
    raw = mail.as_bytes()
    assert b"\nBcc:" not in raw
    assert mail["In-Reply-To"] == "<c1@example.org>"
    assert mail["References"] == "<c0@example.org> <c1@example.org>"
    assert mail["Subject"].startswith("Re: Help")
