"""The data keys of what people wrote (conversations/vault.py): their master key and state.

    python -m services.store.keys status   # how many data keys, under which master key
    python -m services.store.keys rotate   # wrap every data key under STORE_MASTER_KEY

Replacing the master key (docs/privacy.md): give every service the new key as
``*_MASTER_KEY`` and the old one as ``*_PREVIOUS_MASTER_KEY`` and restart them (they read
under either); run ``rotate``, which wraps every data key again under the new one (the text
itself is not touched: it stays sealed under its data key); then remove
``*_PREVIOUS_MASTER_KEY`` and restart. ``status`` says whether any key still needs the old one.

Reads the store's settings: ``STORE_MONGO_URL``, ``STORE_MONGO_DATABASE``,
``STORE_MASTER_KEY``, ``STORE_PREVIOUS_MASTER_KEY``, ``STORE_KEY_VAULT_DATABASE``.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from conversations.vault import Vault, provider_name
from shared.mongo import make_client
from shared.settings import VaultSettings


class KeySettings(VaultSettings):
    model_config = SettingsConfigDict(env_prefix="STORE_", extra="ignore")
    mongo_url: SecretStr = Field(description="MongoDB URL")
    mongo_database: str = Field(default="hotline", description="MongoDB database name")


async def _run(command: str, settings: KeySettings) -> str:
    client = make_client(settings.mongo_url.get_secret_value())
    current, previous = settings.master_keys()
    vault = Vault(client, settings.key_vault_namespace(settings.mongo_database), current, previous)
    try:
        if command == "rotate":
            if previous is None:
                raise SystemExit("rotate: set STORE_PREVIOUS_MASTER_KEY to the key being replaced")
            n = await vault.rewrap()
            return f"{n} data keys now wrapped by the current master key {vault.provider}"
        by: Counter[str] = Counter()
        async for k in vault.keys.find({}, {"masterKey.provider": 1}):
            by[str((k.get("masterKey") or {}).get("provider"))] += 1
        names = {vault.provider: "current"}
        if previous is not None:
            names[provider_name(previous)] = "previous"
        lines = [f"{n} data keys under {p} ({names.get(p, 'unknown key')})" for p, n in sorted(by.items())]
        return "\n".join(lines) or "no data keys yet"
    finally:
        await vault.close()
        await client.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.store.keys")
    parser.add_argument("command", choices=["status", "rotate"])
    args = parser.parse_args(argv)
    print(asyncio.run(_run(args.command, KeySettings())))


if __name__ == "__main__":
    main()
