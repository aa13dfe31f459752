"""Every service's /metrics lists the figures operators watch, and they move with the traffic."""

from __future__ import annotations

import asyncio
import re
import uuid

import aiohttp
import pytest

from tests.conftest import Gateway

COMMON = {"hotline_published_total", "hotline_consumed_total", "hotline_handle_seconds"}
EXPECTED = {
    "store": COMMON
    | {
        "hotline_queue_waiting",
        "hotline_queue_oldest_wait_seconds",
        "hotline_claims_total",
        "hotline_dead_letters",
    },
    "dispatcher": COMMON,
    "email_ingest": COMMON
    | {
        "hotline_smtp_failures_total",
        "hotline_imap_lag_seconds",
        "hotline_mail_ingested_total",
        "hotline_mail_sent_total",
    },
    "chat_ingest": COMMON | {"hotline_chat_sockets"},
}


async def scrape(http: aiohttp.ClientSession, port: int) -> str:
    async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
        assert resp.status == 200 and resp.content_type == "text/plain"
        return await resp.text()


def sample(text: str, name: str, **labels: str) -> float | None:
    # The exposition format lists labels in name order.
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    m = (
        re.search(rf"^{name}\{{{re.escape(want)}\}} (\S+)$", text, re.M)
        if labels
        else re.search(rf"^{name} (\S+)$", text, re.M)
    )
    return float(m.group(1)) if m else None


@pytest.mark.service_env({"STORE_METRICS_REFRESH_SECONDS": "0.3"})
async def test_metrics_are_listed_and_follow_the_traffic(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as http:
        for service, names in EXPECTED.items():
            text = await scrape(http, gateway.ports[service])
            declared = set(re.findall(r"^# TYPE (hotline_\w+?)(?:_total)? ", text, re.M))
            declared |= {n + "_total" for n in declared}
            assert names <= declared, (service, names - declared)

        ws = await http.ws_connect(f"{gateway.chat_url}/chat/ws")
        await ws.send_json({"type": "start", "line": "dv"})
        while (await ws.receive_json(timeout=10))["type"] != "session":
            pass
        chat_metrics = await scrape(http, gateway.ports["chat_ingest"])
        assert sample(chat_metrics, "hotline_chat_sockets") == 1
        await ws.send_json({"type": "message", "id": str(uuid.uuid4()), "text": "hello"})
        while (await ws.receive_json(timeout=10))["type"] != "ack":
            pass

        async def waiting_is_one() -> None:
            # The store measures every 0.3 s; read its figure until the new thread shows (another
            # process's figure: there is no event to await).
            while (  # noqa: ASYNC110
                sample(await scrape(http, gateway.ports["store"]), "hotline_queue_waiting", queue="gp-dv")
                != 1
            ):
                await asyncio.sleep(0.2)

        await asyncio.wait_for(waiting_is_one(), 20)
        store_metrics = await scrape(http, gateway.ports["store"])
        assert sample(store_metrics, "hotline_queue_oldest_wait_seconds", queue="gp-dv") >= 0
        assert sample(store_metrics, "hotline_dead_letters", queue="dispatcher.inbound") == 0
        dispatcher_metrics = await scrape(http, gateway.ports["dispatcher"])
        assert (
            sample(dispatcher_metrics, "hotline_consumed_total", queue="dispatcher.inbound", outcome="acked")
            >= 1
        )
        await ws.close()
