"""Cases through the real services (issue 17): a crisis-abroad consultation opens a case that is
referred, taken, logged with three services and an external referral, followed up and closed;
everyone outside the owning organisation's specialists and supervisors gets nothing, whatever
they try; a referral nobody takes in time and a follow-up that comes due raise their alerts;
retention deletes a closed case's free text and keeps its categorical answers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from conversations.cases import CaseRepository
from conversations.repository import Repository
from services.store.retention import delete_case_free_text
from shared.config import load_config
from shared.mongo import make_client
from shared.settings import DEFAULT_CONFIG_PATH
from tests.conftest import ROOT, Gateway
from tests.integration.chat_client import ChatClient
from tests.integration.helpers import Consultant
from tests.integration.test_access_matrix import CASE_ROUTES
from tests.integration.test_consultations import claim_reply_close, round_the_clock

CASE_FORM = {"client_role": "survivor", "gender": "f", "age_group": "18-26", "topics": ["crisis_abroad"]}


def quick_alerts(config: dict[str, Any]) -> None:
    """The store looks for late referrals five times a second; a crisis abroad must be taken
    within about two seconds."""
    round_the_clock(config)
    config["cases"]["check_seconds"] = 0.2
    config["cases"]["kinds"]["crisis_abroad"]["referral"]["hours"] = 0.0006


def add_user(gateway: Gateway, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.store.admin", "add-user", *args, "--password-stdin"],
        cwd=ROOT,
        input="long-enough-password\n",
        text=True,
        capture_output=True,
        env={**os.environ, **gateway.env["store"]},
    )


@pytest.fixture
async def staff(gateway: Gateway) -> AsyncIterator[dict[str, Consultant]]:
    """The demo accounts (consultants anna and boris, specialists sasha and kira, supervisor
    sofia of all lines) and a supervisor of BWC only, logged in and listening."""
    await asyncio.to_thread(gateway.seed_demo_accounts)
    done = await asyncio.to_thread(
        add_user, gateway, "--login=bella", "--role=supervisor", "--organisation=bwc", "--lines=113"
    )
    assert done.returncode == 0, done.stderr
    people: dict[str, Consultant] = {}
    try:
        for login in ("anna", "boris", "sasha", "kira", "sofia", "bella"):
            c = Consultant(gateway.store_url)
            await c.login(login, "long-enough-password" if login == "bella" else f"{login}-demo")
            await c.open_events()
            people[login] = c
        yield people
    finally:
        for c in people.values():
            await c.close()


async def crisis_chat(http: aiohttp.ClientSession, gateway: Gateway, anna: Consultant, text: str) -> str:
    """A client in a crisis abroad writes from the Minsk region: La Strada's queue. Its id."""
    chat = ChatClient(http, gateway.chat_url)
    await chat.start(line="113", region="minsk", topic="crisis_abroad", language="ru")
    await chat.say(text)
    queued = await anna.wait_event(lambda e: e["name"] == "ThreadQueued")
    assert queued["queue"] == "lastrada-migration"
    await chat.drop()
    return str(queued["thread_id"])


async def closed_consultation(anna: Consultant, thread_id: str) -> str:
    """Anna takes the chat, answers and closes it with the case form: its consultation's id."""
    await claim_reply_close(anna, "lastrada-migration", thread_id, CASE_FORM)
    return f"{thread_id}:1"


INTAKE = {
    "country": "PL",
    "since": "2026-11-20",
    "documents": "taken",
    "urgent_needs": ["return", "shelter"],
    "risk_level": "high",
}


@pytest.mark.hotline_config.with_args(round_the_clock)
async def test_a_crisis_abroad_case_is_referred_taken_logged_followed_up_and_closed(
    gateway: Gateway, staff: dict[str, Consultant]
) -> None:
    anna, sasha, sofia = staff["anna"], staff["sasha"], staff["sofia"]
    canary = f"CANARY-{uuid.uuid4().hex}"
    # A specialist account fills referral roles of the configuration.
    specialist = ["--login=lev", "--role=specialist", "--organisation=lastrada", "--lines=113"]
    for roles in ([], ["--specialist-roles=astronaut"]):
        done = await asyncio.to_thread(add_user, gateway, *specialist, *roles)
        assert done.returncode != 0 and "referral roles" in done.stderr
    done = await asyncio.to_thread(add_user, gateway, *specialist, "--specialist-roles=lawyer,psychologist")
    assert done.returncode == 0, done.stderr
    async with aiohttp.ClientSession() as http:
        thread_id = await crisis_chat(http, gateway, anna, f"Я в Польше, паспорт забрали. {canary}")
    consultation = await closed_consultation(anna, thread_id)

    # The consultant opens the case from the consultation: the intake is checked field by field.
    status, refused = await anna.call(
        "POST",
        "/api/cases",
        {"consultation": consultation, "kind": "crisis_abroad", "intake": {"country": "XX"}},
    )
    assert (
        status == 422
        and refused["missing"] == ["intake.risk_level"]
        and refused["invalid"] == ["intake.country"]
    )
    status, refused = await anna.call(
        "POST", "/api/cases", {"consultation": consultation, "kind": "high_risk_dv", "intake": INTAKE}
    )
    assert status == 422 and refused["invalid"] == ["kind"]  # a DV kind is not opened on the 113 line
    intake = {**INTAKE, "safe_contact": f"Only by Telegram after 21:00 {canary}"}
    body = {"consultation": consultation, "kind": "crisis_abroad", "intake": intake}
    status, receipt = await anna.call("POST", "/api/cases", body)
    assert status == 201, receipt
    # She hands it over: what she gets back names the case, not its contents.
    assert set(receipt) == {"id", "reference", "kind", "status", "referral"}
    assert receipt["reference"] == "LASTRADA-1" and receipt["status"] == "open"
    assert receipt["referral"]["role"] == "social_worker"
    case_id = receipt["id"]
    opened = await sasha.wait_event(lambda e: e["name"] == "CaseOpened" and e["data"]["case_id"] == case_id)
    assert opened["data"]["kind"] == "crisis_abroad" and canary not in str(opened)
    # Opened again (a retried request): the same case, no second number.
    status, again = await anna.call("POST", "/api/cases", body)
    assert status == 200 and again["id"] == case_id
    # ...and she cannot read it.
    assert (await anna.call("GET", f"/api/cases/{case_id}"))[0] == 404
    # Lev, La Strada's lawyer, sees it but may not take a referral to social work.
    lev = Consultant(gateway.store_url)
    try:
        me = (await lev.login("lev", "long-enough-password"))["consultant"]
        assert me["role"] == "specialist" and me["specialist_roles"] == ["lawyer", "psychologist"]
        assert (await lev.call("GET", "/api/cases"))[1] == []  # not his role, not his case
        status, refused = await lev.call("POST", f"/api/cases/{case_id}/take")
        assert status == 409 and "social_worker" in refused["detail"]
    finally:
        await lev.close()

    # Sasha, social-work specialist of La Strada, finds it in her list and takes it.
    status, mine = await sasha.call("GET", "/api/cases")
    assert status == 200 and [c["id"] for c in mine] == [case_id]
    assert mine[0]["status"] == "open" and "intake" not in mine[0]
    status, taken = await sasha.call("POST", f"/api/cases/{case_id}/take")
    assert status == 200 and taken["status"] == "active" and taken["assignee"] == "sasha"
    assert taken["referral"]["taken_by"] == "sasha"
    assert (await sofia.call("POST", f"/api/cases/{case_id}/take"))[0] == 409  # taken already

    # Three services given, one with an amount; what does not fit is refused naming the field.
    today = date.today().isoformat()
    path = f"/api/cases/{case_id}/services"
    for bad, field in [
        ({"kind": "teleport", "date": today}, "kind"),
        ({"kind": "counselling", "date": today, "amount": 5}, "amount"),
        ({"kind": "shelter", "date": "2999-01-01"}, "date"),
        ({"kind": "shelter"}, "date"),
    ]:
        status, problem = await sasha.call("POST", path, bad)
        assert status == 422 and field in problem["missing"] + problem["invalid"], (bad, problem)
    logged = []
    for service in [
        {"kind": "airport_meeting", "date": today},
        {"kind": "shelter", "date": today, "amount": 120.5, "note": f"Three nights {canary}"},
        {"kind": "counselling", "date": today},
    ]:
        status, item = await sasha.call("POST", path, service)
        assert status == 201 and item["by"] == "sasha", item
        logged.append(item)

    # An external referral to the police (a directory entry), and what came of it.
    status, problem = await sasha.call("POST", f"/api/cases/{case_id}/external-referrals", {"to": "nowhere"})
    assert status == 422 and problem["invalid"] == ["to"]
    status, referral = await sasha.call("POST", f"/api/cases/{case_id}/external-referrals", {"to": "police"})
    assert status == 201 and referral["result"] is None
    status, _ = await sasha.call(
        "PATCH",
        f"/api/cases/{case_id}/external-referrals/{referral['id']}",
        {"result": f"Statement taken {canary}"},
    )
    assert status == 200
    assert (await sasha.call("PATCH", f"/api/cases/{case_id}/external-referrals/nope", {"result": "x"}))[
        0
    ] == 404

    # Monitoring: a follow-up in a week, a note; the follow-up is done.
    due = (datetime.now(UTC) + timedelta(days=7)).isoformat()
    status, followup = await sasha.call(
        "POST", f"/api/cases/{case_id}/followups", {"due": due, "note": "Call her"}
    )
    assert status == 201
    assert (await sasha.call("POST", f"/api/cases/{case_id}/notes", {"text": f"Home safe {canary}"}))[
        0
    ] == 201
    status, moved = await sasha.call("POST", f"/api/cases/{case_id}/status", {"status": "monitoring"})
    assert status == 200 and moved["status"] == "monitoring"
    assert moved["next_followup_at"] is not None
    status, done = await sasha.call("POST", f"/api/cases/{case_id}/followups/{followup['id']}/done")
    assert status == 200 and done["next_followup_at"] is None

    # Closed with a configured reason; then it takes no more changes.
    status, problem = await sasha.call("POST", f"/api/cases/{case_id}/status", {"status": "closed"})
    assert status == 422 and problem["missing"] == ["reason"]
    status, closed = await sasha.call(
        "POST", f"/api/cases/{case_id}/status", {"status": "closed", "reason": "resolved"}
    )
    assert status == 200 and closed["status"] == "closed" and closed["close_reason"] == "resolved"
    assert (await sasha.call("POST", f"/api/cases/{case_id}/notes", {"text": "late"}))[0] == 409

    # The whole case, as the specialist reads it; every change in its history, with who did it.
    status, case = await sasha.call("GET", f"/api/cases/{case_id}")
    assert status == 200
    assert (
        case["intake"] == intake
        and case["thread_id"] == thread_id
        and case["consultation_id"] == consultation
    )
    assert [s["kind"] for s in case["services"]] == ["airport_meeting", "shelter", "counselling"]
    assert [s["amount"] for s in case["services"]] == [None, 120.5, None]
    assert case["external_referrals"][0]["to"] == "police" and case["external_referrals"][0]["result_at"]
    assert case["followups"][0]["done_by"] == "sasha"
    assert [(e["name"], e["by"]) for e in case["history"]] == [
        ("CaseOpened", "anna"),
        ("CaseTaken", "sasha"),
        *[("CaseServiceLogged", "sasha")] * 3,
        ("CaseExternalReferralMade", "sasha"),
        ("CaseExternalReferralUpdated", "sasha"),
        ("CaseFollowUpScheduled", "sasha"),
        ("CaseNoteAdded", "sasha"),
        ("CaseStatusChanged", "sasha"),
        ("CaseFollowUpDone", "sasha"),
        ("CaseStatusChanged", "sasha"),
    ]
    # Closed: out of the list of open cases, in the list of closed ones.
    assert (await sasha.call("GET", "/api/cases"))[1] == []
    assert [c["id"] for c in (await sofia.call("GET", "/api/cases?status=closed"))[1]] == [case_id]
    # Every read of the case is recorded: who and when.
    assert (await sofia.call("GET", f"/api/cases/{case_id}"))[0] == 200
    status, reads = await sofia.call("GET", f"/api/cases/{case_id}/reads")
    assert status == 200 and sorted(r["login"] for r in reads) == ["sasha", "sofia"]
    assert (await sasha.call("GET", f"/api/cases/{case_id}/reads"))[0] == 403

    # What people wrote is in no log line of any service.
    assert canary not in gateway.logs()

    # Retention, once the case has been closed long enough: free text goes, categories stay.
    config = load_config(DEFAULT_CONFIG_PATH)
    client = make_client(gateway.urls.mongo_url)
    try:
        repo = Repository(client[gateway.database])
        cut = datetime.now(UTC) + timedelta(seconds=1)
        assert await delete_case_free_text(repo, config, cut) == 1
        assert await delete_case_free_text(repo, config, cut) == 0  # done once
        kept = await CaseRepository(repo.db).case(case_id)
    finally:
        await client.close()
    assert kept is not None and canary not in str(kept)
    assert kept["intake"] == INTAKE and kept["close_reason"] == "resolved"
    assert [s["kind"] for s in kept["services"]] == ["airport_meeting", "shelter", "counselling"]
    assert kept["services"][1]["amount"] == 120.5 and kept["notes"][0]["text"] is None


@pytest.mark.hotline_config.with_args(round_the_clock)
async def test_outside_the_owning_organisations_specialists_and_supervisors_nobody_gets_anything(
    gateway: Gateway, staff: dict[str, Consultant]
) -> None:
    anna, sasha = staff["anna"], staff["sasha"]
    canary = f"CANARY-{uuid.uuid4().hex}"
    async with aiohttp.ClientSession() as http:
        thread_id = await crisis_chat(http, gateway, anna, "Помогите")
    consultation = await closed_consultation(anna, thread_id)
    intake = {**INTAKE, "safe_contact": canary}
    status, receipt = await anna.call(
        "POST", "/api/cases", {"consultation": consultation, "kind": "crisis_abroad", "intake": intake}
    )
    assert status == 201
    case_id = receipt["id"]
    assert (await sasha.call("POST", f"/api/cases/{case_id}/take"))[0] == 200
    status, _ = await sasha.call(
        "POST", f"/api/cases/{case_id}/services", {"kind": "shelter", "date": "2026-12-01"}
    )
    status, followup = await sasha.call(
        "POST", f"/api/cases/{case_id}/followups", {"due": "2028-06-01T00:00:00+00:00", "note": canary}
    )
    assert status == 201
    status, referral = await sasha.call("POST", f"/api/cases/{case_id}/external-referrals", {"to": "police"})
    items = {"/followups/": followup["id"], "/external-referrals/": referral["id"]}
    status, before = await sasha.call("GET", f"/api/cases/{case_id}")
    assert status == 200

    # The attackers: La Strada's own consultant, and BWC's consultant, specialist and supervisor.
    # Every route about the case answers as for a case that does not exist, with the real id
    # and with guessed ones; lists and alerts show nothing.
    guessed = [uuid.uuid4().hex, "0" * 32, case_id.upper(), case_id[:-1] + "0", "LASTRADA-1", "1"]
    wrong: list[str] = []
    for login in ("anna", "boris", "kira", "bella"):
        who = staff[login]
        for method, route, body in CASE_ROUTES:
            item = next((v for k, v in items.items() if k in route), "x")
            for target in [case_id, *guessed]:
                status, answer = await who.call(method, route.format(id=target, item=item), body)
                # /reads is for supervisors: others are refused for their role, which tells nothing.
                expected = 403 if route.endswith("/reads") and login != "bella" else 404
                if status != expected or canary in str(answer) or case_id in str(answer):
                    wrong.append(f"{login} {method} {route} {target[:8]}: {status}")
        for path in (
            "/api/cases",
            "/api/cases?status=open",
            "/api/cases?status=closed",
            "/api/cases?status=active",
        ):
            status, listed = await who.call("GET", path)
            if status != 200 or listed != []:
                wrong.append(f"{login} GET {path}: {status} {len(listed)}")
        status, alerts = await who.call("GET", "/api/cases/alerts")
        if status != 200 or alerts != {"overdue_referrals": [], "due_followups": []}:
            wrong.append(f"{login} alerts: {status}")
        # Opening a case of La Strada's conversation: BWC's people, its supervisor too, cannot
        # see it, so it does not exist for them.
        status, answer = await who.call(
            "POST", "/api/cases", {"consultation": consultation, "kind": "crisis_abroad", "intake": INTAKE}
        )
        expected_open = {"anna": 200, "boris": 404, "kira": 404, "bella": 404}[login]
        if status != expected_open or canary in str(answer):
            wrong.append(f"{login} POST /api/cases: {status}")
    assert wrong == []

    # Nothing the attackers tried changed the case.
    status, after = await sasha.call("GET", f"/api/cases/{case_id}")
    assert status == 200
    assert {k: v for k, v in after.items() if k != "history"} == {
        k: v for k, v in before.items() if k != "history"
    }
    assert len(after["history"]) == len(before["history"])

    # Live case events reach only La Strada's specialists and the supervisors who may see the
    # case: a thread event everyone of the line hears, sent after one, marks where to stop.
    watcher = Consultant(gateway.store_url)
    try:
        await watcher.login("sofia", "sofia-demo")
        await watcher.open_events()
        assert (await sasha.call("POST", f"/api/cases/{case_id}/notes", {"text": canary}))[0] == 201
        async with aiohttp.ClientSession() as http:
            chat = ChatClient(http, gateway.chat_url)
            await chat.start(line="113")
            await chat.say("вопрос")
            marker = await watcher.wait_event(lambda e: e["name"] == "ThreadQueued")
            await chat.drop()
    finally:
        await watcher.close()
    for login, c in staff.items():
        heard: list[dict[str, Any]] = []

        def until_marker(e: dict[str, Any], heard: list[dict[str, Any]] = heard) -> bool:
            heard.append(e)
            return e["name"] == "ThreadQueued" and e["thread_id"] == marker["thread_id"]

        await c.wait_event(until_marker)
        case_events = [e for e in heard if e["name"].startswith("Case")]
        if login in {"sasha", "sofia"}:
            assert any(e["name"] == "CaseNoteAdded" for e in case_events), login
        else:
            assert case_events == [], login
        assert canary not in str(heard)


@pytest.mark.hotline_config.with_args(quick_alerts)
async def test_an_untaken_referral_and_a_due_follow_up_raise_their_alerts(
    gateway: Gateway, staff: dict[str, Consultant]
) -> None:
    anna, sasha, sofia, kira = staff["anna"], staff["sasha"], staff["sofia"], staff["kira"]
    async with aiohttp.ClientSession() as http:
        thread_id = await crisis_chat(http, gateway, anna, "Помогите, я за границей")
    # Opened from the open thread (no need to close it first); due within about two seconds.
    status, receipt = await anna.call(
        "POST", "/api/cases", {"thread": thread_id, "kind": "crisis_abroad", "intake": INTAKE}
    )
    assert status == 201, receipt
    case_id = receipt["id"]

    # Nobody takes it: the organisation's supervisors are alerted, once.
    alert = await sofia.wait_event(
        lambda e: e["name"] == "CaseReferralOverdue" and e["data"]["case_id"] == case_id
    )
    assert alert["data"]["role"] == "social_worker" and alert["data"]["by"] is None
    status, alerts = await sofia.call("GET", "/api/cases/alerts")
    assert status == 200 and [c["id"] for c in alerts["overdue_referrals"]] == [case_id]
    assert (
        alerts["overdue_referrals"][0]["overdue"] and alerts["overdue_referrals"][0]["referral"]["alerted_at"]
    )
    # The specialists of the role see it at the top of their list, overdue; BWC's do not.
    status, mine = await sasha.call("GET", "/api/cases")
    assert [c["id"] for c in mine] == [case_id] and mine[0]["overdue"]
    assert [c["id"] for c in (await sasha.call("GET", "/api/cases/alerts"))[1]["overdue_referrals"]] == [
        case_id
    ]
    assert (await kira.call("GET", "/api/cases/alerts"))[1] == {"overdue_referrals": [], "due_followups": []}

    # Taken late; a follow-up due in a second comes due and shows for her and the supervisors.
    assert (await sasha.call("POST", f"/api/cases/{case_id}/take"))[0] == 200
    due = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    status, followup = await sasha.call(
        "POST", f"/api/cases/{case_id}/followups", {"due": due, "note": "Call back"}
    )
    assert status == 201
    for who in (sasha, sofia):
        came = await who.wait_event(
            lambda e: e["name"] == "CaseFollowUpDue" and e["data"]["case_id"] == case_id
        )
        assert came["data"]["item_id"] == followup["id"] and came["data"]["assignee"] == "sasha"
    for who in (sasha, sofia):
        status, alerts = await who.call("GET", "/api/cases/alerts")
        assert status == 200 and alerts["overdue_referrals"] == []
        assert [(a["case"]["id"], a["followup"]["id"]) for a in alerts["due_followups"]] == [
            (case_id, followup["id"])
        ]
    assert (await kira.call("GET", "/api/cases/alerts"))[1]["due_followups"] == []

    # Done: no longer due. Many checks have run since the referral's alert: it was raised once.
    assert (await sasha.call("POST", f"/api/cases/{case_id}/followups/{followup['id']}/done"))[0] == 200
    assert (await sasha.call("GET", "/api/cases/alerts"))[1]["due_followups"] == []
    status, case = await sofia.call("GET", f"/api/cases/{case_id}")
    names = [e["name"] for e in case["history"]]
    assert names.count("CaseReferralOverdue") == 1 and names.count("CaseFollowUpDue") == 1
