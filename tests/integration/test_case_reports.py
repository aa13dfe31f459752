"""Case reports through the real store: a generated year of cases written into the database,
counted independently here, against GET /api/case-reports/{assistance,cases,referrals} (JSON
and CSV); each reader sees their scope only; publication hides small cells so that no hidden
count can be worked out from a total published with it."""

from __future__ import annotations

import csv
import io
import random
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from conversations.cases import new_case, new_referral
from conversations.identity import new_id
from conversations.repository import Repository
from shared.config import load_config
from shared.mongo import make_client
from shared.settings import DEFAULT_CONFIG_PATH
from tests.attacker import interval
from tests.conftest import Gateway
from tests.integration.helpers import Consultant, add_account, logged_in

MINSK = ZoneInfo("Europe/Minsk")
YEAR = datetime.now(MINSK).year - 1  # a whole year in the past
ORGS = {"lastrada": "113", "bwc": "113", "gp": "dv"}
KINDS = {"113": ["crisis_abroad", "presumed_trafficking"], "dv": ["high_risk_dv"]}
DESTINATIONS = ["police", "ambulance", "crisis_room_minsk", "crisis_room_brest", "dv_hotline"]


def local(day: datetime) -> datetime:
    return day.replace(tzinfo=MINSK).astimezone(UTC)


def generated_cases(seed: int, n: int) -> list[dict[str, Any]]:
    """Cases of the three organisations opened over two years, with services, external
    referrals and closes; some people (clients) come back in a second case."""
    config = load_config(DEFAULT_CONFIG_PATH)
    rnd = random.Random(seed)
    people = [new_id() for _ in range(n // 3)]
    numbers: Counter[str] = Counter()
    out = []
    for _ in range(n):
        org = rnd.choices(list(ORGS), weights=[5, 3, 2])[0]
        line = ORGS[org]
        opened = local(
            datetime(rnd.choice([YEAR - 1, YEAR, YEAR]), rnd.randint(1, 12), rnd.randint(1, 28), 10)
        )
        numbers[org] += 1
        case = new_case(
            number=numbers[org],
            organisation=org,
            line=line,
            kind=rnd.choice(KINDS[line]),
            intake={},
            opened_by="x",
            at=opened,
            thread_id=None,
            consultation_id=None,
            client_id=rnd.choice(people) if rnd.random() < 0.6 else None,
            referral=new_referral("social_worker", opened + timedelta(hours=4), "x", opened),
        )
        offered = list(config.cases.assistance_of(org))
        for _ in range(rnd.randint(0, 6)):
            day = opened + timedelta(days=rnd.randint(0, 200))
            amount = (
                round(rnd.uniform(5, 300), 2)
                if config.cases.assistance_kinds[k := rnd.choice(offered)].amount
                else None
            )
            case["services"].append(
                {
                    "id": new_id()[:12],
                    "kind": k,
                    "date": day.astimezone(MINSK).date().isoformat(),
                    "by": "x",
                    "at": day,
                    "amount": amount,
                    "note": "private words",
                }
            )
        for _ in range(rnd.randint(0, 2)):
            case["external_referrals"].append(
                {
                    "id": new_id()[:12],
                    "to": rnd.choice(DESTINATIONS),
                    "at": opened + timedelta(days=rnd.randint(0, 60)),
                    "by": "x",
                    "result": "private result",
                    "result_at": None,
                }
            )
        if rnd.random() < 0.7:
            case["status"] = "closed"
            case["close_reason"] = "resolved"
            case["closed_at"] = opened + timedelta(days=rnd.choice([1, 5, 20, 45, 120, 250]))
        else:
            case["status"] = rnd.choice(["active", "monitoring"])
        out.append(case)
    return out


def band(days: int) -> str:
    for first, last, label in [
        (0, 7, "0-7"),
        (8, 30, "8-30"),
        (31, 90, "31-90"),
        (91, 180, "91-180"),
        (181, 365, "181-365"),
    ]:
        if first <= days <= last:
            return label
    return "366+"


async def write(gateway: Gateway, cases: list[dict[str, Any]]) -> None:
    client = make_client(gateway.urls.mongo_url)
    try:
        db = client[gateway.database]
        await db["cases"].insert_many(cases)
        repo = Repository(db)
        await add_account(repo, "lsup", "supervisor", "lastrada", ["113"])
        await add_account(repo, "lspec", "specialist", "lastrada", ["113"], ["social_worker"])
    finally:
        await client.close()


async def login(gateway: Gateway, who: str) -> Consultant:
    return await logged_in(gateway.store_url, who)


def person(case: dict[str, Any]) -> str:
    return case["client_id"] or case["_id"]


def expected_people(
    cases: list[dict[str, Any]], orgs: set[str]
) -> tuple[dict[tuple[str, str], int], dict[str, int], int]:
    per_kind: dict[tuple[str, str], set[str]] = defaultdict(set)
    per_org: dict[str, set[str]] = defaultdict(set)
    everyone: set[str] = set()
    for c in cases:
        if c["organisation"] not in orgs:
            continue
        for s in c["services"]:
            if s["date"].startswith(str(YEAR)):
                per_kind[(c["organisation"], s["kind"])].add(person(c))
                per_org[c["organisation"]].add(person(c))
                everyone.add(person(c))
    return {k: len(v) for k, v in per_kind.items()}, {k: len(v) for k, v in per_org.items()}, len(everyone)


async def test_a_generated_year_of_cases_gives_exact_counts_in_every_report(gateway: Gateway) -> None:
    gateway.seed_demo_accounts()
    cases = generated_cases(7, 400)
    await write(gateway, cases)
    sofia, lsup = await login(gateway, "sofia"), await login(gateway, "lsup")
    try:
        # People per kind of service, per organisation: exact, and zeros for kinds offered.
        status, r = await sofia.call("GET", f"/api/case-reports/assistance?year={YEAR}")
        assert status == 200, r
        per_kind, per_org, everyone = expected_people(cases, set(ORGS))
        got = {(x["organisation"], x["assistance"]): x["people"] for x in r["rows"]}
        assert {k: v for k, v in got.items() if v} == per_kind
        assert got[("gp", "shelter")] == per_kind.get(("gp", "shelter"), 0)
        assert ("gp", "airport_meeting") not in got  # Gender Perspectives does not log it
        assert {o["organisation"]: o["people"] for o in r["organisations"]} == per_org
        assert r["total"]["people"] == everyone
        services = Counter(
            (c["organisation"], s["kind"])
            for c in cases
            for s in c["services"]
            if s["date"].startswith(str(YEAR))
        )
        assert {
            (x["organisation"], x["assistance"]): x["services"] for x in r["rows"] if x["services"]
        } == services
        assert "private" not in str(r)

        # A supervisor of La Strada: La Strada's figures only; one kind of case.
        status, mine = await lsup.call("GET", f"/api/case-reports/assistance?year={YEAR}")
        assert status == 200 and {o["organisation"] for o in mine["organisations"]} == {"lastrada"}
        assert mine["total"]["people"] == expected_people(cases, {"lastrada"})[2]
        status, _ = await lsup.call("GET", f"/api/case-reports/assistance?year={YEAR}&organisation=bwc")
        assert status == 422
        trafficked = [c for c in cases if c["kind"] == "presumed_trafficking"]
        status, only = await sofia.call(
            "GET", f"/api/case-reports/assistance?year={YEAR}&kind=presumed_trafficking"
        )
        assert only["total"]["people"] == expected_people(trafficked, set(ORGS))[2]

        # Cases opened in the year by kind, status and duration.
        status, r = await sofia.call("GET", f"/api/case-reports/cases?year={YEAR}")
        assert status == 200, r
        now = datetime.now(UTC)
        want: Counter[tuple[str, str, str, str]] = Counter()
        for c in cases:
            if c["opened_at"].astimezone(MINSK).year != YEAR:
                continue
            end = c["closed_at"] or now
            days = (end.astimezone(MINSK).date() - c["opened_at"].astimezone(MINSK).date()).days
            want[(c["organisation"], c["kind"], c["status"], band(days))] += 1
        assert {
            (x["organisation"], x["kind"], x["status"], x["duration"]): x["cases"] for x in r["rows"]
        } == want
        assert r["total"]["cases"] == sum(want.values())

        # External referrals made in the year by destination.
        status, r = await sofia.call("GET", f"/api/case-reports/referrals?year={YEAR}")
        assert status == 200, r
        made = Counter(
            (c["organisation"], x["to"])
            for c in cases
            for x in c["external_referrals"]
            if x["at"].astimezone(MINSK).year == YEAR
        )
        assert {(x["organisation"], x["destination"]): x["referrals"] for x in r["rows"]} == made

        # CSV: the same figures.
        async with sofia.http.get(f"{sofia.base}/api/case-reports/referrals.csv?year={YEAR}") as resp:
            assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/csv")
            rows = list(csv.reader(io.StringIO(await resp.text())))
        assert rows[0] == ["organisation", "destination", "referrals"]
        assert {(a, b): int(n) for a, b, n in rows[1 : 1 + len(made)]} == made
        assert ["total", "all", str(sum(made.values()))] in rows
    finally:
        await sofia.close()
        await lsup.close()


def attack(pub: dict[str, Any], count: str, several: bool) -> dict[tuple[Any, ...], tuple[float, float]]:
    """(min, max) of each hidden count of a published report given all it shows: rows add up
    to their organisation's total (through the kinds' totals in the cases report), the
    organisations to the total of all; with ``several`` (people given several kinds, or helped
    by two organisations) each part is at most its total and together at least it."""
    cells: dict[tuple[Any, ...], Any] = {("all",): pub["total"][count]}
    groups: list[tuple[tuple[Any, ...], list[tuple[Any, ...]]]] = [(("all",), [])]
    for org in pub["organisations"]:
        cells[("org", org["organisation"])] = org[count]
        groups[0][1].append(("org", org["organisation"]))
    within: dict[tuple[Any, ...], list[tuple[Any, ...]]] = defaultdict(list)
    for kind in pub.get("kinds", []):
        key = ("kind", kind["organisation"], kind["kind"])
        cells[key] = kind[count]
        within[("org", kind["organisation"])].append(key)
    for row in pub["rows"]:
        key = ("row", *(v for k, v in row.items() if k not in {count, "suppressed"}))
        cells[key] = row[count]
        parent = (
            ("kind", row["organisation"], row["kind"]) if "kinds" in pub else ("org", row["organisation"])
        )
        within[parent].append(key)
    groups += list(within.items())
    names = list(cells)
    index = {k: i for i, k in enumerate(names)}
    a_eq: list[list[float]] = []
    b_eq: list[float] = []
    a_ub: list[list[float]] = []
    for k, v in cells.items():
        if v is not None:
            a_eq.append([1.0 if i == index[k] else 0.0 for i in range(len(names))])
            b_eq.append(float(v))
    for total, parts in groups:
        line = [0.0] * len(names)
        line[index[total]] = 1.0
        for p in parts:
            line[index[p]] -= 1.0
        if not several:
            a_eq.append(line)
            b_eq.append(0.0)
            continue
        a_ub.append(line)  # the total is at most the sum of its parts
        for p in parts:
            a_ub.append(
                [1.0 if i == index[p] else -1.0 if i == index[total] else 0.0 for i in range(len(names))]
            )
    return {
        key: interval(
            [1.0 if i == index[key] else 0.0 for i in range(len(names))], a_eq, b_eq, a_ub, [0.0] * len(a_ub)
        )
        for key in [k for k, v in cells.items() if v is None]
    }


async def test_published_reports_hide_what_could_identify_and_only_supervisors_read_them(
    gateway: Gateway,
) -> None:
    gateway.seed_demo_accounts()
    cases = generated_cases(11, 150)
    await write(gateway, cases)
    sofia = await login(gateway, "sofia")
    exact_total = 0
    try:
        for report, count in (("assistance", "people"), ("cases", "cases"), ("referrals", "referrals")):
            status, exact = await sofia.call("GET", f"/api/case-reports/{report}?year={YEAR}")
            if report == "assistance":
                exact_total = exact["total"]["people"]
            status, pub = await sofia.call("GET", f"/api/case-reports/{report}?year={YEAR}&publish=1")
            assert status == 200 and pub["published"] and pub["min_cell"] == 5
            assert "suppressed" in pub["note"] and "do not publish" in exact["note"]
            shown = (
                [x[count] for x in pub["rows"]]
                + [o[count] for o in pub["organisations"]]
                + [pub["total"][count]]
            )
            assert all(v is None or v == 0 or v >= 5 for v in shown), report
            assert any(x["suppressed"] for x in pub["rows"]), report  # the generated data has small cells
            # Within an organisation, a total shown with exactly one part hidden would give it away.
            for org in pub["organisations"]:
                parts = [x for x in pub["rows"] if x["organisation"] == org["organisation"]]
                if report != "cases" and org[count] is not None:
                    assert sum(1 for x in parts if x[count] is None) != 1, (report, org)
            # No hidden count can be worked out from everything the report publishes.
            for key, (low, high) in attack(pub, count, several=report == "assistance").items():
                assert high - low >= 5 - 1e-6, (report, key, low, high)
            # What is shown is exact.
            exact_rows = {
                tuple(v for k, v in x.items() if k not in {count, "services", "amount"}): x[count]
                for x in exact["rows"]
            }
            for x in pub["rows"]:
                if x[count] is not None:
                    assert (
                        exact_rows[tuple(v for k, v in x.items() if k not in {count, "suppressed"})]
                        == x[count]
                    )
        async with sofia.http.get(
            f"{sofia.base}/api/case-reports/assistance.csv?year={YEAR}&publish=1"
        ) as resp:
            text = await resp.text()
        assert "published" in resp.headers["Content-Disposition"]
        body = list(csv.reader(io.StringIO(text)))
        # Hidden counts are empty: "<5" would itself tell the bound.
        assert "<5" not in text and any(r[-1] == "" for r in body[1 : body.index([])])
        # The reports page and the yearly report carry the table, the yearly one suppressed.
        status, pub = await sofia.call("GET", f"/api/case-reports/assistance?year={YEAR}&publish=1")
        async with sofia.http.get(f"{sofia.base}/reports/yearly?year={YEAR}") as resp:
            page = await resp.text()
        section = page.split('<section id="assistance">', 1)[1].split("</section>", 1)[0]
        assert (
            "Types of assistance provided" in section and "Counselling" in section and "<td>x</td>" in section
        )
        shown = pub["total"]["people"]
        assert f"All organisations: {shown if shown is not None else 'x'} people" in section
        async with sofia.http.get(f"{sofia.base}/reports?year={YEAR}") as resp:
            page = await resp.text()
        assert f"All organisations: {exact_total} people" in page
        for who in ("anna", "vera", "lspec"):
            c = await login(gateway, who)
            try:
                for path in ("assistance", "cases.csv", "referrals"):
                    status, body = await c.call("GET", f"/api/case-reports/{path}?year={YEAR}")
                    assert status == 403, (who, path, body)
            finally:
                await c.close()
        status, _ = await sofia.call("GET", "/api/case-reports/assistance?year=1999")
        assert status == 422
        # A year in progress is not published; nor a part of a table (a kind, a line).
        this_year = datetime.now(MINSK).year
        status, refused = await sofia.call("GET", f"/api/case-reports/cases?year={this_year}&publish=1")
        assert status == 422 and "a year that is over" in refused["detail"]
        status, refused = await sofia.call(
            "GET", f"/api/case-reports/cases?year={YEAR}&publish=1&kind=crisis_abroad"
        )
        assert status == 422 and "per organisation only" in refused["detail"]
    finally:
        await sofia.close()
