"""Statistics through the real store: a generated year of cases, counted independently here,
against GET /api/stats and /api/stats.csv; phone consultations; closing stores the facts;
suppression for publication; year-on-year change; who may see statistics."""

from __future__ import annotations

import csv
import io
import random
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

from conversations.identity import new_id, new_reply_token
from conversations.model import new_thread
from conversations.repository import Repository
from services.store.stats import facts_for, no_consultation_facts
from shared.config import load_config
from shared.mongo import make_client
from shared.settings import DEFAULT_CONFIG_PATH
from tests.conftest import Gateway
from tests.integration.helpers import Consultant

MINSK = ZoneInfo("Europe/Minsk")
YEAR = datetime.now(MINSK).year - 1  # a whole year in the past
GENDERS = ["f", "m", "other"]
AGES = ["18-26", "27-40", "41-59"]
TOPICS_113 = ["work_abroad", "study_abroad", "au_pair", "crisis_abroad", "safe_travel"]
COUNTRIES = ["PL", "LT", "DE", "RU", "CY", "TR"]


def generated_threads(seed: int, year: int, n: int, over_60: int = 0) -> list[dict[str, Any]]:
    """Closed e-mail, chat and Telegram threads of the 113 line as the store keeps them; the
    first ``over_60`` of them people of 60 and over (an age group the rest never have)."""
    config = load_config(DEFAULT_CONFIG_PATH)
    rnd = random.Random(seed)
    start = datetime(year, 1, 1, tzinfo=MINSK)
    docs = []
    for _ in range(n):
        at = (start + timedelta(minutes=rnd.randrange(365 * 24 * 60))).astimezone(UTC)
        org = rnd.choice(["lastrada", "bwc"])
        case = {
            "client_role": "survivor",
            "gender": rnd.choices(GENDERS, weights=[70, 25, 5])[0],
            "age_group": rnd.choice(AGES),
            "topics": sorted(rnd.sample(TOPICS_113, rnd.randint(1, 2))),
            "destination_country": rnd.choice(COUNTRIES),
        }
        thread = {
            "_id": new_id(),
            "key": f"gen:{uuid.uuid4().hex}",
            "channel": rnd.choice(["email", "chat", "telegram"]),
            "line": "113",
            "queue": "lastrada-migration" if org == "lastrada" else "bwc-migration",
            "organisations": [org],
            "status": "closed",
            "priority": 0,
            "client": {"address": "x"},
            "reply_token": new_reply_token(),
            "created_at": at,
            "closed_at": at + timedelta(hours=1),
            "case": case,
        }
        thread["facts"] = facts_for(config, thread, org, case)
        docs.append(thread)
    for d in docs[:over_60]:
        d["case"]["age_group"] = "60+"
        d["facts"]["fields"]["age_group"] = ["60+"]
    return docs


def closed_without_consultation(seed: int, year: int, reasons: list[str]) -> list[dict[str, Any]]:
    """Threads closed without a consultation, one per reason given, dated like generated_threads."""
    docs = generated_threads(seed, year, len(reasons))
    for d, reason in zip(docs, reasons, strict=True):
        f = d.pop("facts")
        del d["case"]
        d.update(outcome="no_consultation", no_consultation_reason=reason)
        d["facts"] = no_consultation_facts(
            reason, at=f["at"], line=f["line"], channel=f["channel"], organisation=f["organisation"]
        )
    return docs


async def insert(gateway: Gateway, docs: list[dict[str, Any]]) -> None:
    client = make_client(gateway.urls.mongo_url)
    try:
        # As the demo's sample year is stored: each closed thread with its consultation.
        assert await Repository(client[gateway.database]).add_closed_threads(docs) == len(docs)
    finally:
        await client.close()


def local_month(at: datetime) -> str:
    return at.astimezone(MINSK).strftime("%Y-%m")


async def login(gateway: Gateway, who: str) -> Consultant:
    c = Consultant(gateway.store_url)
    await c.login(who, f"{who}-demo")
    return c


async def get_csv(c: Consultant, path: str) -> tuple[int, list[list[str]], str]:
    async with c.http.get(c.base + path) as resp:
        text = await resp.text()
        return resp.status, list(csv.reader(io.StringIO(text))), resp.headers.get("Content-Type", "")


async def test_a_generated_year_gives_exact_counts_shares_and_year_on_year_change(gateway: Gateway) -> None:
    gateway.seed_demo_accounts()
    this_year = generated_threads(1, YEAR, 700)
    last_year = generated_threads(2, YEAR - 1, 450)
    await insert(gateway, this_year + last_year)

    # Phone consultations registered through the API, with the same form.
    anna = await login(gateway, "anna")
    rnd = random.Random(3)
    phones: list[tuple[datetime, str]] = []
    for i in range(20):
        at = datetime(YEAR, rnd.randint(1, 12), rnd.randint(1, 28), rnd.randint(0, 23), tzinfo=MINSK)
        gender = rnd.choice(["f", "m"])
        status, body = await anna.call(
            "POST",
            "/api/consultations",
            {
                "line": "113",
                "at": at.isoformat(),
                "case": {
                    "client_role": "relative",
                    "gender": gender,
                    "age_group": "27-40",
                    "topics": ["au_pair"],
                },
            },
            headers={"Idempotency-Key": f"phone-call-{i:04d}"},
        )
        assert status == 201, body
        assert body["channel"] == "phone" and body["status"] == "closed"
        assert body["facts"]["organisation"] == "lastrada"
        phones.append((at, gender))
    # The same call registered twice (a retried request) is stored once.
    again, body = await anna.call(
        "POST",
        "/api/consultations",
        {"line": "113", "at": phones[0][0].isoformat(), "case": {}},
        headers={"Idempotency-Key": "phone-call-0000"},
    )
    assert again == 200 and body["case"]["gender"] == phones[0][1]
    # A consultant may not read statistics.
    status, _ = await anna.call("GET", f"/api/stats?from={YEAR}-01-01&to={YEAR}-12-31")
    assert status == 403
    await anna.close()

    sofia = await login(gateway, "sofia")
    try:
        # Women and men, year on year, exact.
        status, result = await sofia.call(
            "GET", f"/api/stats?from={YEAR}-01-01&to={YEAR}-12-31&by=gender&compare=1"
        )
        assert status == 200, result
        now = Counter(d["case"]["gender"] for d in this_year) + Counter(g for _, g in phones)
        before = Counter(d["case"]["gender"] for d in last_year)
        total_now, total_before = len(this_year) + len(phones), len(last_year)
        assert result["total"] == {
            "count": total_now,
            "previous": total_before,
            "change": round(100 * (total_now - total_before) / total_before, 1),
            # None of these consultations has a known person (no client record links them).
            "people": 0,
            "without_known_person": total_now,
        }
        rows = {r["gender"]: r for r in result["rows"]}
        assert set(rows) == set(now) | set(before)
        for g, r in rows.items():
            assert r["count"] == now[g]
            assert r["share"] == round(100 * now[g] / total_now, 1)
            assert r["previous"] == before[g]
            assert r["change"] == round(100 * (now[g] - before[g]) / before[g], 1)
        assert "not for publication" in result["note"] or "do not publish" in result["note"]

        # Topics (several per thread) by channel and month, as CSV.
        status, table, ctype = await get_csv(
            sofia, f"/api/stats.csv?from={YEAR}-01-01&to={YEAR}-12-31&by=topics,channel&period=month"
        )
        assert status == 200 and ctype.startswith("text/csv")
        assert table[0] == ["period", "topics", "channel", "count", "share_percent"]
        expected: Counter[tuple[str, str, str]] = Counter()
        per_month: Counter[str] = Counter()
        for d in this_year:
            month = local_month(d["created_at"])
            per_month[month] += 1
            for t in d["case"]["topics"]:
                expected[(month, t, d["channel"])] += 1
        for at, _ in phones:
            per_month[local_month(at)] += 1
            expected[(local_month(at), "au_pair", "phone")] += 1
        body_rows = table[1 : table.index([])]
        got = {(r[0], r[1], r[2]): int(r[3]) for r in body_rows}
        assert got == dict(expected)
        for r in body_rows:
            assert float(r[4]) == round(100 * int(r[3]) / per_month[r[0]], 1)

        # Filters: one organisation's e-mails to Poland or Lithuania, by age group.
        status, result = await sofia.call(
            "GET",
            f"/api/stats?from={YEAR}-01-01&to={YEAR}-12-31&by=age_group"
            "&organisation=bwc&channel=email&destination_country=PL,LT",
        )
        assert status == 200, result
        want = Counter(
            d["case"]["age_group"]
            for d in this_year
            if d["facts"]["organisation"] == "bwc"
            and d["channel"] == "email"
            and d["case"]["destination_country"] in {"PL", "LT"}
        )
        assert {r["age_group"]: r["count"] for r in result["rows"]} == dict(want)

        # For publication: small cells are hidden (empty: "<5" would tell the bound) and the
        # export says so; tests/integration/test_publication.py plays the attacker.
        status, table, _ = await get_csv(
            sofia,
            f"/api/stats.csv?from={YEAR}-01-01&to={YEAR}-12-31&by=destination_country,gender&publish=1",
        )
        assert status == 200
        cells = Counter((d["case"]["destination_country"], d["case"]["gender"]) for d in this_year)
        cells += Counter(("not answered", g) for _, g in phones)  # phone calls named no country
        published = {(r[0], r[1]): r[2] for r in table[1 : table.index([])]}
        small = {k for k, n in cells.items() if n < 5}
        assert small, "the generated year has small cells"
        for key in small:
            assert published[key] == ""
        shown = {k: int(v) for k, v in published.items() if v != ""}
        assert shown and all(cells[k] == v and v >= 5 for k, v in shown.items())
        notes = dict(r for r in table[table.index([]) + 1 :] if len(r) == 2)
        assert "from 1 to 4 are suppressed" in notes["note"]

        status, problem = await sofia.call("GET", "/api/stats?by=shoe_size")
        assert status == 422 and "shoe_size" in problem["detail"]
    finally:
        await sofia.close()


async def test_closing_a_thread_stores_its_facts_for_statistics(gateway: Gateway) -> None:
    gateway.seed_demo_accounts()
    now = datetime.now(UTC)
    thread = new_thread(
        f"gen:{uuid.uuid4().hex}",
        channel="email",
        line="113",
        queue="113-triage",
        organisations=["lastrada", "bwc"],
        client_address="c@example.org",
        created_at=now,
        waiting_since=now,
    )
    await insert(gateway, [thread])
    boris = await login(gateway, "boris")
    sofia = await login(gateway, "sofia")
    try:
        assert (await boris.call("POST", f"/api/threads/{thread['_id']}/claim"))[0] == 200
        case = {
            "client_role": "survivor",
            "gender": "f",
            "age_group": "18-26",
            "topics": ["work_abroad"],
            "region": "brest",
        }
        status, closed = await boris.call("POST", f"/api/threads/{thread['_id']}/close", {"case": case})
        assert status == 200, closed
        today = datetime.now(MINSK).date().isoformat()
        status, result = await sofia.call(
            "GET", f"/api/stats?from={today}&to={today}&by=organisation,channel,topics"
        )
        assert status == 200, result
        assert result["rows"] == [
            {"organisation": "bwc", "channel": "email", "topics": "work_abroad", "count": 1, "share": 100.0}
        ]
    finally:
        await boris.close()
        await sofia.close()


async def test_statistics_need_a_session(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as http, http.get(gateway.store_url + "/api/stats") as resp:
        assert resp.status == 401
