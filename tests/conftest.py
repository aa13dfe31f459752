"""Shared fixtures: one real server stack per test session, four real services per test.

The stack (RabbitMQ, FerretDB, Dovecot, SMTP relay) is started once, on free loopback
ports with its data in a temporary directory, and stopped at the end. Each test that
needs the services gets its own RabbitMQ vhost, database and mailboxes, so tests never
see each other's messages. Dovecot also serves IMAPS with a certificate from a throwaway
CA made for the session (``tls_ca``), which no client trusts unless given its file.
"""

from __future__ import annotations

import functools
import gc
import multiprocessing.context
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymongo
import pytest
import trustme
import yaml

from deploy.local.services import (
    PREFIX,
    SERVICES,
    ServiceProcesses,
    StackUrls,
    preloaded_launcher,
    service_env,
)
from deploy.local.stack import LocalStack, ServerCertificate, StackPorts, free_ports
from services.store.admin import demo_account_docs
from shared.settings import DEFAULT_CONFIG_PATH
from tests.integration.helpers import Consultant

ROOT = Path(__file__).resolve().parent.parent
UNIT_TESTS = ROOT / "tests" / "unit"


@pytest.fixture(autouse=True)
def _collect_garbage(request: pytest.FixtureRequest) -> Iterator[None]:
    """Collect garbage once the test's other fixtures, its event loop among them, are torn down.

    A socket, transport or client session a test leaves open is otherwise found by the
    garbage collector whenever it happens to run, in some later test, and its
    ResourceWarning (an error here) fails that test instead. Collected here, the warning is
    reported by pytest's unraisable-exception check, which runs right after the fixtures'
    teardown, as an error of this test. A fixture, not a ``trylast`` teardown hook: such a
    hook of a conftest runs after that check (pluggy calls the last-registered one last),
    which would report the leak at the next test's setup. Set up before the test's other
    function-scoped fixtures (autouse), it is torn down after them.

    Not for tests/unit (pure logic, no server): a collection costs about a tenth of a second
    there, and its hundreds of tests ran three times as long."""
    yield
    if request.path.is_relative_to(UNIT_TESTS):
        return
    gc.collect()


# Tiers (docs/testing.md): what a test starts decides its marker, so `make test-fast` can run the
# first two and a new test needs no marker by hand.
TIERS = {
    "unit": "pure logic: no server",
    "server": "one real server stack (RabbitMQ, FerretDB, Dovecot, SMTP), no service",
    "system": "the four services (and fault tests that start and kill servers)",
    "browser": "the console or the widget in real Chromium",
}


def tier_of(item: pytest.Item) -> str:
    names = set(getattr(item, "fixturenames", ()))
    if "browser" in names:
        return "browser"
    if "gateway" in names or item.path.is_relative_to(ROOT / "tests" / "reliability"):
        return "system"
    if "stack" in names:
        return "server"
    return "unit"


def pytest_configure(config: pytest.Config) -> None:
    for name, what in TIERS.items():
        config.addinivalue_line("markers", f"{name}: tier: {what}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(getattr(pytest.mark, tier_of(item)))


@dataclass(frozen=True)
class SessionCA:
    """A certificate authority made for one test session, and its certificate's file."""

    ca: trustme.CA
    file: Path

    def server_certificate(self, directory: Path) -> ServerCertificate:
        """Files of a certificate it issued for 127.0.0.1 and localhost."""
        cert = self.ca.issue_cert("127.0.0.1", "localhost")
        chain, key = directory / "server-chain.pem", directory / "server-key.pem"
        cert.private_key_pem.write_to_path(str(key))
        for i, pem in enumerate(cert.cert_chain_pems):
            pem.write_to_path(str(chain), append=i > 0)
        return ServerCertificate(chain, key)


def new_ca(directory: Path) -> SessionCA:
    ca = trustme.CA()
    directory.mkdir(parents=True, exist_ok=True)
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    return SessionCA(ca, directory / "ca.pem")


@pytest.fixture(scope="session")
def tls_ca(tmp_path_factory: pytest.TempPathFactory) -> SessionCA:
    """The session's CA: it signs the local servers' certificates (Dovecot's IMAPS, the tests'
    SMTP servers); a client trusts them only with ``tls_ca.file`` as its CA bundle."""
    return new_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, tls_ca: SessionCA) -> Iterator[LocalStack]:
    root = tmp_path_factory.mktemp("stack")
    tls = tls_ca.server_certificate(tmp_path_factory.mktemp("imaps"))
    with LocalStack(root, StackPorts.free(), name="hltest", tls=tls) as s:
        yield s


@dataclass
class Gateway:
    """The four services of one test, and where to reach them."""

    name: str
    stack: LocalStack
    urls: StackUrls
    database: str
    ports: dict[str, int]
    env: dict[str, dict[str, str]]
    processes: ServiceProcesses

    @property
    def store_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['store']}"

    @property
    def chat_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['chat_ingest']}"

    @property
    def line_mailbox(self) -> str:
        return f"{self.name}-hotline"

    @property
    def client_mailbox(self) -> str:
        return f"{self.name}-client"

    def seed_demo_accounts(self) -> None:
        """The demo accounts, as ``services.store.admin seed-demo`` writes them (that command
        itself runs in tests/integration/test_demo_statistics.py). Written from here: the
        command's own process spent about 3 s of each test starting up and hashing passwords
        that are the same in every test, so they are hashed once per session."""
        with pymongo.MongoClient(self.urls.mongo_url) as client:
            consultants = client[self.database]["consultants"]
            for account in _demo_accounts():
                consultants.replace_one({"_id": account["_id"]}, account, upsert=True)

    def logs(self) -> str:
        return "".join(
            (self.processes.log_dir / f"{n}.log").read_text(errors="replace")
            for n in SERVICES
            if (self.processes.log_dir / f"{n}.log").exists()
        )


@functools.cache
def _demo_accounts() -> tuple[dict[str, Any], ...]:
    return tuple(demo_account_docs())


@pytest.fixture(scope="session")
def launcher() -> multiprocessing.context.ForkServerContext:
    """Services are forked from one process that imported their modules once
    (deploy/local/services.py): each test's four start about a second sooner each, and two
    cores no longer import the same modules hundreds of times. A test that must see a real
    interpreter start (the event-loop watch) runs with ``service_wrap`` and starts them so."""
    return preloaded_launcher()


@pytest.fixture
def gateway(
    stack: LocalStack,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    launcher: multiprocessing.context.ForkServerContext,
) -> Iterator[Gateway]:
    """The four services for one test. ``@pytest.mark.hotline_config(change)`` runs them with
    the example hotline configuration as changed by ``change(dict)``."""
    name = "t" + uuid.uuid4().hex[:8]
    urls = StackUrls(
        amqp_url=stack.add_vhost(name),
        mongo_url=stack.mongo_url,
        imap_host="127.0.0.1",
        imap_port=stack.imap_port,
        smtp_host="127.0.0.1",
        smtp_port=stack.smtp_port,
    )
    ports = dict(zip(SERVICES, free_ports(len(SERVICES)), strict=True))
    env = service_env(urls, ports, database=name, line_mailbox=f"{name}-hotline")
    marker = request.node.get_closest_marker("hotline_config")
    if marker is not None:
        config = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text(encoding="utf-8"))
        marker.args[0](config)
        path = tmp_path / "hotline.yaml"
        path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
        for service, variables in env.items():
            variables[PREFIX[service] + "CONFIG_PATH"] = str(path)
    extra = request.node.get_closest_marker("service_env")
    if extra is not None:
        variables = extra.args[0]
        if isinstance(variables, str):  # the name of a fixture that gives them
            variables = request.getfixturevalue(variables)
        for variable, value in variables.items():
            service = next(n for n in SERVICES if variable.startswith(PREFIX[n]))
            if value is None:
                env[service].pop(variable, None)
            else:
                env[service][variable] = value
    wrap = request.node.get_closest_marker("service_wrap")
    procs = ServiceProcesses(
        ROOT, tmp_path / "logs", wrap=wrap.args[0] if wrap is not None else None, launcher=launcher
    )
    gw = Gateway(name, stack, urls, name, ports, env, procs)
    try:
        for service in SERVICES:
            procs.start(service, env[service])
        procs.wait_ready(ports)
        yield gw
    finally:
        codes = procs.stop_all()
        # Shown by pytest only when the test failed: what the services said.
        print(gw.logs()[-8000:])
    # Every service must shut down cleanly on SIGTERM (graceful shutdown is part of the contract).
    assert codes == dict.fromkeys(codes, 0), f"unclean exit: {codes}\n{gw.logs()[-3000:]}"


@pytest.fixture
async def vera(gateway: Gateway) -> AsyncIterator[Consultant]:
    """Vera (Gender Perspectives, DV line), logged in and listening to live events."""
    gateway.seed_demo_accounts()
    c = Consultant(gateway.store_url)
    await c.login("vera", "vera-demo")
    await c.open_events()
    try:
        yield c
    finally:
        await c.close()
