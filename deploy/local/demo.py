"""`make demo` / `make up` / `make down`: the whole gateway on this machine.

    python -m deploy.local.demo up [--demo-data]   # servers + four services, detached
    python -m deploy.local.demo down               # stop the services, then the servers

The servers and services keep running after the command returns; their pids are recorded
under ``.stack/demo`` so ``down`` stops exactly what ``up`` started.
"""

from __future__ import annotations

import argparse
import contextlib
import imaplib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from deploy.local.services import (
    DEFAULT_PORTS,
    SERVICES,
    ServiceProcesses,
    StackUrls,
    new_master_key,
    ready,
    service_env,
)
from deploy.local.stack import LocalStack, StackPorts

ROOT = Path(__file__).resolve().parents[2]
STATE = ROOT / ".stack" / "demo"
PIDS = STATE / "services.json"
# The demo's secret of client keys: made once and kept, so a client is the same person across
# restarts of the demo (as in production, where it is never changed).
CLIENT_KEY_SECRET = STATE / "client-key-secret"
MASTER_KEY = STATE / "master-key"

SAMPLE_MAILS = [
    (
        "Работа в Польше: это безопасно?",
        "Здравствуйте! Мне предложили работу на складе в Польше через агентство. "
        "Как проверить, что это не обман?",
    ),
    (
        "Lost passport abroad",
        "Hello, my employer in Germany keeps my passport and I cannot leave. What can I do?",
    ),
]


def _stack() -> LocalStack:
    return LocalStack(STATE / "servers", StackPorts.demo(), name="hotline-demo")


def _stop_services() -> None:
    if not PIDS.exists():
        return
    for name, pid in json.loads(PIDS.read_text()).items():
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            with contextlib.suppress(ProcessLookupError):  # it may end between the two
                os.kill(pid, signal.SIGKILL)
        print(f"stopped {name}")
    PIDS.unlink()


def _seed(env: dict[str, str], stack: LocalStack) -> None:
    for command in ("seed-demo", "seed-demo-statistics"):
        subprocess.run(
            [sys.executable, "-m", "services.store.admin", command],
            cwd=ROOT,
            env={**os.environ, **env},
            check=True,
        )
    imap = imaplib.IMAP4("127.0.0.1", stack.imap_port)
    try:
        imap.login("hotline", "hotline")
        imap.select("INBOX")
        status, data = imap.search(None, "ALL")
        if status == "OK" and data[0]:
            return  # the demo mailbox already has its sample mails
        for subject, body in SAMPLE_MAILS:
            msg = EmailMessage()
            msg["From"] = "client@demo.test"
            msg["To"] = "hotline@demo.test"
            msg["Subject"] = subject
            msg["Message-ID"] = make_msgid(domain="client.demo.test")
            msg["Date"] = format_datetime(datetime.now(UTC))
            msg.set_content(body)
            imap.append("INBOX", None, None, msg.as_bytes())
    finally:
        imap.logout()


def up(demo_data: bool) -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    _stop_services()
    stack = _stack()
    stack.start()
    urls = StackUrls(
        amqp_url=stack.amqp_url,
        mongo_url=stack.mongo_url,
        imap_host="127.0.0.1",
        imap_port=stack.imap_port,
        smtp_host="127.0.0.1",
        smtp_port=stack.smtp_port,
    )
    if not CLIENT_KEY_SECRET.exists():
        CLIENT_KEY_SECRET.write_text(secrets.token_hex(32))
        CLIENT_KEY_SECRET.chmod(0o600)
    # The demo's master key: a file beside the demo's data, never in the database (a secret of
    # the orchestrator or a KMS in production; docs/privacy.md).
    if not MASTER_KEY.exists():
        MASTER_KEY.touch(0o600)
        MASTER_KEY.write_text(new_master_key())
    env = service_env(
        urls,
        DEFAULT_PORTS,
        log_format="console",
        client_key_secret=CLIENT_KEY_SECRET.read_text().strip(),
        master_key=MASTER_KEY.read_text().strip(),
    )
    if demo_data:
        _seed(env["store"], stack)
    procs = ServiceProcesses(ROOT, STATE / "logs")
    for name in SERVICES:
        procs.start(name, env[name], detach=True)
    procs.write_pids(PIDS)
    procs.wait_ready(DEFAULT_PORTS)
    p = DEFAULT_PORTS
    readiness = "\n".join(
        f"  {'Ready (200)' if i == 0 else '':20} http://127.0.0.1:{p[name]}/readyz  ({name})"
        for i, name in enumerate(SERVICES)
    )
    print(f"""
hotline-gateway is running (logs in {STATE / "logs"}):

  Consultant console   http://127.0.0.1:{p["store"]}/
  Chat widget demo     http://127.0.0.1:{p["chat_ingest"]}/chat/
{readiness}
  RabbitMQ management  {stack.rabbit_mgmt_url}  (guest / guest)
  Demo mailbox         IMAP 127.0.0.1:{stack.imap_port}, SMTP 127.0.0.1:{stack.smtp_port}
                       hotline/hotline (the line's inbox), client/client (a client)
""")
    if demo_data:
        print(
            "  Demo accounts (password = login + '-demo'): anna (La Strada, 113), "
            "boris (BWC, 113), vera (Gender Perspectives, DV),\n"
            "  larisa and bogdan (supervisors of La Strada and BWC), sofia (national administrator),\n"
            "  sasha, kira, dina (case specialists of La Strada, BWC, Gender Perspectives)\n"
            "  Reports: sample consultations of last year and this year on every line, demo data only "
            f"(http://127.0.0.1:{p['store']}/reports as sofia)\n"
        )
    print("Stop everything with: make down")


def down() -> None:
    _stop_services()
    _stack().stop()
    print("stopped the local stack")


def status() -> None:
    for name in SERVICES:
        print(f"{name:13} {'ready' if ready(DEFAULT_PORTS[name]) else 'not ready'}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m deploy.local.demo")
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("up")
    start.add_argument("--demo-data", action="store_true", help="demo accounts and sample mails")
    sub.add_parser("down")
    sub.add_parser("status")
    args = parser.parse_args()
    if args.command == "up":
        up(args.demo_data)
    elif args.command == "down":
        down()
    else:
        status()


if __name__ == "__main__":
    main()
