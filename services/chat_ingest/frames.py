"""The chat protocol of PRODUCT.md section 4, as pure functions: parse a client frame,
build server frames. Unknown fields are ignored; anything else is a ``FrameError``
with a code the client can act on."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from conversations.client_left import NOT_SAFE

_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CHOICE = re.compile(r"[a-z0-9_-]{1,40}")
# A lone surrogate: what JSON's "\ud800" escapes decode to. It is no Unicode text: it can be
# neither encoded (the broker's JSON, the database) nor shown.
_SURROGATE = re.compile("[\ud800-\udfff]")


class FrameError(ValueError):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Start:
    line: str | None
    language: str | None
    region: str | None
    topic: str | None


@dataclass(frozen=True)
class Resume:
    token: str


@dataclass(frozen=True)
class Message:
    id: str
    text: str
    # The text held lone surrogates, replaced by U+FFFD (:func:`repaired`): the ack says so,
    # so the client can tell its sender that part of the message could not be read.
    repaired: bool = False


@dataclass(frozen=True)
class End:
    # The only reason the protocol names is ``not_safe`` ("Not safe now": do not reply until I
    # write). Any other value, or none, is a plain end (Quick exit): a client who is leaving
    # is never refused.
    reason: str | None = None


ClientFrame = Start | Resume | Message | End


def _choice(frame: dict[str, Any], name: str) -> str | None:
    value = frame.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not _CHOICE.fullmatch(value):
        raise FrameError("bad_field", f"{name} must be a short identifier")
    return value


def repaired(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD (the replacement character);
    ``text`` itself (the same object) when it has none. Repaired, not refused: a person's
    message always reaches a person, with a mark where a character was broken, and the sender
    is told (the ack's ``repaired``, the Telegram bot's notice). The check is one encode in
    C; only broken text is scanned."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


def parse_client_frame(raw: str, max_text_chars: int) -> ClientFrame:
    try:
        frame = json.loads(raw)
    except (ValueError, RecursionError):
        raise FrameError("bad_json", "frames are JSON objects") from None
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        raise FrameError("bad_frame", "a frame is an object with a string 'type'")
    kind = frame["type"]
    if kind == "start":
        return Start(*(_choice(frame, n) for n in ("line", "language", "region", "topic")))
    if kind == "resume":
        token = frame.get("token")
        if not isinstance(token, str) or not _ID.fullmatch(token):
            raise FrameError("bad_field", "resume needs the session token")
        return Resume(token)
    if kind == "message":
        mid, text = frame.get("id"), frame.get("text")
        if not isinstance(mid, str) or not _ID.fullmatch(mid):
            raise FrameError("bad_field", "message needs an 'id' of 1-64 letters, digits, - or _")
        if not isinstance(text, str) or not text.strip():
            raise FrameError("bad_field", "message needs a non-empty 'text'")
        if len(text) > max_text_chars:
            raise FrameError("too_long", f"a message holds at most {max_text_chars} characters")
        fixed = repaired(text)
        return Message(mid, fixed, repaired=fixed is not text)
    if kind == "end":
        return End(NOT_SAFE if frame.get("reason") == NOT_SAFE else None)
    raise FrameError("unknown_type", "type must be start, resume, message or end")


def error(code: str, detail: str, message_id: str | None = None) -> dict[str, Any]:
    """An error frame; ``message_id`` names the client's message it concerns (its frame id),
    so the client knows which one to send again. Clients ignore fields they do not know, so
    older widgets are unaffected by the extra field."""
    frame = {"type": "error", "code": code, "detail": detail}
    if message_id is not None:
        frame["id"] = message_id
    return frame
