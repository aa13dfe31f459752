"""The fallback for an IMAP server without IDLE (issue 20 item 6): email_ingest polls it every
``EMAIL_INGEST_POLL_SECONDS``, against the real Dovecot, RabbitMQ and FerretDB.

Dovecot offers IDLE, so email_ingest reaches it here through a proxy that takes IDLE out of
every capability the server announces (the greeting's and the LOGIN answer's ``[CAPABILITY]``,
the ``* CAPABILITY`` line; tests/reliability/imap_proxy.py). The connection is plain IMAP on
loopback, as in the local stack, so the proxy reads and rewrites it.
"""

from __future__ import annotations

import asyncio
import re
import urllib.request

from tests.conftest import Gateway
from tests.integration.email_support import database, restart_email_ingest, supervisor
from tests.integration.helpers import Mailbox, mail, new_message_id
from tests.reliability.imap_proxy import ImapProxy

POLL = 2.0
# From a mail's arrival to its thread in the queue, beyond the wait for the next poll: parsing,
# storing, the broker and the dispatcher on a busy two-core machine (docs/email.md: p95 ~0.5 s).
MARGIN = 5.0
_BODY_FETCH = re.compile(rb"UID FETCH ([0-9,:]+) \(UID BODY\.PEEK\[\]\)", re.IGNORECASE)


def metric(port: int, name: str) -> list[tuple[str, float]]:
    """Every sample of ``name`` on a service's /metrics: (labels, value)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    found = re.findall(rf"^{name}(\{{[^}}]*\}})? ([0-9.e+-]+)$", text, re.MULTILINE)
    return [(labels, float(value)) for labels, value in found]


def body_fetches(sent: bytes) -> list[int]:
    """The UIDs of every body fetch a client sent (each UID as often as it was asked for)."""
    return [int(uid) for uids in _BODY_FETCH.findall(sent) for uid in uids.split(b",")]


async def test_a_server_without_idle_is_polled_and_each_mail_fetched_once(gateway: Gateway) -> None:
    async with ImapProxy(gateway.urls.imap_port, hide={"IDLE"}) as proxy:
        await asyncio.to_thread(
            restart_email_ingest, gateway, IMAP_PORT=str(proxy.port), POLL_SECONDS=str(POLL)
        )
        sofia = await supervisor(gateway)
        client, db = database(gateway)
        # Mail is delivered to the mailbox on Dovecot itself, not through the proxy.
        inbox = Mailbox("127.0.0.1", gateway.urls.imap_port, gateway.line_mailbox)
        try:
            # The first mail: its thread shows that the watcher is connected (through the
            # proxy) and synchronising; how soon after the restart is not the point here.
            await inbox.append(mail("c0@example.org", "h@demo.test", "s", "first", new_message_id()))
            await sofia.wait_event(lambda e: e["name"] == "ThreadQueued", within=60)
            assert proxy.hidden >= 2  # Dovecot announced IDLE (greeting, CAPABILITY, LOGIN)
            assert b"IDLE" not in bytes(proxy.from_client).upper()  # never tried on this server
            # The watcher says it polls, in its log and its metrics.
            polling = [line for line in gateway.logs().splitlines() if "imap_polling" in line]
            assert polling and all(f"{POLL}" in line for line in polling), polling
            assert [
                v
                for _, v in await asyncio.to_thread(
                    metric, gateway.ports["email_ingest"], "hotline_imap_polling"
                )
            ] == [1.0]

            # Each later mail reaches the queue by the next poll: within POLL plus the margin.
            for n in (1, 2):
                await inbox.append(
                    mail(f"c{n}@example.org", "h@demo.test", "s", f"mail {n}", new_message_id())
                )
                await sofia.wait_event(lambda e: e["name"] == "ThreadQueued", within=POLL + MARGIN)

            # Polled again and again, and each mail fetched once: by UID, never twice.
            assert bytes(proxy.from_client).upper().count(b"UID SEARCH") >= 3
            assert sorted(body_fetches(bytes(proxy.from_client))) == [1, 2, 3]
            assert await db["mail_raw"].count_documents({}) == 3
            assert await db["messages"].count_documents({"direction": "in"}) == 3
            assert await db["threads"].count_documents({}) == 3
            refetched = await asyncio.to_thread(
                metric, gateway.ports["email_ingest"], "hotline_mail_refetched_total"
            )
            assert [v for _, v in refetched] == [0.0]
        finally:
            await sofia.close()
            await client.close()
