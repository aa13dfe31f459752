"""Operators' view of quarantined mail, and replay after a fix.

    python -m services.email_ingest.quarantine list
    python -m services.email_ingest.quarantine replay <source id>

Uses the service's own settings (``EMAIL_INGEST_*``). ``list`` prints one JSON object per
quarantined mail: source id, mailbox, UID, reason, size, when; never its content. ``replay``
opens the stored raw mail (sealed under its own data key, with the master key of the
settings; a mail stored before sealing is read as it is), parses it again (with the parser
of this version) and, if it now reads, publishes it exactly as the watcher would (same source
id, so at most once in a thread) and marks it published; otherwise it prints the reason and exits 1.
The same replay runs in the intake when a supervisor asks for it in the console
(:class:`ReplayRequests`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from conversations.outbound import periodically
from conversations.rawmail import Erased, take_replay_requests
from conversations.vault import Vault, open_transit_key
from services.email_ingest.imap import Mailbox, mailboxes_from
from services.email_ingest.inbound import is_backlog, to_envelope
from services.email_ingest.mime import Unparseable, parse_mail
from services.email_ingest.rawstore import QUARANTINED, REPLAYED, RawStore
from services.email_ingest.settings import EmailIngestSettings
from shared import topology
from shared.broker import Broker, BrokerMetrics
from shared.config import load_config
from shared.envelope import Channel, utcnow
from shared.logs import get_logger
from shared.mongo import make_client
from shared.settings import load_settings
from shared.supervise import Heartbeat
from shared.transit import for_master_keys

log = get_logger(__name__)


async def _list(settings: EmailIngestSettings) -> int:
    client = make_client(settings.mongo_url.get_secret_value())
    try:
        store = RawStore(client[settings.mongo_database])
        for doc in await store.quarantined(limit=1000):
            print(
                json.dumps(
                    {
                        "source_id": doc["_id"],
                        "mailbox": doc.get("mailbox"),
                        "uid": doc.get("uid"),
                        "reason": doc.get("reason"),
                        "size": doc.get("size"),
                        "stored_at": doc["stored_at"].isoformat() if doc.get("stored_at") else None,
                    }
                )
            )
        return 0
    finally:
        await client.close()


@dataclass(frozen=True)
class Replayed:
    """Outcome of :func:`replay`: ``message_id`` when it was published, else ``why`` not."""

    message_id: str | None = None
    why: str | None = None


async def replay(
    store: RawStore, broker: Broker, boxes: dict[str, Mailbox], source_id: str, max_attachment_bytes: int
) -> Replayed:
    """Parse a quarantined mail again (with the parser of this version) and, if it now reads,
    publish it exactly as the watcher would (same source id, so at most once in a thread) and
    mark it replayed. ``boxes``: the configured mailboxes by name. Who asks: this module's
    ``replay`` command and the intake's pass over the replays supervisors ask for
    (:class:`ReplayRequests`)."""
    doc = await store.get(source_id)
    if doc is None or doc.get("status") != QUARANTINED:
        return Replayed(why="not quarantined")
    if doc.get("raw") is None:
        kept = doc.get("reason")
        reason = "cleared by retention" if doc.get("text_deleted") else f"never kept ({kept})"
        return Replayed(why=f"{reason}; it is still on the server")
    try:
        raw = await store.raw_bytes(doc)
    except Erased:
        return Replayed(why="erased (its key was deleted); it is still on the server")
    assert raw is not None
    box = boxes.get(doc["mailbox"])
    if box is None:
        return Replayed(why=f"mailbox {doc['mailbox']} is not configured")
    line = box.line
    try:
        mail = parse_mail(raw)
    except Unparseable as exc:
        return Replayed(why=f"still unreadable: {exc.reason}")
    attachments = await store.store_attachments(doc, mail.attachments, max_attachment_bytes)
    now = utcnow()
    internaldate = doc.get("internaldate")
    try:
        envelope = to_envelope(
            mail,
            source_id=source_id,
            line=line,
            mailbox=doc["mailbox"],
            now=now,
            internaldate=internaldate,
            # A replayed mail waited in quarantine: never auto-answer it.
            backlog=True if internaldate is None else is_backlog(internaldate, now, 0),
            attachments=attachments,
            trusted_authserv_id=box.trusted_authserv_id,
        )
    except Unparseable as exc:  # the envelope still cannot carry it
        return Replayed(why=f"still unreadable: {exc.reason}")
    await broker.publish(
        envelope,
        topology.INBOUND,
        topology.inbound_key(Channel.EMAIL, line),
        message_id=envelope.message_id,
        headers={"channel": Channel.EMAIL.value, "line": line},
    )
    await store.mark(source_id, REPLAYED)
    return Replayed(message_id=envelope.message_id)


class ReplayRequests:
    """The intake's pass over the replays supervisors ask for in the console
    (conversations/rawmail.py, ``mail_replays``): each is taken by one process, replayed by
    :func:`replay`, and answered on the mail: ``replayed``, or ``last_replay`` with why not
    (never the mail's content)."""

    def __init__(self, store: RawStore, broker: Broker, boxes: dict[str, Mailbox], max_attachment_bytes: int):
        self.store = store
        self.broker = broker
        self.boxes = boxes
        self.max_attachment_bytes = max_attachment_bytes

    async def run(self, every: float, heartbeat: Heartbeat) -> None:
        # A period: a request is a document another service writes; there is no event to await.
        await periodically(self.check, every, heartbeat, "quarantine_replay_pass_failed")

    async def check(self) -> int:
        """Replay every request waiting; return how many mails were published."""
        published = 0
        for source_id in await take_replay_requests(self.store.raw.database):
            done = await replay(self.store, self.broker, self.boxes, source_id, self.max_attachment_bytes)
            outcome = "replayed" if done.message_id else (done.why or "not replayed")
            if done.message_id is None:
                await self.store.replay_failed(source_id, outcome)
            else:
                published += 1
            log.info("quarantine_replayed", source_id=source_id, outcome=outcome)
        return published


async def _replay(settings: EmailIngestSettings, source_id: str) -> int:
    config = load_config(settings.config_path)
    boxes = {box.name: box for box in mailboxes_from(settings, config)}
    client = make_client(settings.mongo_url.get_secret_value())
    transit = for_master_keys(settings.master_keys())
    broker = Broker(
        settings.amqp_url.get_secret_value(), 1, BrokerMetrics(CollectorRegistry()), "quarantine", transit
    )
    try:
        vault = Vault(client, settings.key_vault_namespace(settings.mongo_database), settings.master_keys())
        store = RawStore(client[settings.mongo_database], vault)
        doc = await store.get(source_id)
        if doc is not None and doc.get("status") == QUARANTINED and doc.get("raw") is not None:
            await open_transit_key(vault, transit, None, settings.startup_timeout)
            await broker.connect()
        done = await replay(store, broker, boxes, source_id, settings.max_attachment_bytes)
        if done.message_id is None:
            print(f"{source_id}: {done.why}", file=sys.stderr)
            return 1
        print(json.dumps({"source_id": source_id, "message_id": done.message_id, "status": REPLAYED}))
        return 0
    finally:
        await broker.close()
        await client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.email_ingest.quarantine")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list quarantined mails (facts only)")
    replay = sub.add_parser("replay", help="parse a quarantined mail again and publish it")
    replay.add_argument("source_id")
    args = parser.parse_args(argv)
    settings = load_settings(EmailIngestSettings)
    if args.command == "list":
        return asyncio.run(_list(settings))
    return asyncio.run(_replay(settings, args.source_id))


if __name__ == "__main__":
    raise SystemExit(main())
