"""Every mail of the corpus (tests/corpus/email, QUALITY.md 3) gets its expected outcome."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.email_ingest.imap import _parse

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "email"
EXPECTED: dict[str, dict[str, str]] = json.loads((CORPUS / "expected.json").read_text())


def outcome(raw: bytes) -> tuple[str, str, str, str | None, str, list[str]]:
    """(outcome, kind, text, html, sender, problems) as email_ingest decides it
    (services/email_ingest/imap.py)."""
    mail = _parse(raw)
    if isinstance(mail, str):
        return f"quarantined:{mail}", "", "", None, "", []
    return "ingested", mail.kind, mail.text, mail.html, mail.from_address, mail.problems


def test_corpus_is_large_enough_and_complete() -> None:
    files = {p.stem for p in CORPUS.glob("*.eml")}
    assert files == set(EXPECTED)
    assert len(files) >= 100


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_mail(name: str) -> None:
    want = EXPECTED[name]
    got, kind, text, html, sender, problems = outcome((CORPUS / f"{name}.eml").read_bytes())
    assert got == want["outcome"]
    if got == "ingested":
        assert kind == want["kind"]
        assert want["text"] in text
        if "sender" in want:
            assert sender == want["sender"]
        if "problems" in want:
            assert problems == want["problems"]
        for bad in (
            "<script",
            "onerror",
            "onload",
            "javascript:",
            "tracker.example",
            "evil.example",
            "<style",
        ):
            assert bad not in (html or "").lower()
