"""Which supervisor sees which quarantined mail (services/store/quarantine.py): its line, and
a mailbox of one organisation only for that organisation's supervisors (and those of none)."""

from __future__ import annotations

from typing import Any

import pytest

from services.store.auth import User
from services.store.quarantine import mail_view, sees_mail
from shared.config import HotlineConfig, load_config
from shared.settings import DEFAULT_CONFIG_PATH


def _config() -> HotlineConfig:
    raw = load_config(DEFAULT_CONFIG_PATH).model_dump()
    box = {"imap_host": "127.0.0.1", "user": "u", "password_env": "PW"}
    raw["mailboxes"] = {
        "lastrada": {**box, "line": "113", "organisation": "lastrada"},
        "shared113": {**box, "line": "113"},
        "dv": {**box, "line": "dv", "organisation": "gp"},
    }
    return HotlineConfig.model_validate(raw)


def _supervisor(organisation: str | None, lines: list[str]) -> User:
    return User("s", "s", "supervisor", organisation, lines)


SUPERVISORS = {
    "national": _supervisor(None, ["113", "dv"]),
    "lastrada": _supervisor("lastrada", ["113"]),
    "bwc": _supervisor("bwc", ["113"]),
    "gp": _supervisor("gp", ["dv"]),
}


@pytest.mark.parametrize(
    ("mail", "who"),
    [
        ({"mailbox": "lastrada", "line": "113"}, {"national", "lastrada"}),
        ({"mailbox": "shared113", "line": "113"}, {"national", "lastrada", "bwc"}),
        ({"mailbox": "dv", "line": "dv"}, {"national", "gp"}),
        # Recorded before its line was: the configured mailbox's line.
        ({"mailbox": "lastrada"}, {"national", "lastrada"}),
        # The environment's mailbox, line recorded: every supervisor of the line.
        ({"mailbox": "hotline@127.0.0.1:143/INBOX", "line": "113"}, {"national", "lastrada", "bwc"}),
        # ... and recorded before its line was: supervisors of no organisation only.
        ({"mailbox": "hotline@127.0.0.1:143/INBOX"}, {"national"}),
    ],
)
def test_a_quarantined_mail_shows_to_the_supervisors_of_its_line_and_organisation(
    mail: dict[str, Any], who: set[str]
) -> None:
    config = _config()
    seen = {name for name, user in SUPERVISORS.items() if sees_mail(config, user, mail)}
    assert seen == who


def test_the_list_shows_facts_never_content() -> None:
    view = mail_view(
        {
            "_id": "imap:x:1:2",
            "mailbox": "x",
            "line": "113",
            "reason": "too_many_parts",
            "size": 10,
            "raw": b"secret",
            "client_key": "k",
            "subject": "secret",
        }
    )
    assert set(view) == {
        "source_id",
        "mailbox",
        "line",
        "reason",
        "size",
        "stored_at",
        "kept",
        "replay_requested",
        "last_replay",
    }
