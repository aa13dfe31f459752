"""Every text of the console in every language it offers: each module's I18N dictionary
(services/store/static/*.js) has, in Russian and in Belarusian, every key its English one has,
nested ones too; every data-i18n text of index.html is in the console's dictionary; the
language switches offer each language."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

STATIC = Path(__file__).resolve().parents[2] / "services" / "store" / "static"
LANGUAGES = ("en", "ru", "be")
_TOKEN = re.compile(r'\s+|//[^\n]*|/\*.*?\*/|"(?:[^"\\\n]|\\.)*"|[A-Za-z_$][\w$]*|[{}\[\]:,]', re.S)


def i18n_literal(source: str) -> dict[str, Any]:
    """The object literal assigned to ``var I18N`` in a script, read as data: keys are bare
    names or strings, values strings or nested objects (anything else fails the test)."""
    start = source.index("var I18N = {") + len("var I18N = ")
    out: list[str] = []
    depth, pos = 0, start
    while True:
        m = _TOKEN.match(source, pos)
        assert m, f"unexpected text in I18N at {source[pos : pos + 40]!r}"
        tok, pos = m.group(), m.end()
        if tok.isspace() or tok.startswith(("//", "/*")):
            continue
        if tok[0].isalpha() or tok[0] in "_$":
            tok = json.dumps(tok)  # a bare key
        out.append(tok)
        depth += {"{": 1, "}": -1}.get(tok, 0)
        if depth == 0:
            break
    text = "".join(out)
    return json.loads(re.sub(r",([}\]])", r"\1", text))


def dictionaries() -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted(STATIC.glob("*.js")):
        source = path.read_text(encoding="utf-8")
        if "var I18N = {" in source:
            found[path.name] = i18n_literal(source)
    return found


def missing(en: dict[str, Any], other: dict[str, Any], prefix: str = "") -> list[str]:
    gaps = []
    for key, value in en.items():
        if isinstance(value, dict) and isinstance(other.get(key), dict):
            gaps.extend(missing(value, other[key], prefix + key + "."))
        elif not other.get(key) or isinstance(value, dict):
            gaps.append(prefix + key)
    return gaps


def test_every_module_has_a_dictionary() -> None:
    found = dictionaries()
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    scripts = set(re.findall(r'<script src="/static/([\w.]+\.js)"', html))
    # Every script the console loads that shows text has one (and is read here).
    assert {
        "console.js",
        "cases.js",
        "clients.js",
        "contact_plan.js",
        "phone.js",
        "search.js",
        "quarantine.js",
        "notify.js",
        "shortcuts.js",
        "admin.js",
    } <= set(found)
    assert set(found) <= scripts


@pytest.mark.parametrize("module", sorted(dictionaries()))
@pytest.mark.parametrize("lang", ["ru", "be"])
def test_every_english_text_is_there_in_russian_and_belarusian(module: str, lang: str) -> None:
    texts = dictionaries()[module]
    assert lang in texts, f"{module} has no {lang} texts"
    assert missing(texts["en"], texts[lang]) == [], f"{module}: keys without a {lang} text"


def test_every_page_text_is_in_the_console_dictionary() -> None:
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    keys = set(re.findall(r'data-i18n(?:-title)?="(\w+)"', html))
    console = dictionaries()["console.js"]
    for lang in LANGUAGES:
        assert sorted(keys - set(console[lang])) == [], lang


def test_the_language_switches_offer_every_language() -> None:
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    selects = re.findall(r'<select class="lang-select">(.*?)</select>', html)
    assert len(selects) == 2
    for options in selects:
        assert re.findall(r'<option value="(\w+)">', options) == list(LANGUAGES)
    assert "Беларуская" in selects[0]


def test_the_reader_sees_a_gap() -> None:
    source = 'var I18N = { en: { a: "x", b: "y: z", n: { c: "1" } }, ru: { a: "x", n: {} } };'
    texts = i18n_literal(source)
    assert missing(texts["en"], texts["ru"]) == ["b", "n.c"]
