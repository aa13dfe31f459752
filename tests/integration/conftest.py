"""Fixtures the integration tests share: Debian's Chromium driven by Playwright, and a fresh
database on the test stack's FerretDB."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, async_playwright, expect

from conversations.repository import Repository
from deploy.local.stack import LocalStack
from shared.mongo import make_client
from tests.integration.helpers import SEARCH_TERMS

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# On two busy cores a round trip through four services and the database can take seconds:
# expectations wait for the page to show what the test expects for up to 15 s, not 5 s.
expect.set_options(timeout=15_000)

# Headless as root, and nothing that calls out: this machine (and CI) reach no network.
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
async def repo(stack: LocalStack) -> AsyncIterator[Repository]:
    """A repository on a database of its own, dropped afterwards."""
    client = make_client(stack.mongo_url)
    name = "q" + uuid.uuid4().hex[:10]
    r = Repository(client[name])
    # As the store's: clearing text takes it out of the search index (conversations/search.py).
    r.search.use(SEARCH_TERMS)
    await r.ensure_indexes()
    try:
        yield r
    finally:
        await client.drop_database(name)
        await client.close()
