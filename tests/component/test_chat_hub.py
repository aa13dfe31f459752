"""The chat hub's per-connection outbox and writer, with sockets that read slowly or not at
all: a slow reader is cut off once its own queue is full, and never delays anyone else."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from deploy.local.services import new_master_key
from services.chat_ingest import frames
from services.chat_ingest.settings import ChatIngestSettings
from services.chat_ingest.ws import ChatHub, ChatMetrics, Connection, Outbox, Session
from shared.config import load_config
from shared.envelope import Channel, OutboundMessage, utcnow

ROOT = Path(__file__).resolve().parents[2]


class Socket:
    """Stands for an aiohttp WebSocketResponse; ``stuck`` never finishes a write."""

    def __init__(self, stuck: bool) -> None:
        self.stuck = stuck
        self.sent: list[str] = []
        self.closed = False
        self.wrote = asyncio.Event()

    async def send_str(self, data: str) -> None:
        if self.stuck:
            await asyncio.Event().wait()  # a client that never reads: the write never completes
        self.sent.append(data)
        self.wrote.set()

    async def close(self, **_: Any) -> bool:
        self.closed = True
        return True


def reply(n: int, session: str) -> OutboundMessage:
    return OutboundMessage(
        message_id=f"m{session}{n}",
        thread_id="t",
        channel=Channel.CHAT,
        line="dv",
        recipient=session,
        text=f"reply {n}",
        sent_at=utcnow(),
    )


def offline_hub(settings: ChatIngestSettings) -> ChatHub:
    """A chat hub with the example configuration and no broker or database: these tests drive
    its sockets and writers directly."""
    config = load_config(ROOT / "deploy/config/hotline.yaml")
    return ChatHub(settings, config, None, None, ChatMetrics(CollectorRegistry()))  # type: ignore[arg-type]


async def test_a_slow_reader_is_dropped_and_the_others_get_everything_at_once() -> None:
    settings = ChatIngestSettings(
        amqp_url="amqp://x", mongo_url="mongodb://x", master_key=new_master_key(), outbound_queue=4
    )
    hub = offline_hub(settings)
    slow_ws, fast_ws = Socket(stuck=True), Socket(stuck=False)
    slow = Connection(slow_ws, Outbox(settings.outbound_queue))  # type: ignore[arg-type]
    fast = Connection(fast_ws, Outbox(settings.outbound_queue))  # type: ignore[arg-type]
    hub._attach(slow, Session("slow", "dv"))
    hub._attach(fast, Session("fast", "dv"))
    writers = [asyncio.create_task(hub._writer(c)) for c in (slow, fast)]
    try:
        for n in range(50):
            await hub.deliver(reply(n, "slow"), None)  # type: ignore[arg-type]
            await hub.deliver(reply(n, "fast"), None)  # type: ignore[arg-type]
            await fast_ws.wrote.wait()  # the fast client has each reply before the next is sent
            fast_ws.wrote.clear()
        assert len(fast_ws.sent) == 50
        assert slow_ws.sent == [] and slow_ws.closed  # its own queue overflowed: cut off, may resume
        assert slow.outbox.qsize() <= settings.outbound_queue  # memory stays bounded
    finally:
        for w in writers:
            w.cancel()
        await asyncio.gather(*writers, return_exceptions=True)
        await hub.stop()


async def test_a_message_that_meets_an_unexpected_failure_is_answered_by_its_id_and_not_logged(
    monkeypatch: Any,
) -> None:
    """One message meets a bug of ours: its sender is told by the message's id (the widget keeps
    it and sends it again), the log names the failure by type and place, never the text."""
    canary = "CANARY-what-she-wrote"
    settings = ChatIngestSettings(amqp_url="amqp://x", mongo_url="mongodb://x", master_key=new_master_key())
    hub = offline_hub(settings)

    async def accept(conn: Any, session: Any, frame: Any) -> None:
        raise KeyError(f"cannot take {frame.text}")

    monkeypatch.setattr(hub, "_accept", accept)
    ws = Socket(stuck=False)
    conn = Connection(ws, Outbox(settings.outbound_queue))  # type: ignore[arg-type]
    writer = asyncio.create_task(hub._writer(conn))
    try:
        with structlog.testing.capture_logs() as logs:
            await hub._accept_and_answer(conn, Session("s", "dv"), frames.Message(id="m1", text=canary))
            await asyncio.wait_for(ws.wrote.wait(), 5)
    finally:
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
    (sent,) = ws.sent
    assert '"type": "error"' in sent and '"code": "not_accepted"' in sent and '"id": "m1"' in sent
    (failed,) = [e for e in logs if e["event"] == "chat_message_failed"]
    assert failed["error"] == "KeyError" and failed["where"].endswith(" in accept")
    assert canary not in repr(logs) and canary not in sent
