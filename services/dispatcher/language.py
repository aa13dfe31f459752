"""The language a mail is written in, so its automatic answers are in it.

A chat says its language (the widget's choice, the Telegram client's); a mail does not. The
dispatcher detects it once, from the subject and the start of the text of the mail that opens
a thread, with Lingua (a maintained detector that is accurate on short texts and tells
Belarusian from Russian), and the thread keeps it as a chat thread does.

Candidates are the configured languages and their near neighbours (a Ukrainian or Polish mail
is recognised as such, not taken for Russian or Belarusian); a mail in a language we do not
answer in, or too short or too mixed to tell, gets no language, and the line's first language
answers it as before. Detection runs off the event loop: the models are loaded at start
(:meth:`MailLanguage.warm`, about 0.1 s), then it takes a few milliseconds a mail.
Nothing of the text is logged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from lingua import IsoCode639_1, LanguageDetector, LanguageDetectorBuilder

# Read of a mail: enough to tell its language, bounded whatever the mail's size.
MAX_CHARS = 2000
# Languages a hotline's clients also write in, detected so they are not mistaken for ours.
NEIGHBOURS = ("uk", "pl", "lt", "lv", "de")
# How far the best language must be ahead of the next (Lingua's relative distance, 0-1):
# below it the text is too short or too mixed and no language is chosen.
MIN_DISTANCE = 0.1


def _code(code: str) -> IsoCode639_1 | None:
    try:
        return IsoCode639_1.from_str(code)
    except ValueError:
        return None


class MailLanguage:
    """Detects which of ``languages`` (ISO 639-1) a mail is written in."""

    def __init__(self, languages: Sequence[str]) -> None:
        self.languages = [lang for lang in languages if _code(lang) is not None]
        self._codes = {c for c in (_code(lang) for lang in [*self.languages, *NEIGHBOURS]) if c is not None}
        self._detector: LanguageDetector | None = None

    def _built(self) -> LanguageDetector | None:
        if self._detector is None and len(self._codes) >= 2:  # Lingua compares two at least
            self._detector = (
                LanguageDetectorBuilder.from_iso_codes_639_1(*self._codes)
                .with_minimum_relative_distance(MIN_DISTANCE)
                # Trigram models only: about 0.1 s of CPU to load and a few MB, against 2.5 s and
                # some 100 MB for the full ones, and the same answers on what clients write
                # (tests/unit/test_mail_language.py); every dispatcher start pays the load.
                .with_low_accuracy_mode()
                .with_preloaded_language_models()
                .build()
            )
        return self._detector

    def detect(self, subject: str | None, text: str | None) -> str | None:
        """The configured language the mail is written in, or None (CPU-bound: see :meth:`of`)."""
        sample = "\n".join(part for part in (subject, text) if part)[:MAX_CHARS]
        detector = self._built()
        if detector is None or not sample.strip():
            return None
        found = detector.detect_language_of(sample)
        if found is None:
            return None
        code = found.iso_code_639_1.name.lower()
        return code if code in self.languages else None

    async def of(self, subject: str | None, text: str | None) -> str | None:
        """:meth:`detect` in a worker thread, so the event loop never waits on it."""
        return await asyncio.to_thread(self.detect, subject, text)

    async def warm(self) -> None:
        """Load the models now (at start), not on the first mail."""
        await asyncio.to_thread(self._built)
