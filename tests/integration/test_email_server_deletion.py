"""The original mails leave the IMAP server after EMAIL_INGEST_DELETE_AFTER_DAYS, and only
those we stored and handed over (issue 19, item 3).

Against the session's real Dovecot, FerretDB and RabbitMQ, with a supervised watcher (see
test_email_intake_supervised.py). A mail's age on the server is its internal date, which
APPEND sets; "handed over by an earlier run" is a mail appended with our keyword. The
watcher's IDLE is observed (a spy that calls the real one), so a test knows when a cycle
of the watcher has ended instead of sleeping.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog
from aioimaplib import IMAP4, STOP_WAIT_SERVER_PUSH, Abort

from deploy.local.stack import LocalStack
from services.email_ingest import imap as imap_module
from services.email_ingest.imap import KEYWORD, QUARANTINE_KEYWORD, MailboxWatcher, parse_search
from tests.integration.helpers import Mailbox as DovecotMailbox
from tests.integration.helpers import mail, new_message_id
from tests.integration.test_email_intake_supervised import CANARY, Intake, watched

OLD = datetime(2020, 3, 1, 12, 0, tzinfo=UTC)  # years before any N days of these tests
HANDED_OVER = f"{KEYWORD} \\Seen"


def letter(subject: str) -> tuple[str, bytes]:
    mid = new_message_id()
    return mid, mail("client@example.org", "line@demo.test", f"{subject} {CANARY}", f"help {CANARY}", mid)


async def put(
    inbox: DovecotMailbox, raw: bytes, date: datetime | None = None, flags: str | None = None
) -> None:
    """Append ``raw`` with this internal date (default: now) and these flags."""
    async with inbox.session() as imap:
        assert (await imap.append(raw, mailbox="INBOX", flags=flags, date=date)).result == "OK"


async def search(imap: IMAP4, *criteria: str) -> list[int]:
    assert (await imap.select("INBOX")).result == "OK"
    found = await imap.uid_search(*criteria, charset=None)
    assert found.result == "OK", found
    return parse_search(found.lines)


async def on_server(inbox: DovecotMailbox, *mids: str) -> set[str]:
    """Which of these Message-IDs are in INBOX (a mail flagged \\Deleted but not expunged counts)."""
    async with inbox.session() as imap:
        return {mid for mid in mids if await search(imap, "HEADER", "Message-ID", mid)}


async def flagged_deleted(inbox: DovecotMailbox) -> list[int]:
    async with inbox.session() as imap:
        return await search(imap, "DELETED")


async def wait_gone(inbox: DovecotMailbox, mid: str, within: float = 60) -> None:
    """Wait (IMAP IDLE, which Dovecot ends with the EXPUNGE) until ``mid`` has left INBOX."""
    async with inbox.session() as imap:

        async def loop() -> None:
            while await search(imap, "HEADER", "Message-ID", mid):
                idle = await imap.idle_start(timeout=within)
                push = await imap.wait_server_push(timeout=within)
                imap.idle_done()
                await asyncio.wait_for(idle, 10)
                assert push != STOP_WAIT_SERVER_PUSH, "the mail was not deleted"

        await asyncio.wait_for(loop(), within)


class Cycles:
    """Counts the watcher's cycles: each one ends when it starts to IDLE."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        self.changed = asyncio.Condition()
        real = MailboxWatcher._idle

        async def idle(watcher: MailboxWatcher, imap: IMAP4) -> None:
            self.count += 1
            async with self.changed:
                self.changed.notify_all()
            await real(watcher, imap)

        monkeypatch.setattr(MailboxWatcher, "_idle", idle)

    async def ended(self, after: int, within: float = 30) -> None:
        """Wait until more than ``after`` cycles have ended."""

        async def wait() -> None:
            async with self.changed:
                await self.changed.wait_for(lambda: self.count > after)

        await asyncio.wait_for(wait(), within)


async def send(intake: Intake, subject: str) -> str:
    """A mail arriving now, and its hand-over awaited."""
    mid, raw = letter(subject)
    await put(intake.inbox, raw)
    await intake.wait_received(mid)
    return mid


def deleted(intake: Intake) -> float:
    value = intake.registry.get_sample_value("hotline_mail_deleted_total", {"mailbox": intake.name})
    return value or 0.0


async def test_only_handed_over_mail_older_than_the_setting_is_deleted_at_start(stack: LocalStack) -> None:
    """At start: the old handed-over mail goes; a recent one, an old quarantined one (never
    stored if it was too large) and an old one not yet handed over stay."""
    old, old_raw = letter("old, handed over")
    quarantined, quarantined_raw = letter("old, quarantined")
    recent, recent_raw = letter("recent, handed over")
    unread, unread_raw = letter("old, arriving now")

    async def prepare(inbox: DovecotMailbox) -> None:
        await put(inbox, old_raw, OLD, HANDED_OVER)
        await put(inbox, quarantined_raw, OLD, f"{KEYWORD} {QUARANTINE_KEYWORD}")
        await put(inbox, recent_raw, None, HANDED_OVER)
        await put(inbox, unread_raw, OLD)

    with structlog.testing.capture_logs() as logs:
        async with watched(stack, prepare, delete_after_days=30) as intake:
            # Handed over by the synchronisation, which follows the deletion pass.
            await intake.wait_received(unread)
            left = await on_server(intake.inbox, old, quarantined, recent, unread)
            count = deleted(intake)
    assert left == {quarantined, recent, unread}
    assert count == 1
    (done,) = [e for e in logs if e["event"] == "imap_old_mail_deleted"]
    assert done == {
        "event": "imap_old_mail_deleted",
        "log_level": "info",
        "mailbox": intake.name,
        "count": 1,
        "days": 30,
    }
    assert CANARY not in repr(logs) and "client@example.org" not in repr(logs)


async def test_an_old_mail_arriving_now_is_handed_over_first_and_deleted_by_a_later_pass(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    cycles = Cycles(monkeypatch)
    async with watched(stack, delete_after_days=30) as intake:
        await cycles.ended(0)  # the pass of the start is over
        mid, raw = letter("old, arriving now")
        before = cycles.count
        await put(intake.inbox, raw, OLD)
        await intake.wait_received(mid)
        await cycles.ended(before)  # its cycle has ended: it is flagged as handed over
        # A new cycle: its pass is not due (one a day), so the old mail stays for now.
        first = await send(intake, "wakes the watcher")
        assert await on_server(intake.inbox, mid) == {mid}
        assert deleted(intake) == 0
        monkeypatch.setattr(imap_module, "DELETE_EVERY_SECONDS", 0.0)  # a day later
        second = await send(intake, "wakes it a day later")
        await wait_gone(intake.inbox, mid)
        assert await on_server(intake.inbox, first, second) == {first, second}
        assert deleted(intake) == 1


async def test_with_the_setting_0_nothing_is_deleted(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(imap_module, "DELETE_EVERY_SECONDS", 0.0)  # a pass, if any, every cycle
    cycles = Cycles(monkeypatch)
    old, old_raw = letter("old, handed over")
    unread, unread_raw = letter("old, arriving now")

    async def prepare(inbox: DovecotMailbox) -> None:
        await put(inbox, old_raw, OLD, HANDED_OVER)
        await put(inbox, unread_raw, OLD)

    with structlog.testing.capture_logs() as logs:
        async with watched(stack, prepare, delete_after_days=0) as intake:
            await intake.wait_received(unread)
            await cycles.ended(0)
            later = await send(intake, "a later cycle")
            left = await on_server(intake.inbox, old, unread, later)
            count = deleted(intake)
    assert left == {old, unread, later}
    assert count == 0
    assert not [
        e for e in logs if e["event"].startswith("imap_delete") or e["event"] == "imap_old_mail_deleted"
    ]


async def test_a_server_without_uidplus_keeps_every_mail_and_says_so_once(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain EXPUNGE would also remove what another client flagged \\Deleted: without
    UID EXPUNGE nothing is flagged, nothing deleted. (Dovecot has UIDPLUS: the watcher is
    told it has not.)"""
    monkeypatch.setattr(imap_module, "DELETE_EVERY_SECONDS", 0.0)
    real = IMAP4.has_capability
    monkeypatch.setattr(IMAP4, "has_capability", lambda self, cap: cap != "UIDPLUS" and real(self, cap))
    cycles = Cycles(monkeypatch)
    old, old_raw = letter("old, handed over")

    async def prepare(inbox: DovecotMailbox) -> None:
        await put(inbox, old_raw, OLD, HANDED_OVER)

    with structlog.testing.capture_logs() as logs:
        async with watched(stack, prepare, delete_after_days=30) as intake:
            await cycles.ended(0)
            await send(intake, "a second cycle")
            left = await on_server(intake.inbox, old)
            marked = await flagged_deleted(intake.inbox)
    assert left == {old} and marked == []
    warned = [e for e in logs if e["event"] == "imap_delete_needs_uidplus"]
    assert warned == [
        {"event": "imap_delete_needs_uidplus", "log_level": "warning", "mailbox": intake.name, "days": 30}
    ]


@pytest.mark.parametrize(
    ("failure", "fields"),
    [
        (Abort(f"server said: {CANARY}"), {"error": "Abort"}),
        (
            ConnectionResetError(errno.ECONNRESET, CANARY),
            {"error": "ConnectionResetError", "errno": errno.ECONNRESET},
        ),
    ],
)
async def test_a_lost_connection_is_logged_without_the_exceptions_text(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch, failure: Exception, fields: dict[str, Any]
) -> None:
    real: Callable[..., Awaitable[Any]] = IMAP4.uid_search
    calls = 0

    async def uid_search(self: IMAP4, *criteria: str, charset: str | None = "utf-8") -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise failure
        return await real(self, *criteria, charset=charset)

    monkeypatch.setattr(IMAP4, "uid_search", uid_search)
    with structlog.testing.capture_logs() as logs:
        async with watched(stack) as intake:
            await send(intake, "after a reconnect")
    (lost,) = [e for e in logs if e["event"] == "imap_connection_lost"]
    assert {k: lost[k] for k in fields} == fields and "where" in lost
    assert "detail" not in lost
    assert CANARY not in repr(logs)


async def test_a_refused_deletion_pass_does_not_hold_up_the_intake(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refused(imap: IMAP4, before: Any, cmd: Any) -> int:
        raise imap_module.ImapProtocolError("UID EXPUNGE")

    monkeypatch.setattr(imap_module, "delete_handed_over", refused)
    with structlog.testing.capture_logs() as logs:
        async with watched(stack, delete_after_days=30) as intake:
            await send(intake, "while deleting fails")
    events = [e["event"] for e in logs]
    assert events.count("imap_delete_refused") == 1
    assert "imap_connection_lost" not in events
