"""The master key on a KMIP server (conversations/vault.py, ``*_KMS_PROVIDER=kmip``), tested
against a real one (PyKMIP's, tests/kmip/server.py) over mutual TLS on loopback.

With KMIP the master key never reaches our processes: the server wraps and unwraps the data
keys. So the database and its key vault, without the server, open nothing; erasure still
deletes a thread's key; rotation moves every data key between a local key and the server;
the broker's transit seal comes from the key vault; a server that is down keeps a service from
starting (with a log) or makes it not ready, never a silent crash loop."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from pymongo.errors import EncryptionError

from conversations.repository import Repository
from conversations.vault import SEALED, TRANSIT_COLLECTION, TRANSIT_ID, Vault
from deploy.local.services import PREFIX, SERVICES, new_master_key
from deploy.local.stack import LocalStack, free_ports
from shared.broker import is_transient
from shared.mongo import make_client
from shared.settings import KmipServer, MasterKeys, parse_master_key
from tests.conftest import ROOT, Gateway
from tests.integration.chat_client import ChatClient
from tests.integration.helpers import Consultant
from tests.integration.test_readiness import until
from tests.integration.test_vault import CANARY, stored_thread
from tests.kmip.server import KmipFiles, KmipProcess


def start_kmip(directory: Path) -> KmipProcess:
    server = KmipProcess(KmipFiles.make(directory), free_ports(1)[0])
    server.start()
    return server


@pytest.fixture(scope="module")
def kmip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KmipProcess]:
    server = start_kmip(tmp_path_factory.mktemp("kmip"))
    try:
        yield server
    finally:
        server.stop()


def kmip_keys(server: KmipProcess, key_id: str | None, local: bytes | None = None) -> MasterKeys:
    files = server.files
    return MasterKeys("kmip", local, None, KmipServer(server.endpoint, files.ca, files.client, key_id))


async def new_kmip_key(server: KmipProcess, repo: Repository) -> str:
    vault = Vault(repo.db.client, f"{repo.db.name}_keys.data_keys", kmip_keys(server, None))
    return await vault.new_kmip_master_key()


@pytest.fixture
async def under_kmip(repo: Repository, kmip: KmipProcess) -> AsyncIterator[Repository]:
    """``repo``'s database with a vault whose data keys a key of the KMIP server wraps."""
    key_id = await new_kmip_key(kmip, repo)
    vault = Vault(repo.db.client, f"{repo.db.name}_keys.data_keys", kmip_keys(kmip, key_id))
    try:
        yield Repository(repo.db, vault)
    finally:
        await repo.db.client.drop_database(f"{repo.db.name}_keys")


async def test_text_under_a_kmip_key_reads_back_and_the_database_alone_opens_nothing(
    repo: Repository, under_kmip: Repository, kmip: KmipProcess
) -> None:
    thread_id, message_id = await stored_thread(under_kmip, f"{CANARY} kmip")
    assert [m["text"] for m in await under_kmip.thread_messages(thread_id)] == [f"{CANARY} kmip"]
    assert under_kmip.vault is not None
    keys = [k async for k in under_kmip.vault.keys.find({})]
    assert keys and {k["masterKey"]["provider"] for k in keys} == {"kmip"}
    stored = await repo.messages.find_one({"_id": message_id})
    assert stored is not None
    # The server wrapped and unwrapped the data key itself (delegated): the services never
    # asked for the master key's bytes (KMIP Get), nor gave it any (Register).
    done = kmip.operations()
    assert {"Encrypt", "Decrypt"} <= set(done) and not {"Get", "Register"} & set(done), done
    assert all(k["masterKey"].get("delegated") is True for k in keys)

    # Whoever holds the database (and its key vault) without the server: a process pointed at
    # another KMIP server (the thief's, or one that is not there) opens nothing, nor does any
    # local key; an error, never text shown as erased.
    namespace = f"{repo.db.name}_keys.data_keys"
    elsewhere = KmipProcess(kmip.files, free_ports(1)[0])  # nothing listens there
    thieves = ((kmip_keys(elsewhere, None), True), (parse_master_key(new_master_key()), False))
    for keys_only, outage in thieves:
        thief = Vault(repo.db.client, namespace, keys_only)
        with pytest.raises(EncryptionError) as failed:
            await thief.open(stored[SEALED])
        # A key server away is an outage (a consumer waits, its message keeps its delivery
        # attempts, shared/broker.py); a key that does not unwrap is not.
        assert is_transient(failed.value) is outage

    # Erasure still works: the thread's key deleted, its text opens as nothing.
    copy = stored[SEALED]
    assert await under_kmip.erase_text([thread_id]) == 1
    assert await under_kmip.vault.open(copy) is None


async def test_services_starting_together_share_one_transit_key_and_leave_no_orphan_data_key(
    repo: Repository, under_kmip: Repository, kmip: KmipProcess
) -> None:
    """The first service to start makes the key vault's transit key; those that raced it read
    the winner's and delete the data key they made for theirs."""
    assert under_kmip.vault is not None
    namespace = f"{repo.db.name}_keys.data_keys"
    master_key = under_kmip.vault.master_key
    assert master_key is not None
    vaults = [Vault(repo.db.client, namespace, kmip_keys(kmip, master_key["keyId"])) for _ in range(4)]
    keys = await asyncio.gather(*(v.transit_key() for v in vaults))
    assert len(set(keys)) == 1 and len(keys[0]) == 32
    assert await under_kmip.vault.keys.count_documents({}) == 1
    assert await under_kmip.vault.transit_key() == keys[0]
    assert all([await v.key_service_answers() for v in vaults])


def keys_command(env: dict[str, str], command: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "services.store.keys", command],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def kmip_settings(server: KmipProcess, key_id: str | None = None) -> dict[str, str]:
    out = {
        "kmip_endpoint": server.endpoint,
        "kmip_ca_file": str(server.files.ca),
        "kmip_cert_file": str(server.files.client),
    }
    if key_id is not None:
        out["kmip_key_id"] = key_id
    return out


async def test_rotation_moves_every_data_key_from_a_local_key_to_kmip_to_another_kmip_key_and_back(
    repo: Repository, kmip: KmipProcess, stack: LocalStack
) -> None:
    namespace = f"{repo.db.name}_keys.data_keys"
    old = new_master_key()
    local_repo = Repository(repo.db, Vault(repo.db.client, namespace, parse_master_key(old)))
    thread_id, _ = await stored_thread(local_repo, f"{CANARY} rotated")

    async def opens_with(keys: bytes | MasterKeys) -> list[str | None]:
        fresh = Repository(repo.db, Vault(repo.db.client, namespace, keys))  # no cached key
        return [m.get("text") for m in await fresh.thread_messages(thread_id)]

    try:
        base = {"STORE_MONGO_URL": stack.mongo_url, "STORE_MONGO_DATABASE": repo.db.name}
        env = {**base, **{f"STORE_{k.upper()}": v for k, v in kmip_settings(kmip).items()}}
        first = keys_command(
            {**env, "STORE_KMS_PROVIDER": "local", "STORE_MASTER_KEY": old}, "kmip-key"
        ).strip()
        second = keys_command(
            {**env, "STORE_KMS_PROVIDER": "local", "STORE_MASTER_KEY": old}, "kmip-key"
        ).strip()
        assert first and second and first != second

        # local -> kmip: the old local key still given, to unwrap.
        to_kmip = {**env, "STORE_KMS_PROVIDER": "kmip", "STORE_KMIP_KEY_ID": first, "STORE_MASTER_KEY": old}
        assert "(previous)" in keys_command(to_kmip, "status")
        out = keys_command(to_kmip, "rotate")
        assert re.match(
            rf"[1-9]\d* data keys now wrapped by the current master key kmip key {first}$", out.strip()
        )
        assert keys_command(to_kmip, "status").strip() == f"1 data keys under kmip key {first} (current)"
        assert await opens_with(kmip_keys(kmip, first)) == [f"{CANARY} rotated"]
        with pytest.raises(EncryptionError):
            await opens_with(parse_master_key(old))

        # One KMIP key to another.
        to_second = {**env, "STORE_KMS_PROVIDER": "kmip", "STORE_KMIP_KEY_ID": second}
        keys_command(to_second, "rotate")
        assert keys_command(to_second, "status").strip() == f"1 data keys under kmip key {second} (current)"

        # kmip -> local, the KMIP server still configured to unwrap.
        new = new_master_key()
        to_local = {**env, "STORE_KMS_PROVIDER": "local", "STORE_MASTER_KEY": new}
        keys_command(to_local, "rotate")
        assert "(current)" in keys_command(to_local, "status") and "kmip" not in keys_command(
            to_local, "status"
        )
        assert await opens_with(parse_master_key(new)) == [f"{CANARY} rotated"]
    finally:
        await repo.db.client.drop_database(f"{repo.db.name}_keys")


@pytest.fixture
def kmip_own(tmp_path: Path) -> Iterator[KmipProcess]:
    """A KMIP server of this test alone (it stops it)."""
    server = start_kmip(tmp_path / "kmip")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def kmip_gateway_env(kmip_own: KmipProcess, stack: LocalStack) -> dict[str, str | None]:
    """Every service with the master key on ``kmip_own``: none is given a local master key."""
    scratch = {"STORE_MONGO_URL": stack.mongo_url, "STORE_MONGO_DATABASE": "kmipkey"}
    scratch |= {f"STORE_{k.upper()}": v for k, v in kmip_settings(kmip_own).items()}
    key_id = keys_command({**scratch, "STORE_KMS_PROVIDER": "kmip"}, "kmip-key").strip()
    env: dict[str, str | None] = {}
    for name in SERVICES:
        prefix = PREFIX[name]
        env[prefix + "MASTER_KEY"] = None
        env[prefix + "KMS_PROVIDER"] = "kmip"
        env[prefix + "KMIP_KEY_ID"] = key_id
        env |= {prefix + k.upper(): v for k, v in kmip_settings(kmip_own).items()}
    return env


@pytest.mark.slow
@pytest.mark.service_env("kmip_gateway_env")
async def test_the_services_run_with_the_master_key_on_kmip_and_are_not_ready_while_it_is_down(
    gateway: Gateway, kmip_own: KmipProcess
) -> None:
    assert not any(k.endswith("_MASTER_KEY") for env in gateway.env.values() for k in env)
    # A chat message goes through the broker (sealed under the key vault's transit key) and
    # the dispatcher into the store, where the consultant reads it.
    gateway.seed_demo_accounts()
    vera = Consultant(gateway.store_url)
    await vera.login("vera", "vera-demo")
    await vera.open_events()
    async with aiohttp.ClientSession() as http:
        chat = ChatClient(http, gateway.chat_url)
        try:
            await chat.start(line="dv", language="ru")
            await chat.say(f"{CANARY}-kmip")
            thread_id = (await vera.wait_event(lambda e: e["name"] == "ThreadQueued"))["thread_id"]
            status, thread = await vera.call("GET", f"/api/threads/{thread_id}")
            assert status == 200 and [m["text"] for m in thread["messages"] if m["direction"] == "in"] == [
                f"{CANARY}-kmip"
            ]
        finally:
            await chat.drop()
            await vera.close()
    client = make_client(gateway.urls.mongo_url)
    try:
        keys = client[f"{gateway.database}_keys"]
        transit = await keys[TRANSIT_COLLECTION].find_one({"_id": TRANSIT_ID})
        assert transit is not None and set(transit) == {"_id", SEALED, "created_at"}
        assert {k["masterKey"]["provider"] async for k in keys["data_keys"].find({})} == {"kmip"}
    finally:
        await client.close()

    everyone = dict.fromkeys(SERVICES, 200)
    ready = await until(gateway, everyone)
    assert all(body["checks"]["key service"] is True for body in ready.values()), ready
    kmip_own.stop()
    down = await until(gateway, dict.fromkeys(SERVICES, 503))
    assert all("key service" in body["missing"] for body in down.values()), down
    kmip_own.start()
    await until(gateway, everyone)


@pytest.mark.slow
def test_a_service_whose_kmip_server_is_down_says_so_and_stops(
    kmip: KmipProcess, stack: LocalStack, tmp_path: Path
) -> None:
    """At start, a key service that does not answer is waited for like the database (logged),
    then the process exits with an error naming it: no silent crash loop."""
    prefix = PREFIX["dispatcher"]
    elsewhere = KmipProcess(kmip.files, free_ports(1)[0])  # nothing listens there
    env = {
        prefix + "AMQP_URL": "amqp://guest:guest@127.0.0.1:1/",
        prefix + "MONGO_URL": stack.mongo_url,
        prefix + "MONGO_DATABASE": "kmipdown",
        prefix + "CLIENT_KEY_SECRET": "k" * 64,
        prefix + "HTTP_PORT": str(free_ports(1)[0]),
        prefix + "LOG_FORMAT": "json",
        prefix + "STARTUP_TIMEOUT": "3",
        prefix + "KMS_PROVIDER": "kmip",
        prefix + "KMIP_KEY_ID": "1",
        **{prefix + k.upper(): v for k, v in kmip_settings(elsewhere).items()},
    }
    done = subprocess.run(
        [sys.executable, "-m", "services.dispatcher"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    logs = done.stdout + done.stderr
    assert '"dependency": "key service"' in logs and "dependency_unavailable" in logs, logs[-3000:]
