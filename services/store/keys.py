"""The data keys of what people wrote (conversations/vault.py): their master key and state.

    python -m services.store.keys status     # how many data keys, under which master key
    python -m services.store.keys rotate     # wrap every data key under the current master key
    python -m services.store.keys kmip-key   # make a master key on the KMIP server, print its id

Replacing the master key (docs/privacy.md, docs/operations.md): configure every service with
the new one while the old one still unwraps, and restart them (they read under either):

- local to local: the new key as ``*_MASTER_KEY``, the old as ``*_PREVIOUS_MASTER_KEY``;
- local to kmip: ``*_KMS_PROVIDER=kmip`` and the ``*_KMIP_*`` settings, the old key kept as
  ``*_MASTER_KEY``;
- one KMIP key to another: the new key's id as ``*_KMIP_KEY_ID`` (a data key names the KMIP
  object that wrapped it, so the old one still unwraps while the server keeps it);
- kmip to local: ``*_KMS_PROVIDER=local`` and ``*_MASTER_KEY``, the ``*_KMIP_*`` settings kept
  (``*_KMIP_KEY_ID`` is then not needed).

Run ``rotate``, which wraps every data key again under the current one (the text itself is not
touched: it stays sealed under its data key); then remove what is old and restart.
``status`` says whether any key still needs the old one.

Reads the store's settings: ``STORE_MONGO_URL``, ``STORE_MONGO_DATABASE``,
``STORE_KEY_VAULT_DATABASE``, ``STORE_KMS_PROVIDER``, ``STORE_MASTER_KEY``,
``STORE_PREVIOUS_MASTER_KEY``, ``STORE_KMIP_ENDPOINT``, ``STORE_KMIP_CA_FILE``,
``STORE_KMIP_CERT_FILE``, ``STORE_KMIP_KEY_ID``.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
from typing import ClassVar

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from conversations.vault import Vault, provider_name
from shared.mongo import make_client
from shared.settings import MasterKeys, VaultSettings


class KeySettings(VaultSettings):
    model_config = SettingsConfigDict(env_prefix="STORE_", extra="ignore")
    needs_kmip_key_id: ClassVar[bool] = False  # kmip-key makes the key
    mongo_url: SecretStr = Field(description="MongoDB URL")
    mongo_database: str = Field(default="hotline", description="MongoDB database name")


def _wrapped_by(key: dict[str, object]) -> str:
    master = key.get("masterKey")
    if not isinstance(master, dict):
        return "None"
    provider = str(master.get("provider"))
    return f"{provider} key {master['keyId']}" if provider == "kmip" else provider


async def _run(command: str, settings: KeySettings) -> str:
    client = make_client(settings.mongo_url.get_secret_value())
    keys = settings.master_keys()
    vault = Vault(client, settings.key_vault_namespace(settings.mongo_database), keys)
    try:
        if command == "kmip-key":
            if keys.kmip is None:
                raise SystemExit(
                    "kmip-key: set STORE_KMIP_ENDPOINT, STORE_KMIP_CA_FILE and STORE_KMIP_CERT_FILE"
                )
            return await vault.new_kmip_master_key()
        if command != "status" and keys.provider == "kmip" and vault.master_key is None:
            raise SystemExit(f"{command}: set STORE_KMIP_KEY_ID (python -m services.store.keys kmip-key)")
        if command == "rotate":
            if keys.provider == "local" and keys.previous_local is None and keys.kmip is None:
                raise SystemExit(
                    "rotate: configure the key being replaced too (STORE_PREVIOUS_MASTER_KEY, "
                    "or the STORE_KMIP_* settings when moving from a KMIP server)"
                )
            n = await vault.rewrap()
            return f"{n} data keys now wrapped by the current master key {_current(vault)}"
        by: Counter[str] = Counter()
        async for k in vault.keys.find({}, {"masterKey": 1}):
            by[_wrapped_by(k)] += 1
        names = {_current(vault): "current"}
        if keys.previous_local is not None:
            names[provider_name(keys.previous_local)] = "previous"
        if keys.provider == "kmip" and keys.local is not None:
            names[provider_name(keys.local)] = "previous"
        lines = [f"{n} data keys under {p} ({names.get(p, _other(p, keys))})" for p, n in sorted(by.items())]
        return "\n".join(lines) or "no data keys yet"
    finally:
        await vault.close()
        await client.close()


def _current(vault: Vault) -> str:
    if vault.master_key is not None:
        return f"{vault.provider} key {vault.master_key['keyId']}"
    return vault.provider


def _other(wrapped_by: str, keys: MasterKeys) -> str:
    if wrapped_by.startswith("kmip") and keys.kmip is not None:
        return "previous, on the KMIP server"
    return "unknown key"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.store.keys")
    parser.add_argument("command", choices=["status", "rotate", "kmip-key"])
    args = parser.parse_args(argv)
    print(asyncio.run(_run(args.command, KeySettings())))


if __name__ == "__main__":
    main()
