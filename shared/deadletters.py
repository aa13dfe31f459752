"""Operators' command for dead letters: see what was quarantined and why, and replay it.

    python -m shared.deadletters list   [--queue dispatcher.inbound] [--amqp-url URL]
    python -m shared.deadletters replay [--queue dispatcher.inbound] [--message-id ID] [--amqp-url URL]

The broker URL defaults to $HOTLINE_AMQP_URL. ``list`` shows ids, kinds, reasons and sizes,
never message text. ``replay`` republishes each dead letter (or the one named) to the exchange
and routing key it was first published with, waits for the broker's confirm, and only then
removes it from the dead-letter queue: a replay that fails half-way loses nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from shared import topology


@dataclass(frozen=True)
class DeadLetter:
    message_id: str | None
    kind: str | None
    reason: str
    exchange: str
    routing_key: str
    size: int
    died_at: str


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def describe(message: AbstractIncomingMessage) -> DeadLetter:
    deaths: Any = (message.headers or {}).get("x-death")
    # The oldest death (where the message was first published) is last.
    first: dict[str, Any] = dict(deaths[-1]) if isinstance(deaths, list) and deaths else {}
    keys: Any = first.get("routing-keys") or [message.routing_key or ""]
    return DeadLetter(
        message_id=message.message_id,
        kind=message.type,
        reason=_text(first.get("reason", "unknown")),
        exchange=_text(first.get("exchange", "")),
        routing_key=_text(keys[0]),
        size=len(message.body),
        died_at=_text(first.get("time", "")),
    )


async def run(amqp_url: str, command: str, queue: str, message_id: str | None) -> list[DeadLetter]:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        dead = await channel.get_queue(topology.dead_queue(queue))
        seen: list[DeadLetter] = []
        held: list[AbstractIncomingMessage] = []
        # basic.get without ack: every message is looked at once; the ones not replayed go
        # back when the channel closes, in their order.
        while (message := await dead.get(fail=False, no_ack=False)) is not None:
            held.append(message)
            letter = describe(message)
            if command == "replay" and (message_id is None or message.message_id == message_id):
                exchange = (
                    await channel.get_exchange(letter.exchange)
                    if letter.exchange
                    else channel.default_exchange
                )
                headers = {k: v for k, v in (message.headers or {}).items() if not k.startswith("x-")}
                await exchange.publish(
                    aio_pika.Message(
                        message.body,
                        content_type=message.content_type,
                        type=message.type,
                        message_id=message.message_id,
                        headers=headers,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=letter.routing_key,
                    mandatory=True,
                )
                await message.ack()
            seen.append(letter)
        return seen
    finally:
        await connection.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m shared.deadletters")
    parser.add_argument("command", choices=["list", "replay"])
    parser.add_argument(
        "--queue", default=topology.DISPATCHER_INBOUND.name, choices=[q.name for q in topology.WORK_QUEUES]
    )
    parser.add_argument("--message-id", help="replay only this message")
    parser.add_argument("--amqp-url", default=os.environ.get("HOTLINE_AMQP_URL"))
    args = parser.parse_args(argv)
    if not args.amqp_url:
        parser.error("set --amqp-url or HOTLINE_AMQP_URL")
    letters = asyncio.run(run(args.amqp_url, args.command, args.queue, args.message_id))
    verb = "replayed" if args.command == "replay" else "dead"
    for x in letters:
        if args.command == "replay" and args.message_id not in (None, x.message_id):
            continue
        where = f"{x.exchange} {x.routing_key}"
        print(f"{verb}\t{x.message_id}\t{x.kind}\t{x.reason}\t{where}\t{x.size} bytes\t{x.died_at}")
    if not letters:
        print(f"no dead letters in {topology.dead_queue(args.queue)}", file=sys.stderr)


if __name__ == "__main__":
    main()
