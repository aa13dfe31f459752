"""The compose proxy's per-source limits, tried as an attacker would, through a real nginx.

deploy/proxy/nginx.conf is run by the Debian nginx the install adds, in front of this test's
store and chat_ingest: only what cannot run outside Docker is changed (upstream names, listen
ports, file paths, Docker's resolver). One address cannot hold every chat socket nor flood the
log-in, while another address is served at once; a client cannot choose the address the store
counts its failed log-ins against; and nginx writes no client address to its log.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from deploy.local.stack import free_ports
from tests.conftest import ROOT, Gateway
from tests.integration.test_login_throttle import session_from, try_login

NGINX_CONF = ROOT / "deploy" / "proxy" / "nginx.conf"
OTHER = "127.0.0.2"  # a second client address on loopback


@dataclass
class Proxy:
    console: str
    chat: str
    error_log: Path


def local_config(conf: str, directory: Path, gateway: Gateway, console: int, chat: int, health: int) -> str:
    """nginx.conf as compose runs it, pointed at this test's services and files."""
    replaced = {
        r"pid /tmp/nginx\.pid;": f"pid {directory}/nginx.pid;",
        r"error_log stderr (\w+);": rf"error_log {directory}/error.log \1;",
        r"_temp_path /tmp/": f"_temp_path {directory}/",
        r"\n\s*resolver [^;]*;": "",
        r"server store:8080 resolve;": f"server 127.0.0.1:{gateway.ports['store']};",
        r"server chat_ingest:8081 resolve;": f"server 127.0.0.1:{gateway.ports['chat_ingest']};",
        r"listen 8080;": f"listen 127.0.0.1:{console};",
        r"listen 8081;": f"listen 127.0.0.1:{chat};",
        r"listen 127\.0\.0\.1:8099;": f"listen 127.0.0.1:{health};",
        r"worker_processes auto;": "worker_processes 1;",
        r"worker_connections \d+;": "worker_connections 1024;",
    }
    for pattern, replacement in replaced.items():
        conf, n = re.subn(pattern, replacement, conf)
        assert n >= 1, f"nginx.conf no longer has {pattern!r}: update this test's rewrite"
    if os.geteuid() == 0:
        conf = "user root;\n" + conf  # workers write under the test's private directory
    return conf


@pytest.fixture
def proxy(gateway: Gateway, tmp_path: Path) -> Iterator[Proxy]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(nginx).exists(), "nginx is not installed (deploy/local/install.sh installs nginx-light)"
    console, chat, health = free_ports(3)
    conf = tmp_path / "nginx.conf"
    conf.write_text(local_config(NGINX_CONF.read_text(), tmp_path, gateway, console, chat, health))
    subprocess.run([nginx, "-t", "-q", "-p", str(tmp_path), "-c", str(conf)], check=True, capture_output=True)
    proc = subprocess.Popen(
        [nginx, "-p", str(tmp_path), "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert_listening(proc, health)
        yield Proxy(f"http://127.0.0.1:{console}", f"http://127.0.0.1:{chat}", tmp_path / "error.log")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def assert_listening(proc: subprocess.Popen[bytes], port: int) -> None:
    """Wait for nginx's own health port to answer (it binds every listener before serving)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, "nginx exited while starting"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)  # polling a port: there is no event to wait on
    raise AssertionError("nginx did not start listening within 30 s")


@pytest.fixture
async def here() -> AsyncIterator[aiohttp.ClientSession]:
    async with session_from() as http:
        yield http


# As compose runs it: chat_ingest believes the proxy's X-Real-IP, so its own per-source bound
# counts each client behind the proxy, not the proxy.
@pytest.mark.service_env({"CHAT_INGEST_TRUSTED_PROXIES": "127.0.0.1/32"})
async def test_one_address_cannot_hold_every_chat_socket(proxy: Proxy, here: aiohttp.ClientSession) -> None:
    held = []
    try:
        refused = None
        for n in range(25):
            try:
                held.append(await here.ws_connect(f"{proxy.chat}/chat/ws"))
            except aiohttp.WSServerHandshakeError as e:
                refused = (n, e.status)
                break
        assert refused is not None, "one address held 25 chat sockets at once"
        n, status = refused
        assert status == 429 and n <= 20, refused
        # Not only the handshake rate: once it has room again, the sockets held still count.
        await asyncio.sleep(2.5)  # the rate's bucket refilling is time, not an event
        with pytest.raises(aiohttp.WSServerHandshakeError) as again:
            held.append(await here.ws_connect(f"{proxy.chat}/chat/ws"))
        assert again.value.status == 429
        # Someone else is served at once: a chat, not only a socket.
        async with session_from(OTHER) as other:
            ws = await other.ws_connect(f"{proxy.chat}/chat/ws")
            await ws.send_json({"type": "start", "line": "dv"})
            assert (await ws.receive_json(timeout=15))["type"] == "session"
            await ws.close()
    finally:
        for ws in held:
            await ws.close()
    assert_no_address_logged(proxy)


@pytest.mark.service_env({"STORE_LOGIN_ATTEMPTS": "2", "STORE_TRUSTED_PROXIES": "127.0.0.1/32"})
async def test_a_log_in_flood_is_refused_per_address_and_no_client_chooses_its_address(
    gateway: Gateway, proxy: Proxy, here: aiohttp.ClientSession
) -> None:
    gateway.seed_demo_accounts()
    # Made-up addresses in X-Real-IP do not spread the attacker's failures: nginx replaces
    # the header with the address the connection comes from, and the store counts that.
    for n in range(2):
        assert (await try_login(here, proxy.console, "vera", "guess", f"192.0.2.{n}"))[0] == 401
    status, body = await try_login(here, proxy.console, "vera", "vera-demo", "192.0.2.99")
    assert status == 429 and body.get("title") == "Too many failed log-ins", body
    # A browser Vera never used, from another address, logs in at once.
    async with session_from(OTHER) as vera:
        assert (await try_login(vera, proxy.console, "vera", "vera-demo"))[0] == 200
    # A flood from one address is cut off by the proxy itself (a 429 that is not the store's).
    statuses = []
    for _ in range(15):
        async with here.post(f"{proxy.console}/api/session", json={"login": "x", "password": "y"}) as resp:
            statuses.append((resp.status, resp.content_type))
    assert any(s == 429 and "json" not in t for s, t in statuses), statuses
    async with session_from(OTHER) as anna:
        assert (await try_login(anna, proxy.console, "anna", "anna-demo"))[0] == 200
    assert_no_address_logged(proxy)


def assert_no_address_logged(proxy: Proxy) -> None:
    logged = proxy.error_log.read_text() if proxy.error_log.exists() else ""
    assert "127.0.0.1" not in logged and OTHER not in logged and "192.0.2." not in logged, logged[-2000:]
