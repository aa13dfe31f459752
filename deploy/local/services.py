"""Running the four services as local processes, for `make demo` / `make up` and the tests.

Each service runs through its real entry point (``python -m services.<name>``) with its
settings in environment variables, exactly as in a container. The tests, which start the four
services for each test, may have them forked instead from a process that imported their modules
once (:func:`preloaded_launcher`): the same entry point then runs without the second or so each
interpreter spends importing them.
"""

from __future__ import annotations

import base64
import json
import multiprocessing
import multiprocessing.context
import multiprocessing.process
import os
import runpy
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

SERVICES = ("store", "dispatcher", "email_ingest", "chat_ingest")
PREFIX = {name: name.upper() + "_" for name in SERVICES}
DEFAULT_PORTS = {"store": 8080, "chat_ingest": 8081, "email_ingest": 8082, "dispatcher": 8083}


@dataclass(frozen=True)
class StackUrls:
    """Where the servers the services depend on are."""

    amqp_url: str
    mongo_url: str
    imap_host: str
    imap_port: int
    smtp_host: str
    smtp_port: int
    mail_domain: str = "demo.test"


def new_master_key() -> str:
    """A master key for the vault (conversations/vault.py), as ``openssl rand -base64 96``."""
    return base64.b64encode(secrets.token_bytes(96)).decode()


def service_env(
    urls: StackUrls,
    ports: dict[str, int],
    *,
    database: str = "hotline",
    line_mailbox: str = "hotline",
    line: str = "113",
    log_format: str = "json",
    client_key_secret: str | None = None,
    master_key: str | None = None,
) -> dict[str, dict[str, str]]:
    """The environment of each service, as the compose file would set it. The dispatcher, the
    store, chat_ingest and email_ingest share ``client_key_secret`` (a fresh one when None:
    clients are then matched only while these processes' database lives, which is all a test
    needs); the services that read or write what people wrote share ``master_key`` (base64; a
    fresh one when None)."""
    client_key = client_key_secret or secrets.token_hex(32)
    sealing = {"MASTER_KEY": master_key or new_master_key()}
    common = {
        "AMQP_URL": urls.amqp_url,
        "MONGO_URL": urls.mongo_url,
        "MONGO_DATABASE": database,
        "HTTP_HOST": "127.0.0.1",
        "LOG_FORMAT": log_format,
    }
    extra: dict[str, dict[str, str]] = {
        "store": {
            "COOKIE_SECURE": "false",
            "MESSAGE_ID_DOMAIN": urls.mail_domain,
            "CLIENT_KEY_SECRET": client_key,
            **sealing,
        },
        "dispatcher": {"MESSAGE_ID_DOMAIN": urls.mail_domain, "CLIENT_KEY_SECRET": client_key, **sealing},
        "chat_ingest": {"CLIENT_KEY_SECRET": client_key, **sealing},
        "email_ingest": {
            "CLIENT_KEY_SECRET": client_key,
            "LINE": line,
            "IMAP_HOST": urls.imap_host,
            "IMAP_PORT": str(urls.imap_port),
            "IMAP_TLS": "false",
            "IMAP_USER": line_mailbox,
            "IMAP_PASSWORD": line_mailbox,  # the local Dovecot: password = user name
            "SMTP_HOST": urls.smtp_host,
            "SMTP_PORT": str(urls.smtp_port),
            "SMTP_SECURITY": "none",
            "FROM_ADDRESS": f"{line_mailbox}@{urls.mail_domain}",
            "MESSAGE_ID_DOMAIN": urls.mail_domain,
            "IDLE_SECONDS": "60",
            **sealing,
        },
    }
    return {
        name: {
            PREFIX[name] + k: v for k, v in {**common, "HTTP_PORT": str(ports[name]), **extra[name]}.items()
        }
        for name in SERVICES
    }


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


class ServiceProcess(Protocol):
    """What :class:`ServiceProcesses` and the tests use of a running service: a
    :class:`subprocess.Popen` or a :class:`ForkedService`."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def send_signal(self, sig: int) -> None: ...

    def kill(self) -> None: ...


# What the services' entry points import, imported once by the process they are forked from.
PRELOAD = [
    "shared.lifecycle",
    *(f"services.{name}.{module}" for name in SERVICES for module in ("app", "settings")),
]


def preloaded_launcher() -> multiprocessing.context.ForkServerContext:
    """Forks services from one process that imported :data:`PRELOAD` (multiprocessing's fork
    server, started at the first service). That process has run none of the services' code
    and holds no thread, connection or event loop, so each child starts as clean as a new
    interpreter."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def _run_forked(module: str, env: dict[str, str], root: str, log: str, new_session: bool) -> None:
    """In a forked child: what ``python -m <module>`` would do with ``env`` as its environment
    and its output appended to ``log``."""
    if new_session:
        os.setsid()
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    # Line-buffered as PYTHONUNBUFFERED leaves a new interpreter's: each log line is written at once.
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", closefd=False)
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)
    os.environ.clear()
    os.environ.update(env)
    time.tzset()
    os.chdir(root)
    sys.argv = [module]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


class ForkedService:
    """A service forked by :func:`preloaded_launcher`, with the part of Popen's interface the
    tests use. Its exit code is what ``python -m`` would give: the code of ``sys.exit``, 1 on
    an uncaught exception, minus the signal's number when a signal ended it."""

    def __init__(self, process: multiprocessing.process.BaseProcess) -> None:
        self.process = process

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.exitcode

    def poll(self) -> int | None:
        return self.process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self.process.join(timeout)
        code = self.process.exitcode
        if code is None:
            raise subprocess.TimeoutExpired(f"service {self.process.name}", timeout or 0)
        return code

    def send_signal(self, sig: int) -> None:
        if self.process.exitcode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


@dataclass
class ServiceProcesses:
    """The four services as child processes; logs go to ``log_dir``."""

    root: Path
    log_dir: Path
    procs: dict[str, ServiceProcess] = field(default_factory=dict)
    # A module that runs each service's module in its place (``python -m <wrap> services.<name>``):
    # a test's probe of the services' event loops (tests/integration/loop_watch.py).
    wrap: str | None = None
    # Fork the services from here (:func:`preloaded_launcher`) instead of starting interpreters.
    launcher: multiprocessing.context.ForkServerContext | None = None

    def start(
        self, name: str, env: dict[str, str], *, detach: bool = False, replica: str | None = None
    ) -> ServiceProcess:
        """Start service ``name``; ``replica`` names a second process of the same service."""
        key = replica or name
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # Only what a service needs: PATH, the locale and its own settings.
        base = {k: v for k, v in os.environ.items() if k in {"PATH", "LANG", "LC_ALL", "HOME", "TZ"}}
        full = {**base, **env, "PYTHONUNBUFFERED": "1"}
        log_file = self.log_dir / f"{key}.log"
        if self.launcher is not None and self.wrap is None:
            process = self.launcher.Process(
                target=_run_forked,
                args=(f"services.{name}", full, str(self.root), str(log_file), detach),
                name=key,
            )
            process.start()
            self.procs[key] = ForkedService(process)
            return self.procs[key]
        with open(log_file, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", *([self.wrap] if self.wrap else []), f"services.{name}"],
                cwd=self.root,
                env=full,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=detach,
            )
        self.procs[key] = proc
        return proc

    def wait_ready(self, ports: dict[str, int], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        pending = {n: ports[n] for n in self.procs}
        while pending:
            for name in list(pending):
                proc = self.procs[name]
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}; see {self.log_dir}/{name}.log")
                if ready(pending[name]):
                    del pending[name]
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"not ready after {timeout}s: {', '.join(pending)}")
            if pending:
                time.sleep(0.2)

    def stop(self, name: str, timeout: float = 15) -> int:
        proc = self.procs.pop(name)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def stop_all(self, timeout: float = 15) -> dict[str, int]:
        """Stop every service at once: each is told (SIGTERM) before any is waited for, so
        their graceful shutdowns overlap (a test's teardown waits for the slowest, not for
        the sum: about 4 s less per test of the suite); one still running after ``timeout``
        is killed. Returns each one's exit code."""
        procs = dict(self.procs)
        self.procs.clear()
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        codes: dict[str, int] = {}
        for name, proc in procs.items():
            try:
                codes[name] = proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait()
        return codes

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.procs.items()}

    def write_pids(self, path: Path) -> None:
        path.write_text(json.dumps(self.pids()))
