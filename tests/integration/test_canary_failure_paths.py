"""A bad day, and no word a person wrote in what operators read (QUALITY.md 4: a canary is
found 0 times in logs, dead-letter listings and error answers, failure paths included).

Each test makes one failure happen to a message whose text carries the canary: a handler
that fails on it, a message that is not an envelope, a mail that cannot be read or handed
over, a request the store's API fails on. Where the failure is a bug of ours, one pure
function is made to raise an exception whose message quotes its input, as a real bug's
often does; the servers (RabbitMQ, FerretDB, Dovecot) stay real. The logs are read as the
services render them (their configuration, level and JSON renderer: ``service_logging``),
the operators' listings as their commands print them.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from conversations.repository import Repository
from deploy.local.services import new_master_key
from deploy.local.stack import LocalStack
from services.dispatcher import priority as priority_module
from services.dispatcher.dispatch import Dispatcher
from services.email_ingest import imap as imap_module
from services.store import search as search_module
from services.store.app import create_app
from services.store.settings import StoreSettings
from shared import topology
from shared.broker import Broker, BrokerMetrics
from shared.config import load_config
from shared.envelope import encode
from shared.mongo import make_client
from shared.settings import DEFAULT_CONFIG_PATH
from tests.conftest import ROOT
from tests.integration.helpers import add_account, logged_in, mail, new_message_id
from tests.integration.test_email_intake_supervised import watched
from tests.reliability.ledger import CANARY, Pipeline, chat_message, new_session
from tests.rendered_logs import service_logging


def events(err: str) -> list[dict[str, Any]]:
    """The rendered JSON lines of a service's stderr."""
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


async def command(*args: str, env: dict[str, str] | None = None) -> str:
    """What an operator's command prints (stdout and stderr), run as they run it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        *args,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode(errors="replace")
    return out.decode(errors="replace")


async def test_a_handler_failing_on_a_message_and_a_poison_message_leave_no_text_behind(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """The dispatcher's handler fails on every delivery of one message until the delivery
    limit dead-letters it; another is not an envelope at all and is dead-lettered at once.
    Neither's text is in the logs nor in ``python -m shared.deadletters list``."""
    real = priority_module.priority

    def priority(config: Any, line: str, topic: str | None, text: str | None) -> int:
        if text and CANARY in text:
            raise ValueError(f"cannot rank {text!r}")  # a bug that quotes what it failed on
        return real(config, line, topic, text)

    monkeypatch.setattr(priority_module, "priority", priority)
    name = "c" + uuid.uuid4().hex[:8]
    amqp = stack.add_vhost(name)
    client = make_client(stack.mongo_url)
    repo = Repository(client[name])
    failing = chat_message(new_session(), 1)
    not_an_envelope = chat_message(new_session(), 1)
    body = json.loads(encode(not_an_envelope))
    body["channel"] = "pigeon"  # the text is fine, the envelope is not
    try:
        await repo.ensure_indexes()
        with service_logging("json"):
            broker = Broker(amqp, 10, BrokerMetrics(CollectorRegistry()), "canary test")
            await broker.connect()
            try:
                config = load_config(DEFAULT_CONFIG_PATH)
                dispatcher = Dispatcher(repo, broker, config, b"k" * 32, "hotline.invalid")
                queue = broker.topology.queues[topology.DISPATCHER_INBOUND.name]
                await broker.consume(queue, dispatcher.handle)
                async with Pipeline(amqp) as pipeline:
                    await pipeline.publish(failing)
                    await pipeline.publish(
                        not_an_envelope, raw=json.dumps(body).encode(), kind=not_an_envelope.kind
                    )
                    dead = await pipeline.dead_letters(2, keep=True)
            finally:
                await broker.stop_consuming(5)
                await broker.close()
        logged = capfd.readouterr()
        listing = await command("shared.deadletters", "list", "--amqp-url", amqp)
    finally:
        await client.drop_database(name)
        await client.close()
        stack.delete_vhost(name)
    assert {d["message_id"] for d in dead} == {failing.message_id, not_an_envelope.message_id}
    assert CANARY not in logged.err and CANARY not in logged.out
    assert CANARY not in listing
    # What operators need is there: which message, what failed and where; what the listing shows.
    lines = events(logged.err)
    failures = [e for e in lines if e["event"] == "handler_failed"]
    assert 1 < len(failures) <= topology.DELIVERY_LIMIT + 1
    assert {(e["message_id"], e["error"]) for e in failures} == {(failing.message_id, "ValueError")}
    assert all(e["where"].endswith(" in priority") for e in failures)
    (rejected,) = [e for e in lines if e["event"] == "envelope_rejected"]
    assert rejected["reason"] == "invalid inbound_message: channel:enum"
    assert failing.message_id in listing and not_an_envelope.message_id in listing


async def test_quarantined_mails_leave_no_text_in_logs_or_the_quarantine_listing(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Three mails carrying the canary in subject and body are quarantined: one the parser
    fails on (a bug of ours), one the hand-over fails on (a bug of ours), one with too many
    parts (a mail as it comes). Their text is in no log line and not in ``quarantine list``."""
    real_parse, real_envelope = imap_module.parse_mail, imap_module.to_envelope

    def parse_mail(raw: bytes) -> Any:
        if b"PARSER-BUG" in raw:
            raise ValueError(f"cannot read {raw[-300:]!r}")
        return real_parse(raw)

    def to_envelope(parsed: Any, **kw: Any) -> Any:
        if "HANDOVER-BUG" in (parsed.subject or ""):
            raise LookupError(f"cannot carry {parsed.subject!r}: {parsed.text!r}")
        return real_envelope(parsed, **kw)

    monkeypatch.setattr(imap_module, "parse_mail", parse_mail)
    monkeypatch.setattr(imap_module, "to_envelope", to_envelope)
    text = f"he found my phone, {CANARY}"
    with service_logging("json"):
        async with watched(stack) as intake:
            sender, to = "client@example.org", "line@demo.test"
            for subject in ("PARSER-BUG", "HANDOVER-BUG"):
                await intake.inbox.append(mail(sender, to, f"{subject} {text}", text, new_message_id()))
            # Too many parts: quarantined (a mail without a sender is a thread, marked).
            parts = "".join(f"--B\r\nContent-Type: text/plain\r\n\r\n{text}\r\n" for _ in range(600))
            head = f"From: {sender}\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
            await intake.inbox.append(f"{head}{parts}--B--\r\n".encode())
            good = new_message_id()
            await intake.inbox.append(mail(sender, to, "hello", "hello", good))
            await intake.wait_received(good)
            quarantined = await intake.raw.quarantined()
            database = intake.raw.raw.database.name
            listing = await command(
                "services.email_ingest.quarantine",
                "list",
                env={
                    "EMAIL_INGEST_AMQP_URL": "amqp://unused@127.0.0.1:1/",  # list reads the database only
                    "EMAIL_INGEST_MONGO_URL": stack.mongo_url,
                    "EMAIL_INGEST_MONGO_DATABASE": database,
                    "EMAIL_INGEST_FROM_ADDRESS": "hotline@demo.test",
                    # Required of the intake's commands; list shows no mail's bytes, so opens nothing.
                    "EMAIL_INGEST_MASTER_KEY": new_master_key(),
                },
            )
    logged = capfd.readouterr()
    assert CANARY not in logged.err and CANARY not in logged.out
    assert CANARY not in listing and CANARY not in repr(quarantined)
    reasons = ["parser_error:ValueError", "handover_error:LookupError", "too_many_parts"]
    assert sorted(q["reason"] for q in quarantined) == sorted(reasons)
    logged_reasons = [e["reason"] for e in events(logged.err) if e["event"] == "mail_quarantined"]
    assert sorted(logged_reasons) == sorted(reasons)
    assert sorted(json.loads(line)["reason"] for line in listing.splitlines()) == sorted(reasons)


# The store keys request data by strings (request["user"]); aiohttp warns of that and, in a
# service, ignores its own warning by default. Here the store runs in the test's process,
# where every warning is an error: ignored as in a service.
@pytest.mark.filterwarnings("ignore::aiohttp.web.NotAppKeyWarning")
async def test_a_500_from_the_store_api_carries_no_text_in_its_answer_or_the_logs(
    stack: LocalStack,
    repo: Repository,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A consultant searches for words a client wrote and the search fails on them (a bug of
    ours that quotes its input): the answer is a 500 problem without them, and so is the log."""

    def parse_criteria(body: Any, fields: Any, lines: Any) -> Any:
        raise ValueError(f"cannot search for {body.get('text')!r}")

    monkeypatch.setattr(search_module, "parse_criteria", parse_criteria)
    await add_account(repo, "cara", "consultant", "gp", ["dv"])
    name = repo.db.name
    settings = StoreSettings(
        amqp_url=SecretStr(stack.add_vhost(name)),
        mongo_url=SecretStr(stack.mongo_url),
        mongo_database=name,
        client_key_secret=SecretStr("k" * 64),
        master_key=SecretStr(new_master_key()),
        cookie_secure=False,
    )
    try:
        with service_logging("json"):
            async with TestServer(create_app(settings)) as server:
                cara = await logged_in(str(server.make_url("")).rstrip("/"), "cara")
                try:
                    status, answer = await cara.call("POST", "/api/search", {"text": f"my husband {CANARY}"})
                finally:
                    await cara.close()
        logged = capfd.readouterr()
    finally:
        stack.delete_vhost(name)
    assert status == 500 and answer["title"] == "Internal error"
    assert CANARY not in json.dumps(answer)
    assert CANARY not in logged.err and CANARY not in logged.out
    (failed,) = [e for e in events(logged.err) if e["event"] == "request_failed"]
    assert failed["route"] == "/api/search" and failed["error"] == "ValueError"
    assert failed["where"].endswith(" in parse_criteria")
