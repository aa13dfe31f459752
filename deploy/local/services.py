"""Running the four services as local processes, for `make demo` / `make up` and the tests.

Each service runs through its real entry point (``python -m services.<name>``) with its
settings in environment variables, exactly as in a container.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

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
    """The environment of each service, as the compose file would set it. The dispatcher,
    the store and chat_ingest share ``client_key_secret`` (a fresh one when None: clients are then matched
    only while these processes' database lives, which is all a test needs); the services that
    read or write what people wrote share ``master_key`` (base64; a fresh one when None)."""
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


@dataclass
class ServiceProcesses:
    """The four services as child processes; logs go to ``log_dir``."""

    root: Path
    log_dir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(
        self, name: str, env: dict[str, str], *, detach: bool = False, replica: str | None = None
    ) -> subprocess.Popen[bytes]:
        """Start service ``name``; ``replica`` names a second process of the same service."""
        key = replica or name
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # Only what a service needs: PATH, the locale and its own settings.
        base = {k: v for k, v in os.environ.items() if k in {"PATH", "LANG", "LC_ALL", "HOME", "TZ"}}
        with open(self.log_dir / f"{key}.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", f"services.{name}"],
                cwd=self.root,
                env={**base, **env, "PYTHONUNBUFFERED": "1"},
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
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def stop_all(self) -> dict[str, int]:
        return {name: self.stop(name) for name in list(self.procs)}

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.procs.items()}

    def write_pids(self, path: Path) -> None:
        path.write_text(json.dumps(self.pids()))
