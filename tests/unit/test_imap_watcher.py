"""Pure parts of the IMAP watcher: what its log lines may say, the dates it searches by."""

from __future__ import annotations

import errno
from datetime import date

import pytest
from aioimaplib import Abort

from services.email_ingest.imap import ConnectionLost, ImapProtocolError, lost_fields, search_date

CANARY = "CANARY-what-a-person-wrote"


def raised(exc: Exception) -> Exception:
    try:
        raise exc
    except Exception as caught:
        return caught


@pytest.mark.parametrize(
    ("exc", "ours"),
    [
        (ConnectionLost("watchdog"), {"reason": "watchdog"}),
        (ConnectionLost("closed during IDLE"), {"reason": "closed during IDLE"}),
        (ImapProtocolError("UID EXPUNGE"), {"command": "UID EXPUNGE"}),
        (ConnectionRefusedError(errno.ECONNREFUSED, CANARY), {"errno": errno.ECONNREFUSED}),
        (TimeoutError(CANARY), {}),
        (Abort(f"server said {CANARY}"), {}),
    ],
)
def test_a_lost_session_is_told_by_type_place_and_our_own_words(
    exc: Exception, ours: dict[str, object]
) -> None:
    fields = lost_fields(raised(exc))
    assert fields == {"error": type(exc).__name__, "where": fields["where"], **ours}
    assert "test_imap_watcher.py" in fields["where"]
    assert CANARY not in repr(fields)


@pytest.mark.parametrize(
    ("day", "text"),
    [(date(2026, 11, 7), "7-Nov-2026"), (date(2027, 1, 31), "31-Jan-2027"), (date(2026, 5, 1), "1-May-2026")],
)
def test_search_dates_are_rfc_3501_dates(day: date, text: str) -> None:
    assert search_date(day) == text
