"""Fault tests: the dispatcher as real processes, a per-test vhost and database, and a
ledger of every message (QUALITY.md 2)."""

from __future__ import annotations

import multiprocessing.context
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conversations.repository import Repository
from deploy.local.services import ServiceProcesses, StackUrls, ready, service_env
from deploy.local.stack import LocalStack
from shared.mongo import make_client
from shared.settings import parse_master_key
from shared.transit import TransitSeal
from tests.conftest import ROOT, free_ports
from tests.reliability.ledger import CANARY, Pipeline


@pytest.fixture(autouse=True)
def no_message_text_in_logs(tmp_path: Path) -> Iterator[None]:
    """After every fault test, once its services have stopped: the canary that every message
    of the test carries is found 0 times in any service's log (QUALITY.md 4, failure paths
    included). Set up before the services' fixtures, so it is torn down after them."""
    yield
    logs = sorted(tmp_path.rglob("*.log"))
    hits = {str(p.relative_to(tmp_path)): p.read_text(errors="replace").count(CANARY) for p in logs}
    assert not any(hits.values()), f"message text in logs: {hits}"


@dataclass
class Dispatchers:
    """Any number of dispatcher replicas on one vhost and database."""

    env: dict[str, str]
    processes: ServiceProcesses
    count: int = 0

    def start(self) -> str:
        self.count += 1
        name = f"dispatcher-{self.count}"
        (port,) = free_ports(1)
        env = {**self.env, "DISPATCHER_HTTP_PORT": str(port), "DISPATCHER_INSTANCE_ID": name}
        proc = self.processes.start("dispatcher", env, replica=name)
        assert _wait(lambda: ready(port) or proc.poll() is not None) and proc.poll() is None, (
            f"{name} did not start"
        )
        return name

    def kill(self, name: str) -> None:
        proc = self.processes.procs.pop(name)
        proc.kill()
        proc.wait()


def _wait(cond: Callable[[], bool], within: float = 60) -> bool:
    """Poll a process's readiness endpoint (a server of another process: nothing to await)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def dispatchers(
    stack: LocalStack, tmp_path: Path, launcher: multiprocessing.context.ForkServerContext
) -> Iterator[tuple[Dispatchers, str, str]]:
    name = "r" + uuid.uuid4().hex[:8]
    urls = StackUrls(
        amqp_url=stack.add_vhost(name),
        mongo_url=stack.mongo_url,
        imap_host="127.0.0.1",
        imap_port=stack.imap_port,
        smtp_host="127.0.0.1",
        smtp_port=stack.smtp_port,
    )
    env = service_env(
        urls, dict.fromkeys(("store", "dispatcher", "email_ingest", "chat_ingest"), 0), database=name
    )
    procs = ServiceProcesses(ROOT, tmp_path / "logs", launcher=launcher)
    d = Dispatchers(env["dispatcher"], procs)
    try:
        yield d, urls.amqp_url, name
    finally:
        codes = procs.stop_all()
        logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "logs").glob("*.log"))
        print(logs[-6000:])
    assert all(code == 0 for code in codes.values()), codes


@pytest.fixture
async def pipeline(dispatchers: tuple[Dispatchers, str, str]) -> AsyncIterator[Pipeline]:
    transit = TransitSeal(parse_master_key(dispatchers[0].env["DISPATCHER_MASTER_KEY"]))
    async with Pipeline(dispatchers[1], transit) as p:
        yield p


@pytest.fixture
async def repo(stack: LocalStack, dispatchers: tuple[Dispatchers, str, str]) -> AsyncIterator[Repository]:
    client = make_client(stack.mongo_url)
    try:
        yield Repository(client[dispatchers[2]])
    finally:
        await client.close()
