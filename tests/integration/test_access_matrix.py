"""Who may do what (QUALITY.md 4): the role x route x organisation matrix through the real
services, with 0 unauthorised answers; CSRF, log-in throttling, session end and expiry;
the admin command; every read of a thread recorded."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from deploy.local.services import new_master_key
from services.store.app import create_app
from services.store.openapi import OPERATIONS
from services.store.settings import StoreSettings
from tests.conftest import ROOT, Gateway
from tests.integration.helpers import Consultant

# Which queues each demo account may see (the example configuration, PRODUCT.md 2 and 4).
VISIBLE = {
    "anna": {"113-triage", "lastrada-migration"},
    "boris": {"113-triage", "bwc-migration"},
    "vera": {"gp-dv", "gp-legal"},
    # A supervisor sees what her organisation's consultants see; the national administrator all.
    "larisa": {"113-triage", "lastrada-migration"},
    "bogdan": {"113-triage", "bwc-migration"},
    "sofia": {"113-triage", "lastrada-migration", "bwc-migration", "gp-dv", "gp-legal"},
    "olga": {"gp-dv", "gp-legal"},  # an admin of Gender Perspectives
    "sasha": {"113-triage", "lastrada-migration"},
    "kira": {"113-triage", "bwc-migration"},
}
ROLE = {"anna": "consultant", "boris": "consultant", "vera": "consultant", "sofia": "national_admin"}
ROLE.update(larisa="supervisor", bogdan="supervisor", olga="admin", sasha="specialist", kira="specialist")
SUPERVISING = {"supervisor", "admin", "national_admin"}
ADMINS = {"admin", "national_admin"}
# Which roles may call each route that is not about one thread or queue.
ROLE_ROUTES = {
    ("GET", "/api/supervisor"): SUPERVISING,
    # Quarantined mail (services/store/quarantine.py): listed and replayed by supervisors.
    ("GET", "/api/quarantine"): SUPERVISING,
    ("POST", "/api/quarantine/replay"): SUPERVISING,
    ("GET", "/api/users"): ADMINS,
    ("POST", "/api/users/{login}/disable"): ADMINS,
    ("GET", "/api/threads/{id}/reads"): SUPERVISING,
    # A person's data (services/store/erasure.py): a copy of it, its erasure.
    ("GET", "/api/threads/{id}/person/export"): SUPERVISING,
    ("POST", "/api/threads/{id}/person/erase"): SUPERVISING,
    # A supervisor takes a conversation over from whoever holds it (services/store/takeover.py).
    ("POST", "/api/threads/{id}/takeover"): SUPERVISING,
    ("GET", "/api/cases/{id}/reads"): SUPERVISING,
    # Case reports (services/store/case_report_routes.py), scoped like statistics.
    **{
        ("GET", f"/api/case-reports/{report}{suffix}"): SUPERVISING
        for report in ("assistance", "cases", "referrals")
        for suffix in ("", ".csv")
    },
    # Service figures (services/store/service_figures.py): for supervisors, never published.
    ("GET", "/api/service-figures"): SUPERVISING,
    # Statistics (services/store/reports.py): the same table as JSON, CSV and XLSX.
    **{("GET", f"/api/stats{suffix}"): SUPERVISING for suffix in ("", ".csv", ".xlsx")},
    # The reports page and the yearly report (HTML, PDF from the command line).
    ("GET", "/reports"): SUPERVISING,
    ("GET", "/reports/yearly"): SUPERVISING,
    # Administration (services/store/administration.py): staff only; which accounts and
    # answers a supervisor reaches is tested in tests/integration/test_administration.py.
    **{
        route: SUPERVISING
        for route in [
            ("GET", "/api/admin/accounts"),
            ("POST", "/api/admin/accounts"),
            ("PATCH", "/api/admin/accounts/{login}"),
            ("POST", "/api/admin/accounts/{login}/disable"),
            ("POST", "/api/admin/accounts/{login}/enable"),
            ("POST", "/api/admin/accounts/{login}/password"),
            ("GET", "/api/admin/changes"),
            ("GET", "/api/admin/canned"),
            ("POST", "/api/admin/canned"),
            ("PUT", "/api/admin/canned/{item}"),
            ("DELETE", "/api/admin/canned/{item}"),
            ("GET", "/api/admin/directory"),
        ]
    },
    ("POST", "/api/admin/directory"): {"national_admin"},
    ("PUT", "/api/admin/directory/{item}"): {"national_admin"},
    ("DELETE", "/api/admin/directory/{item}"): {"national_admin"},
}
# Routes about one thread: a thread outside the caller's queues answers 404, whatever the role.
THREAD_ROUTES = [
    ("GET", "/api/threads/{id}", None),
    ("GET", "/api/threads/{id}/history", None),
    ("GET", "/api/threads/{id}/attachments/{attachment}", None),
    ("POST", "/api/threads/{id}/attachments", None),
    ("GET", "/api/threads/{id}/reads", None),
    ("POST", "/api/threads/{id}/claim", None),
    ("POST", "/api/threads/{id}/messages", {"text": "hello"}),
    ("POST", "/api/threads/{id}/notes", {"text": "note"}),
    ("POST", "/api/threads/{id}/transfer", {"queue": "gp-legal", "note": "x"}),
    ("POST", "/api/threads/{id}/release", None),
    ("POST", "/api/threads/{id}/client", {"thread": "0" * 32}),
    ("DELETE", "/api/threads/{id}/client", None),
    ("GET", "/api/threads/{id}/earlier", None),
    ("GET", "/api/threads/{id}/contact-plan", None),
    ("PUT", "/api/threads/{id}/contact-plan", {"write_first": True}),
    ("POST", "/api/threads/{id}/messages/{message}/cancel", None),
    ("GET", "/api/threads/{id}/person/export", None),
    ("POST", "/api/threads/{id}/person/erase", {"confirm": "erase"}),
    ("POST", "/api/threads/{id}/close-left", None),
    # A shift (services/store/shift.py); who may hand what to whom: tests/integration/test_shift.py.
    ("POST", "/api/threads/{id}/urgent", {"urgent": True}),
    ("GET", "/api/threads/{id}/colleagues", None),
    ("POST", "/api/threads/{id}/handoff", {"to": "anna"}),
    ("POST", "/api/threads/{id}/handoff/accept", None),
    ("POST", "/api/threads/{id}/handoff/decline", None),
    ("POST", "/api/threads/{id}/takeover", None),
    (
        "POST",
        "/api/threads/{id}/close",
        {"case": {"client_role": "survivor", "gender": "f", "age_group": "27-40"}},
    ),
]
# Routes about one case (services/store/cases.py): only the owning organisation's specialists
# and the supervisors and admins who see its line (of that organisation or of none) see it;
# to everyone else it does not exist (404), whatever the role.
CASE_ROUTES = [
    ("GET", "/api/cases/{id}", None),
    ("GET", "/api/cases/{id}/reads", None),
    ("POST", "/api/cases/{id}/refer", {"role": "lawyer"}),
    ("POST", "/api/cases/{id}/take", None),
    ("POST", "/api/cases/{id}/services", {"kind": "shelter", "date": "2026-01-01"}),
    ("POST", "/api/cases/{id}/external-referrals", {"to": "police"}),
    ("PATCH", "/api/cases/{id}/external-referrals/{item}", {"result": "x"}),
    ("POST", "/api/cases/{id}/followups", {"due": "2027-06-01T00:00:00+00:00"}),
    ("POST", "/api/cases/{id}/followups/{item}/done", None),
    ("POST", "/api/cases/{id}/notes", {"text": "note"}),
    ("POST", "/api/cases/{id}/status", {"status": "closed", "reason": "duplicate"}),
]
CASE_VIEWERS = {"sasha", "sofia", "larisa"}  # of a La Strada case on the 113 line
# Every other route is open to every logged-in user, and scoped by what it returns.
SCOPED = {
    ("DELETE", "/api/session"),
    ("GET", "/api/me"),
    ("PUT", "/api/me/password"),  # one's own, with the current password
    ("PUT", "/api/me/status"),
    ("GET", "/api/config"),
    ("GET", "/api/queues"),
    ("GET", "/api/threads"),
    ("POST", "/api/queues/{queue}/next"),
    ("GET", "/api/events"),
    # Cases: a consultant opens one from a conversation she sees; lists show one's own cases.
    ("GET", "/api/cases/settings"),
    ("POST", "/api/cases"),
    ("GET", "/api/cases"),
    ("GET", "/api/cases/alerts"),
    # Finding a record: each person finds what they could open (checked below).
    ("POST", "/api/search"),
    # A phone consultation: registered by anyone on one of their lines, in their organisation's
    # queue (services/store/reports.py), never readable by another organisation.
    ("POST", "/api/consultations"),
    # One's own second factor (services/store/totp.py): its state, enrolling, a log-in's code
    # step; a session past its password alone reaches these and nothing else (test_totp.py).
    ("POST", "/api/session/code"),
    ("GET", "/api/me/totp"),
    ("POST", "/api/me/totp/enrolment"),
    ("POST", "/api/me/totp/enrolment/confirm"),
    # Threads offered to oneself (services/store/shift.py).
    ("GET", "/api/handoffs"),
}
PUBLIC = {("POST", "/api/session"), ("GET", "/api/openapi.json")}
MATRIX = {(m, p) for m, p, _ in THREAD_ROUTES + CASE_ROUTES} | set(ROLE_ROUTES) | SCOPED | PUBLIC
# Routes outside the API: the console page and its files (no data), health and metrics.
NOT_CONSOLE = {("GET", "/"), ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")}


def test_every_route_of_the_store_is_in_the_matrix() -> None:
    """A route added without a line here fails: the store's own router is enumerated (building
    the application connects to nothing)."""
    settings = StoreSettings(
        amqp_url="amqp://u:p@127.0.0.1:1/v",
        mongo_url="mongodb://127.0.0.1:1/",
        client_key_secret="k" * 32,
        master_key=new_master_key(),
    )
    app = create_app(settings)
    routes = {
        (r.method, r.resource.canonical)
        for r in app.router.routes()
        if r.resource is not None and r.method != "HEAD" and not r.resource.canonical.startswith("/static")
    }
    assert routes - NOT_CONSOLE == MATRIX, (routes - NOT_CONSOLE - MATRIX, MATRIX - routes)


def add_user(gateway: Gateway, *args: str, password: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.store.admin", *args],
        cwd=ROOT,
        input=password + "\n",
        text=True,
        capture_output=True,
        env={**os.environ, **gateway.env["store"]},
    )


async def start_chat(http: aiohttp.ClientSession, gateway: Gateway, text: str, **choices: str) -> None:
    ws = await http.ws_connect(f"{gateway.chat_url}/chat/ws")
    await ws.send_json({"type": "start", **choices})
    await ws.send_json({"type": "message", "id": str(uuid.uuid4()), "text": text})
    while (await ws.receive_json(timeout=15)).get("type") != "ack":
        pass
    await ws.close()


@pytest.fixture
async def people(gateway: Gateway) -> AsyncIterator[dict[str, Consultant]]:
    gateway.seed_demo_accounts()
    done = add_user(
        gateway,
        "add-user",
        "--login=olga",
        "--role=admin",
        "--organisation=gp",
        "--lines=dv",
        "--password-stdin",
        password="olga-admin-password",
    )
    assert done.returncode == 0, done.stderr
    logged: dict[str, Consultant] = {}
    try:
        for login in VISIBLE:
            c = Consultant(gateway.store_url)
            await c.login(login, "olga-admin-password" if login == "olga" else f"{login}-demo")
            await c.open_events()
            logged[login] = c
        yield logged
    finally:
        for c in logged.values():
            await c.close()


async def events_until(c: Consultant, thread_id: str) -> set[str]:
    """Thread ids of every live event ``c`` received up to the ThreadQueued of ``thread_id``."""
    seen: set[str] = set()

    def note(e: dict[str, Any]) -> bool:
        seen.add(e["thread_id"])
        return e["name"] == "ThreadQueued" and e["thread_id"] == thread_id

    await c.wait_event(note)
    return seen


async def test_role_route_organisation_matrix_has_no_unauthorised_answer(
    gateway: Gateway, people: dict[str, Consultant]
) -> None:
    sofia = people["sofia"]
    threads: dict[str, str] = {}  # queue -> thread id
    secret = f"canary-{uuid.uuid4().hex}"
    async with aiohttp.ClientSession() as http:
        # One conversation per queue, one after the other, so live events arrive in this order.
        for queue, choices in [
            ("bwc-migration", {"line": "113", "region": "brest"}),
            ("gp-dv", {"line": "dv"}),
            ("lastrada-migration", {"line": "113", "region": "minsk"}),
            ("113-triage", {"line": "113"}),
            ("gp-legal", {"line": "dv", "topic": "legal"}),
        ]:
            await start_chat(http, gateway, f"{secret} {queue}", **choices)
            queued = await sofia.wait_event(lambda e: e["name"] == "ThreadQueued")
            assert queued["queue"] == queue
            threads[queue] = queued["thread_id"]
    by_id = {t: q for q, t in threads.items()}

    # Live events reach only those who may see the queue.
    assert {by_id[t] for t in await events_until(people["anna"], threads["113-triage"])} <= VISIBLE["anna"]
    assert {by_id[t] for t in await events_until(people["boris"], threads["113-triage"])} <= VISIBLE["boris"]
    assert {by_id[t] for t in await events_until(people["vera"], threads["gp-legal"])} <= VISIBLE["vera"]

    status, doc = await sofia.call("GET", "/api/openapi.json")
    assert status == 200
    operations = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    # Every route of the running store (the document lists its router's) is in this matrix;
    # test_every_route_of_the_store_is_in_the_matrix checks the pages beside the API too.
    assert set(OPERATIONS) <= operations and operations <= MATRIX, operations - MATRIX

    unauthorised: list[str] = []
    checked = 0
    for login, c in people.items():
        # Threads of queues outside the caller's: 404 on every thread route, nothing leaks.
        for queue, thread_id in threads.items():
            for method, route, body in THREAD_ROUTES:
                allowed_role = ROLE[login] in ROLE_ROUTES.get((method, route), {ROLE[login]})
                if queue in VISIBLE[login] and allowed_role:
                    continue
                status, answer = await c.call(
                    method,
                    route.format(id=thread_id, attachment="0" * 32, message="0" * 32),
                    body,
                    headers={"Idempotency-Key": uuid.uuid4().hex},
                )
                checked += 1
                # The role is checked first (it says nothing about the thread), then the queue.
                expected = 404 if allowed_role else 403
                if status != expected or secret in str(answer):
                    unauthorised.append(f"{login} {method} {route} ({queue}): {status}")
        # Role-only routes.
        for (method, route), roles in ROLE_ROUTES.items():
            if "{id}" in route or ROLE[login] in roles:
                continue
            status, _ = await c.call(method, route.format(login="anna", item="x"), None)
            checked += 1
            if status != 403:
                unauthorised.append(f"{login} {method} {route}: {status}")
        # Queue routes and lists: only the caller's queues.
        for queue in threads:
            if queue in VISIBLE[login]:
                continue
            for method, path in [
                ("GET", f"/api/threads?queue={queue}"),
                ("POST", f"/api/queues/{queue}/next"),
            ]:
                status, answer = await c.call(method, path)
                checked += 1
                if status != 404 or secret in str(answer):
                    unauthorised.append(f"{login} {method} {path}: {status}")
        status, queues = await c.call("GET", "/api/queues")
        assert status == 200 and {q["name"] for q in queues} == VISIBLE[login], login
        status, listed = await c.call("GET", "/api/threads")
        assert status == 200 and {t["queue"] for t in listed} == VISIBLE[login] & set(threads), login
        status, config = await c.call("GET", "/api/config")
        assert status == 200 and set(config["case_form"]) == {
            "dv" if q.startswith("gp-") else "113" for q in VISIBLE[login]
        }
    assert unauthorised == []
    assert checked >= 100

    # Finding a record: the canary's words find, for each person, exactly the threads they may
    # open. The store indexes a message within seconds: asked until the supervisor of all
    # lines finds every thread.
    word = secret.removeprefix("canary-")
    for _ in range(60):
        status, found = await sofia.call("POST", "/api/search", {"text": word})
        if status != 200 or len(found["records"]) == len(threads):
            break
        await asyncio.sleep(0.5)  # the indexer's pass is periodic: there is no event to await
    for login, c in people.items():
        status, found = await c.call("POST", "/api/search", {"text": word})
        assert status == 200, (login, found)
        assert {by_id[r["thread"]["id"]] for r in found["records"]} == VISIBLE[login] & set(threads), login
        assert found["cases"] == [] and secret not in str(found)

    # The allowed side of the matrix answers: consultants read their organisation's threads,
    # supervisors their organisation's queues, the national administrator every one, admins accounts.
    for login, c in people.items():
        for queue in VISIBLE[login] & set(threads):
            status, thread = await c.call("GET", f"/api/threads/{threads[queue]}")
            assert status == 200 and secret in thread["messages"][0]["text"], (login, queue)
    # The overview: the supervisor's organisation's queues and people; the national
    # administrator's, every organisation's.
    organisation = {"anna": "lastrada", "larisa": "lastrada", "sasha": "lastrada"}
    organisation.update(boris="bwc", bogdan="bwc", kira="bwc", vera="gp", olga="gp", dina="gp")
    for login in ("larisa", "bogdan", "olga", "sofia"):
        status, overview = await people[login].call("GET", "/api/supervisor")
        assert status == 200 and {q["name"] for q in overview["queues"]} == VISIBLE[login], login
        shown = {p["login"] for p in overview["consultants"]}
        if login == "sofia":
            assert shown >= set(organisation)
        else:
            assert {organisation.get(p, "?") for p in shown} == {organisation[login]}, (login, shown)
    # Accounts: an admin lists her organisation's, the national administrator every one.
    status, users = await people["olga"].call("GET", "/api/users")
    assert status == 200 and {u["id"] for u in users} == {"olga", "vera", "dina"}
    assert all("password_hash" not in u and "totp" not in u for u in users)
    status, users = await sofia.call("GET", "/api/users")
    assert status == 200 and {u["id"] for u in users} >= {"olga", "vera", "anna", "boris", "sofia"}

    # Every read of a thread by a person is recorded: who, when, which thread.
    status, reads = await sofia.call("GET", f"/api/threads/{threads['lastrada-migration']}/reads")
    assert status == 200
    assert {r["login"] for r in reads} == {"anna", "sasha", "sofia", "larisa"}
    assert all(r["thread_id"] == threads["lastrada-migration"] and r["at"] for r in reads)

    # A case of La Strada, opened by its consultant from the conversation: its specialists and
    # the supervisors who see the line read it; to everyone else no route tells it exists.
    status, receipt = await people["anna"].call(
        "POST",
        "/api/cases",
        {
            "thread": threads["lastrada-migration"],
            "kind": "crisis_abroad",
            "intake": {"country": "PL", "risk_level": "high", "safe_contact": secret},
        },
    )
    assert status == 201 and secret not in str(receipt)
    case_id = receipt["id"]
    exposed: list[str] = []
    for login, c in people.items():
        status, listed = await c.call("GET", "/api/cases")
        if status != 200 or (case_id in str(listed)) != (login in CASE_VIEWERS):
            exposed.append(f"{login} GET /api/cases: {status}")
        if login in CASE_VIEWERS:
            status, case = await c.call("GET", f"/api/cases/{case_id}")
            assert status == 200 and case["intake"]["safe_contact"] == secret, login
            continue
        for method, route, body in CASE_ROUTES:
            status, answer = await c.call(method, route.format(id=case_id, item="x"), body)
            checked += 1
            expected = 404 if ROLE[login] in ROLE_ROUTES.get((method, route), {ROLE[login]}) else 403
            if status != expected or secret in str(answer) or case_id in str(answer):
                exposed.append(f"{login} {method} {route}: {status}")
    assert exposed == []

    # An admin disables an account of her organisation only: another's is not found, as one
    # that does not exist; the national administrator disables any, and its session ends at once.
    status, _ = await people["olga"].call("POST", "/api/users/boris/disable")
    assert status == 404
    assert (await people["boris"].call("GET", "/api/queues"))[0] == 200
    status, _ = await sofia.call("POST", "/api/users/boris/disable")
    assert status == 200
    assert (await people["boris"].call("GET", "/api/queues"))[0] == 401


async def test_no_session_and_no_csrf_token_get_nothing(
    gateway: Gateway, people: dict[str, Consultant]
) -> None:
    anna = people["anna"]
    async with aiohttp.ClientSession() as http:
        await start_chat(http, gateway, "вопрос", line="113", region="minsk")
    queued = await anna.wait_event(lambda e: e["name"] == "ThreadQueued")
    thread_id = queued["thread_id"]
    status, doc = await anna.call("GET", "/api/openapi.json")
    assert status == 200
    operations = [(m.upper(), p) for p, ops in doc["paths"].items() for m in ops]
    wrong: list[str] = []
    async with aiohttp.ClientSession() as stranger:
        async with stranger.get(gateway.store_url + "/api/openapi.json") as resp:
            assert resp.status == 200 and await resp.json() == doc  # public: it describes, holds no data
        for method, path in operations:
            url = gateway.store_url + path.format(
                id=thread_id,
                queue="lastrada-migration",
                login="anna",
                item="x",
                attachment="0" * 32,
                message="0" * 32,
            )
            if (method, path) in PUBLIC:
                continue
            async with stranger.request(method, url, json={}) as resp:
                if resp.status != 401:
                    wrong.append(f"no session: {method} {path} {resp.status}")
            if method == "GET":
                continue
            for token in (None, "forged"):
                headers = {"X-CSRF-Token": token} if token else {}
                async with anna.http.request(method, url, json={}, headers=headers) as resp:
                    if resp.status != 403:
                        wrong.append(f"csrf {token}: {method} {path} {resp.status}")
                    assert resp.content_type == "application/problem+json"
    assert wrong == []
    assert len(operations) >= 20
    # Nothing was changed by the refused calls.
    _status, thread = await anna.call("GET", f"/api/threads/{thread_id}")
    assert thread["status"] == "waiting" and [m["direction"] for m in thread["messages"]].count("note") == 0


@pytest.mark.service_env({"STORE_LOGIN_ATTEMPTS": "3", "STORE_SESSION_HOURS": "0.001"})
async def test_accounts_throttle_logout_expiry_and_admin_command(gateway: Gateway) -> None:
    for login in ("lena", "mila"):
        done = add_user(
            gateway, "add-user", f"--login={login}", "--organisation=gp", "--lines=dv", "--password-stdin",
            password=f"{login}-password-1",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    short = add_user(
        gateway,
        "add-user",
        "--login=x",
        "--organisation=gp",
        "--lines=dv",
        "--password-stdin",
        password="short",
    )
    assert short.returncode != 0 and "10 characters" in short.stderr

    async def login(who: str, password: str) -> int:
        async with aiohttp.ClientSession() as http:
            body = {"login": who, "password": password}
            async with http.post(gateway.store_url + "/api/session", json=body) as resp:
                return resp.status

    # Log-in rate limit: after 3 failures even the right password waits; others are not held up.
    assert [await login("lena", "wrong") for _ in range(3)] == [401, 401, 401]
    assert await login("lena", "lena-password-1") == 429
    assert await login("mila", "mila-password-1") == 200

    mila = Consultant(gateway.store_url)
    other = Consultant(gateway.store_url)
    try:
        body = await mila.login("mila", "mila-password-1")
        assert body["consultant"]["login"] == "mila" and body["csrf_token"]
        # Log-out ends the session on the server, not only in the browser.
        stolen = {c.key: c.value for c in mila.http.cookie_jar}
        assert (await mila.call("DELETE", "/api/session"))[0] == 200
        async with aiohttp.ClientSession(cookies=stolen) as replay:
            async with replay.get(gateway.store_url + "/api/me") as resp:
                assert resp.status == 401
        # A password reset ends every session and the old password stops working.
        await other.login("mila", "mila-password-1")
        assert (await other.call("GET", "/api/me"))[0] == 200
        done = add_user(
            gateway, "reset-password", "--login=mila", "--password-stdin", password="mila-password-2"
        )
        assert done.returncode == 0, done.stderr
        assert (await other.call("GET", "/api/me"))[0] == 401
        assert await login("mila", "mila-password-1") == 401
        # Sessions expire (STORE_SESSION_HOURS=0.001: 3.6 s): past it, the same cookie is refused.
        await other.login("mila", "mila-password-2")
        assert (await other.call("GET", "/api/me"))[0] == 200
        await asyncio.sleep(4)  # a deadline, not an event: there is nothing to await but time
        assert (await other.call("GET", "/api/me"))[0] == 401
        # Disabling an account refuses its log-in; enabling lets it back.
        assert add_user(gateway, "disable-user", "--login=mila", password="").returncode == 0
        assert await login("mila", "mila-password-2") == 401
        assert add_user(gateway, "enable-user", "--login=mila", password="").returncode == 0
        assert await login("mila", "mila-password-2") == 200
    finally:
        await mila.close()
        await other.close()


async def test_a_supervisor_reaches_no_other_organisations_work_by_guessing_ids(
    gateway: Gateway, people: dict[str, Consultant]
) -> None:
    """Larisa supervises La Strada. She holds the ids of BWC's conversation, held by Boris, and
    of its case (a leaked link, a guess): every route answers as for ids that do not exist, and
    the conversation stays as it was with its holder."""
    larisa, boris, bogdan = people["larisa"], people["boris"], people["bogdan"]
    secret = f"canary-{uuid.uuid4().hex}"
    async with aiohttp.ClientSession() as http:
        await start_chat(http, gateway, secret, line="113", region="brest")
        await start_chat(http, gateway, "mine", line="113", region="minsk")
    bwc = (await boris.wait_event(lambda e: e["name"] == "ThreadQueued"))["thread_id"]
    ours = await larisa.wait_event(lambda e: e["name"] == "ThreadQueued" and e["thread_id"] != bwc)
    assert (await boris.call("POST", f"/api/threads/{bwc}/claim"))[0] == 200
    intake = {"country": "PL", "risk_level": "high"}
    status, receipt = await boris.call(
        "POST", "/api/cases", {"thread": bwc, "kind": "crisis_abroad", "intake": intake}
    )
    assert status == 201, receipt
    case_id = receipt["id"]
    absent = "0" * 32
    leaked: list[str] = []
    for thread_id in (bwc, absent):
        for method, path, body in [
            ("GET", f"/api/threads/{thread_id}", None),
            ("GET", f"/api/threads/{thread_id}/history", None),
            ("GET", f"/api/threads/{thread_id}/reads", None),
            ("GET", f"/api/threads/{thread_id}/earlier", None),
            ("POST", f"/api/threads/{thread_id}/release", None),
            ("POST", f"/api/threads/{thread_id}/transfer", {"queue": "lastrada-migration"}),
            ("GET", f"/api/threads/{thread_id}/person/export", None),
            ("POST", f"/api/threads/{thread_id}/person/erase", {"confirm": "erase"}),
            ("POST", f"/api/threads/{ours['thread_id']}/client", {"thread": thread_id}),
        ]:
            status, answer = await larisa.call(method, path, body)
            if status != 404 or secret in str(answer) or "boris" in str(answer):
                leaked.append(f"{method} {path}: {status}")
    for case in (case_id, absent):
        for method, path in [("GET", f"/api/cases/{case}"), ("GET", f"/api/cases/{case}/reads")]:
            status, answer = await larisa.call(method, path)
            if status != 404 or "PL" in str(answer):
                leaked.append(f"{method} {path}: {status}")
    for method, path in [
        ("GET", "/api/threads?queue=bwc-migration"),
        ("POST", "/api/queues/bwc-migration/next"),
    ]:
        if (await larisa.call(method, path))[0] != 404:
            leaked.append(f"{method} {path}")
    status, listed = await larisa.call("GET", "/api/cases")
    assert status == 200 and case_id not in str(listed)
    status, overview = await larisa.call("GET", "/api/supervisor")
    assert status == 200 and bwc not in str(overview) and "boris" not in str(overview)
    assert leaked == []
    # Nothing changed: Boris still holds the conversation, in BWC's queue, with its text; BWC's
    # supervisor sees it and the case; nobody of La Strada read it.
    status, thread = await boris.call("GET", f"/api/threads/{bwc}")
    assert status == 200 and thread["assignee"] == "boris" and thread["queue"] == "bwc-migration"
    assert secret in thread["messages"][0]["text"]
    assert (await bogdan.call("GET", f"/api/cases/{case_id}"))[0] == 200
    status, reads = await bogdan.call("GET", f"/api/threads/{bwc}/reads")
    assert status == 200 and {r["login"] for r in reads} <= {"boris", "bogdan"}
