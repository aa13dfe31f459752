"""E-mail HTML as the console may show it. Pure: no I/O.

e-mail ingest already sanitises HTML before it is stored; the store sanitises again before
any browser sees it (defence in depth: a message stored by an older ingest, or written by
some other path, must not become a script). What remains is structure and text: no
scripts, no handlers, no styles, no images, and no links that could be followed out of
the console (a link's text stays; its target does not). The console then shows it in a
sandboxed iframe without scripts, under a CSP that blocks every remote request.
"""

from __future__ import annotations

import nh3

_TAGS = {
    "p", "br", "div", "span", "b", "strong", "i", "em", "u", "s", "ul", "ol", "li",
    "blockquote", "pre", "code", "table", "thead", "tbody", "tr", "td", "th", "a",
    "hr", "h1", "h2", "h3", "h4", "h5", "h6", "small", "sub", "sup",
}  # fmt: skip

# Bound the work on a hostile message: ingest caps text; this caps whatever else is stored.
MAX_HTML_CHARS = 1_000_000


def sanitise(html: str | None) -> str | None:
    """Safe HTML for the console's sandboxed frame, or None when there is none."""
    if not html:
        return None
    return nh3.clean(
        html[:MAX_HTML_CHARS],
        tags=_TAGS,
        attributes={"td": {"colspan", "rowspan"}, "th": {"colspan", "rowspan"}},
        url_schemes=set(),
        link_rel=None,
        strip_comments=True,
    )
