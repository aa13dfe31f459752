"""Operators' view of quarantined mail, and replay after a fix.

    python -m services.email_ingest.quarantine list
    python -m services.email_ingest.quarantine replay <source id>

Uses the service's own settings (``EMAIL_INGEST_*``). ``list`` prints one JSON object per
quarantined mail: source id, mailbox, UID, reason, size, when; never its content. ``replay``
opens the stored raw mail (sealed under its own data key, with the master key of the
settings; a mail stored before sealing is read as it is), parses it again (with the parser
of this version) and, if it now reads, publishes it exactly as the watcher would (same source
id, so at most once in a thread) and marks it published; otherwise it prints the reason and exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from prometheus_client import CollectorRegistry

from conversations.rawmail import Erased
from conversations.vault import Vault
from services.email_ingest.imap import mailboxes_from
from services.email_ingest.inbound import is_backlog, to_envelope
from services.email_ingest.mime import Unparseable, parse_mail
from services.email_ingest.rawstore import QUARANTINED, REPLAYED, RawStore
from services.email_ingest.settings import EmailIngestSettings
from shared import topology
from shared.broker import Broker, BrokerMetrics
from shared.config import load_config
from shared.envelope import Channel, utcnow
from shared.mongo import make_client
from shared.settings import load_settings
from shared.transit import TransitSeal


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


async def _replay(settings: EmailIngestSettings, source_id: str) -> int:
    config = load_config(settings.config_path)
    lines = {box.name: box.line for box in mailboxes_from(settings, config)}
    client = make_client(settings.mongo_url.get_secret_value())
    transit = TransitSeal(*settings.master_keys())
    broker = Broker(
        settings.amqp_url.get_secret_value(), 1, BrokerMetrics(CollectorRegistry()), "quarantine", transit
    )
    try:
        vault = Vault(client, settings.key_vault_namespace(settings.mongo_database), *settings.master_keys())
        store = RawStore(client[settings.mongo_database], vault)
        doc = await store.get(source_id)
        if doc is None or doc.get("status") != QUARANTINED:
            print(f"{source_id}: not quarantined", file=sys.stderr)
            return 1
        if doc.get("raw") is None:
            kept = doc.get("reason")
            reason = "cleared by retention" if doc.get("text_deleted") else f"never kept ({kept})"
            print(f"{source_id}: {reason}; it is still on the server", file=sys.stderr)
            return 1
        try:
            raw = await store.raw_bytes(doc)
        except Erased:
            print(f"{source_id}: erased (its key was deleted); it is still on the server", file=sys.stderr)
            return 1
        assert raw is not None
        line = lines.get(doc["mailbox"])
        if line is None:
            print(f"{source_id}: mailbox {doc['mailbox']} is not configured", file=sys.stderr)
            return 1
        try:
            mail = parse_mail(raw)
        except Unparseable as exc:
            print(f"{source_id}: still unreadable: {exc.reason}", file=sys.stderr)
            return 1
        if not mail.from_address:
            print(f"{source_id}: still unreadable: no_sender", file=sys.stderr)
            return 1
        attachments = await store.store_attachments(doc, mail.attachments, settings.max_attachment_bytes)
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
            )
        except Unparseable as exc:  # the envelope still cannot carry it
            print(f"{source_id}: still unreadable: {exc.reason}", file=sys.stderr)
            return 1
        await broker.connect()
        await broker.publish(
            envelope,
            topology.INBOUND,
            topology.inbound_key(Channel.EMAIL, line),
            message_id=envelope.message_id,
            headers={"channel": Channel.EMAIL.value, "line": line},
        )
        await store.mark(source_id, REPLAYED)
        print(json.dumps({"source_id": source_id, "message_id": envelope.message_id, "status": REPLAYED}))
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
