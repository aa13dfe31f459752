"""E-mail HTML as the console may show it. Pure: no I/O.

One sanitiser for every path, so the HTML is sanitised once: e-mail ingest calls
:func:`sanitise` when a mail arrives and the message keeps :data:`VERSION` beside its HTML
(``html_sanitiser``); the store shows stored HTML of the current version as it is and
sanitises again only HTML of another version or of none (a message stored by an older
ingest, or written by some other path: it must not become a script). What remains is
structure and text: no scripts, no handlers, no styles, no images, and no links that could
be followed out of the console (a link's text stays; its target does not). The console then
shows it in a sandboxed iframe without scripts, under a CSP that blocks every remote request.

Budget. nh3 (ammonia on html5ever) is super-linear in nesting depth: HTML5 tree construction
checks element scope by walking the stack of open elements (WHATWG HTML 13.2.4.2), at every
start tag, so 30,000 nested ``<div>`` (150 KB) took seconds. :func:`bound` first rewrites
the markup in one linear pass: at most :data:`MAX_HTML_CHARS` characters, at most
:data:`MAX_DEPTH` open elements (tags deeper than that are dropped, their text kept), every
element closed, and every tag written out anew with its attribute values quoted, so that
the parser can find no element but those this pass kept, however the input was crafted.
nh3 then decides, alone, what is allowed. Change :data:`VERSION` with any change here; the
store's migrations re-sanitise what was stored with another version (``migrations.py``).
"""

from __future__ import annotations

import re

import nh3

# Bump on any change of the policy or the budget: stored HTML of another version is redone.
VERSION = 1

_TAGS = {
    "p", "br", "div", "span", "b", "strong", "i", "em", "u", "s", "ul", "ol", "li",
    "blockquote", "pre", "code", "table", "thead", "tbody", "tr", "td", "th", "a",
    "hr", "h1", "h2", "h3", "h4", "h5", "h6", "small", "sub", "sup",
}  # fmt: skip

# Bound the work on a hostile message (QUALITY.md 3: cap sizes before parsing).
MAX_HTML_CHARS = 1_000_000
# Deeper than any mailer's layout (nested tables of a newsletter stay well below 50).
MAX_DEPTH = 100

# WHATWG HTML 13.1.2: void elements have no end tag and hold nothing.
_VOID = frozenset(
    "area base basefont bgsound br col embed frame hr img input keygen link meta param source track "
    "wbr".split()
)
# Elements whose content is text, never markup (WHATWG 13.1.2.1 raw text and escapable raw
# text, and plaintext, which runs to the end). The tags go; script and style go with their
# content, as nh3 would remove them (its clean_content_tags); the others' content stays as text.
_RAW = frozenset({"script", "style", "xmp", "iframe", "noembed", "noframes", "textarea", "title"})
_RAW_DROPPED = frozenset({"script", "style"})
_RAW_END = {name: re.compile(rf"</{name}[\t\n\f\r />]", re.IGNORECASE) for name in _RAW}
# Start tags that end an open element of the kinds listed (the optional end tags of
# WHATWG 13.1.2.4, as mailers leave them out: <li>a<li>b, <td>x<td>y, <p>a<div>).
_BLOCKS = frozenset(
    "address article aside blockquote div dl fieldset figure footer form h1 h2 h3 h4 h5 h6 header hr "
    "main nav ol p pre section table ul".split()
)
_ENDS: dict[str, frozenset[str]] = {
    "li": frozenset({"li", "p"}),
    "dt": frozenset({"dt", "dd", "p"}),
    "dd": frozenset({"dt", "dd", "p"}),
    "tr": frozenset({"tr", "td", "th"}),
    "td": frozenset({"td", "th"}),
    "th": frozenset({"td", "th"}),
    "thead": frozenset({"thead", "tbody", "tfoot", "tr", "td", "th"}),
    "tbody": frozenset({"thead", "tbody", "tfoot", "tr", "td", "th"}),
    "tfoot": frozenset({"thead", "tbody", "tfoot", "tr", "td", "th"}),
    "option": frozenset({"option"}),
    "optgroup": frozenset({"option", "optgroup"}),
    **{block: frozenset({"p"}) for block in _BLOCKS},
}

# A whole start or end tag: name, the rest of the name (a tag whose name has other characters
# is dropped), attributes, and whether it closes itself. A quote starts a quoted value only
# after "=" (WHATWG 13.2.5.36); possessive quantifiers, so a tag that does not end (no ">", or
# a quoted value never closed: eof-in-tag, 13.2.5.33) fails at once, after one scan.
_TAG = re.compile(
    r"""<(/?)([A-Za-z][A-Za-z0-9-]*+)([^\t\n\f\r />]*+)"""
    r"""((?:[^=>]++|=[\t\n\f\r ]*+(?:"[^"]*+"|'[^']*+'|(?!["'])))*+)>"""
)
# One attribute of such a tag (its quoted values are closed).
_ATTR = re.compile(
    r"""([^\t\n\f\r /=>][^\t\n\f\r /=>]*)"""
    r"""(?:[\t\n\f\r ]*=[\t\n\f\r ]*(?:"([^"]*)"|'([^']*)'|([^\t\n\f\r >]*)))?"""
)


def _attributes(text: str, wanted: frozenset[str]) -> str:
    out = []
    for m in _ATTR.finditer(text):
        name = m.group(1).lower()
        if name not in wanted:
            continue
        value = next((v for v in m.group(2, 3, 4) if v is not None), "")
        # Character references mean the same in every attribute value state, so "&" stays.
        out.append(f' {name}="{value.replace(chr(34), "&quot;")}"')
    return "".join(out)


def _text(text: str, raw: bool) -> str:
    # Raw text has no character references: its "&" is a character to show.
    return (text.replace("&", "&amp;") if raw else text).replace("<", "&lt;")


def bound(html: str, attributes: dict[str, frozenset[str]]) -> str:
    """The same markup within the budget: linear time, at most MAX_DEPTH open elements, every
    element closed, no markup the parser could read otherwise than this pass did. Only the
    ``attributes`` named (per tag) are copied: the sanitiser removes every other one anyway."""
    html = html[:MAX_HTML_CHARS]
    n = len(html)
    out: list[str] = []
    append = out.append
    # Every open element, kept or not (so an end tag closes the element it belongs to), with
    # a count per name so that an end tag of no open element is dropped in O(1).
    stack: list[tuple[str, bool]] = []
    counts: dict[str, int] = {}
    kept = 0
    pos = 0

    def close_top() -> None:
        nonlocal kept
        name, emitted = stack.pop()
        counts[name] -= 1
        if emitted:
            kept -= 1
            append(f"</{name}>")

    while pos < n:
        lt = html.find("<", pos)
        if lt < 0:
            append(html[pos:])
            break
        append(html[pos:lt])
        tag = _TAG.match(html, lt)
        if tag is None:
            nxt = html[lt + 1 : lt + 2]
            after = html[lt + 2 : lt + 3] if nxt == "/" else nxt
            if after.isascii() and after.isalpha():
                break  # a tag that never ends: the rest is dropped (eof-in-tag)
            if html.startswith("<!--", lt):
                # A comment ends at "-->" or "--!>" (13.2.5.43-52; "<!-->" is an empty one);
                # unterminated, it runs to the end. Comments are never shown.
                ends = [e for e in (html.find("-->", lt + 2), html.find("--!>", lt + 2)) if e >= 0]
                if not ends:
                    break
                end = min(ends)
                pos = end + (3 if html.startswith("-->", end) else 4)
            elif nxt in ("!", "?", "/"):
                # A bogus comment (a doctype, "<?", "</" + non-letter) runs to the next ">".
                gt = html.find(">", lt + 2)
                if gt < 0:
                    break
                pos = gt + 1
            else:
                append("&lt;")  # a "<" that starts no tag is a character
                pos = lt + 1
            continue
        pos = tag.end()
        if tag.group(3):
            continue  # a name no element of ours has
        name = tag.group(2).lower()
        if tag.group(1):
            if counts.get(name):
                while stack[-1][0] != name:
                    close_top()
                close_top()
            continue
        if name in _RAW:
            found = _RAW_END[name].search(html, pos)
            content_end = n if found is None else found.start()
            if name not in _RAW_DROPPED:
                append(_text(html[pos:content_end], raw=name not in {"textarea", "title"}))
            if found is None:
                break
            end_tag = _TAG.match(html, content_end)
            if end_tag is None:
                break
            pos = end_tag.end()
            continue
        if name == "plaintext":
            append(_text(html[pos:], raw=True))
            break
        implied = _ENDS.get(name)
        while implied and stack and stack[-1][0] in implied:
            close_top()
        raw_attrs = tag.group(4)
        wanted = attributes.get(name)
        attrs = _attributes(raw_attrs, wanted) if wanted and raw_attrs else ""
        if name in _VOID:
            append(f"<{name}{attrs}>")
            continue
        if raw_attrs.endswith("/") and (counts.get("svg") or counts.get("math")):
            append(f"<{name}{attrs}/>")  # self-closing counts in foreign content only (13.2.6.5)
            continue
        emit = kept < MAX_DEPTH
        stack.append((name, emit))
        counts[name] = counts.get(name, 0) + 1
        if emit:
            kept += 1
            append(f"<{name}{attrs}>")
    while stack:
        close_top()
    return "".join(out)


_ATTRIBUTES = {"td": frozenset({"colspan", "rowspan"}), "th": frozenset({"colspan", "rowspan"})}


def sanitise(html: str | None) -> str | None:
    """Safe HTML for the console's sandboxed frame, or None when there is none. Linear in the
    input's size (see :func:`bound`); still, call it off the event loop."""
    if not html:
        return None
    return nh3.clean(
        bound(html, _ATTRIBUTES),
        tags=_TAGS,
        attributes={tag: set(names) for tag, names in _ATTRIBUTES.items()},
        url_schemes=set(),
        link_rel=None,
        strip_comments=True,
    )


def for_console(html: str | None, version: object) -> str | None:
    """Stored HTML as the console may show it: as it is when ``version`` (the message's
    ``html_sanitiser``) is the current one, else sanitised now."""
    if not html:
        return None
    return html if version == VERSION else sanitise(html)
