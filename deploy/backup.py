"""Backup and restore of the gateway's state: the MongoDB database and the broker definitions.

    python -m deploy.backup dump    --out backups/2026-11-22          # a directory
    python -m deploy.backup restore --from backups/2026-11-22 [--force]

Settings come from the environment: HOTLINE_MONGO_URL, HOTLINE_MONGO_DATABASE (default
hotline), and for the broker definitions HOTLINE_RABBITMQ_API (the management API, e.g.
http://user:pass@rabbitmq:15672) with HOTLINE_RABBITMQ_VHOST (default "/"); leave the API unset
to skip the broker.

A dump is one JSON-lines file per collection (MongoDB extended JSON, so dates and ids keep
their types), the index definitions, the broker definitions, and a manifest with counts. Messages
in flight in the broker are not part of it: they belong to the sources (IMAP marks a mail done
only after it is stored; chat clients resend what was not acknowledged).

Restore goes into an empty database only (``--force`` to add to a non-empty one), recreates the
indexes first so unique keys hold from the first document, then inserts in batches.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bson import json_util
from pymongo.asynchronous.database import AsyncDatabase

from shared.envelope import utcnow
from shared.mongo import make_client

FORMAT = 1
BATCH = 500


@dataclass(frozen=True)
class BrokerApi:
    """The RabbitMQ management API of one vhost."""

    url: str
    vhost: str = "/"

    def _request(self, method: str, path: str, body: bytes | None = None) -> bytes:
        parts = urllib.parse.urlsplit(self.url)
        # Credentials go in a header, not in the URL urllib opens.
        netloc = parts.netloc.rsplit("@", 1)[-1]
        base = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        request = urllib.request.Request(  # noqa: S310 (an operator-given http URL)
            f"{base}{path}", data=body, method=method, headers={"Content-Type": "application/json"}
        )
        if parts.username:
            token = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
            request.add_header("Authorization", "Basic " + base64.b64encode(token.encode()).decode())
        with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310
            return bytes(resp.read())

    def export(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(
            self._request("GET", f"/api/definitions/{urllib.parse.quote(self.vhost, safe='')}")
        )
        return data

    def load(self, definitions: dict[str, Any]) -> None:
        self._request(
            "POST",
            f"/api/definitions/{urllib.parse.quote(self.vhost, safe='')}",
            json.dumps(definitions).encode(),
        )


async def dump(db: AsyncDatabase[dict[str, Any]], out: Path, broker: BrokerApi | None) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=False)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "database": db.name,
        "at": utcnow().isoformat(),
        "collections": {},
    }
    for name in sorted(await db.list_collection_names()):
        collection = db[name]
        count = 0
        with (out / f"{name}.jsonl").open("w", encoding="utf-8") as f:
            async for doc in collection.find({}).sort("_id", 1):
                f.write(json_util.dumps(doc, json_options=json_util.CANONICAL_JSON_OPTIONS) + "\n")
                count += 1
        indexes = [
            {k: v for k, v in spec.items() if k not in {"v", "ns"}}
            async for spec in await collection.list_indexes()
            if spec["name"] != "_id_"
        ]
        (out / f"{name}.indexes.json").write_text(json_util.dumps(indexes), encoding="utf-8")
        manifest["collections"][name] = count
    if broker is not None:
        (out / "rabbitmq-definitions.json").write_text(
            json.dumps(broker.export(), indent=2), encoding="utf-8"
        )
        manifest["broker_vhost"] = broker.vhost
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return manifest


class NotEmpty(RuntimeError):
    pass


async def restore(
    db: AsyncDatabase[dict[str, Any]], source: Path, broker: BrokerApi | None, force: bool = False
) -> dict[str, int]:
    manifest = json.loads((source / "manifest.json").read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT:
        raise ValueError(f"unknown backup format {manifest.get('format')!r}")
    existing = await db.list_collection_names()
    if existing and not force:
        raise NotEmpty(
            f"database {db.name} is not empty ({', '.join(sorted(existing))}); use --force to add to it"
        )
    restored: dict[str, int] = {}
    for name, expected in manifest["collections"].items():
        collection = db[name]
        for spec in json_util.loads((source / f"{name}.indexes.json").read_text(encoding="utf-8")):
            keys = list(spec.pop("key").items())
            await collection.create_index(keys, **spec)
        count, batch = 0, []
        with (source / f"{name}.jsonl").open(encoding="utf-8") as f:
            for line in f:
                batch.append(json_util.loads(line))
                if len(batch) >= BATCH:
                    await collection.insert_many(batch, ordered=True)
                    count, batch = count + len(batch), []
        if batch:
            await collection.insert_many(batch, ordered=True)
            count += len(batch)
        if count != expected:
            raise ValueError(f"{name}: restored {count} documents, the manifest says {expected}")
        restored[name] = count
    definitions = source / "rabbitmq-definitions.json"
    if broker is not None and definitions.exists():
        broker.load(json.loads(definitions.read_text(encoding="utf-8")))
    return restored


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m deploy.backup")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump", help="write a backup directory")
    d.add_argument("--out", type=Path, required=True)
    r = sub.add_parser("restore", help="restore a backup directory into an empty database")
    r.add_argument("--from", dest="source", type=Path, required=True)
    r.add_argument("--force", action="store_true", help="restore into a database that has data")
    args = parser.parse_args(argv)
    mongo_url = os.environ.get("HOTLINE_MONGO_URL")
    if not mongo_url:
        parser.error("set HOTLINE_MONGO_URL")
    api = os.environ.get("HOTLINE_RABBITMQ_API")
    broker = BrokerApi(api, os.environ.get("HOTLINE_RABBITMQ_VHOST", "/")) if api else None

    async def run() -> None:
        client = make_client(mongo_url)
        try:
            db = client[os.environ.get("HOTLINE_MONGO_DATABASE", "hotline")]
            if args.command == "dump":
                manifest = await dump(db, args.out, broker)
                print(json.dumps(manifest["collections"]))
            else:
                print(json.dumps(await restore(db, args.source, broker, args.force)))
        finally:
            await client.close()

    try:
        asyncio.run(run())
    except NotEmpty as exc:
        print(f"not restored: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
