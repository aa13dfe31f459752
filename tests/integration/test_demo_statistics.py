"""The demo's sample year: `make demo` writes it so the reports are alive for a newcomer. Every
line gets contacts from the first of January last year to today (consultations of sample people,
some of whom come back, and contacts without a consultation), counted by the real statistics API;
each one is marked demo data; writing it again adds nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from zoneinfo import ZoneInfo

from conversations.repository import Repository
from services.store.demo_data import PER_LINE
from shared.config import load_config
from shared.envelope import utcnow
from shared.mongo import make_client
from shared.settings import DEFAULT_CONFIG_PATH
from tests.conftest import ROOT, Gateway
from tests.integration.helpers import Consultant


def admin(gateway: Gateway, command: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "services.store.admin", command],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **gateway.env["store"]},
    )
    return done.stdout


async def test_the_sample_fills_every_line_this_year_and_last_and_is_written_once(gateway: Gateway) -> None:
    # `make demo`'s two commands (the other tests write the demo accounts from the harness).
    assert "demo accounts: anna, boris, vera" in admin(gateway, "seed-demo")
    lines = load_config(DEFAULT_CONFIG_PATH).lines
    total = PER_LINE * len(lines)
    assert f"{total} sample contacts" in admin(gateway, "seed-demo-statistics")
    assert "0 sample contacts" in admin(gateway, "seed-demo-statistics")  # again: nothing added
    client = make_client(gateway.urls.mongo_url)
    try:
        repo = Repository(client[gateway.database])
        sample = await repo.threads.find({"key": {"$regex": "^demo:"}}).to_list()
        written = await repo.consultations.count_documents({})
    finally:
        await client.close()
    assert len(sample) == total == written
    assert all(t["demo"] is True and t["client"]["address"] == "" for t in sample)
    consulted = [t for t in sample if t["outcome"] == "consultation"]
    people = {t["client_id"] for t in consulted if t["client_id"]}
    skipped = Counter(t["no_consultation_reason"] for t in sample if t["outcome"] == "no_consultation")
    # Some people come back, some contacts were no consultation: every figure has something.
    assert 0 < len(people) < len([t for t in consulted if t["client_id"]]) and skipped

    sofia = Consultant(gateway.store_url)
    await sofia.login("sofia", "sofia-demo")
    try:
        # From the sample's first day (1 January of last year, UTC) to today in the statistics'
        # time zone (Europe/Minsk), which can be a day ahead of UTC's.
        today = utcnow().astimezone(ZoneInfo("Europe/Minsk")).date()
        window = f"from={utcnow().year - 1}-01-01&to={today.isoformat()}"
        status, stats = await sofia.call("GET", f"/api/stats?{window}&by=line&period=month")
    finally:
        await sofia.close()
    assert status == 200, stats
    assert stats["total"]["count"] == len(consulted) and stats["total"]["people"] == len(people)
    by_reason: Counter[str] = Counter()
    for row in stats["no_consultation"]["rows"]:  # by month and reason
        by_reason[row["reason"]] += row["count"]
    assert by_reason == skipped
    assert stats["no_consultation"]["count"] == sum(skipped.values())
    months = {row["period"] for row in stats["rows"]}
    assert len(months) >= 13 and {row["line"] for row in stats["rows"]} == set(lines)
