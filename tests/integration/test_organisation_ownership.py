"""What one organisation answered stays its own (issue 15), tried through the access routes
as the other organisation's consultant would: a La Strada phone consultation, and a thread of
the shared triage queue once La Strada claimed it, answered and closed it, are not readable by
BWC's Boris, however he asks."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest

from shared.mongo import make_client
from tests.conftest import Gateway
from tests.integration.helpers import Consultant
from tests.integration.test_access_matrix import start_chat

CASE = {"client_role": "survivor", "gender": "f", "age_group": "27-40", "topics": ["work_abroad"]}


@pytest.fixture
async def people(gateway: Gateway) -> AsyncIterator[dict[str, Consultant]]:
    gateway.seed_demo_accounts()
    out = {}
    for login in ("anna", "boris", "sofia"):
        c = Consultant(gateway.store_url)
        await c.login(login, f"{login}-demo")
        await c.open_events()
        out[login] = c
    try:
        yield out
    finally:
        for c in out.values():
            await c.close()


async def unreadable(boris: Consultant, thread_id: str) -> None:
    """Every route by which Boris could read or touch the thread answers 404, and no list of
    his names it."""
    for method, path in (
        ("GET", f"/api/threads/{thread_id}"),
        ("GET", f"/api/threads/{thread_id}/history"),
        ("POST", f"/api/threads/{thread_id}/claim"),
        ("POST", f"/api/threads/{thread_id}/notes"),
        ("POST", f"/api/threads/{thread_id}/release"),
    ):
        status, _ = await boris.call(method, path, {"text": "x"} if path.endswith("notes") else None)
        assert status == 404, (method, path, status)
    for query in ("", "?queue=113-triage", "?status=closed", "?queue=113-triage&status=closed", "?mine=1"):
        status, listed = await boris.call("GET", f"/api/threads{query}")
        assert status == 200 and thread_id not in {t["id"] for t in listed}, query


async def test_a_phone_consultation_is_not_readable_by_the_other_ngo(people: dict[str, Consultant]) -> None:
    anna, boris, sofia = people["anna"], people["boris"], people["sofia"]
    status, phone = await anna.call(
        "POST",
        "/api/consultations",
        {"line": "113", "case": CASE},
        headers={"Idempotency-Key": f"call-{uuid.uuid4().hex}"},
    )
    assert status == 201 and phone["facts"]["organisation"] == "lastrada"
    # La Strada's own queue of the line, not the triage queue both NGOs share.
    assert phone["queue"] != "113-triage" and phone["organisations"] == ["lastrada"], phone
    assert (await anna.call("GET", f"/api/threads/{phone['id']}"))[0] == 200
    await unreadable(boris, phone["id"])
    assert (await sofia.call("GET", f"/api/threads/{phone['id']}"))[0] == 200  # the supervisor of the line


async def test_a_claimed_triage_thread_moves_to_the_claimers_queue(
    gateway: Gateway, people: dict[str, Consultant]
) -> None:
    anna, boris = people["anna"], people["boris"]
    async with aiohttp.ClientSession() as http:
        await start_chat(http, gateway, "Куда обратиться?", line="113")  # no region: triage
    queued = await boris.wait_event(lambda e: e["name"] == "ThreadQueued")
    thread_id = queued["thread_id"]
    assert queued["queue"] == "113-triage"
    assert (await boris.call("GET", f"/api/threads/{thread_id}"))[0] == 200  # both NGOs see it waiting

    status, claimed = await anna.call("POST", f"/api/threads/{thread_id}/claim")
    assert (
        status == 200
        and claimed["queue"] == "lastrada-migration"
        and claimed["organisations"] == ["lastrada"]
    )
    moved = await boris.wait_event(lambda e: e["name"] == "ThreadClaimed" and e["thread_id"] == thread_id)
    assert moved["queue"] == "113-triage"  # Boris's console hears the claim and refreshes...
    await unreadable(boris, thread_id)  # ...and finds it gone

    reply = {"text": "Напишите, в каком вы городе"}
    key = {"Idempotency-Key": "k-12345678"}
    assert (await anna.call("POST", f"/api/threads/{thread_id}/messages", reply, key))[0] == 202
    assert (await anna.call("POST", f"/api/threads/{thread_id}/close", {"case": CASE}))[0] == 200
    await unreadable(boris, thread_id)
    status, closed = await anna.call("GET", f"/api/threads/{thread_id}")
    assert status == 200 and closed["status"] == "closed" and closed["queue"] == "lastrada-migration"

    # The same through "next", the other way round.
    async with aiohttp.ClientSession() as http:
        await start_chat(http, gateway, "Ещё вопрос", line="113")
    second = await anna.wait_event(lambda e: e["name"] == "ThreadQueued" and e["thread_id"] != thread_id)
    status, taken = await boris.call("POST", "/api/queues/113-triage/next")
    assert status == 200 and taken["id"] == second["thread_id"] and taken["queue"] == "bwc-migration"
    await unreadable(anna, second["thread_id"])
    # Given back unanswered, it returns to the shared queue, for either NGO to take.
    status, released = await boris.call("POST", f"/api/threads/{second['thread_id']}/release")
    assert status == 200 and released["queue"] == "113-triage" and released["status"] == "waiting"
    assert (await anna.call("POST", f"/api/threads/{second['thread_id']}/claim"))[0] == 200


async def test_a_closed_triage_thread_of_one_ngo_is_hidden_from_the_other(
    gateway: Gateway, people: dict[str, Consultant]
) -> None:
    """Threads closed in the triage queue before claimed threads moved stay there: the other
    NGO's consultants do not see them; the waiting ones they still do."""
    anna, boris = people["anna"], people["boris"]
    async with aiohttp.ClientSession() as http:
        await start_chat(http, gateway, "вопрос", line="113")
    queued = await anna.wait_event(lambda e: e["name"] == "ThreadQueued")
    client = make_client(gateway.urls.mongo_url)
    try:
        # As an older store left it: claimed and closed by La Strada, still in triage.
        await client[gateway.database]["threads"].update_one(
            {"_id": queued["thread_id"]},
            {
                "$set": {
                    "status": "closed",
                    "assignee": "anna",
                    "closed_by": "anna",
                    "case": CASE,
                    "facts": {"organisation": "lastrada", "line": "113", "channel": "chat", "fields": {}},
                }
            },
        )
    finally:
        await client.close()
    await unreadable(boris, queued["thread_id"])
    assert (await anna.call("GET", f"/api/threads/{queued['thread_id']}"))[0] == 200


@pytest.mark.parametrize(
    "at", ["0001-01-01T00:00:00+05:00", "1899-12-31T23:59:59+00:00", "9999-12-31T23:59:59-05:00", "soon"]
)
async def test_a_phone_consultation_at_the_calendars_edges_is_refused_with_a_problem(
    people: dict[str, Consultant], at: str
) -> None:
    status, body = await people["anna"].call(
        "POST",
        "/api/consultations",
        {"line": "113", "at": at, "case": CASE},
        headers={"Idempotency-Key": f"call-{uuid.uuid4().hex}"},
    )
    assert status == 422 and "at must be" in body["title"], body
