"""Closing has an outcome, through the real store: a consultation with its case form, or a contact
without a consultation with a configured reason (spam, test...). The latter stores no case form,
adds nothing to case statistics and is counted apart, by reason, in /api/stats and /api/stats.csv;
422 names the field that is missing or wrong; ``{case}`` alone is still a consultation. The
console's close dialog offers it, in Russian here."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import Browser, expect

from conversations.identity import new_id, new_reply_token
from conversations.model import open_consultation
from shared.mongo import make_client
from tests.conftest import Gateway
from tests.integration.helpers import Consultant
from tests.integration.test_console_journey import LAPTOP, Watch, logged_in

MINSK = ZoneInfo("Europe/Minsk")
CASE = {
    "client_role": "survivor",
    "gender": "f",
    "age_group": "18-26",
    "topics": ["work_abroad"],
    "region": "brest",
}


def waiting_thread() -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "_id": new_id(),
        "key": f"gen:{uuid.uuid4().hex}",
        "channel": "email",
        "line": "113",
        "queue": "113-triage",
        "organisations": ["lastrada", "bwc"],
        "status": "waiting",
        "priority": 0,
        "client": {"address": "c@example.org"},
        "reply_token": new_reply_token(),
        "assignee": None,
        "claim_seq": 0,
        "created_at": now,
        "waiting_since": now,
        "consultation": open_consultation(1, now, "113-triage"),
    }


async def threads_collection(gateway: Gateway, op: str, *args: Any) -> Any:
    client = make_client(gateway.urls.mongo_url)
    try:
        return await getattr(client[gateway.database]["threads"], op)(*args)
    finally:
        await client.close()


async def login(gateway: Gateway, who: str) -> Consultant:
    c = Consultant(gateway.store_url)
    await c.login(who, f"{who}-demo")
    return c


async def claimed(gateway: Gateway, consultant: Consultant) -> str:
    thread = waiting_thread()
    await threads_collection(gateway, "insert_one", thread)
    status, body = await consultant.call("POST", f"/api/threads/{thread['_id']}/claim")
    assert status == 200, body
    return str(thread["_id"])


def today() -> str:
    return datetime.now(MINSK).date().isoformat()


@pytest.fixture
async def boris_and_sofia(gateway: Gateway) -> AsyncIterator[tuple[Consultant, Consultant]]:
    """Boris (bwc), who closes threads of the shared triage queue, and Sofia, who reads statistics."""
    gateway.seed_demo_accounts()
    boris = await login(gateway, "boris")
    sofia = await login(gateway, "sofia")
    try:
        yield boris, sofia
    finally:
        await boris.close()
        await sofia.close()


async def test_a_spam_close_adds_nothing_to_case_statistics_and_one_to_no_consultation_spam(
    gateway: Gateway, boris_and_sofia: tuple[Consultant, Consultant]
) -> None:
    boris, sofia = boris_and_sofia
    consulted = await claimed(gateway, boris)
    status, body = await boris.call("POST", f"/api/threads/{consulted}/close", {"case": CASE})
    assert status == 200, body
    assert body["outcome"] == "consultation"
    spam = await claimed(gateway, boris)
    status, body = await boris.call(
        "POST", f"/api/threads/{spam}/close", {"outcome": "no_consultation", "reason": "spam"}
    )
    assert status == 200, body
    assert body["status"] == "closed" and body["outcome"] == "no_consultation"
    assert body["no_consultation_reason"] == "spam"
    stored = await threads_collection(gateway, "find_one", {"_id": spam})
    # No case form, no invented answer: only where, when and why.
    assert "case" not in stored
    assert stored["facts"]["outcome"] == "no_consultation" and stored["facts"]["reason"] == "spam"
    assert "fields" not in stored["facts"]

    day = today()
    status, result = await sofia.call("GET", f"/api/stats?from={day}&to={day}&by=organisation,gender")
    assert status == 200, result
    assert result["total"]["count"] == 1
    assert result["rows"] == [{"organisation": "bwc", "gender": "f", "count": 1, "share": 100.0}]
    assert result["no_consultation"] == {"count": 1, "rows": [{"reason": "spam", "count": 1}]}
    # By period, and filtered by a thread dimension, the spam contact is still counted apart.
    status, result = await sofia.call("GET", f"/api/stats?from={day}&to={day}&period=day&channel=email")
    assert status == 200, result
    assert result["periods"] == [{"period": day, "count": 1, "people": 0}]
    assert result["no_consultation"]["rows"] == [{"period": day, "reason": "spam", "count": 1}]

    async with sofia.http.get(f"{sofia.base}/api/stats.csv?from={day}&to={day}&by=gender") as resp:
        assert resp.status == 200
        rows = list(csv.reader(io.StringIO(await resp.text())))
    assert rows[:2] == [["gender", "count", "share_percent"], ["f", "1", "100.0"]]
    assert ["consultations", "1"] in rows
    assert ["no_consultation", "1"] in rows and ["no_consultation", "spam", "1"] in rows


async def test_an_unknown_reason_or_outcome_or_a_missing_case_gets_422_naming_the_field(
    gateway: Gateway,
) -> None:
    gateway.seed_demo_accounts()
    boris = await login(gateway, "boris")
    try:
        thread = await claimed(gateway, boris)
        path = f"/api/threads/{thread}/close"
        cases: list[tuple[dict[str, Any], str, str]] = [
            ({"outcome": "no_consultation", "reason": "bored"}, "invalid", "reason"),
            ({"outcome": "no_consultation", "reason": ["spam"]}, "invalid", "reason"),
            ({"outcome": "no_consultation"}, "missing", "reason"),
            ({"outcome": "no_consultation", "reason": "spam", "case": CASE}, "invalid", "case"),
            ({"outcome": "resolved", "case": CASE}, "invalid", "outcome"),
            ({"outcome": "consultation"}, "missing", "case"),
            ({}, "missing", "case"),
        ]
        for body, kind, name in cases:
            status, problem = await boris.call("POST", path, body)
            assert status == 422, (body, problem)
            assert problem[kind] == [name], (body, problem)
            assert name in problem["detail"], (body, problem)
        # Nothing of it closed the thread: it closes now, as a consultation, with {case} alone.
        status, closed = await boris.call("POST", path, {"case": CASE})
        assert status == 200, closed
        assert closed["outcome"] == "consultation" and closed["case"]["gender"] == "f"
        assert "no_consultation_reason" not in closed
    finally:
        await boris.close()


async def test_a_reopened_thread_closed_as_a_duplicate_keeps_the_earlier_consultation_and_its_count(
    gateway: Gateway, boris_and_sofia: tuple[Consultant, Consultant]
) -> None:
    boris, sofia = boris_and_sofia
    thread = await claimed(gateway, boris)
    path = f"/api/threads/{thread}/close"
    assert (await boris.call("POST", path, {"case": CASE}))[0] == 200
    # The client writes again: the thread reopens with its next consultation, as the
    # dispatcher's accept path does (conversations/repository.py accept_inbound).
    now = datetime.now(UTC)
    await threads_collection(
        gateway,
        "update_one",
        {"_id": thread},
        {
            "$set": {
                "status": "waiting",
                "assignee": None,
                "waiting_since": now,
                "consultation.started_at": now,
                "consultation.queues": ["113-triage"],
                "consultation.consultants": [],
            },
            "$inc": {"consultation.n": 1},
        },
    )
    assert (await boris.call("POST", f"/api/threads/{thread}/claim"))[0] == 200
    status, closed = await boris.call("POST", path, {"outcome": "no_consultation", "reason": "duplicate"})
    assert status == 200, closed
    assert closed["outcome"] == "no_consultation" and "case" not in closed
    client = make_client(gateway.urls.mongo_url)
    try:
        episodes = [
            c async for c in client[gateway.database]["consultations"].find({"thread_id": thread}).sort("n")
        ]
    finally:
        await client.close()
    # Two episodes: the consultation keeps its case form, the duplicate has none.
    assert [(c["n"], c["outcome"], c["reason"]) for c in episodes] == [
        (1, "consultation", None),
        (2, "no_consultation", "duplicate"),
    ]
    assert episodes[0]["case"]["gender"] == "f" and episodes[1]["case"] is None
    assert episodes[1]["facts"]["at"] >= episodes[0]["closed_at"]
    day = today()
    status, result = await sofia.call("GET", f"/api/stats?from={day}&to={day}")
    assert status == 200, result
    assert result["total"]["count"] == 1
    assert result["no_consultation"] == {"count": 1, "rows": [{"reason": "duplicate", "count": 1}]}


async def test_the_console_configuration_lists_the_close_reasons(gateway: Gateway) -> None:
    gateway.seed_demo_accounts()
    boris = await login(gateway, "boris")
    try:
        status, config = await boris.call("GET", "/api/config")
        assert status == 200, config
        assert list(config["close_reasons"]) == [
            "spam",
            "test",
            "silent",
            "wrong_address",
            "abusive",
            "duplicate",
        ]
        assert config["close_reasons"]["spam"]["ru"] == "Спам или робот"
    finally:
        await boris.close()


async def test_the_console_closes_without_consultation_with_a_reason_in_russian(
    gateway: Gateway, browser: Browser
) -> None:
    gateway.seed_demo_accounts()
    thread = waiting_thread()
    await threads_collection(gateway, "insert_one", thread)
    watch = Watch(gateway.store_url)
    ctx = await browser.new_context(viewport=LAPTOP, locale="ru-RU")
    try:
        page = await logged_in(ctx, gateway, "boris", watch, ("Логин", "Пароль", "Войти"))
        await page.locator('#queues button[data-queue="113-triage"]').click()
        await page.get_by_role("button", name="Следующий").click()
        await page.get_by_role("button", name="Закрыть…").click()
        # No reason chosen: the console says so before asking the server.
        await page.get_by_role("button", name="Закрыть без консультации").click()
        await expect(page.locator("#case-error")).to_have_text("Не заполнено: Причина")
        await expect(page.locator("#no-consultation.bad")).to_have_count(1)
        await page.get_by_label("Причина").select_option(label="Спам или робот")
        await page.get_by_role("button", name="Закрыть без консультации").click()
        await expect(page.locator("#thread-meta")).to_contain_text("закрыто")
    finally:
        await ctx.close()
    stored = await threads_collection(gateway, "find_one", {"_id": thread["_id"]})
    assert stored["status"] == "closed" and stored["no_consultation_reason"] == "spam"
    assert "case" not in stored
    assert watch.elsewhere == [] and watch.dialogs == []
