"""What the e-mail tests share: restarting email_ingest with other settings, the database,
counting live events."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml
from pymongo import AsyncMongoClient

from shared.settings import DEFAULT_CONFIG_PATH
from tests.conftest import Gateway
from tests.integration.helpers import Consultant


def restart_email_ingest(gw: Gateway, **overrides: str) -> None:
    code = gw.processes.stop("email_ingest")
    assert code == 0, gw.logs()[-3000:]
    env = {**gw.env["email_ingest"], **{f"EMAIL_INGEST_{k}": v for k, v in overrides.items()}}
    gw.env["email_ingest"] = env
    gw.processes.start("email_ingest", env)
    gw.processes.wait_ready(gw.ports)


def config_with_mailboxes(path: Path, mailboxes: dict[str, dict[str, Any]]) -> Path:
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text(encoding="utf-8"))
    raw["mailboxes"] = mailboxes
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def database(gw: Gateway) -> tuple[AsyncMongoClient[dict[str, Any]], Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(gw.stack.mongo_url)
    return client, client[gw.database]


async def queued_threads(who: Consultant, count: int, within: float = 120) -> set[str]:
    """Wait for ``count`` distinct threads to be announced as queued; return their ids."""
    seen: set[str] = set()

    async def loop() -> None:
        while len(seen) < count:
            event = await who.wait_event(lambda e: e["name"] == "ThreadQueued", within)
            seen.add(event["thread_id"])

    await asyncio.wait_for(loop(), within)
    return seen
