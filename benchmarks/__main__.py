"""`make bench`: every figure of QUALITY.md 1 measured on the whole local stack, each the median
of its repetitions with its spread (min-max), printed with its target and the ceiling it is
compared with (the same operation against the bare broker / IMAP server / database, measured
in the same run), the load average while it was measured; a table on stdout, the JSON in
``.stack/bench/latest.json`` (``--out``), and on stdout too with ``--json`` (``make bench JSON=1``).

Figures, in the order measured:
- the idle stack's resident memory (benchmarks/memory.py), first, while it is idle;
- chat: client frame in -> console event out, p99, against a bare aio-pika publish (confirm)
  -> consume round trip on the same broker; idle sockets held by one chat_ingest and its
  memory per socket (benchmarks/chat.py);
- e-mail: IMAP append -> thread visible p95, and backlog import against a bare aioimaplib
  UID FETCH (benchmarks/email.py, whose docstring lists its settings);
- finding a record: each kind of search over 100,000 stored messages, and statistics for a
  year of them (benchmarks/search.py);
- backlog drain after a dispatcher outage, and inbound saturation against raw publish ->
  consume on the same broker (benchmarks/pipeline.py), last, as they fill the database.

``--quick`` (``make bench QUICK=1``) shortens repetitions so a 2-core machine gives the figures
in well under an hour; each shortened figure says how. ``--growth``: how reading cost grows
with data instead (benchmarks/growth.py; docs/performance.md).

Environment: BENCH_RATE (chat messages per second, default 200), BENCH_SECONDS (default 60,
as in QUALITY.md; 10 with --quick), BENCH_ONLY (a comma-separated subset of
``memory,latency,idle,email,search,drain,saturation``; default all), BENCH_IDLE (idle sockets,
10,000; 2,000 with --quick), BENCH_EMAIL_BACKLOG (mails waiting, 10,000; 300 with --quick).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
from pymongo import AsyncMongoClient

from benchmarks import chat as chat_bench
from benchmarks import email as email_bench
from benchmarks import growth as growth_bench
from benchmarks import memory, pipeline
from benchmarks import search as search_bench
from benchmarks.figures import Figure, Report
from deploy.local.services import SERVICES, ServiceProcesses, StackUrls, service_env
from deploy.local.stack import LocalStack, StackPorts, free_ports
from services.chat_ingest.ws import session_id_for
from shared.envelope import Channel, message_id_for

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


@dataclass(frozen=True)
class Plan:
    """How long and how often each figure is measured: the full plan is QUALITY.md's, the quick
    one (``--quick``) shortens what the field ``shortened`` of each figure then names."""

    quick: bool
    reps: int = 3
    chat_seconds: int = 60
    idle_sockets: int = 10_000
    idle_hold: float = 30
    email_samples: int = 40
    email_backlog: int = 10_000
    saturation_seconds: float = 60
    saturation_budget: float = 900
    saturation_reps: int = 3
    ceiling_count: int = 20_000
    drain_backlog: int = 18_000
    drain_reps: int = 3
    search_messages: int = 100_000

    @classmethod
    def make(cls, quick: bool) -> Plan:
        """The full or the quick plan; BENCH_IDLE (sockets) and BENCH_EMAIL_BACKLOG (mails) set
        those two sizes in either, to measure how the figures grow with them."""
        plan = cls._base(quick)
        if "BENCH_IDLE" in os.environ:
            plan = replace(plan, idle_sockets=int(os.environ["BENCH_IDLE"]))
        if "BENCH_EMAIL_BACKLOG" in os.environ:
            plan = replace(plan, email_backlog=int(os.environ["BENCH_EMAIL_BACKLOG"]))
        return plan

    @classmethod
    def _base(cls, quick: bool) -> Plan:
        if not quick:
            return cls(quick=False)
        return cls(
            quick=True,
            chat_seconds=10,
            idle_sockets=2000,
            idle_hold=10,
            email_samples=20,
            email_backlog=300,
            saturation_seconds=10,
            saturation_budget=150,
            saturation_reps=1,
            ceiling_count=5000,
            drain_backlog=6000,
            drain_reps=1,
            search_messages=20_000,
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter repetitions (they are named)")
    parser.add_argument("--json", action="store_true", help="also print the JSON report on stdout")
    parser.add_argument("--out", type=Path, default=ROOT / ".stack" / "bench" / "latest.json")
    parser.add_argument("--growth", action="store_true", help="how reading cost grows with data (growth.py)")
    args = parser.parse_args(argv)
    # Stopped by SIGTERM (kill, a time limit), the run unwinds as on Ctrl-C, so the stack and the
    # services it started are stopped and its temporary directory removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    plan = Plan.make(args.quick)
    rate = int(os.environ.get("BENCH_RATE", "200"))
    seconds = int(os.environ.get("BENCH_SECONDS", str(plan.chat_seconds)))
    parts = ("memory", "latency", "idle", "email", "search", "drain", "saturation")
    only = {p.strip() for p in os.environ.get("BENCH_ONLY", ",".join(parts)).split(",") if p.strip()}
    unknown = only - set(parts)
    if unknown:
        names = ", ".join(sorted(unknown))
        raise SystemExit(f"BENCH_ONLY: unknown part(s) {names}; use {', '.join(parts)}")
    report = Report(quick=plan.quick)
    if plan.quick:
        report.notes.append(
            f"quick run: chat latency 10 s a repetition (not 60), {plan.idle_sockets:,} idle sockets held "
            f"10 s (not 10,000 for 30 s), 20 e-mail latency samples, a {plan.email_backlog:,}-mail backlog "
            "(not 10,000), saturation probes of 10 s (not 60) in one search (not three), a 6,000-message "
            "drain (not 18,000) once, search over 20,000 messages (not 100,000)"
        )
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
        store_url = f"http://127.0.0.1:{ports['store']}"
        try:
            for name in SERVICES:
                procs.start(name, env[name])
            procs.wait_ready(ports, timeout=300)  # a loaded machine starts them slowly
            if args.growth:
                growth_bench.run(
                    store_url,
                    stack.mongo_url,
                    "bench",
                    env["store"]["STORE_CLIENT_KEY_SECRET"],
                    lambda: memory.cpu_seconds(
                        {**dict(stack.server_pids()), **{n: [pid] for n, pid in procs.pids().items()}}
                    ),
                )
                return
            if "memory" in only:
                measure_memory(report, stack, procs)

            def everything() -> dict[str, list[int]]:
                parts = dict(stack.server_pids())
                parts.update({name: [pid] for name, pid in procs.pids().items()})
                parts["load generator (this bench)"] = [os.getpid()]
                return parts

            if "latency" in only:
                ceilings: list[float] = []
                p99s: list[float] = []
                seen = []
                for _ in range(plan.reps):
                    ceiling = asyncio.run(bare_round_trip(urls.amqp_url, 2000))
                    # CPU time of every process on the machine's cores, the load generator's
                    # too: what the run cost, which a busy machine does not inflate.
                    cpu_before, wall_before = memory.cpu_seconds(everything()), time.monotonic()
                    run = asyncio.run(
                        chat_to_console(store_url, f"http://127.0.0.1:{ports['chat_ingest']}", rate, seconds)
                    )
                    used = memory.cpu_used(cpu_before, memory.cpu_seconds(everything()))
                    wall = time.monotonic() - wall_before
                    report_chat(ceiling, run, rate, seconds)
                    ceilings.append(pct(ceiling, 99) * 1000)
                    lat = [latency for _, latency in run.latencies]
                    p99s.append(pct(lat, 99) * 1000 if lat else float("inf"))
                    seen.append(f"{len(lat)}/{run.total}; {cpu_note(used, wall, run)}")
                    print(f"chat     {cpu_note(used, wall, run)}", flush=True)
                report.add(
                    Figure(
                        "chat_p99",
                        f"chat frame in -> console event p99 at {rate} msg/s for {seconds} s",
                        "ms",
                        p99s,
                        "p99 <= 50 ms",
                        met=statistics.median(p99s) <= 50,
                        ceiling=ceilings,
                        ceiling_what="bare aio-pika publish(confirm)->consume p99, ms",
                        shortened="10 s a repetition, not 60" if plan.quick else "",
                        note="events seen: " + ", ".join(seen),
                    )
                )
            if "idle" in only:
                measure_idle(report, plan, ports, procs, env["chat_ingest"])
            if "email" in only:

                def stop_email() -> None:
                    procs.stop("email_ingest")

                def start_email() -> None:
                    procs.start("email_ingest", env["email_ingest"])
                    procs.wait_ready(ports)

                results = [
                    email_bench.run(
                        store_url,
                        stack.imap_port,
                        "bench-hotline",
                        stack.mongo_url,
                        stop_email,
                        start_email,
                        plan.email_samples,
                        plan.email_backlog,
                        lambda: memory.cpu_seconds(everything()),
                    )
                    for _ in range(plan.reps)
                ]
                p95 = [r["p95_ms"] for r in results]
                report.add(
                    Figure(
                        "email_p95",
                        f"e-mail appended on IMAP -> thread visible, p95 of {plan.email_samples}",
                        "ms",
                        p95,
                        "p95 <= 2,000 ms",
                        met=statistics.median(p95) <= 2000,
                        shortened="20 samples, not 40" if plan.quick else "",
                    )
                )
                imported = [r["import_rate"] for r in results]
                fetch = [r["fetch_rate"] for r in results]
                ratio = statistics.median(imported) / statistics.median(fetch)
                report.add(
                    Figure(
                        "email_backlog",
                        f"e-mail backlog import, {plan.email_backlog} mails of ~20 KiB",
                        "mails/s",
                        imported,
                        ">= 200 mails/s and >= 0.5 x the bare fetch",
                        met=statistics.median(imported) >= 200 and ratio >= 0.5,
                        ceiling=fetch,
                        ceiling_what="bare aioimaplib UID FETCH, mails/s",
                        shortened=(
                            f"{plan.email_backlog:,} mails, not 10,000" if plan.email_backlog < 10_000 else ""
                        ),
                        note=f"{ratio:.2f} x the bare fetch; the database's bound (fetch + raw-mail insert): "
                        + ", ".join(f"{r['bound_rate']:.0f}" for r in results)
                        + " mails/s; CPU ms per mail imported: "
                        + "; ".join(
                            ", ".join(f"{k} {v:.1f}" for k, v in r["cpu_ms_per_mail"].items() if v >= 0.05)
                            for r in results
                        ),
                    )
                )
            if "search" in only:
                measure_search(
                    report, plan, store_url, stack.mongo_url, env["store"]["STORE_CLIENT_KEY_SECRET"]
                )
            master_key = env["dispatcher"]["DISPATCHER_MASTER_KEY"]
            if "drain" in only:
                attempt(
                    report,
                    "drain",
                    measure_drain,
                    report,
                    plan,
                    stack,
                    urls,
                    stack.mongo_url,
                    master_key,
                    procs,
                    env,
                    ports,
                )
            if "saturation" in only:
                attempt(
                    report, "saturation", measure_saturation, report, plan, urls, stack.mongo_url, master_key
                )
        finally:
            procs.stop_all()
    if not args.growth:
        report.write(args.out)
        print()
        print(f"machine: {os.cpu_count()} cores; load average at the end {os.getloadavg()[0]:.1f}")
        for note in report.notes:
            print(f"note: {note}")
        print(report.table())
        print(f"\nJSON: {args.out}")
        if args.json:
            print(json.dumps(report.as_json(), indent=2, default=str))


def attempt(report: Report, part: str, measure: Any, *args: Any) -> None:
    """Run one part; a part that fails is named in the report, and the others still run."""
    try:
        measure(*args)
    except Exception as exc:
        report.notes.append(f"{part}: not measured, it failed: {type(exc).__name__}: {str(exc)[:300]}")
        print(f"{part}: FAILED: {exc!r}", flush=True)


def measure_memory(report: Report, stack: LocalStack, procs: ServiceProcesses) -> None:
    """Three samples of the idle stack, 5 s apart, after 10 s at rest."""
    time.sleep(10)  # at rest: the services' first periodic work (sweeps, metrics) is done
    samples = []
    for i in range(3):
        if i:
            time.sleep(5)  # samples of an idle stack over time, nothing to wait for
        parts = dict(stack.server_pids())
        parts.update({name: [pid] for name, pid in procs.pids().items()})
        samples.append(memory.sample(parts))
    rss = [memory.totals(s)[0] for s in samples]
    pss = [memory.totals(s)[1] for s in samples]
    everything = [memory.totals(s)[2] for s in samples]
    last = samples[-1]
    report.add(
        Figure(
            "idle_memory",
            "resident memory of the idle stack (4 services + broker + database), RSS",
            "MiB",
            rss,
            "<= 600 MiB",
            met=statistics.median(rss) <= 600,
            note=(
                "three samples of one stack 5 s apart; PSS "
                + ", ".join(f"{x:.0f}" for x in pss)
                + " MiB; with the IMAP server and SMTP relay "
                + ", ".join(f"{x:.0f}" for x in everything)
                + " MiB; parts (RSS MiB, processes): "
                + ", ".join(f"{k} {v['rss_mib']:.0f} ({v['processes']:.0f})" for k, v in last.items())
            ),
        )
    )


def measure_idle(
    report: Report, plan: Plan, ports: dict[str, int], procs: ServiceProcesses, env: dict[str, str]
) -> None:
    """Each repetition on a chat_ingest started for it: a process that held sockets before keeps
    the memory they freed and reuses it, so a second run on it would count almost nothing."""
    held, per = [], []
    for i in range(plan.reps):
        if i:
            procs.stop("chat_ingest")
            procs.start("chat_ingest", env)
            procs.wait_ready(ports)
        r = asyncio.run(
            chat_bench.idle_connections(
                "127.0.0.1",
                ports["chat_ingest"],
                procs.pids()["chat_ingest"],
                plan.idle_sockets,
                plan.idle_hold,
            )
        )
        held.append(float(r["held"]))
        per.append(r["kib_per_connection"])
        print(f"chat     idle sockets: {r['held']}/{r['asked']} held, {r['kib_per_connection']:.1f} KiB each")
    short = (
        f"{plan.idle_sockets} sockets held {plan.idle_hold:.0f} s"
        if plan.idle_sockets != 10_000 or plan.idle_hold < 30
        else ""
    )
    report.add(
        Figure(
            "idle_sockets",
            f"idle chat WebSockets held by one chat_ingest (of {plan.idle_sockets})",
            "sockets",
            held,
            "10,000 held",
            met=statistics.median(held) >= 10_000,
            shortened=short,
        )
    )
    report.add(
        Figure(
            "socket_rss",
            "memory per idle chat WebSocket",
            "KiB RSS",
            per,
            "<= 20 KiB",
            met=statistics.median(per) <= 20,
            shortened=short,
        )
    )


def measure_search(report: Report, plan: Plan, store: str, mongo_url: str, secret: str) -> None:
    r = search_bench.run(store, mongo_url, "bench", secret, plan.search_messages)
    short = f"{r['messages']:,} messages, not 100,000" if plan.search_messages < 100_000 else ""
    for who, what, times, found, _truncated in r["searches"]:
        ms = [t * 1000 for t in times]
        report.add(
            Figure(
                "search",
                f"search: {what} ({who})",
                "ms",
                ms,
                "<= 1,000 ms",
                met=statistics.median(ms) <= 1000,
                ceiling=[r["scan_reference"] * 1000],
                ceiling_what="the same word as a text filter without the index, ms",
                shortened=short,
                note=f"{found} found; {REPEAT_NOTE}",
            )
        )
    ms = [t * 1000 for t in r["stats_year"]]
    report.add(
        Figure(
            "stats_year",
            f"statistics for the last 365 days, {r['consultations']:,} consultations",
            "ms",
            ms,
            "<= 2,000 ms at 100k consultations",
            met=None if r["consultations"] < 100_000 else statistics.median(ms) <= 2000,
            shortened=f"{r['consultations']:,} consultations, not 100,000 (see docs/performance.md)",
            note=REPEAT_NOTE,
        )
    )


REPEAT_NOTE = "five repetitions of one query on one corpus"


def measure_drain(
    report: Report,
    plan: Plan,
    stack: LocalStack,
    urls: StackUrls,
    mongo_url: str,
    master_key: str,
    procs: ServiceProcesses,
    env: dict[str, dict[str, str]],
    ports: dict[str, int],
) -> None:
    def stack_parts() -> dict[str, list[int]]:
        parts = dict(stack.server_pids())
        parts.update({name: [pid] for name, pid in procs.pids().items()})
        return parts

    def stop() -> None:
        procs.stop("dispatcher")

    def start() -> float:
        began = time.perf_counter()
        procs.start("dispatcher", env["dispatcher"])
        procs.wait_ready({"dispatcher": ports["dispatcher"], **{n: ports[n] for n in procs.procs}})
        return time.perf_counter() - began

    async def go() -> pipeline.Drain:
        async with pipeline.Inbound(urls.amqp_url, master_key) as inbound:
            return await pipeline.drain(
                inbound,
                mongo_url,
                "bench",
                plan.drain_backlog,
                max(1, plan.drain_backlog // 60),
                stop,
                start,
                lambda: memory.cpu_seconds(stack_parts()),
            )

    drains = []
    for _ in range(plan.drain_reps):
        d = asyncio.run(go())
        drains.append(d)
        print(
            f"drain    {d.backlog} messages ({d.threads} threads with the live ones) published in "
            f"{d.publish_seconds:.1f} s, dispatcher stopped; drained {d.drain_seconds:.1f} s after its "
            f"start ({d.from_ready_seconds:.1f} s after ready); {d.threads_stored} threads stored; "
            f"{d.live_sent} live messages meanwhile, slowest confirm {d.live_confirm_max * 1000:.0f} ms; "
            f"lost {d.lost}",
            flush=True,
        )
    secs = [d.drain_seconds for d in drains]
    report.add(
        Figure(
            "drain",
            f"backlog drain after a dispatcher outage, {plan.drain_backlog:,} messages",
            "s",
            secs,
            "<= 120 s, no publisher stall",
            met=statistics.median(secs) <= 120 and all(d.lost == 0 for d in drains),
            shortened=f"{plan.drain_backlog:,} messages once, not 18,000 three times" if plan.quick else "",
            note="; ".join(
                f"{d.backlog / d.from_ready_seconds:.0f} msg/s from ready, slowest live confirm "
                f"{d.live_confirm_max * 1000:.0f} ms, {d.threads_stored}/{d.threads} threads, lost {d.lost}; "
                + "CPU ms per message: "
                + ", ".join(f"{k} {v:.1f}" for k, v in sorted(d.cpu_ms_per_message.items()) if v >= 0.05)
                for d in drains
            ),
        )
    )


def measure_saturation(report: Report, plan: Plan, urls: StackUrls, mongo_url: str, master_key: str) -> None:
    async def go() -> tuple[list[float], dict[str, list[tuple[int, list[pipeline.Probe]]]]]:
        ceilings = [
            await pipeline.raw_ceiling(urls.amqp_url, plan.ceiling_count, 1200) for _ in range(plan.reps)
        ]
        print(
            "ceiling  raw publish(confirm)->consume(ack): "
            + ", ".join(f"{c:.0f}" for c in ceilings)
            + " msg/s"
        )
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
        found: dict[str, list[tuple[int, list[pipeline.Probe]]]] = {}
        try:
            async with pipeline.Inbound(urls.amqp_url, master_key) as inbound:
                for channel in (Channel.CHAT, Channel.EMAIL):
                    for _ in range(plan.saturation_reps):
                        held, probes = await pipeline.saturation(
                            inbound, client["bench"], channel, plan.saturation_seconds, plan.saturation_budget
                        )
                        for p in probes:
                            print(
                                f"saturate {channel.value} {p.rate} msg/s: sent in {p.send_seconds:.1f} s, "
                                f"all stored {p.stored_within:.1f} s after; "
                                f"{'held' if p.held else 'NOT held'}; lost {p.lost}",
                                flush=True,
                            )
                        found.setdefault(channel.value, []).append((held, probes))
        finally:
            await client.close()
        return ceilings, found

    ceilings, found = asyncio.run(go())
    for channel, runs in found.items():
        rates = [float(held) for held, _ in runs]
        ceiling = statistics.median(ceilings)
        report.add(
            Figure(
                f"saturation_{channel}",
                f"inbound saturation, {channel}: highest rate held {plan.saturation_seconds:.0f} s, no loss",
                "msg/s",
                rates,
                ">= 1,000 msg/s and >= 0.3 x the raw broker",
                met=statistics.median(rates) >= 1000 and statistics.median(rates) >= 0.3 * ceiling,
                ceiling=ceilings,
                ceiling_what="raw publish(confirm)->consume(ack), msg/s",
                shortened=(
                    f"probes of {plan.saturation_seconds:.0f} s (not 60), {plan.saturation_reps} search"
                    if plan.quick
                    else ""
                ),
                note=f"{statistics.median(rates) / ceiling:.2f} x the raw broker; probes: "
                + "; ".join(
                    ", ".join(
                        f"{p.rate}{'' if p.held else ' no'}{f' LOST {p.lost}' if p.lost else ''}"
                        for p in probes
                    )
                    for _, probes in runs
                ),
            )
        )


def cpu_note(used: dict[str, float], wall: float, run: ChatRun) -> str:
    """CPU ms per chat message by process, and how busy the machine's cores were on average
    (from the conversations' opening to the last event)."""
    messages = max(1, run.total + len(run.opening))
    cores = os.cpu_count() or 1
    busy = sum(used.values()) / wall / cores
    return (
        "CPU ms per message: "
        + ", ".join(f"{k} {1000 * v / messages:.2f}" for k, v in sorted(used.items(), key=lambda kv: -kv[1]))
        + f"; the {cores} cores {100 * busy:.0f} % busy over {wall:.0f} s"
    )


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
