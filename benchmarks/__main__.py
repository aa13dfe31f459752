"""`make bench`: figures of QUALITY.md 1 measured on the whole local stack, each printed with
the ceiling it is compared with, measured in the same run.

Figures so far:
- chat: client frame in -> console event out, p50 / p99, against a bare aio-pika
  publish (confirm) -> consume round trip on the same broker; idle sockets held by one
  chat_ingest and its memory per socket (benchmarks/chat.py);
- e-mail: IMAP append -> thread visible p95, and backlog import against a bare aioimaplib
  UID FETCH (benchmarks/email.py, whose docstring lists its settings);
- finding a record: each kind of search over 100,000 stored messages against the 1 s ceiling,
  last, as it fills the database (benchmarks/search.py, whose docstring lists its settings).

Environment: BENCH_RATE (messages per second, default 200), BENCH_SECONDS (default 60, as in
QUALITY.md), BENCH_ONLY (a comma-separated subset of ``latency,idle,email,search``; default all).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import aiohttp

from benchmarks import chat as chat_bench
from benchmarks import email as email_bench
from benchmarks import search as search_bench
from deploy.local.services import SERVICES, ServiceProcesses, StackUrls, service_env
from deploy.local.stack import LocalStack, StackPorts, free_ports
from services.chat_ingest.ws import session_id_for
from shared.envelope import message_id_for

ROOT = Path(__file__).resolve().parent.parent
PER_SOCKET_RATE = 4  # below the widget's per-connection frame limit


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def bare_round_trip(amqp_url: str, count: int) -> list[float]:
    """Ceiling: publish with confirm, consume with ack, one at a time, on a scratch queue."""
    conn = await aio_pika.connect_robust(amqp_url)
    try:
        channel = await conn.channel(publisher_confirms=True)
        queue = await channel.declare_queue(exclusive=True)
        got: asyncio.Queue[float] = asyncio.Queue()

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            await message.ack()
            got.put_nowait(time.perf_counter())

        await queue.consume(on_message)
        samples = []
        for _ in range(count):
            start = time.perf_counter()
            await channel.default_exchange.publish(aio_pika.Message(b"x" * 200), routing_key=queue.name)
            samples.append((await got.get()) - start)
        return samples
    finally:
        await conn.close()


@dataclass
class ChatRun:
    """What the chat latency bench saw: ``opening`` are the first messages of the
    conversations, sent together; ``latencies`` the sustained load that follows, with the
    time each was sent (seconds from the start of the load) so drift shows."""

    opening: list[float] = field(default_factory=list)
    latencies: list[tuple[float, float]] = field(default_factory=list)
    acks: list[float] = field(default_factory=list)
    total: int = 0
    answered: int = 0  # conversations whose automatic first answer reached the client


async def chat_to_console(store: str, chat: str, rate: int, seconds: int) -> ChatRun:
    """Open ``rate / 4`` chat conversations (each client sends four messages a second, under
    the widget's per-connection limit), then offer ``rate`` messages a second for ``seconds``
    and time each from the frame sent to its console event."""
    run = ChatRun(total=rate * seconds)
    sent: dict[str, float] = {}
    ack_sent: dict[str, float] = {}
    began = 0.0
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(f"{store}/api/session", json={"login": "sofia", "password": "sofia-demo"}) as r:
            assert r.status == 200
        events = await http.ws_connect(f"{store}/api/events")
        await events.receive_json()
        sockets = max(1, rate // PER_SOCKET_RATE)
        clients: list[tuple[aiohttp.ClientWebSocketResponse, str]] = []
        for _ in range(sockets):
            ws = await http.ws_connect(f"{chat}/chat/ws")
            await ws.send_json({"type": "start", "line": "dv"})
            session = await ws.receive_json()
            clients.append((ws, session_id_for(session["token"])))
        opened = asyncio.Event()
        answered = asyncio.Event()  # every client has its automatic first answer
        unanswered = {ws for ws, _ in clients}
        done = asyncio.Event()

        async def listen() -> None:
            async for msg in events:
                frame = msg.json()
                start = sent.pop(frame.get("message_id") or "", None)
                if start is None:
                    continue
                if not opened.is_set():
                    run.opening.append(time.perf_counter() - start)
                    if len(run.opening) == sockets:
                        opened.set()
                else:
                    now = time.perf_counter()
                    run.latencies.append((start - began, now - start))
                    if len(run.latencies) == run.total:
                        done.set()
                        return

        async def drain(ws: aiohttp.ClientWebSocketResponse) -> None:
            async for msg in ws:  # acks: read so the server never sees a slow reader
                frame = msg.json()
                if frame.get("type") == "message" and ws in unanswered:
                    unanswered.discard(ws)
                    if not unanswered:
                        answered.set()
                start = ack_sent.pop(frame.get("message_id") or "", None)
                if start is not None and opened.is_set():
                    run.acks.append(time.perf_counter() - start)  # chat_ingest's own part

        async def send(ws: aiohttp.ClientWebSocketResponse, session_id: str, text: str) -> None:
            frame_id = uuid.uuid4().hex
            # The gateway derives the message id from the source, and the console event carries it.
            message_id = message_id_for(f"chat:{session_id}:{frame_id}")
            sent[message_id] = ack_sent[message_id] = time.perf_counter()
            await ws.send_json({"type": "message", "id": frame_id, "text": text})

        listener = asyncio.create_task(listen())
        drains = [asyncio.create_task(drain(ws)) for ws, _ in clients]
        # Every conversation opens at once: a new thread, its acknowledgement, queue positions.
        # The sustained load starts once all are open and answered.
        for ws, session_id in clients:
            await send(ws, session_id, "hello")
        try:
            await asyncio.wait_for(asyncio.gather(opened.wait(), answered.wait()), 60)
        except TimeoutError:
            pass
        run.answered = len(clients) - len(unanswered)
        began = time.perf_counter()
        for i in range(run.total):
            ws, session_id = clients[i % sockets]
            delay = began + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing the offered load, not waiting for an event
            await send(ws, session_id, "benchmark")
        try:
            await asyncio.wait_for(done.wait(), 60)
        except TimeoutError:
            pass
        listener.cancel()
        for task in drains:
            task.cancel()
        return run


def main() -> None:
    rate = int(os.environ.get("BENCH_RATE", "200"))
    seconds = int(os.environ.get("BENCH_SECONDS", "60"))
    parts = ("latency", "idle", "email", "search")
    only = {p.strip() for p in os.environ.get("BENCH_ONLY", ",".join(parts)).split(",") if p.strip()}
    unknown = only - set(parts)
    if unknown:
        names = ", ".join(sorted(unknown))
        raise SystemExit(f"BENCH_ONLY: unknown part(s) {names}; use {', '.join(parts)}")
    with (
        tempfile.TemporaryDirectory(prefix="hotline-bench-") as tmp,
        LocalStack(Path(tmp) / "stack", StackPorts.free(), name="hlbench") as stack,
    ):
        urls = StackUrls(
            amqp_url=stack.add_vhost("bench"),
            mongo_url=stack.mongo_url,
            imap_host="127.0.0.1",
            imap_port=stack.imap_port,
            smtp_host="127.0.0.1",
            smtp_port=stack.smtp_port,
        )
        ports = dict(zip(SERVICES, free_ports(len(SERVICES)), strict=True))
        env = service_env(urls, ports, database="bench", line_mailbox="bench-hotline", log_format="json")
        # The idle-sockets figure opens thousands of chats at once: a rate no real line sees, which
        # chat_ingest's per-process start budget (a flood bound) would refuse. The bench measures
        # what a socket with a session costs, so it lifts the budget; the flood bound has its test.
        # All of them come from one address, so the per-source bounds are lifted too.
        env["chat_ingest"]["CHAT_INGEST_SESSION_START_BURST"] = "20000"
        env["chat_ingest"]["CHAT_INGEST_SESSION_STARTS_PER_SECOND"] = "10000"
        env["chat_ingest"]["CHAT_INGEST_MAX_SOCKETS_PER_SOURCE"] = "20000"
        env["chat_ingest"]["CHAT_INGEST_STARTS_PER_SOURCE_PER_MINUTE"] = "20000"
        subprocess.run(
            [sys.executable, "-m", "services.store.admin", "seed-demo"],
            cwd=ROOT,
            env={**os.environ, **env["store"]},
            check=True,
            capture_output=True,
        )
        procs = ServiceProcesses(ROOT, Path(tmp) / "logs")
        try:
            for name in SERVICES:
                procs.start(name, env[name])
            procs.wait_ready(ports)
            if "latency" in only:
                ceiling = asyncio.run(bare_round_trip(urls.amqp_url, 2000))
                run = asyncio.run(
                    chat_to_console(
                        f"http://127.0.0.1:{ports['store']}",
                        f"http://127.0.0.1:{ports['chat_ingest']}",
                        rate,
                        seconds,
                    )
                )
                report_chat(ceiling, run, rate, seconds)
            if "idle" in only:
                chat_bench.run("127.0.0.1", ports["chat_ingest"], procs.pids()["chat_ingest"])
            if "email" in only:

                def stop_email() -> None:
                    procs.stop("email_ingest")

                def start_email() -> None:
                    procs.start("email_ingest", env["email_ingest"])
                    procs.wait_ready(ports)

                email_bench.run(
                    f"http://127.0.0.1:{ports['store']}",
                    stack.imap_port,
                    "bench-hotline",
                    stack.mongo_url,
                    stop_email,
                    start_email,
                )
            if "search" in only:
                search_bench.run(
                    f"http://127.0.0.1:{ports['store']}",
                    stack.mongo_url,
                    "bench",
                    env["store"]["STORE_CLIENT_KEY_SECRET"],
                )
        finally:
            procs.stop_all()


def report_chat(ceiling: list[float], run: ChatRun, rate: int, seconds: int) -> None:
    ms = 1000
    print(
        f"ceiling  bare aio-pika publish(confirm)->consume: p50 {statistics.median(ceiling) * ms:.1f} ms, "
        f"p99 {pct(ceiling, 99) * ms:.1f} ms"
    )
    sockets = max(1, rate // PER_SOCKET_RATE)
    if run.opening:
        print(
            f"chat     {sockets} conversations opened at once, first message -> console event: "
            f"p50 {statistics.median(run.opening) * ms:.0f} ms, max {max(run.opening) * ms:.0f} ms; "
            f"{len(run.opening)}/{sockets} seen, {run.answered}/{sockets} answered"
        )
    lat = [latency for _, latency in run.latencies]
    if not lat:
        print(f"chat     no console events seen for {run.total} messages")
        return
    print(
        f"chat     frame in -> console event, {rate} msg/s for {seconds} s: "
        f"p50 {statistics.median(lat) * ms:.1f} ms, p99 {pct(lat, 99) * ms:.1f} ms "
        f"(target p99 <= 50 ms); {len(lat)}/{run.total} events seen"
    )
    windows: dict[int, list[float]] = {}
    for at, latency in run.latencies:
        windows.setdefault(int(at // 10), []).append(latency)
    print(
        "chat     p99 per 10 s: "
        + ", ".join(f"{pct(v, 99) * ms:.0f}" for _, v in sorted(windows.items()))
        + " ms"
    )
    if run.acks:
        print(
            f"chat     frame in -> ack (chat_ingest, broker confirm), {rate} msg/s: "
            f"p50 {statistics.median(run.acks) * ms:.1f} ms, p99 {pct(run.acks, 99) * ms:.1f} ms"
        )


if __name__ == "__main__":
    main()
