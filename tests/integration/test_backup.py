"""Backup and restore round trip: a database and the broker definitions restored into empty
ones come back the same, with their unique keys enforced."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import aio_pika
import pytest
from pymongo import MongoClient
from pymongo.errors import DuplicateKeyError

from conversations.identity import new_id, new_reply_token
from conversations.repository import Repository
from deploy.backup import BrokerApi, NotEmpty, dump, restore
from deploy.local.stack import LocalStack
from services.store.auth import hash_password
from services.store.migrations import MIGRATIONS, migrate, schema_version
from shared import topology
from shared.envelope import utcnow
from shared.mongo import make_client
from tests.conftest import ROOT


async def _fill(repo: Repository) -> None:
    await repo.ensure_indexes()
    await repo.upsert_consultant(
        {
            "_id": "anna",
            "name": "Анна",
            "role": "consultant",
            "organisation": "lastrada",
            "lines": ["113"],
            "password_hash": hash_password("anna-demo-pass"),
        }
    )
    for i in range(1200):  # more than one insert batch
        thread = {
            "_id": new_id(),
            "key": f"chat:{i}",
            "channel": "chat",
            "line": "dv",
            "queue": "gp-dv",
            "organisations": ["gp"],
            "status": "closed" if i % 3 else "waiting",
            "priority": i % 2,
            "client": {"address": f"s{i}"},
            "reply_token": new_reply_token(),
            "claim_seq": 0,
            "created_at": utcnow(),
            "waiting_since": utcnow(),
            "case": {"gender": "f", "topics": ["legal", "psychological"]} if i % 3 else None,
        }
        await repo.threads.insert_one(thread)
        await repo.messages.insert_one(
            {
                "_id": new_id(),
                "source_id": f"chat:{i}:1",
                "thread_id": thread["_id"],
                "direction": "in",
                "author": "client",
                "text": "Привет",
                "created_at": utcnow(),
            }
        )


async def _documents(repo: Repository, name: str) -> list[dict[str, object]]:
    return [d async for d in repo.db[name].find({}).sort("_id", 1)]


async def test_database_and_broker_definitions_round_trip(stack: LocalStack, tmp_path: Path) -> None:
    client = make_client(stack.mongo_url)
    source_db, target_db = "b" + uuid.uuid4().hex[:8], "b" + uuid.uuid4().hex[:8]
    source_vhost, target_vhost = "bk" + uuid.uuid4().hex[:6], "bk" + uuid.uuid4().hex[:6]
    source_amqp = stack.add_vhost(source_vhost)
    target_amqp = stack.add_vhost(target_vhost)
    try:
        source = Repository(client[source_db])
        await _fill(source)
        conn = await aio_pika.connect(source_amqp)
        async with conn:
            await topology.declare(await conn.channel())
        mgmt = stack.rabbit_mgmt_url.replace("http://", "http://guest:guest@")
        manifest = await dump(client[source_db], tmp_path / "backup", BrokerApi(mgmt, source_vhost))
        assert manifest["collections"]["threads"] == 1200 and manifest["collections"]["messages"] == 1200

        target = Repository(client[target_db])
        restored = await restore(client[target_db], tmp_path / "backup", BrokerApi(mgmt, target_vhost))
        assert restored == manifest["collections"]
        for name in ("threads", "messages", "consultants"):
            assert await _documents(target, name) == await _documents(source, name)
        # Unique keys are back before any document: a duplicate source id is refused.
        with pytest.raises(DuplicateKeyError):
            await target.messages.insert_one({"_id": new_id(), "source_id": "chat:7:1"})
        # The broker's queues came back with the same arguments: declaring them from code agrees.
        conn = await aio_pika.connect(target_amqp)
        async with conn:
            channel = await conn.channel()
            declared = await topology.declare(channel)
            dead = await channel.declare_queue(
                topology.dead_queue(topology.DISPATCHER_INBOUND.name), passive=True
            )
            assert dead.name in declared.queues
        # Restoring over data is refused unless forced.
        with pytest.raises(NotEmpty):
            await restore(client[target_db], tmp_path / "backup", None)
    finally:
        await client.drop_database(source_db)
        await client.drop_database(target_db)
        await client.close()
        stack.delete_vhost(source_vhost)
        stack.delete_vhost(target_vhost)


def test_the_command_refuses_to_restore_over_data_and_says_why(stack: LocalStack, tmp_path: Path) -> None:
    database = "c" + uuid.uuid4().hex[:8]
    env = {"HOTLINE_MONGO_URL": stack.mongo_url, "HOTLINE_MONGO_DATABASE": database, "PATH": "/usr/bin:/bin"}
    with MongoClient(stack.mongo_url) as client:
        client[database]["threads"].insert_one({"_id": "x"})
        try:

            def run(*args: str) -> subprocess.CompletedProcess[str]:
                return subprocess.run(
                    [sys.executable, "-m", "deploy.backup", *args],
                    cwd=ROOT,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=60,
                )

            dumped = run("dump", "--out", str(tmp_path / "b"))
            assert dumped.returncode == 0, dumped.stderr
            assert '"threads": 1' in dumped.stdout
            refused = run("restore", "--from", str(tmp_path / "b"))
            assert refused.returncode == 2 and "not empty" in refused.stderr
        finally:
            client.drop_database(database)


async def test_migrations_bring_an_old_database_up_to_date_once(stack: LocalStack) -> None:
    client = make_client(stack.mongo_url)
    name = "m" + uuid.uuid4().hex[:8]
    db = client[name]
    try:
        # A database written before claims were counted and before messages kept their source time.
        await db["threads"].insert_one({"_id": "t1", "key": "chat:old", "status": "waiting"})
        await db["messages"].insert_one(
            {"_id": "m1", "source_id": "s1", "direction": "in", "created_at": utcnow()}
        )
        assert await schema_version(db) == 0
        assert await migrate(db) == [v for v, _, _ in MIGRATIONS]
        assert (await db["threads"].find_one({"_id": "t1"}))["claim_seq"] == 0
        message = await db["messages"].find_one({"_id": "m1"})
        assert message["received_at"] == message["created_at"]
        assert await schema_version(db) == MIGRATIONS[-1][0]
        assert await migrate(db) == []  # nothing twice
    finally:
        await client.drop_database(name)
        await client.close()
