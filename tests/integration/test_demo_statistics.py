"""The demo's sample year: `make demo` writes it so the reports are alive for a newcomer. Every
line gets consultations spread over the last twelve months, counted by the real statistics
API; each one is marked demo data; writing it again adds nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

from conversations.repository import Repository
from services.store.demo_data import PER_LINE
from shared.config import load_config
from shared.envelope import utcnow
from shared.mongo import make_client
from shared.settings import DEFAULT_CONFIG_PATH
from tests.conftest import ROOT, Gateway
from tests.integration.helpers import Consultant


def seed(gateway: Gateway) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "services.store.admin", "seed-demo-statistics"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **gateway.env["store"]},
    )
    return done.stdout


async def test_the_sample_year_fills_every_line_and_is_written_once(gateway: Gateway) -> None:
    gateway.seed_demo_accounts()
    lines = load_config(DEFAULT_CONFIG_PATH).lines
    total = PER_LINE * len(lines)
    assert f"{total} sample consultations" in seed(gateway)
    assert "0 sample consultations" in seed(gateway)  # again: nothing added
    sofia = Consultant(gateway.store_url)
    await sofia.login("sofia", "sofia-demo")
    try:
        today = utcnow().date()
        window = f"from={(today - timedelta(days=366)).isoformat()}&to={today.isoformat()}"
        status, stats = await sofia.call("GET", f"/api/stats?{window}&by=line&period=month")
    finally:
        await sofia.close()
    assert status == 200, stats
    assert stats["total"]["count"] == total
    months = {row["period"] for row in stats["rows"]}
    assert len(months) >= 12 and {row["line"] for row in stats["rows"]} == set(lines)
    client = make_client(gateway.urls.mongo_url)
    try:
        repo = Repository(client[gateway.database])
        sample = await repo.threads.find({"key": {"$regex": "^demo:"}}).to_list()
    finally:
        await client.close()
    assert len(sample) == total and all(t["demo"] is True and t["client"]["address"] == "" for t in sample)
