"""Whether a mail's sender is who its From says, as the receiving mail server checked it.
Pure: no I/O.

From is written by whoever sends the mail and proves nothing: an abuser who read a survivor's
mail knows her address and one of our Message-IDs, and could write into her thread. The mail
server that received the mail for the hotline's mailbox checks SPF (RFC 7208), DKIM (RFC 6376)
and DMARC (RFC 7489) and records its results in an ``Authentication-Results`` field (RFC 8601),
naming itself by its *authserv-id*. The mailbox's configuration names the one authserv-id it
trusts; :func:`sender_auth` reads that server's results (parsed by ``authres``) and nothing else.

Which fields count (RFC 8601 5, 7.2):
- fields are read from the top: each server prepends its trace fields (RFC 5322 3.6.7), so the
  receiving server's are above anything the sender wrote;
- fields with another authserv-id are ignored wherever they are (the sender's own, an earlier
  server's, a filter's): they neither count nor stop the search;
- the first field with the trusted id counts, with the fields of that id directly below it (no
  other field between: a server that splits its results over several fields, one per milter,
  writes them together); a field with the trusted id further down, below any other field, is
  not read. It came in with the mail: a forgery (or an earlier pass). RFC 8601 5 has the
  receiving server delete such fields before it adds its own; configuring it to do so is the
  operator's part (docs/email.md, "Authenticated threading");
- a counted field that cannot be read makes the mail ``failed``: never a reason to look further
  down.

The verdict:
- ``unknown``: the mailbox trusts no server (nothing is checked; the mail threads by its From as
  before);
- ``verified``: DMARC pass for the From domain, or, where the server gave no DMARC pass or fail,
  an SPF or DKIM pass for a domain aligned with the From domain;
- ``failed``: everything else: DMARC fail, no aligned pass, no result from the trusted server,
  an unreadable one, or a mail whose From names no single author (RFC 7489 6.6.1).

Alignment is checked here only where the server gave no DMARC verdict, and more strictly than
DMARC's relaxed mode (which needs the Public Suffix List): the authenticated domain is the From
domain or a parent of it (whoever controls ``example.org`` controls ``mail.example.org``), never
a child or a sibling, never a bare top-level domain.
"""

from __future__ import annotations

import re
from email.message import Message
from typing import Any, Literal

import authres
import authres.dmarc

from shared.envelope import SenderAuth

VERIFIED: Literal["verified"] = "verified"
FAILED: Literal["failed"] = "failed"
UNKNOWN: Literal["unknown"] = "unknown"

# Bounds on what is read: the parser is regular-expression based and quadratic in a field's
# length, and a comment nests by recursion.
MAX_FIELDS = 50
MAX_FIELD_CHARS = 8192
MAX_COMMENT_DEPTH = 8
_DETAIL_CHARS = 200

_FEATURES = authres.FeatureContext(authres.dmarc)
# The authserv-id, as far as needed to tell whose field it is: after optional whitespace and one
# comment, the first run of characters up to whitespace, ";" or a comment. Linear.
_AUTHSERV_ID = re.compile(r"[ \t]*(?:\([^()]{0,500}\)[ \t]*)?([^\s;()]{1,255})")
_FOLD = re.compile(r"\r?\n(?=[ \t])")


def header_fields(msg: Message) -> list[tuple[int, str]]:
    """The mail's ``Authentication-Results`` fields as they came, unfolded, topmost first, each
    with its position among all the mail's header fields (so that :func:`sender_auth` sees what
    lies between two of them); at most :data:`MAX_FIELDS`."""
    out: list[tuple[int, str]] = []
    for position, (name, value) in enumerate(msg.raw_items()):
        if name.lower() == "authentication-results":
            out.append((position, _FOLD.sub("", str(value)).strip()))
            if len(out) == MAX_FIELDS:
                break
    return out


def _authserv_id(value: str) -> str | None:
    m = _AUTHSERV_ID.match(value)
    return m.group(1).casefold() if m else None


def _counted(fields: list[tuple[int, str]], trusted_id: str) -> list[str]:
    """The values of the fields that count: the topmost with ``trusted_id`` and those with it
    directly below it."""
    wanted = trusted_id.casefold()
    out: list[str] = []
    last = -1
    for position, value in fields:
        if _authserv_id(value) != wanted:
            if out:
                break  # another server's field between: what follows is not read
            continue
        if out and position != last + 1:
            break  # another header field between
        out.append(value)
        last = position
    return out


def _comment_depth(value: str) -> int:
    depth = deepest = 0
    escaped = False
    for ch in value:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif ch == ")":
            depth = max(0, depth - 1)
    return deepest


def _parse(value: str) -> list[Any] | None:
    """The results of one field (authres result objects), or None when it cannot be read."""
    if len(value) > MAX_FIELD_CHARS or _comment_depth(value) > MAX_COMMENT_DEPTH:
        return None
    try:
        header = _FEATURES.parse_value(value)
    except (authres.AuthResError, ValueError, IndexError, TypeError, RecursionError):
        return None
    return list(header.results)


def _domain(value: str | None) -> str:
    """The domain of a property value: ``user@example.org``, ``@example.org`` or
    ``example.org``; lower case, as an A-label where it is internationalised."""
    domain = (value or "").rpartition("@")[2].strip().strip(".").casefold()
    if domain and not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            return ""
    return domain


def aligned(authenticated: str, from_domain: str) -> bool:
    """``authenticated`` is ``from_domain`` or a parent of it, and not a bare top-level domain."""
    if not authenticated or not from_domain or "." not in authenticated:
        return False
    return from_domain == authenticated or from_domain.endswith("." + authenticated)


def _prop(result: Any, ptype: str, names: tuple[str, ...]) -> str | None:
    for prop in getattr(result, "properties", None) or []:
        if str(prop.type).lower() == ptype and str(prop.name).lower() in names:
            return str(prop.value)
    return None


def _summary(results: list[Any]) -> str:
    pairs = " ".join(f"{r.method}={r.result}".lower() for r in results)
    return re.sub(r"[^\x20-\x7e]", "?", pairs)


def _verdict(verdict: Literal["verified", "failed", "unknown"], detail: str) -> SenderAuth:
    return SenderAuth(verdict=verdict, detail=detail[:_DETAIL_CHARS])


def sender_auth(
    fields: list[tuple[int, str]], author: str, sender: str, trusted_id: str | None
) -> SenderAuth:
    """The verdict on a mail whose ``Authentication-Results`` fields are ``fields`` (from
    :func:`header_fields`), whose From field names ``author`` alone ("" when it names several or
    none), whose replies go to ``sender`` (the address the thread keeps), received by a mailbox
    that trusts ``trusted_id`` (None: none). The servers check the From domain, so a ``sender``
    taken from elsewhere (Reply-To, Sender) is never verified.

    ``detail`` says why, for the console and operators: the deciding results as
    ``method=result`` pairs, never a name or an address."""
    if not trusted_id:
        return _verdict(UNKNOWN, "no trusted mail server configured")
    if not author:
        return _verdict(FAILED, "From names no single author")
    if author.casefold() != sender.casefold():
        return _verdict(FAILED, "the sender is not the From address")
    counted = _counted(fields, trusted_id)
    if not counted:
        return _verdict(FAILED, "no result from the trusted mail server")
    results: list[Any] = []
    for value in counted:
        parsed = _parse(value)
        if parsed is None:
            return _verdict(FAILED, "the trusted mail server's result cannot be read")
        results += parsed
    from_domain = _domain(author)
    summary = _summary(results)
    # DMARC, for this From domain (a result for another one says nothing of this mail). A
    # failure wins over a pass: two filters that disagree do not make a mail verified.
    dmarc = [
        str(r.result).lower()
        for r in results
        if str(r.method).lower() == "dmarc"
        and _domain(_prop(r, "header", ("from",)) or from_domain) == from_domain
    ]
    if "fail" in dmarc:
        return _verdict(FAILED, summary)
    if "pass" in dmarc:
        return _verdict(VERIFIED, summary)
    for r in results:
        method, result = str(r.method).lower(), str(r.result).lower()
        if result != "pass":
            continue
        if method == "dkim":
            signer = _prop(r, "header", ("d",)) or _prop(r, "header", ("i",))
            if aligned(_domain(signer), from_domain):
                return _verdict(VERIFIED, summary + " (dkim aligned)")
        elif method == "spf":
            # smtp.mailfrom (RFC 8601 2.7.2); Yandex writes smtp.mail. An SPF pass for the HELO
            # name alone says nothing of the From.
            envelope_from = _prop(r, "smtp", ("mailfrom", "mail"))
            if aligned(_domain(envelope_from), from_domain):
                return _verdict(VERIFIED, summary + " (spf aligned)")
    return _verdict(FAILED, (summary or "none") + " (nothing aligned passed)")
