"""Turning raw RFC 5322 bytes into what the gateway needs of a mail. Pure: no I/O.

The standard library's parser with the modern policy does the MIME work; HTML is
sanitised with nh3 (no scripts, no event handlers, no remote images: only the tags and
attributes a reader needs) before it leaves this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage, MIMEPart
from email.parser import BytesParser
from email.utils import getaddresses

import nh3

# Message-IDs in In-Reply-To / References: bounded, no nested brackets, so no backtracking.
_MSGID = re.compile(r"<[^<>\s]{1,250}>")
_MAX_REFS = 50

_ALLOWED_TAGS = {
    "p",
    "br",
    "div",
    "span",
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ul",
    "ol",
    "li",
    "blockquote",
    "pre",
    "code",
    "table",
    "thead",
    "tbody",
    "tr",
    "td",
    "th",
    "a",
    "hr",
    "h1",
    "h2",
    "h3",
    "h4",
}


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
    auto_submitted: bool = False


def sanitise_html(html: str) -> str:
    """Keep structure and text; drop scripts, handlers, styles and every remote resource."""
    return nh3.clean(
        html,
        tags=_ALLOWED_TAGS,
        attributes={"a": {"href"}},
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )


def html_to_text(html: str) -> str:
    text = nh3.clean(re.sub(r"(?i)<br\s*/?>|</p>|</div>|</li>", "\n", html), tags=set())
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _ids(value: object) -> list[str]:
    return _MSGID.findall(str(value or ""))[:_MAX_REFS]


def _header(msg: EmailMessage, name: str) -> str | None:
    try:
        value = msg.get(name)
    except (ValueError, IndexError):  # a header the parser could not make sense of
        return None
    return None if value is None else str(value)


def is_automatic(msg: EmailMessage) -> bool:
    """RFC 3834 auto-replies, bulk/list mail and delivery reports are never answered."""
    auto = (_header(msg, "Auto-Submitted") or "no").strip().lower()
    precedence = (_header(msg, "Precedence") or "").strip().lower()
    return (
        auto != "no"
        or precedence in {"bulk", "junk", "list", "auto_reply"}
        or msg.get_content_type() == "multipart/report"
        or _header(msg, "List-Id") is not None
    )


def _decode_part(part: MIMEPart) -> str:
    try:
        content = part.get_content()
    except (LookupError, UnicodeError, AssertionError):
        # Unknown or lying charset: keep the text readable rather than lose the mail.
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return content if isinstance(content, str) else ""


def parse_mail(raw: bytes) -> ParsedMail:
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(msg, EmailMessage)
    from_header = _header(msg, "From") or ""
    addresses = [a for _, a in getaddresses([from_header]) if a]
    to_addresses = [a for _, a in getaddresses([_header(msg, "To") or ""]) if a]
    text = ""
    html = None
    plain = msg.get_body(preferencelist=("plain",))
    rich = msg.get_body(preferencelist=("html",))
    if rich is not None:
        html = sanitise_html(_decode_part(rich))
    if plain is not None:
        text = _decode_part(plain)
    elif html is not None:
        text = html_to_text(html)
    mids = _ids(_header(msg, "Message-ID"))
    subject = _header(msg, "Subject")
    return ParsedMail(
        from_address=addresses[0] if addresses else "",
        subject=subject.replace("\r", " ").replace("\n", " ") if subject else None,
        text=text.strip(),
        html=html,
        message_id=mids[0] if mids else None,
        in_reply_to=_ids(_header(msg, "In-Reply-To")),
        references=_ids(_header(msg, "References")),
        to=to_addresses[0] if to_addresses else None,
        auto_submitted=is_automatic(msg),
    )
