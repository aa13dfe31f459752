"""A chat client for tests that behaves like the widget: it keeps each message until its
``ack``, resends unacknowledged ones after a resume, and shows a reply once per id."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from typing import Any

import aiohttp

from tests.conftest import Gateway, free_ports


def start_replica(gateway: Gateway, key: str, **extra: str) -> str:
    """Another chat_ingest process on the same broker and database; returns its URL."""
    (port,) = free_ports(1)
    env = {**gateway.env["chat_ingest"], "CHAT_INGEST_HTTP_PORT": str(port)}
    env.update({f"CHAT_INGEST_{k.upper()}": v for k, v in extra.items()})
    gateway.processes.start("chat_ingest", env, replica=key)
    gateway.ports[key] = port
    gateway.processes.wait_ready(gateway.ports)
    return f"http://127.0.0.1:{port}"


def replica_logs(gateway: Gateway) -> str:
    """The logs of every process of the test, replicas included."""
    return "".join(p.read_text(errors="replace") for p in sorted(gateway.processes.log_dir.glob("*.log")))


class ChatClient:
    def __init__(self, http: aiohttp.ClientSession, base_url: str) -> None:
        self.http = http
        self.base = base_url
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.token: str | None = None
        self.session: dict[str, Any] = {}
        self.pending: dict[str, str] = {}  # frame id -> text, until acked
        self.acked: dict[str, str] = {}  # frame id -> message id
        self.repaired: set[str] = set()  # frame ids whose ack says the text had to be repaired
        self.shown: dict[str, dict[str, Any]] = {}  # reply message id -> frame
        self.received = Counter[str]()  # reply message id -> frames received (redeliveries)
        self.positions: list[int | None] = []
        self.errors: list[dict[str, Any]] = []
        self.closed = 0
        self.changed = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None

    async def _open(self, url: str | None = None) -> None:
        self.ws = await self.http.ws_connect(f"{url or self.base}/chat/ws", autoping=True)
        self._reader = asyncio.create_task(self._read(self.ws))

    async def start(self, **choices: Any) -> dict[str, Any]:
        await self._open()
        assert self.ws is not None
        await self.ws.send_json({"type": "start", **choices})
        await self.wait(lambda: bool(self.token))
        return self.session

    async def resume(self, url: str | None = None) -> dict[str, Any]:
        """Reconnect (to ``url``, e.g. another replica) with the token; resend what was not acked."""
        await self.drop()
        self.session = {}
        await self._open(url)
        assert self.ws is not None and self.token
        await self.ws.send_json({"type": "resume", "token": self.token})
        await self.wait(lambda: bool(self.session))
        for fid, text in list(self.pending.items()):
            await self.ws.send_json({"type": "message", "id": fid, "text": text})
        return self.session

    async def say(self, text: str, frame_id: str | None = None) -> str:
        fid = frame_id or uuid.uuid4().hex
        self.pending[fid] = text
        if self.ws is not None and not self.ws.closed:
            try:
                await self.ws.send_json({"type": "message", "id": fid, "text": text})
            except (ConnectionResetError, aiohttp.ClientConnectionError):
                pass  # kept in pending: resent on resume
        return fid

    async def send_raw(self, data: str) -> None:
        assert self.ws is not None
        await self.ws.send_str(data)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            frame = json.loads(msg.data)
            kind = frame.get("type")
            if kind == "session":
                self.token = frame["token"]
                self.session = frame
                self.positions.append(frame["position"])
            elif kind == "ack":
                self.pending.pop(frame["id"], None)
                self.acked[frame["id"]] = frame["message_id"]
                if frame.get("repaired") is True:
                    self.repaired.add(frame["id"])
            elif kind == "message":
                self.received[frame["message_id"]] += 1
                self.shown.setdefault(frame["message_id"], frame)  # shown once per id, as the widget
            elif kind == "position":
                self.positions.append(frame["position"])
            elif kind == "closed":
                self.closed += 1
            elif kind == "error":
                self.errors.append(frame)
            async with self.changed:
                self.changed.notify_all()
        async with self.changed:
            self.changed.notify_all()

    async def wait(self, predicate: Any, within: float = 20) -> None:
        async def loop() -> None:
            async with self.changed:
                await self.changed.wait_for(predicate)

        await asyncio.wait_for(loop(), within)

    @property
    def from_consultants(self) -> set[str]:
        """Ids of the consultants' replies shown (automatic answers of the bot left out)."""
        return {m for m, f in self.shown.items() if f["from"] == "consultant"}

    @property
    def connected(self) -> bool:
        return self.ws is not None and not self.ws.closed

    async def drop(self) -> None:
        """Lose the connection without saying goodbye (as a phone losing its network)."""
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await self._reader
        self.ws, self._reader = None, None

    async def end(self, reason: str | None = None) -> None:
        """Quick exit; with ``reason`` ``not_safe``, the widget's "Not safe now"."""
        assert self.ws is not None
        await self.ws.send_json({"type": "end"} if reason is None else {"type": "end", "reason": reason})
        await self.wait(lambda: self.closed > 0)
        await self.drop()
