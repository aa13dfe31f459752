"""Chat figures of QUALITY.md 1 beyond latency: idle WebSocket connections held by one
chat_ingest process, and its resident memory per connection.

The clients are raw asyncio streams speaking just enough RFC 6455 to open a socket and
answer the server's heartbeat pings, so that the bench process itself stays small and the
figure is the server's. Each client sends ``start`` so it holds a real chat session.

Environment: BENCH_IDLE (connections, default 10000), BENCH_IDLE_SECONDS (how long they are
held idle, default 30: longer than the 25 s heartbeat, so pings are part of it).
"""

from __future__ import annotations

import asyncio
import base64
import os
import resource
import secrets
import struct
import time
from dataclasses import dataclass
from pathlib import Path


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def _frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (RFC 6455 5.2; clients must mask, 5.3)."""
    mask = secrets.token_bytes(4)
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    else:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    b1, b2 = await reader.readexactly(2)
    n = b2 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await reader.readexactly(8))
    return b1 & 0x0F, await reader.readexactly(n)


@dataclass
class Idle:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    task: asyncio.Task[None] | None = None
    open: bool = True


async def _connect(host: str, port: int) -> Idle:
    reader, writer = await asyncio.open_connection(host, port)
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    writer.write(
        (
            f"GET /chat/ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        writer.close()
        raise ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
    writer.write(_frame(0x1, b'{"type":"start","line":"dv"}'))
    await writer.drain()
    idle = Idle(reader, writer)
    idle.task = asyncio.create_task(_listen(idle))
    return idle


async def _listen(idle: Idle) -> None:
    try:
        while True:
            opcode, payload = await _read_frame(idle.reader)
            if opcode == 0x9:  # ping: answer, as a browser does
                idle.writer.write(_frame(0xA, payload))
            elif opcode == 0x8:
                break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    idle.open = False


async def idle_connections(
    host: str, port: int, pid: int, count: int, hold: float, opened_event: asyncio.Event | None = None
) -> dict[str, float]:
    """Open ``count`` idle chat sockets, hold them ``hold`` seconds, measure; ``opened_event``
    is set once all are open (so a caller can act while they are held)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    before = rss_kib(pid)
    clients: list[Idle] = []
    refused = 0
    began = time.perf_counter()
    for batch in range(0, count, 200):
        results = await asyncio.gather(
            *(_connect(host, port) for _ in range(min(200, count - batch))), return_exceptions=True
        )
        for r in results:
            if isinstance(r, Idle):
                clients.append(r)
            else:
                refused += 1
    opened = time.perf_counter() - began
    if opened_event is not None:
        opened_event.set()
    await asyncio.sleep(hold)  # holding them idle is the measurement
    held = sum(1 for c in clients if c.open)
    after = rss_kib(pid)
    for c in clients:
        if c.task is not None:
            c.task.cancel()
        c.writer.close()
    await asyncio.gather(*(c.task for c in clients if c.task is not None), return_exceptions=True)
    return {
        "asked": count,
        "held": held,
        "refused": refused,
        "open_seconds": opened,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_connection": (after - before) / max(1, held),
    }


def run(host: str, port: int, pid: int) -> None:
    count = int(os.environ.get("BENCH_IDLE", "10000"))
    hold = float(os.environ.get("BENCH_IDLE_SECONDS", "30"))
    r = asyncio.run(idle_connections(host, port, pid, count, hold))
    print(
        f"chat     idle sockets on one chat_ingest: {r['held']}/{r['asked']} held for {hold:.0f} s "
        f"(target 10,000), {r['refused']} refused, opened in {r['open_seconds']:.1f} s"
    )
    print(
        f"chat     memory per idle socket: {r['kib_per_connection']:.1f} KiB RSS "
        f"(target <= 20 KiB; process {r['rss_before_kib'] / 1024:.0f} -> {r['rss_after_kib'] / 1024:.0f} MiB)"
    )
