"""Every query the services make is served by an index on MongoDB.

The local stand-in (FerretDB v1) reads through no secondary index, so a query that no index
serves costs there what any other does, and would only show on MongoDB with data. Here the
four services run with the query-shape recorder on (``HOTLINE_QUERY_SHAPES``, see
shared/query_shapes.py) while the main flows go through the real channels and API: a mail
and a chat in, log-ins, queues, lists by status, next and claim, reply, note, transfer,
release, close with the case form, the client writing again, a chat whose client left (quick
exit, silence, writing again) and its one-action close, statistics and reports, the
supervisor's overview, accounts, the sweeper, the metrics refresh, retention and the
quarantine listing. Then each recorded shape is held against the indexes the services
declared, as read back from the database (what the code really creates), by MongoDB's rule:

- a filter is served by an index whose leading key it binds with an equality or a range
  (``$eq``, ``$in``, ``$gt``...; ``$ne``, ``$nin``, ``$exists``, ``$not``, ``$nor`` bind
  nothing), ``_id`` by the primary key; an ``$or`` is served when each of its clauses is;
- a sort with no filter is served by an index of which it is a prefix (or the reverse);
- a sort with a filter is done by the serving index when, after the keys the filter fixes by
  equality, the index continues with the sort's keys in the same (or all reversed) order;
  otherwise the server sorts in memory, which is fine only for a bounded set (open threads).

Shapes that scan on purpose are in ``SCANS`` and sorts in memory in ``SORTS_IN_MEMORY``, each
with its reason; any other shape must be served. The test prints every shape with the index
serving it, so the CI log documents them.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from deploy.local.services import SERVICES
from shared.query_shapes import ENV
from tests.conftest import ROOT, Gateway
from tests.integration.chat_client import ChatClient
from tests.integration.email_support import database
from tests.integration.helpers import Consultant, Mailbox, mail, new_message_id

# Operators a server turns into index bounds (equality, set membership, ranges, arrays).
BINDING = {"$eq", "$in", "$gt", "$gte", "$lt", "$lte", "$all", "$elemMatch"}
EQUALITY = {"$eq", "$in"}  # fixes a key, so an index goes on ordering by its next keys

# (collection, fields of the filter) -> why a scan is right there.
SCANS: dict[tuple[str, tuple[str, ...]], str] = {
    ("consultants", ("disabled", "lines")): "the supervisor's overview reads the staff accounts "
    "(tens of documents, the whole collection in one page)",
    ("shift_unannounced", ()): "releases the operator command could not announce (a few, removed "
    "once announced)",
    # The migrations run at the first start on a database not yet migrated: here before the
    # recorder is on, on a deployment once at the upgrade that brings them.
    ("threads", ("claim_seq",)): "migration 1: runs once per database",
    ("messages", ("direction", "received_at")): "migration 2: runs once per database",
    ("messages", ("html", "html_sanitiser")): "migration 3: runs once per database (again only "
    "when the sanitiser's version changes)",
    ("threads", ("channel", "client_id")): "threads stored before threads had clients get theirs "
    "(ClientRepository.assign_existing): once per database, after the migrations",
    # Finding a record (conversations/search.py): what waits for the search indexer is a
    # collection of its own, emptied as it is read, so reading it whole costs what waits.
    ("search_pending", ()): "the search indexer reads what waits (removed once indexed)",
    ("messages", ()): "a rebuild of the search index reads every message once (migration 5, or an "
    "operator after restoring an old backup)",
    ("consultations", ()): "the same rebuild reads every consultation once",
    ("search_postings", ("_id",)): "a fresh rebuild of the search index empties the postings first "
    "(migration 6: once per database)",
    # Canned answers and the directory (conversations/reference.py): tens of documents, read
    # whole into each process's copy when their version changes.
    ("canned_answers", ()): "reference data: read whole into the cache when it changes",
    ("directory_entries", ()): "reference data: read whole into the cache when it changes",
    ("consultants", ()): "the administrator's list of accounts, and the shift rules "
    "(services/store/shift.py) each pass: the staff accounts (tens of documents)",
    ("consultants", ("organisation", "role")): "a supervisor's list of their organisation's accounts",
    # Replay requests from the console (conversations/rawmail.py): a handful at most, each
    # deleted by the intake as it takes it.
    ("mail_replays", ()): "the waiting replay requests: a handful, each deleted when taken",
}

# (collection, fields of the filter, sort keys) -> why sorting in memory is right there.
SORTS_IN_MEMORY: dict[tuple[str, tuple[str, ...], tuple[str, ...]], str] = {
    ("threads", ("queue", "status"), ("priority", "waiting_since", "_id")): "a list of waiting or "
    "of held threads (a bounded set): queue_order finds and orders them, _id only breaks ties",
    ("threads", ("$nor", "queue", "status"), ("priority", "waiting_since", "_id")): "the same, "
    "for a consultant of a shared queue",
    ("threads", ("queue",), ("priority", "waiting_since", "_id")): "a list with no status, which "
    "the console never asks for (docs/console.md): one page kept in memory (a top-k sort), but "
    "every thread of the queues read, closed ones too; an API client should ask by status",
    ("threads", ("$nor", "queue"), ("priority", "waiting_since", "_id")): "the same, for a "
    "consultant of a shared queue",
    ("threads", ("assignee", "queue"), ("priority", "waiting_since", "_id")): "a consultant's own "
    "threads (mine=1), found by the held index: grows with one person's history only",
    ("threads", ("$nor", "assignee", "queue"), ("priority", "waiting_since", "_id")): "the same, "
    "for a consultant of a shared queue",
}


def quick_crisis(config: dict[str, Any]) -> None:
    """Open all day (automatic answers the same at any hour); a crisis escalates within seconds,
    and a chat's client who wrote nothing for about a second counts as silent."""
    for line in config["lines"].values():
        line["hours"] = {"timezone": "Europe/Minsk", "open": "00:00", "close": "23:59:59"}
    config["queue_policy"] = {
        "claim_timeout_minutes": 30,
        "crisis_escalation_minutes": 0.03,
        "client_silent_minutes": 0.02,
    }


# --- the rule -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Index:
    name: str
    keys: tuple[tuple[str, int], ...]


def bound(shape: dict[str, Any]) -> dict[str, list[str]]:
    """Fields the filter binds (index bounds), with their operators; ``$and`` clauses included."""
    out = {f: ops for f, ops in shape.items() if not f.startswith("$") and BINDING & set(ops)}
    for clause in shape.get("$and", []):
        out.update(bound(clause))
    return out


def serving(shape: dict[str, Any], indexes: list[Index], sort: list[list[Any]] | None = None) -> Index | None:
    """The index that serves ``shape``, or None: of those whose leading key the filter binds,
    one that also gives ``sort``'s order, then the one binding the longest prefix."""
    fields = bound(shape)
    if "_id" in fields:
        return Index("_id_", (("_id", 1),))
    ranked = []
    for position, index in enumerate(indexes):
        prefix = 0
        for key, _ in index.keys:
            if key not in fields:
                break
            prefix += 1
        if prefix:
            ranked.append((bool(sort) and sorts_by(index, shape, sort or []), prefix, -position, index))
    if ranked:
        return max(ranked, key=lambda r: r[:3])[3]
    clauses = shape.get("$or", [])
    if clauses and all(serving(c, indexes) is not None for c in clauses):
        names = sorted({i.name for c in clauses if (i := serving(c, indexes)) is not None})
        return Index("$or: " + " + ".join(names), ())
    return None


def sorts_by(index: Index, shape: dict[str, Any], sort: list[list[Any]]) -> bool:
    """Whether reading ``index`` within ``shape``'s bounds yields ``sort``'s order: after the
    index keys the filter fixes (an ``$in`` the server merges in order), the index goes on
    with the sort's keys, all in the same or all in the reverse direction. A sort key fixed by
    an equality is a constant and needs no order."""
    fields = bound(shape)
    fixed = {f for f, ops in fields.items() if set(ops) <= EQUALITY}
    wanted = [(k, d) for k, d in sort if not (k in fields and set(fields[k]) == {"$eq"})]
    keys = list(index.keys)
    while keys and keys[0][0] in fixed and keys[0][0] not in {k for k, _ in wanted}:
        keys.pop(0)
    if len(wanted) > len(keys):
        return False
    pairs = list(zip(wanted, keys, strict=False))
    return all(k == key for (k, _), (key, _) in pairs) and len({d * kd for (_, d), (_, kd) in pairs}) <= 1


def check(shape: dict[str, Any], indexes: list[Index]) -> tuple[str, str | None]:
    """(how ``shape`` is served, why it fails or None)."""
    collection, filt, sort = shape["collection"], shape["filter"], shape["sort"]
    fields = tuple(sorted(filt))
    sort_keys = tuple(k for k, _ in sort)
    index = serving(filt, indexes, sort)
    if index is None and not filt and sort:  # only a sort: an index in that order
        pk = [Index("_id_", (("_id", 1),))]
        index = next((i for i in pk + indexes if sorts_by(i, {}, sort)), None)
        if index is not None:
            return f"sort by {index.name}", None
    if index is None:
        reason = SCANS.get((collection, fields))
        if reason is not None:
            return f"SCAN (allowed: {reason})", None
        return "SCAN", "no index serves this filter"
    # By the primary key a query reads the few documents it names: any order is cheap.
    if sort and index.keys and index.name != "_id_" and not sorts_by(index, filt, sort):
        reason = SORTS_IN_MEMORY.get((collection, fields, sort_keys))
        if reason is None:
            return f"{index.name}, sort in memory", "the serving index does not give this order"
        return f"{index.name}, sort in memory (allowed: {reason})", None
    return index.name, None


def describe(shape: dict[str, Any]) -> str:
    def ops(f: dict[str, Any]) -> str:
        return ", ".join(
            f"{k}: [{' | '.join(ops(c) for c in v)}]"
            if k in {"$and", "$or", "$nor"}
            else f"{k} {'/'.join(v)}"
            for k, v in sorted(f.items())
        )

    sort = ", ".join(f"{k} {d}" for k, d in shape["sort"])
    return f"{shape['collection']}.{shape['command']}({{{ops(shape['filter'])}}}" + (
        f" sort {sort})" if sort else ")"
    )


# --- running the services with the recorder -------------------------------------------------


def restart_recording(gw: Gateway, shapes: Path) -> None:
    """Restart the four services with the recorder writing to ``shapes`` (one file for all)."""
    for name in SERVICES:
        assert gw.processes.stop(name) == 0, gw.logs()[-3000:]
    for name in SERVICES:
        gw.env[name] = {**gw.env[name], ENV: str(shapes)}
        gw.processes.start(name, gw.env[name])
    gw.processes.wait_ready(gw.ports)


def run_tool(gw: Gateway, service: str, module: str, *args: str, stdin: str = "") -> None:
    """Run one of the services' command-line tools with the service's environment."""
    subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        check=True,
        capture_output=True,
        input=stdin.encode(),
        env={**os.environ, **gw.env[service]},
    )


async def declared_indexes(gw: Gateway) -> dict[str, list[Index]]:
    client, db = database(gw)
    try:
        out: dict[str, list[Index]] = {}
        # The gateway's database and its key vault's (conversations/vault.py).
        for d in (db, client[f"{gw.database}_keys"]):
            for name in await d.list_collection_names():
                cursor = await d[name].list_indexes()
                out[name] = [
                    Index(i["name"], tuple((k, int(dd)) for k, dd in i["key"].items()))
                    async for i in cursor
                    if i["name"] != "_id_"
                ]
        return out
    finally:
        await client.close()


@pytest.fixture
def shapes_file(gateway: Gateway, tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "query-shapes.jsonl"
    restart_recording(gateway, path)
    yield path


async def wait_for(predicate: Any, within: float = 30) -> None:
    """Until ``predicate()`` holds: for figures a service exposes only when asked (a scrape)."""

    async def loop() -> None:
        while not await predicate():  # noqa: ASYNC110 (a scrape: nothing pushes the figure)
            await asyncio.sleep(0.1)

    await asyncio.wait_for(loop(), within)


# --- the test -------------------------------------------------------------------------------


@pytest.mark.hotline_config.with_args(quick_crisis)
@pytest.mark.service_env({"DISPATCHER_SWEEP_SECONDS": "0.3", "STORE_METRICS_REFRESH_SECONDS": "0.3"})
async def test_every_query_the_services_make_is_served_by_an_index(
    gateway: Gateway, shapes_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await asyncio.to_thread(gateway.seed_demo_accounts)
    await asyncio.to_thread(
        run_tool,
        gateway,
        "store",
        "services.store.admin",
        "add-user",
        "--login=ada",
        "--role=national_admin",
        "--lines=113,dv",
        "--password-stdin",
        stdin="ada-admin-password\n",
    )
    canary = f"CANARY-{uuid.uuid4().hex}"
    client_addr = f"{gateway.client_mailbox}@demo.test"
    line_addr = f"{gateway.line_mailbox}@demo.test"
    inbox = Mailbox("127.0.0.1", gateway.urls.imap_port, gateway.line_mailbox)
    people = {n: Consultant(gateway.store_url) for n in ("anna", "boris", "vera", "sofia", "ada", "sasha")}
    http = aiohttp.ClientSession()
    chat = ChatClient(http, gateway.chat_url)
    try:
        nobody = Consultant(gateway.store_url)
        async with nobody.http.post(
            f"{gateway.store_url}/api/session", json={"login": "nobody", "password": canary}
        ) as resp:
            assert resp.status == 401
        await nobody.close()
        for name, who in people.items():
            await who.login(name, "ada-admin-password" if name == "ada" else f"{name}-demo")
        anna, _, vera, sofia, ada, sasha = people.values()
        await anna.open_events()
        await vera.open_events()
        await sofia.open_events()

        # A mail in; anna takes it from the shared triage queue (it moves to her NGO's queue).
        first_id = new_message_id()
        await inbox.append(
            mail(client_addr, line_addr, "Работа", f"Мне предложили работу. {canary}", first_id)
        )
        thread_id = (await anna.wait_event(lambda e: e["name"] == "ThreadQueued"))["thread_id"]
        for path in (
            "/api/me",
            "/api/config",
            "/api/queues",
            "/api/threads",
            "/api/threads?queue=113-triage&status=waiting",
            "/api/threads?status=active",
            "/api/threads?status=closed",
            # The console's queue load (docs/performance.md: how its cost grows).
            "/api/threads?status=waiting",
            "/api/threads?mine=1",
        ):
            assert (await anna.call("GET", path))[0] == 200, path
        status, claimed = await anna.call("POST", "/api/queues/113-triage/next")
        assert status == 200 and claimed["id"] == thread_id
        assert (await anna.call("GET", f"/api/threads/{thread_id}"))[0] == 200
        assert (await anna.call("GET", f"/api/threads/{thread_id}/history"))[0] == 200
        status, reply = await anna.call(
            "POST",
            f"/api/threads/{thread_id}/messages",
            {"text": "Давайте проверим."},
            {"Idempotency-Key": uuid.uuid4().hex},
        )
        assert status == 202
        await anna.wait_event(
            lambda e: (
                e["name"] == "MessageDelivered"
                and e["message_id"] == reply["id"]
                and e["data"]["status"] == "sent"
            )
        )
        assert (await anna.call("POST", f"/api/threads/{thread_id}/notes", {"text": canary}))[0] == 201

        # The client answers the reply; then once more from a mailer that kept only our reply's
        # token (its message record gone): both join the thread.
        mid = reply["email_message_id"]
        await inbox.append(
            mail(client_addr, line_addr, "Re: Работа", canary, new_message_id(), mid, [first_id, mid])
        )
        await anna.wait_event(lambda e: e["name"] == "MessageReceived" and e["thread_id"] == thread_id)
        token = mid.split(".", 1)[1].split("@", 1)[0]
        only_token = f"<{uuid.uuid4().hex}.{token}@demo.test>"
        await inbox.append(mail(client_addr, line_addr, "Re: Работа", canary, new_message_id(), only_token))
        await anna.wait_event(lambda e: e["name"] == "MessageReceived" and e["thread_id"] == thread_id)

        status, moved = await anna.call(
            "POST", f"/api/threads/{thread_id}/transfer", {"queue": "113-triage", "note": canary}
        )
        assert status == 200 and moved["queue"] == "113-triage"
        for step in ("claim", "release", "claim"):  # a transfer puts it back in the queue, waiting
            assert (await anna.call("POST", f"/api/threads/{thread_id}/{step}"))[0] == 200, step
        case = {"client_role": "survivor", "gender": "f", "age_group": "27-40", "topics": ["work_abroad"]}
        assert (await anna.call("POST", f"/api/threads/{thread_id}/close", {"case": case}))[0] == 200
        status, _ = await anna.call(
            "POST", "/api/consultations", {"line": "113", "case": case}, {"Idempotency-Key": uuid.uuid4().hex}
        )
        assert status == 201
        assert (await anna.call("GET", "/api/threads?status=closed"))[0] == 200
        # The person's earlier consultations beside the thread, and the console's list of the
        # consultant's own lately closed threads to link a chat to.
        assert (await anna.call("GET", f"/api/threads/{thread_id}/earlier"))[0] == 200
        assert (await anna.call("GET", "/api/threads?mine=1&status=closed&limit=50"))[0] == 200

        # A case opened from the consultation; sasha, specialist, takes it and works it through.
        intake = {"country": "PL", "risk_level": "high", "safe_contact": canary}
        status, opened = await anna.call(
            "POST", "/api/cases", {"thread": thread_id, "kind": "crisis_abroad", "intake": intake}
        )
        assert status == 201, opened
        case = f"/api/cases/{opened['id']}"
        for path in ("/api/cases/settings", "/api/cases", "/api/cases/alerts"):
            assert (await sasha.call("GET", path))[0] == 200, path
        due = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        for method, path, body in [
            ("POST", f"{case}/take", None),
            ("GET", case, None),
            ("POST", f"{case}/services", {"kind": "shelter", "date": "2026-01-01", "amount": 10}),
            ("POST", f"{case}/external-referrals", {"to": "police"}),
            ("POST", f"{case}/followups", {"due": due, "note": canary}),
            ("POST", f"{case}/notes", {"text": canary}),
            ("POST", f"{case}/refer", {"role": "infoline_manager"}),
            ("POST", f"{case}/take", None),
            ("POST", f"{case}/status", {"status": "monitoring"}),
            ("POST", f"{case}/status", {"status": "closed", "reason": "resolved"}),
        ]:
            status, answer = await sasha.call(method, path, body)
            assert status in {200, 201}, (path, answer)
            if path.endswith("/external-referrals"):
                item = answer["id"]
                assert (await sasha.call("PATCH", f"{path}/{item}", {"result": canary}))[0] == 200
            if path.endswith("/followups"):
                assert (await sasha.call("POST", f"{path}/{answer['id']}/done"))[0] == 200
        for path in ("/api/cases", "/api/cases?status=closed", "/api/cases/alerts", f"{case}/reads"):
            assert (await sofia.call("GET", path))[0] == 200, path

        # A chat in on the DV line: vera answers and closes; the client writes again (reopened).
        await chat.start(line="dv", language="ru")
        await chat.say(f"Мне нужна помощь. {canary}")
        chat_thread = (await vera.wait_event(lambda e: e["name"] == "ThreadQueued"))["thread_id"]
        status, taken = await vera.call("POST", "/api/queues/gp-dv/next")
        assert status == 200 and taken["id"] == chat_thread
        status, answer = await vera.call(
            "POST",
            f"/api/threads/{chat_thread}/messages",
            {"text": "Я здесь."},
            {"Idempotency-Key": uuid.uuid4().hex},
        )
        assert status == 202
        await chat.wait(lambda: answer["id"] in chat.shown)
        dv_case = {"client_role": "survivor", "gender": "f", "age_group": "27-40"}
        assert (await vera.call("POST", f"/api/threads/{chat_thread}/close", {"case": dv_case}))[0] == 200
        await chat.say("Ещё вопрос")
        reopened = await vera.wait_event(lambda e: e["name"] == "ThreadQueued")
        assert reopened["thread_id"] == chat_thread
        # The client leaves by quick exit: marked; vera closes it in one action.
        await chat.end()
        await vera.wait_event(
            lambda e: (
                e["name"] == "ClientLeft"
                and e["thread_id"] == chat_thread
                and e["data"]["why"] == "quick_exit"
            )
        )
        assert (await vera.call("POST", f"/api/threads/{chat_thread}/close-left"))[0] == 200

        # A crisis waits: the sweeper escalates it, and marks its silent client (every pass
        # also looks for claims timed out); the client writes again.
        crisis = ChatClient(http, gateway.chat_url)
        await crisis.start(line="dv", topic="danger_now")
        await crisis.say("Помогите")
        seen: dict[str, str] = {}

        def escalated_and_silent(e: dict[str, Any]) -> bool:
            if e["name"] in {"CrisisEscalated", "ClientLeft"} and e["thread_id"] != chat_thread:
                seen[e["name"]] = e["thread_id"]
            return len(seen) == 2

        await sofia.wait_event(escalated_and_silent)
        await crisis.say("Я ещё здесь")
        await sofia.wait_event(
            lambda e: e["name"] == "ClientReturned" and e["thread_id"] == seen["ClientLeft"]
        )
        await crisis.drop()

        # The supervisor's views, statistics and reports; accounts; status and log-out.
        year = datetime.now().year
        for path in (
            "/api/supervisor",
            "/api/threads",
            "/api/threads?status=closed",
            # The console's queue load (docs/performance.md: how its cost grows).
            "/api/threads?status=waiting",
            "/api/threads?mine=1",
            f"/api/threads/{thread_id}/reads",
            f"/api/stats?from={year}-01-01&to={year}-12-31&compare=1",
            # Publication reads the whole of a year that is over (services/store/publication.py).
            f"/api/stats?from={year - 1}-01-01&to={year - 1}-12-31&by=gender&compare=1&publish=1",
            "/api/service-figures?period=month",
        ):
            assert (await sofia.call("GET", path))[0] == 200, path
        # Finding a record: each kind of search (a word, a month, case-form answers, a number).
        for body in (
            {"text": "Польше"},
            {"text": "Польше работа", "from": f"{year}-01-01", "to": f"{year}-12-31"},
            {"from": f"{year}-01-01", "to": f"{year}-12-31"},
            {"answers": {"gender": ["f"]}, "from": f"{year}-01-01"},
            {"number": thread_id},
            {"number": f"{thread_id}:1"},
        ):
            status, found = await sofia.call("POST", "/api/search", body)
            assert status == 200, (body, found)
        for path in (
            f"/api/stats.csv?from={year}-01-01&to={year}-12-31",
            f"/reports?year={year}&line=113",
            f"/reports/yearly?year={year - 1}&line=113",
        ):
            async with sofia.http.get(f"{gateway.store_url}{path}") as resp:
                assert resp.status == 200, path
        assert (await ada.call("GET", "/api/users"))[0] == 200
        assert (await ada.call("POST", "/api/users/boris/disable"))[0] == 200
        assert (await vera.call("PUT", "/api/me/status", {"status": "available"}))[0] == 200
        assert (await vera.call("PUT", "/api/me/status", {"status": "offline"}))[0] == 200
        assert (await anna.call("DELETE", "/api/session"))[0] == 200

        # The metrics refresh has run with the recorder on once it counts the crisis (the
        # reopened chat was closed).
        async def counted() -> bool:
            async with http.get(f"{gateway.store_url}/metrics") as resp:
                return 'hotline_queue_waiting{queue="gp-dv"} 1.0' in await resp.text()

        await wait_for(counted)
        # The operators' tools: retention and the quarantine listing.
        await asyncio.to_thread(run_tool, gateway, "store", "services.store.retention", "--days=1")
        await asyncio.to_thread(run_tool, gateway, "email_ingest", "services.email_ingest.quarantine", "list")
    finally:
        for who in people.values():
            await who.close()
        await chat.drop()
        await http.close()

    text = await asyncio.to_thread(shapes_file.read_text)
    # No value reaches the file: not the text people wrote, not their addresses or logins.
    for value in (canary, gateway.client_mailbox, "Помогите", "ada-admin-password"):
        assert value not in text
    # One entry per shape, whichever processes made it.
    shapes: dict[str, dict[str, Any]] = {}
    origins: dict[str, set[str]] = {}
    for line in text.splitlines():
        recorded = json.loads(line)
        program = recorded.pop("origin")
        key = json.dumps(recorded, sort_keys=True)
        shapes[key] = recorded
        origins.setdefault(key, set()).add(program)
    assert set(SERVICES) <= set().union(*origins.values())

    indexes = await declared_indexes(gateway)
    report, failures = [], []
    for key in sorted(shapes, key=lambda k: (shapes[k]["collection"], describe(shapes[k]))):
        shape = shapes[key]
        served, failure = check(shape, indexes.get(shape["collection"], []))
        line = f"{describe(shape):<95} {served}  [{', '.join(sorted(origins[key]))}]"
        report.append(line)
        if failure is not None:
            failures.append(f"{line}: {failure}")
    with capsys.disabled():  # in the CI log whether the test passes or fails
        print(f"\n{len(shapes)} query shapes and the index serving each:\n" + "\n".join(report))
    assert not failures, "queries no index serves:\n" + "\n".join(failures)
