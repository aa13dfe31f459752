"""The local server stack: real RabbitMQ, FerretDB, Dovecot (IMAP + LMTP) and an SMTP relay on loopback.

Used by ``make demo`` / ``make up`` (through the CLI at the bottom) and by the test suite (through
``LocalStack``). Every server runs from its own data directory under ``root`` and on its own ports, so
several stacks (the demo, a test session, a fault test) can run side by side on one machine without
touching the system services, which stay stopped.

Every child is started in a new session (its own process group) with stdout/stderr in ``root/logs/``;
stopping a server signals its whole group, so helper processes (Erlang's ``erl_child_setup``,
Dovecot's ``imap``/``auth`` workers) go with it. Pids are recorded in ``root/stack.json`` together with
each process's start time, so ``down`` from another process never signals a recycled pid.

Programs come from Debian packages (rabbitmq-server, dovecot-imapd, dovecot-lmtpd) and the patched
FerretDB (``ferretdb-hotline``) built by ``deploy/local/install.sh``. Linux only (``/proc`` is used to
follow process groups).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import grp
import hashlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import string
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO
from urllib.parse import quote

LOOPBACK = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[2]
# FerretDB v1.24.2 with deploy/local/ferretdb-v1.24.2.patch, as install.sh names it.
FERRETDB_PROGRAM = "ferretdb-hotline"

# Debian's /usr/sbin/rabbitmq* wrappers `su` to the rabbitmq user and cd to /var/lib/rabbitmq when run
# as root, which would throw away our HOME (Erlang cookie) and data directories; the scripts they wrap
# take everything from the environment.
_RABBITMQ_SCRIPTS = Path("/usr/lib/rabbitmq/bin")

# How long a server may take to answer after it is spawned. RabbitMQ boots in ~5 s here; a loaded CI
# runner can be several times slower.
_START_TIMEOUT = {"epmd": 10.0, "rabbitmq": 120.0, "ferretdb": 30.0, "dovecot": 30.0, "smtp": 30.0}
# Graceful stop budget before SIGKILL. RabbitMQ closes connections and flushes quorum queue logs.
_STOP_TIMEOUT = {"rabbitmq": 30.0}
_DEFAULT_STOP_TIMEOUT = 10.0
# erl arguments (word-split by the RabbitMQ scripts) that bind Erlang distribution to loopback.
_LOOPBACK_DIST = "-kernel inet_dist_use_interface {127,0,0,1}"
# Start order; stop goes the other way (epmd last: RabbitMQ deregisters from it on the way out).
_SERVICES = ("epmd", "rabbitmq", "ferretdb", "dovecot", "smtp")


class StackError(RuntimeError):
    """A server of the local stack could not be started, reached or stopped."""


@dataclass(frozen=True)
class StackPorts:
    """TCP ports on 127.0.0.1, one per listener.

    ``epmd`` is the Erlang port mapper of this stack's RabbitMQ node. Each stack runs its own epmd so
    stopping one stack never takes the name registry away from another's node, and nothing is left
    behind on the shared default port 4369; 0 means "pick a free port when the stack is created".
    ``imaps`` is Dovecot's implicit-TLS listener, open only when the stack is given a server
    certificate (``LocalStack(..., tls=...)``); 0 there too means "pick a free port".
    """

    amqp: int
    amqp_dist: int
    rabbit_mgmt: int
    mongo: int
    imap: int
    lmtp: int
    smtp: int
    epmd: int = 0
    imaps: int = 0

    @classmethod
    def demo(cls) -> StackPorts:
        """The documented demo ports (README; PRODUCT.md §4): the protocols' usual local ports."""
        return cls(
            amqp=5672,
            amqp_dist=25672,
            rabbit_mgmt=15672,
            mongo=27017,
            imap=1143,
            lmtp=24024,
            smtp=1025,
            # Not 4369: the system epmd (started by the Erlang packages) may hold it.
            epmd=14369,
            imaps=1993,  # used only with a server certificate
        )

    @classmethod
    def free(cls) -> StackPorts:
        """Ports the kernel reports unused right now (bind to port 0), all distinct."""
        return cls(*free_ports(len(fields(cls))))


def free_ports(count: int) -> list[int]:
    """Unused loopback ports (for servers and services started on port numbers they are given),
    chosen at random outside the kernel's ephemeral range. A port the kernel picks (a bind to
    port 0) is one it also gives to outgoing connections: between the choice and the server's
    own bind, one of the many clients of a test run (to the broker, the database, the IMAP
    server) could take it, and the server then fails with "address already in use"."""
    low, high = _server_port_range()
    rnd = secrets.SystemRandom()
    chosen: list[int] = []
    # All sockets stay open until every port is chosen, so no port is chosen twice.
    with contextlib.ExitStack() as stack:
        while len(chosen) < count:
            port = rnd.randint(low, high)
            if port in chosen:
                continue
            sock = stack.enter_context(socket.socket())
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                continue  # in use: another
            chosen.append(port)
    return chosen


def _server_port_range() -> tuple[int, int]:
    """The ports below the kernel's ephemeral range (``ip_local_port_range``, 32768-60999 by
    default), or above it when too few are below."""
    try:
        first, last = (int(n) for n in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        first, last = 32768, 60999
    if first - 10_000 >= 5_000:
        return 10_000, first - 1
    if 65_535 - last >= 5_000:
        return last + 1, 65_535
    return 1024, 65_535  # no room outside it: any port


def _port_open(port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:port."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout):
            return True
    except OSError:
        return False


def _greets(port: int, prefix: bytes, timeout: float = 2.0) -> bool:
    """True when the server on the port sends a greeting line starting with prefix."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
            return sock.makefile("rb").readline(512).startswith(prefix)
    except OSError:
        return False


def _epmd_names(port: int) -> list[str] | None:
    """Node names registered with the epmd on the port (NAMES_REQ, Erlang distribution protocol
    docs, "EPMD Protocol"); None when epmd does not answer."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=2.0) as sock:
            sock.sendall(struct.pack(">HB", 1, 110))  # length 1, 'n' = NAMES_REQ
            reply = sock.makefile("rb").read()
    except OSError:
        return None
    if len(reply) < 4:
        return None
    # After the 4-byte epmd port: one "name <node> at port <port>" line per node.
    return [line.split()[1] for line in reply[4:].decode(errors="replace").splitlines() if line]


def _reachable_by(path: Path, user: pwd.struct_passwd) -> bool:
    """True when the user may enter every directory from / down to path (mode bits; ACLs aside)."""
    groups = {user.pw_gid, *(g.gr_gid for g in grp.getgrall() if user.pw_name in g.gr_mem)}
    for directory in (path, *path.parents):
        st = directory.stat()
        if st.st_uid == user.pw_uid:
            allowed = st.st_mode & stat.S_IXUSR
        elif st.st_gid in groups:
            allowed = st.st_mode & stat.S_IXGRP
        else:
            allowed = st.st_mode & stat.S_IXOTH
        if not allowed:
            return False
    return True


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:]) or f"({path} is empty)"


# --- process bookkeeping ---------------------------------------------------------------------------


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat from field 3 (state) on; None when gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def _lives(pid: int, state: str) -> bool:
    if state not in ("Z", "X"):
        return True
    # A multi-threaded process whose main thread has exited shows "Z" while its other threads, and
    # its sockets, live on: beam.smp looks like this for a moment after SIGKILL.
    # A process or thread that ends while it is read answers ENOENT or ESRCH.
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):
        return False
    for task in tasks:
        try:
            raw = Path(f"/proc/{pid}/task/{task}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if raw[raw.rindex(")") + 2] not in ("Z", "X"):
            return True
    return False


def _start_ticks(pid: int) -> int | None:
    """Start time of a live process in clock ticks since boot: pid + this is unique."""
    stat = _proc_stat(pid)
    if stat is None or not _lives(pid, stat[0]):
        return None
    return int(stat[19])


def _group_members(pgid: int) -> list[int]:
    """Live processes in a process group (zombies excluded: they are dead, only not yet reaped)."""
    members = []
    with os.scandir("/proc") as entries:
        for entry in entries:
            if entry.name.isdigit():
                pid = int(entry.name)
                stat = _proc_stat(pid)
                if stat is not None and int(stat[2]) == pgid and _lives(pid, stat[0]):
                    members.append(pid)
    return members


@dataclass
class _Child:
    """One server process we started; it leads its own process group (pgid == pid)."""

    service: str
    pid: int
    start_ticks: int
    log: str
    popen: subprocess.Popen[bytes] | None = None  # None when adopted from stack.json

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return _start_ticks(self.pid) == self.start_ticks

    def record(self) -> dict[str, Any]:
        return {"pid": self.pid, "start_ticks": self.start_ticks, "log": self.log}

    def signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def members(self) -> list[int]:
        if self.popen is not None:
            self.popen.poll()  # reap the leader if it exited, so it stops counting
        leader_ticks = _start_ticks(self.pid)
        if leader_ticks is not None and leader_ticks != self.start_ticks:
            return []  # the pid now belongs to an unrelated process: our group is long gone
        # While any member lives, the kernel does not reuse the pgid, so these are ours.
        return _group_members(self.pid)

    def stop(self, timeout: float) -> None:
        """SIGTERM to the group, SIGKILL what is left after timeout; returns when all are gone."""
        if not self.members():
            self._reap()
            return
        self.signal_group(signal.SIGTERM)
        if not self._wait_gone(timeout):
            self.signal_group(signal.SIGKILL)
            if not self._wait_gone(10.0):
                raise StackError(f"{self.service}: processes {self.members()} survive SIGKILL")
        self._reap()

    def kill(self) -> None:
        self.signal_group(signal.SIGKILL)
        if not self._wait_gone(10.0):
            raise StackError(f"{self.service}: processes {self.members()} survive SIGKILL")
        self._reap()

    def _wait_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.members():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _reap(self) -> None:
        if self.popen is not None:
            self.popen.wait(timeout=5)


# --- the stack -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerCertificate:
    """PEM files of a certificate for 127.0.0.1 (its chain, leaf first) and its private key.

    Given to ``LocalStack``, Dovecot also serves IMAPS with it (``ports.imaps``), so clients can be
    tested with certificate verification on against a CA of their own (tests make a throwaway one).
    """

    chain: Path
    key: Path


class LocalStack:
    """Real servers for one demo or test run, all under ``root``.

    ``start()`` returns when every server answers; ``stop()`` stops whatever this stack (or an earlier
    ``up`` on the same root, as recorded in ``root/stack.json``) started. Not thread-safe; two
    processes working on the same root are serialised by a lock file.
    """

    mail_domain = "demo.test"
    imap_host = LOOPBACK
    smtp_host = LOOPBACK

    def __init__(
        self, root: Path, ports: StackPorts, name: str = "hotline", tls: ServerCertificate | None = None
    ) -> None:
        if not name or set(name) - set(string.ascii_letters + string.digits + "_-"):
            raise ValueError(f"stack name must be letters, digits, '-' or '_': {name!r}")
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        # The data directory is nobody's source: keep it out of git wherever it is created.
        gitignore = self.root / ".gitignore"
        if not gitignore.exists():
            gitignore.write_text("*\n")
        if ports.epmd == 0:
            ports = replace(ports, epmd=free_ports(1)[0])
        if tls is not None and ports.imaps == 0:
            ports = replace(ports, imaps=free_ports(1)[0])
        self.ports = ports
        self.tls = tls
        self.name = name
        # Unique per stack: epmd is per stack too, but Erlang node names also show up in logs, and
        # rabbitmqctl must never reach another stack's node by accident.
        self.node = f"{name}-{ports.amqp}@localhost"
        self._children: dict[str, _Child] = {}

    # -- addresses --

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@{LOOPBACK}:{self.ports.amqp}/"

    @property
    def mongo_url(self) -> str:
        return f"mongodb://{LOOPBACK}:{self.ports.mongo}/"

    @property
    def rabbit_mgmt_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.rabbit_mgmt}/"

    @property
    def imap_port(self) -> int:
        return self.ports.imap

    @property
    def imaps_port(self) -> int:
        """Dovecot's implicit-TLS port; raises StackError on a stack without a certificate."""
        if self.tls is None:
            raise StackError("this stack serves no IMAPS: it was given no server certificate")
        return self.ports.imaps

    @property
    def smtp_port(self) -> int:
        return self.ports.smtp

    @property
    def lmtp_port(self) -> int:
        return self.ports.lmtp

    def urls(self) -> dict[str, str]:
        urls = {
            "amqp": self.amqp_url,
            "rabbitmq_management": self.rabbit_mgmt_url,
            "mongodb": self.mongo_url,
            "imap": f"imap://{self.imap_host}:{self.imap_port}",
            "smtp": f"smtp://{self.smtp_host}:{self.smtp_port}",
            "lmtp": f"lmtp://{LOOPBACK}:{self.lmtp_port}",
        }
        if self.tls is not None:
            urls["imaps"] = f"imaps://{self.imap_host}:{self.ports.imaps}"
        return urls

    # -- lifecycle --

    def start(self) -> None:
        """Start every server that is not running and wait until each one answers.

        Idempotent: servers already running (started by this object or recorded in stack.json by an
        earlier ``up``) are left alone. On failure everything this stack runs is stopped and
        StackError names the server, with the end of its log.
        """
        with self._locked():
            self._adopt_recorded()
            try:
                self._ensure("epmd")  # RabbitMQ would start a detached epmd of its own otherwise
                spawned = [s for s in _SERVICES[1:] if self._spawn_if_stopped(s)]
                for service in spawned:  # they boot in parallel; wait for each in turn
                    self._wait_ready(service)
            except BaseException:
                self._stop_all()
                raise
            finally:
                self._write_state()

    def stop(self) -> None:
        """Stop everything this stack runs: SIGTERM per process group, SIGKILL after a grace period.

        Safe to call repeatedly, after a failed start, and from another process (via stack.json).
        """
        with self._locked():
            self._adopt_recorded()
            try:
                self._stop_all()
            finally:
                self._write_state()

    def server_pids(self) -> dict[str, list[int]]:
        """The live processes of each server this stack started (its whole process group:
        Erlang's helpers, Dovecot's workers), for measuring what the stack costs."""
        return {name: child.members() for name, child in self._children.items()}

    def running(self) -> dict[str, bool]:
        """Which servers run right now (including ones recorded by an earlier ``up``)."""
        self._adopt_recorded()
        return {s: s in self._children and self._children[s].alive() for s in _SERVICES}

    def kill_rabbitmq(self, flush_registries: bool = True) -> None:
        """kill -9 the RabbitMQ node (for fault tests): no graceful shutdown, no connection.close.

        With flush_registries, the node's DETS tables are synced to disk first. RabbitMQ 3.10 keeps
        the registry of quorum queue Raft members (Ra's directory) in DETS, which writes back only
        every 3 minutes (auto_save); a node killed before that comes back with "0 registered
        servers", and a quorum queue declared since never elects a leader again (basic.get and
        publishes time out; cf. rabbitmq-server#10070). Messages are not affected: they are in the
        Ra WAL, fsynced before the publisher confirm. A broker that crashes in production has
        usually run for longer than 3 minutes since its queues were declared, which the flush
        imitates; pass False to kill without it.
        """
        with self._locked():
            self._adopt_recorded()
            child = self._children.pop("rabbitmq", None)
            if child is not None:
                if flush_registries:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        # Best effort: a hung node is killed all the same.
                        self._run_rabbitmqctl("eval", "[dets:sync(T) || T <- dets:all()].", timeout=15)
                child.kill()
            self._write_state()

    def stop_rabbitmq(self, timeout: float = 60.0) -> None:
        """Stop the RabbitMQ node gracefully (SIGTERM, as ``docker compose stop`` or an upgrade
        does): clients get a connection.close (320 CONNECTION_FORCED), queues are closed cleanly."""
        with self._locked():
            self._adopt_recorded()
            child = self._children.pop("rabbitmq", None)
            if child is not None:
                child.stop(timeout)
            self._write_state()

    def start_rabbitmq(self) -> None:
        """(Re)start the RabbitMQ node on the same data directory and wait until it has booted."""
        with self._locked():
            self._adopt_recorded()
            try:
                self._ensure("epmd")
                self._ensure("rabbitmq")
            finally:
                self._write_state()

    def kill_database(self) -> None:
        """kill -9 FerretDB (for fault tests): clients see the database vanish mid-request."""
        with self._locked():
            self._adopt_recorded()
            child = self._children.pop("ferretdb", None)
            if child is not None:
                child.kill()
            self._write_state()

    def start_database(self) -> None:
        """(Re)start FerretDB on the same data directory and wait until it answers."""
        with self._locked():
            self._adopt_recorded()
            try:
                self._ensure("ferretdb")
            finally:
                self._write_state()

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- RabbitMQ administration --

    def rabbitmqctl(self, *args: str, timeout: float = 60.0) -> str:
        """Run ``rabbitmqctl -n <node> args...`` against this stack's node; returns its stdout.

        Raises StackError when it fails or takes longer than timeout seconds.
        """
        try:
            proc = self._run_rabbitmqctl(*args, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise StackError(f"rabbitmqctl {' '.join(args)} took longer than {timeout:.0f} s") from None
        if proc.returncode != 0:
            raise StackError(
                f"rabbitmqctl {' '.join(args)} exited with {proc.returncode}:\n"
                f"{proc.stdout.strip()}\n{proc.stderr.strip()}"
            )
        return proc.stdout

    def add_vhost(self, name: str) -> str:
        """Create a vhost (if missing) where guest may do everything; returns its AMQP URL.

        Goes through the management HTTP API: a rabbitmqctl call boots an Erlang VM (~1 s), and tests
        create a vhost each.
        """
        vhost = quote(name, safe="")
        self._management("PUT", f"vhosts/{vhost}", {})
        self._management(
            "PUT", f"permissions/{vhost}/guest", {"configure": ".*", "write": ".*", "read": ".*"}
        )
        return f"amqp://guest:guest@{LOOPBACK}:{self.ports.amqp}/{vhost}"

    def delete_vhost(self, name: str) -> None:
        """Delete a vhost and everything in it; a missing vhost is not an error."""
        try:
            self._management("DELETE", f"vhosts/{quote(name, safe='')}")
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise

    def _management(self, method: str, path: str, body: dict[str, str] | None = None) -> bytes:
        request = urllib.request.Request(  # noqa: S310 (a fixed http:// URL on loopback)
            f"{self.rabbit_mgmt_url}api/{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "Content-Type": "application/json",
                "Authorization": "Basic " + base64.b64encode(b"guest:guest").decode(),
            },
        )
        # An empty ProxyHandler: an http_proxy in the environment must not capture loopback calls.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=30) as response:
            data: bytes = response.read()
            return data

    # -- internals: state file and lock --

    @property
    def _state_file(self) -> Path:
        return self.root / "stack.json"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # flock, not a pid file: the kernel drops it when the holder dies, so it never goes stale.
        with open(self.root / "stack.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _adopt_recorded(self) -> None:
        """Take over the live processes that stack.json records (an ``up`` from another process)."""
        try:
            state = json.loads(self._state_file.read_text())
        except FileNotFoundError:
            return
        except ValueError as exc:
            raise StackError(f"{self._state_file} is not valid JSON ({exc}); remove it") from exc
        recorded = {
            service: _Child(service, rec["pid"], rec["start_ticks"], rec["log"])
            for service, rec in state.get("processes", {}).items()
            if service not in self._children
        }
        alive = {service: child for service, child in recorded.items() if child.alive()}
        # Compared as StackPorts: a stack.json written before a port was added lacks its key.
        recorded_ports = StackPorts(**state["ports"]) if "ports" in state else None
        if alive and (recorded_ports != self.ports or state.get("name") != self.name):
            raise StackError(
                f"a stack with other ports or name already runs from {self.root} "
                f"({', '.join(alive)}); stop it first: python -m deploy.local.stack down "
                f"--root {self.root}"
            )
        self._children.update(alive)

    def _write_state(self) -> None:
        state = {
            "name": self.name,
            "node": self.node,
            "ports": asdict(self.ports),
            "urls": self.urls(),
            "processes": {s: c.record() for s, c in self._children.items() if c.alive()},
        }
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self._state_file)  # atomic: a reader never sees half a file

    # -- internals: processes --

    def _ensure(self, service: str) -> None:
        if self._spawn_if_stopped(service):
            self._wait_ready(service)

    def _spawn_if_stopped(self, service: str) -> bool:
        child = self._children.get(service)
        if child is not None and child.alive():
            return False
        if child is not None:  # died since: clear what is left of its group before starting anew
            child.kill()
            del self._children[service]
        spawn: dict[str, Callable[[], None]] = {
            "epmd": self._spawn_epmd,
            "rabbitmq": self._spawn_rabbitmq,
            "ferretdb": self._spawn_ferretdb,
            "dovecot": self._spawn_dovecot,
            "smtp": self._spawn_smtp,
        }
        spawn[service]()
        return True

    def _spawn(
        self,
        service: str,
        argv: list[str],
        ports: dict[str, int],
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        busy = [f"{label} {port}" for label, port in ports.items() if _port_open(port)]
        if busy:
            raise StackError(
                f"{service}: port(s) {', '.join(busy)} on {LOOPBACK} already in use by another "
                f"program (see `ss -ltnp`)"
            )
        logs = self.root / "logs"
        logs.mkdir(exist_ok=True)
        log_path = logs / f"{service}.log"
        with open(log_path, "ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {argv}\n".encode())
            log.flush()
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd or self.root,
                # Own process group: stop() signals the group; the demo outlives the CLI's terminal.
                start_new_session=True,
            )
        ticks = _start_ticks(popen.pid)
        if ticks is None:  # died at once (exec failure is raised by Popen; this is a crash)
            popen.wait()
            raise StackError(f"{service} exited at once:\n{_tail(log_path)}")
        self._children[service] = _Child(service, popen.pid, ticks, str(log_path), popen)
        self._write_state()  # recorded at once, so `down` finds it even if this start fails

    def _wait_ready(self, service: str) -> None:
        checks: dict[str, Callable[[], bool]] = {
            "epmd": lambda: _epmd_names(self.ports.epmd) is not None,
            "rabbitmq": self._rabbitmq_ready,
            "ferretdb": self._ferretdb_ready,
            "dovecot": lambda: (
                _greets(self.ports.imap, b"* OK")
                and _greets(self.ports.lmtp, b"220")
                and (self.tls is None or _port_open(self.ports.imaps))
            ),
            "smtp": lambda: _greets(self.ports.smtp, b"220"),
        }
        child = self._children[service]
        timeout = _START_TIMEOUT[service]
        deadline = time.monotonic() + timeout
        while not checks[service]():
            if not child.alive():
                code = child.popen.returncode if child.popen is not None else "?"
                raise StackError(f"{service} exited with {code} while starting:\n{self._log_tail(service)}")
            if time.monotonic() > deadline:
                raise StackError(
                    f"{service} did not answer within {timeout:.0f} s:\n{self._log_tail(service)}"
                )
            time.sleep(0.1)

    def _log_tail(self, service: str) -> str:
        paths = [self.root / "logs" / f"{service}.log"]
        if service == "rabbitmq":
            paths.append(self.root / "logs" / "rabbitmq" / f"{self.node}.log")
        return "\n".join(f"--- last lines of {p} ---\n{_tail(p)}" for p in paths)

    def _stop_all(self) -> None:
        errors = []
        for service in reversed(_SERVICES):
            child = self._children.get(service)
            if child is None:
                continue
            try:
                child.stop(_STOP_TIMEOUT.get(service, _DEFAULT_STOP_TIMEOUT))
                del self._children[service]
            except StackError as exc:  # keep going: the others must still be stopped
                errors.append(str(exc))
        if errors:
            raise StackError("; ".join(errors))

    # -- epmd --

    def _spawn_epmd(self) -> None:
        # Foreground (no -daemon), so it stays in our process group and stop() ends it.
        argv = [_program("epmd"), "-port", str(self.ports.epmd), "-address", LOOPBACK]
        self._spawn("epmd", argv, {"epmd": self.ports.epmd})

    # -- RabbitMQ --

    def _rabbit_dir(self) -> Path:
        return self.root / "rabbitmq"

    def _rabbit_env(self) -> dict[str, str]:
        """Environment for rabbitmq-server and rabbitmqctl alike (same HOME, hence same cookie)."""
        base = self._rabbit_dir()
        # Nothing of a developer's own RabbitMQ/Erlang settings may leak in.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update(
            HOME=str(base / "home"),
            # The CLI (Elixir) warns and mangles non-ASCII names under a latin1 locale.
            LC_ALL="C.UTF-8",
            LANG="C.UTF-8",
            ERL_EPMD_PORT=str(self.ports.epmd),
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_IP_ADDRESS=LOOPBACK,
            RABBITMQ_NODE_PORT=str(self.ports.amqp),
            RABBITMQ_DIST_PORT=str(self.ports.amqp_dist),
            RABBITMQ_MNESIA_BASE=str(base / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.root / "logs" / "rabbitmq"),
            RABBITMQ_PID_FILE=str(base / "rabbitmq.pid"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(base / "enabled_plugins"),
            RABBITMQ_CONFIG_FILE=str(base / "rabbitmq.conf"),
            # Both point at files we never write: /etc/rabbitmq must not be read.
            RABBITMQ_ADVANCED_CONFIG_FILE=str(base / "advanced.config"),
            RABBITMQ_CONF_ENV_FILE=str(base / "rabbitmq-env.conf"),
            # Erlang distribution (the node's amqp_dist port, and the port each rabbitmqctl run
            # opens) listens on all interfaces unless told otherwise.
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=_LOOPBACK_DIST,
            RABBITMQ_CTL_ERL_ARGS=_LOOPBACK_DIST,
        )
        return env

    def _spawn_rabbitmq(self) -> None:
        base = self._rabbit_dir()
        home = base / "home"
        for d in (home, base / "mnesia", self.root / "logs" / "rabbitmq"):
            d.mkdir(parents=True, exist_ok=True)
        cookie = home / ".erlang.cookie"
        if not cookie.exists():
            # Own cookie: only this stack's rabbitmqctl can talk to this node. Erlang insists on
            # owner-only permissions, and would create a random one itself on first start, but
            # then a rabbitmqctl racing the first boot could create a different one.
            cookie.write_text("".join(secrets.choice(string.ascii_uppercase) for _ in range(32)))
            cookie.chmod(0o400)
        (base / "enabled_plugins").write_text("[rabbitmq_management].\n")
        (base / "rabbitmq.conf").write_text(
            "# Written by deploy/local/stack.py at every start; edit that instead.\n"
            "# The AMQP listener comes from RABBITMQ_NODE_IP_ADDRESS/RABBITMQ_NODE_PORT.\n"
            f"management.tcp.ip = {LOOPBACK}\n"
            f"management.tcp.port = {self.ports.rabbit_mgmt}\n"
            "log.file.level = info\n"
            "log.console = false\n"
        )
        self._spawn(
            "rabbitmq",
            [_rabbitmq_script("rabbitmq-server")],
            {
                "amqp": self.ports.amqp,
                "amqp_dist": self.ports.amqp_dist,
                "rabbit_mgmt": self.ports.rabbit_mgmt,
            },
            env=self._rabbit_env(),
            cwd=base,
        )

    def _run_rabbitmqctl(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        """Run rabbitmqctl against our node; raises subprocess.TimeoutExpired after timeout."""
        return subprocess.run(
            [_rabbitmq_script("rabbitmqctl"), "-n", self.node, *args],
            env=self._rabbit_env(),
            cwd=self._rabbit_dir(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def _rabbitmq_ready(self) -> bool:
        # await_startup waits for the boot to finish (plugins included) but fails at once while the
        # node is not yet registered with epmd; a rabbitmqctl run costs a second (it boots an Erlang
        # VM), so first wait for the registration, which is cheap to poll.
        if self.node.split("@")[0] not in (_epmd_names(self.ports.epmd) or []):
            return False
        try:
            proc = self._run_rabbitmqctl("await_startup", "--timeout", "60", timeout=90)
        except subprocess.TimeoutExpired:
            return False  # _wait_ready's deadline decides
        return proc.returncode == 0 and _port_open(self.ports.amqp) and _port_open(self.ports.rabbit_mgmt)

    # -- FerretDB --

    def _spawn_ferretdb(self) -> None:
        data = self.root / "ferretdb"
        state = self.root / "ferretdb-state"
        data.mkdir(exist_ok=True)  # the SQLite backend wants an existing directory
        state.mkdir(exist_ok=True)
        argv = [
            _ferretdb_binary(),
            "--handler=sqlite",
            # WAL (FerretDB's default) with synchronous=NORMAL: a commit survives the server
            # being killed (the fault tests do that) but skips one fsync per write; this stack
            # stands in for MongoDB on one machine and is no place for power-loss durability.
            # FerretDB adds busy_timeout(10000) to a URL that sets none (v1.24.2
            # internal/backends/sqlite/metadata/pool/uri.go, setDefaultValues), so a writer waits
            # up to 10 s for SQLite's lock instead of failing at once with SQLITE_BUSY.
            f"--sqlite-url=file:{data}/?_pragma=synchronous(normal)",
            f"--state-dir={state}",
            f"--listen-addr={LOOPBACK}:{self.ports.mongo}",
            "--debug-addr=-",
            "--telemetry=disable",
            "--log-level=warn",
        ]
        self._spawn("ferretdb", argv, {"mongo": self.ports.mongo})

    def _ferretdb_ready(self) -> bool:
        import pymongo
        import pymongo.errors

        client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            self.mongo_url, serverSelectionTimeoutMS=500, connectTimeoutMS=500
        )
        try:
            client.admin.command("ping")
            return True
        except pymongo.errors.PyMongoError:
            return False
        finally:
            client.close()

    # -- Dovecot --
    #
    # Dovecot never touches mail as root: a uid 0 from the userdb is refused ("userdb returned 0 as
    # uid") and imap/lmtp refuse to keep root ("Mail access not allowed for root"). So as root the
    # mail belongs to the `dovecot` system user, and that user must be able to walk down to the
    # mailboxes and to Dovecot's sockets. A data directory under pytest's tmp dirs (mode 0700) is
    # out of its reach; then Dovecot's part lives in a directory of its own under the system temp
    # dir, linked from root/dovecot and root/mail.

    def _dovecot_users(self) -> tuple[pwd.struct_passwd, str, str]:
        """(mail user, default_internal_user, default_login_user)."""
        if os.geteuid() != 0:
            # Rootless Dovecot: every process runs as the invoking user.
            me = pwd.getpwuid(os.geteuid())
            return me, me.pw_name, me.pw_name
        try:
            return pwd.getpwnam("dovecot"), "dovecot", "dovenull"
        except KeyError:
            raise StackError(
                "dovecot: system users dovecot/dovenull missing; run deploy/local/install.sh"
            ) from None

    def _dovecot_dirs(self, mail_user: pwd.struct_passwd) -> tuple[Path, Path]:
        """(Dovecot's own directory, the mail directory), both reachable by mail_user."""
        if _reachable_by(self.root, mail_user):
            return self.root / "dovecot", self.root / "mail"
        parent = Path(tempfile.gettempdir())
        for old in parent.glob("hotline-dovecot-*"):  # left by stacks whose root is gone
            owner = old / "owner"
            if owner.is_file() and not Path(owner.read_text().strip()).exists():
                shutil.rmtree(old, ignore_errors=True)
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:16]
        outside = parent / f"hotline-dovecot-{digest}"
        outside.mkdir(mode=0o755, exist_ok=True)
        (outside / "owner").write_text(f"{self.root}\n")
        if not _reachable_by(outside, mail_user):
            raise StackError(
                f"dovecot: neither {self.root} nor {outside} can be entered by user "
                f"{mail_user.pw_name}; use a --root below world-searchable directories"
            )
        for name in ("dovecot", "mail"):
            (outside / name).mkdir(exist_ok=True)
            link = self.root / name
            if not os.path.lexists(link):
                link.symlink_to(outside / name)
        return outside / "dovecot", outside / "mail"

    def _dovecot_config(self, base: Path, mail: Path, users: tuple[pwd.struct_passwd, str, str]) -> str:
        mail_user, internal_user, login_user = users
        # Without root, processes cannot chroot; Dovecot's "rootless" setup turns chroots off.
        no_chroot = "  chroot =\n" if os.geteuid() != 0 else ""
        if self.tls is None:
            tls = "# Loopback demo and test server: plaintext logins without TLS.\nssl = no\n"
            imaps_port = 0
        else:
            # IMAPS on its own port with the certificate the stack was given. The plain listener
            # then offers STARTTLS but, on loopback, still takes plaintext logins.
            tls = (
                "# Loopback server: plaintext logins allowed; IMAPS (implicit TLS) on its own port.\n"
                "ssl = yes\n"
                f"ssl_cert = <{base}/tls/chain.pem\n"
                f"ssl_key = <{base}/tls/key.pem\n"
                "ssl_min_protocol = TLSv1.2\n"
            )
            imaps_port = self.ports.imaps
        return f"""\
# Written by deploy/local/stack.py at every start; edit that instead.
instance_name = dovecot-{self.name}-{self.ports.imap}
base_dir = {base}/run
state_dir = {base}/state
log_path = {self.root}/logs/dovecot.log
info_log_path = {self.root}/logs/dovecot.log
protocols = imap lmtp
listen = {LOOPBACK}
shutdown_clients = yes

{tls}disable_plaintext_auth = no
auth_mechanisms = plain login
# client@demo.test logs in (and receives LMTP mail) as "client".
auth_username_format = %Ln
# Every user exists, and the password is the user name: demo accounts hotline/hotline and
# client/client, and fresh per-test users without provisioning.
passdb {{
  driver = static
  args = password=%n
}}
userdb {{
  driver = static
  args = home={mail}/%n
}}
mail_location = maildir:{mail}/%n
mail_uid = {mail_user.pw_uid}
mail_gid = {mail_user.pw_gid}
first_valid_uid = {mail_user.pw_uid}
first_valid_gid = {mail_user.pw_gid}
default_internal_user = {internal_user}
default_internal_group = {grp.getgrgid(mail_user.pw_gid).gr_name if os.geteuid() else "dovecot"}
default_login_user = {login_user}
postmaster_address = postmaster@{self.mail_domain}
# The default "msgid=%m: %$" would put each mail's Message-ID in the log; size and outcome suffice.
deliver_log_format = size=%p: %$

service anvil {{
{no_chroot}}}
service imap-login {{
{no_chroot}  inet_listener imap {{
    address = {LOOPBACK}
    port = {self.ports.imap}
  }}
  inet_listener imaps {{
    address = {LOOPBACK}
    port = {imaps_port}
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = {LOOPBACK}
    port = {self.ports.lmtp}
  }}
}}
"""

    def _spawn_dovecot(self) -> None:
        users = self._dovecot_users()
        mail_user = users[0]
        base, mail = self._dovecot_dirs(mail_user)
        run = base / "run"
        # Dovecot's sockets live in base_dir; a Unix socket path is limited to 107 bytes.
        if len(str(run)) > 70:
            raise StackError(f"dovecot: data directory path too long for Unix sockets: {run}")
        for d in (run, base / "state", mail):
            d.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            os.chown(mail, mail_user.pw_uid, mail_user.pw_gid)  # it creates a maildir per user
        mail.chmod(0o700)
        # A master.pid left by a killed run names a pid that may now be someone else's, and Dovecot
        # refuses to start while that pid exists. Ours is not running (we track it), so drop it.
        (run / "master.pid").unlink(missing_ok=True)
        if self.tls is not None:
            # Copies beside the configuration: Dovecot reads them at start, from a place it can reach.
            tls_dir = base / "tls"
            tls_dir.mkdir(mode=0o700, exist_ok=True)
            shutil.copyfile(self.tls.chain, tls_dir / "chain.pem")
            key = tls_dir / "key.pem"
            key.touch(mode=0o600)
            key.write_bytes(self.tls.key.read_bytes())
        conf = base / "dovecot.conf"
        conf.write_text(self._dovecot_config(base, mail, users))
        self._spawn(
            "dovecot",
            [_program("dovecot"), "-F", "-c", str(conf)],  # -F: foreground, stays in our group
            {
                "imap": self.ports.imap,
                "lmtp": self.ports.lmtp,
                **({"imaps": self.ports.imaps} if self.tls is not None else {}),
            },
        )

    # -- SMTP relay --

    def _spawn_smtp(self) -> None:
        # The venv's interpreter has aiosmtpd even when the CLI runs under another Python.
        venv_python = REPO_ROOT / ".venv" / "bin" / "python"
        python = str(venv_python) if venv_python.exists() else sys.executable
        argv = [
            python,
            "-m",
            "deploy.local.smtp_relay",
            "--port",
            str(self.ports.smtp),
            "--lmtp-port",
            str(self.ports.lmtp),
            "--log-file",
            str(self.root / "logs" / "smtp-relay.log"),
        ]
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        self._spawn("smtp", argv, {"smtp": self.ports.smtp}, env=env, cwd=REPO_ROOT)


# --- locating programs ---------------------------------------------------------------------------


def _program(name: str) -> str:
    # /usr/sbin is not on a non-root user's PATH on Debian.
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        raise StackError(f"{name} not found; run deploy/local/install.sh")
    return found


def _rabbitmq_script(name: str) -> str:
    script = _RABBITMQ_SCRIPTS / name
    return str(script) if script.exists() else _program(name)


def _ferretdb_binary() -> str:
    # Only the patched build (docs/architecture.md, "The database stand-in"), which install.sh gives a
    # name of its own: a stock `ferretdb` scans a collection for every find by _id and lets concurrent
    # updates of one document overwrite each other.
    found = shutil.which(FERRETDB_PROGRAM)
    if found:
        return found
    # Where install.sh puts it; `go env` is not asked, Go need not be on PATH here.
    gopath = os.environ.get("GOPATH") or str(Path.home() / "go")
    for directory in (os.environ.get("GOBIN"), f"{gopath.split(os.pathsep)[0]}/bin"):
        if directory and Path(directory, FERRETDB_PROGRAM).is_file():
            return str(Path(directory, FERRETDB_PROGRAM))
    raise StackError(f"{FERRETDB_PROGRAM} not found on PATH or in $GOPATH/bin; run deploy/local/install.sh")


# --- CLI -----------------------------------------------------------------------------------------


def _print_urls(stack: LocalStack, out: TextIO) -> None:
    width = max(map(len, stack.urls()))
    for label, url in stack.urls().items():
        print(f"  {label:<{width}}  {url}", file=out)


def _load_ports(root: Path) -> StackPorts | None:
    try:
        return StackPorts(**json.loads((root / "stack.json").read_text())["ports"])
    except FileNotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.local.stack",
        description="Start, stop or inspect the local RabbitMQ/FerretDB/Dovecot/SMTP stack.",
    )
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument(
        "--profile",
        choices=["demo", "free"],
        default="demo",
        help="demo: the documented ports (default); free: any unused ports",
    )
    parser.add_argument("--root", type=Path, help="data directory (default: .stack/<profile>)")
    parser.add_argument("--name", default="hotline", help="stack name, part of the Erlang node name")
    args = parser.parse_args(argv)
    # `... status | head` should end quietly, not with a BrokenPipeError traceback.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    root: Path = args.root or REPO_ROOT / ".stack" / args.profile
    recorded = _load_ports(root)

    if args.command == "up":
        if args.profile == "demo":
            ports = StackPorts.demo()
        else:  # keep the ports of a stack that may still run from this root
            ports = recorded or StackPorts.free()
        stack = LocalStack(root, ports, args.name)
        began = time.monotonic()
        try:
            stack.start()
        except StackError as exc:
            print(f"stack: failed to start: {exc}", file=sys.stderr)
            return 1
        print(f"stack: up in {time.monotonic() - began:.1f} s, data in {stack.root}")
        _print_urls(stack, sys.stdout)
        print(f"  (stop with: python -m deploy.local.stack down --root {stack.root})")
        return 0

    if recorded is None:
        print(f"stack: nothing recorded in {root} (no stack.json)")
        return 0 if args.command == "down" else 1
    name = json.loads((root / "stack.json").read_text()).get("name", args.name)
    stack = LocalStack(root, recorded, name)
    if args.command == "down":
        stack.stop()
        print(f"stack: stopped ({stack.root})")
        return 0
    running = stack.running()
    for service, up in running.items():
        child = stack._children.get(service)
        pid = f"pid {child.pid}" if child is not None and up else ""
        print(f"  {service:<9} {'running' if up else 'stopped':<8} {pid}")
    if any(running.values()):
        _print_urls(stack, sys.stdout)
    return 0 if all(running.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
