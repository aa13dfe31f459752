"""The per-line send limit holds for the line as a whole: two reply senders (as two
email_ingest replicas would have) share one database, one broker queue and one real SMTP
server, and the replies of one line never exceed ``send_per_minute`` in any window, nothing
lost, nothing sent twice. The window is shortened from 60 s to keep the test short; the
code path is the service's own (ReplySender, SendLimit on FerretDB, aiosmtpd)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from contextlib import AsyncExitStack
from typing import Any

from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from deploy.local.services import new_master_key
from deploy.local.stack import LocalStack
from services.email_ingest.settings import EmailIngestSettings
from services.email_ingest.smtp import ReplySender, SmtpMetrics
from shared import topology
from shared.broker import Broker, BrokerMetrics
from shared.config import load_config
from shared.envelope import Channel, OutboundMessage, utcnow
from shared.transit import for_master_keys
from tests.integration.email_support import SmtpRecorder, smtp_server

PER_MINUTE = 3  # the line's limit: sends per window
WINDOW = 5.0  # seconds, instead of 60
REPLIES = 8  # 3 at once, 3 a window later, 2 a window after that


class Counting(SmtpRecorder):
    """Records like SmtpRecorder and wakes the test when ``expected`` mails have arrived."""

    def __init__(self, expected: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.expected, self.loop, self.all_in = expected, loop, asyncio.Event()

    async def handle_DATA(self, *args: Any) -> str:
        answer = await super().handle_DATA(*args)
        if len(self.received) >= self.expected:
            self.loop.call_soon_threadsafe(self.all_in.set)  # the server runs in its own thread
        return answer


def most_in_a_window(times: list[float], window: float) -> int:
    """The most of ``times`` that fall within any ``window`` seconds."""
    times = sorted(times)
    return max(sum(1 for t in times[i:] if t - start < window) for i, start in enumerate(times))


async def test_two_senders_keep_one_line_within_its_limit_and_lose_nothing(stack: LocalStack) -> None:
    name = "l" + uuid.uuid4().hex[:8]
    amqp = stack.add_vhost(name)
    recorder = Counting(REPLIES, asyncio.get_running_loop())
    try:
        with smtp_server(recorder, "none") as port:
            settings = EmailIngestSettings(
                amqp_url=amqp,
                mongo_url=stack.mongo_url,
                mongo_database=name,
                smtp_host="127.0.0.1",
                smtp_port=port,
                smtp_security="none",
                send_per_minute=PER_MINUTE,
                from_address="hotline@demo.test",
                master_key=new_master_key(),
            )
            config = load_config(settings.config_path)
            async with AsyncExitStack() as resources:
                senders, registries = [], []
                for replica in ("a", "b"):  # each with its own connections, as a process has
                    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_url)
                    resources.push_async_callback(mongo.close)
                    db = mongo[name]
                    transit = for_master_keys(settings.master_keys())
                    broker = Broker(
                        amqp, 100, BrokerMetrics(CollectorRegistry()), f"sender {replica}", transit
                    )
                    await broker.connect()
                    resources.push_async_callback(broker.close)
                    registry = CollectorRegistry()
                    metrics = SmtpMetrics(registry)
                    sender = ReplySender.on(db, settings, config, broker, None, metrics, WINDOW)
                    await sender.ensure_indexes()
                    senders.append(broker)
                    registries.append(registry)
                    await broker.consume(broker.topology.queues[topology.EMAIL_OUTBOUND.name], sender.handle)
                ids = [uuid.uuid4().hex for _ in range(REPLIES)]
                for message_id in ids:  # all at once, as consultants of a busy line reply
                    await senders[0].publish(
                        OutboundMessage(
                            message_id=message_id,
                            thread_id=uuid.uuid4().hex,
                            channel=Channel.EMAIL,
                            line="113",
                            recipient="client@example.org",
                            text="answer",
                            sent_at=utcnow(),
                            email_message_id=f"<{message_id}@demo.test>",
                        ),
                        topology.OUTBOUND,
                        topology.outbound_key(Channel.EMAIL, "113"),
                    )
                await asyncio.wait_for(recorder.all_in.wait(), 4 * WINDOW)
                slots = [d async for d in db["smtp_send_slots"].find({"line": "113"})]
                for broker in senders:
                    await broker.stop_consuming(10)
    finally:
        stack.delete_vhost(name)

    # Ledger: every reply arrived, once, under its own Message-ID; both senders sent some.
    arrived = Counter(r.message_id for r in recorder.received)
    assert arrived == Counter(f"<{i}@demo.test>" for i in ids)
    per_sender = [int(r.get_sample_value("hotline_mail_sent_total") or 0) for r in registries]
    assert sum(per_sender) == REPLIES and min(per_sender) > 0
    # The shared schedule: a burst of PER_MINUTE, then the next ones a window later.
    times = sorted(s["at"] for s in slots)
    assert len(times) == REPLIES and most_in_a_window(times, WINDOW) == PER_MINUTE
    assert times[PER_MINUTE - 1] - times[0] < 1.0  # the burst left at once
    # What the server saw: a send can be late, never early, so allow for lateness only.
    received = [r.at for r in recorder.received]
    assert max(received) - min(received) >= 2 * WINDOW - 1.0
    assert most_in_a_window(received, WINDOW - 1.0) <= PER_MINUTE
    print(
        f"send limit: {REPLIES} replies, {PER_MINUTE} per {WINDOW:.0f} s, two senders "
        f"{per_sender}; most in one window (ledger) {most_in_a_window(times, WINDOW)}; "
        f"spread at the server {max(received) - min(received):.1f} s; lost 0, doubled 0"
    )
