"""How urgent a conversation is. Pure: no I/O.

Matching is by words, not regular expressions, so untrusted text cannot make it backtrack:
a configured word matches every word of the text that starts with it ("избива" matches
"избивает"), and an entry with a space matches as a phrase.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from conversations.model import NORMAL, URGENT
from shared.config import HotlineConfig

# Only the beginning of a long text is scanned: danger is said early, and the cost stays bounded.
SCAN_CHARS = 20_000

# Punctuation separates words like a space. (A regular expression of one character class
# replaces it: str.translate looks each character of a Cyrillic text up in a dict, and was
# most of the time spent here on a long letter.)
_PUNCTUATION = re.compile("[" + re.escape('.,;:!?()[]{}<>"«»“”—–-/\\|*_~`') + "]")


def _words(text: str) -> list[str]:
    return _PUNCTUATION.sub(" ", text[:SCAN_CHARS].casefold().replace("ё", "е")).split()


def _normalise(text: str) -> str:
    return " ".join(_words(text))


@dataclass(frozen=True)
class _Matcher:
    prefixes: dict[int, frozenset[str]]  # single-word entries by length
    phrases: tuple[str, ...]


@functools.lru_cache(maxsize=16)
def _matcher(entries: tuple[str, ...]) -> _Matcher:
    by_length: dict[int, set[str]] = {}
    phrases: list[str] = []
    for entry in entries:
        e = _normalise(entry)
        if " " in e:
            phrases.append(e)
        elif e:
            by_length.setdefault(len(e), set()).add(e)
    return _Matcher({n: frozenset(words) for n, words in by_length.items()}, tuple(phrases))


def danger_in(config: HotlineConfig, text: str) -> bool:
    """Whether a configured danger word begins a word of ``text``, or a phrase occurs in it.
    One set lookup per word and distinct entry length: a long mail costs what its words do."""
    matcher = _matcher(tuple(e for entries in config.danger_words.values() for e in entries))
    words = _words(text)
    if matcher.phrases:
        padded = f" {' '.join(words)} "
        if any(f" {phrase}" in padded for phrase in matcher.phrases):
            return True
    for word in set(words):
        for length, prefixes in matcher.prefixes.items():
            if word[:length] in prefixes:
                return True
    return False


def priority(config: HotlineConfig, line: str, topic: str | None, text: str) -> int:
    """URGENT for a crisis topic of the line or a danger word in any language, else NORMAL."""
    spec = config.lines.get(line)
    if spec is not None and topic is not None and topic in spec.topics and spec.topics[topic].crisis:
        return URGENT
    return URGENT if danger_in(config, text) else NORMAL
