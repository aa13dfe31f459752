"""How urgent a conversation is. Pure: no I/O.

Matching is by words, not regular expressions, so untrusted text cannot make it backtrack:
a configured word matches every word of the text that starts with it ("избива" matches
"избивает"), and an entry with a space matches as a phrase.
"""

from __future__ import annotations

from shared.config import HotlineConfig

NORMAL = 0
URGENT = 10
ESCALATED = 20

# Only the beginning of a long text is scanned: danger is said early, and the cost stays bounded.
SCAN_CHARS = 20_000

_PUNCTUATION = str.maketrans({c: " " for c in '.,;:!?()[]{}<>"«»“”—–-/\\|*_~`\n\r\t'})


def _normalise(text: str) -> str:
    return " ".join(text[:SCAN_CHARS].casefold().replace("ё", "е").translate(_PUNCTUATION).split())


def danger_in(config: HotlineConfig, text: str) -> bool:
    normal = _normalise(text)
    words = normal.split()
    padded = f" {normal} "
    for entries in config.danger_words.values():
        for entry in entries:
            e = _normalise(entry)
            if not e:
                continue
            if " " in e:
                if f" {e}" in padded:
                    return True
            elif any(w.startswith(e) for w in words):
                return True
    return False


def priority(config: HotlineConfig, line: str, topic: str | None, text: str) -> int:
    """URGENT for a crisis topic of the line or a danger word in any language, else NORMAL."""
    spec = config.lines.get(line)
    if spec is not None and topic is not None and topic in spec.topics and spec.topics[topic].crisis:
        return URGENT
    return URGENT if danger_in(config, text) else NORMAL
