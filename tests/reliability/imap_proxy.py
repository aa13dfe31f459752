"""A TCP proxy between email_ingest and the real Dovecot that cuts or freezes a connection when
the client sends a given command: network faults made with real parts (QUALITY.md F7, F8).

A fault is armed once and fires on the first connection whose client sends bytes matching its
trigger. ``when`` says at which point of that exchange it strikes:

- ``before``: the triggering command is never forwarded (the server never sees it);
- ``reply``: the server's next chunk is forwarded whole, then the fault strikes (e.g. right
  after "+ idling", so the client sits in IDLE);
- ``mid_reply``: only the first half of the server's next chunk is forwarded (e.g. inside a
  FETCH literal).

``cut`` aborts both sockets (the client sees a reset); ``freeze`` keeps them open and forwards
nothing more in either direction (a silent connection: only a watchdog can notice it).

``hide`` removes capabilities from what the server announces (:class:`HideCapabilities`), so
Dovecot can stand for a server without, say, IDLE; ``from_client`` keeps every byte the client
sent, for a test to read the commands. Plain IMAP only: the local stack's email_ingest talks to
Dovecot without TLS on loopback (``EMAIL_INGEST_IMAP_TLS=false``); through IMAPS or STARTTLS the
proxy would see only ciphertext.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import dataclass, field
from typing import Literal


@dataclass
class Fault:
    trigger: re.Pattern[bytes]
    action: Literal["cut", "freeze"]
    when: Literal["before", "reply", "mid_reply"]
    fired: asyncio.Event = field(default_factory=asyncio.Event)
    at: float = 0.0  # time.monotonic() when it struck
    connection: _Conn | None = None


_LITERAL = re.compile(rb"\{(\d+)\}\r?\n$")
# The capability list of an untagged CAPABILITY response (RFC 3501 7.2.1) or of a CAPABILITY
# response code (7.1), as in the greeting and in a LOGIN's tagged OK.
_CAPABILITIES = re.compile(rb"(?i)(^\* CAPABILITY |\[CAPABILITY )([^\]\r\n]*)")


class HideCapabilities:
    """Rewrites a server's byte stream so that it announces none of ``names``: in the greeting's
    and a tagged OK's ``[CAPABILITY ...]`` and in an untagged ``* CAPABILITY`` line. Reads the
    stream line by line and passes literals (``{n}`` then n bytes: a mail's body) untouched, so
    text inside a mail is never rewritten. ``hidden`` counts the names taken out."""

    def __init__(self, names: set[str]) -> None:
        self.names = {n.upper().encode() for n in names}
        self.hidden = 0
        self._line = b""
        self._literal = 0

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        while data:
            if self._literal:
                part, data = data[: self._literal], data[self._literal :]
                self._literal -= len(part)
                out += part
                continue
            end = data.find(b"\n")
            if end < 0:
                self._line += data
                break
            line, data, self._line = self._line + data[: end + 1], data[end + 1 :], b""
            if (m := _LITERAL.search(line)) is not None:
                self._literal = int(m.group(1))
            out += _CAPABILITIES.sub(self._without, line)
        return bytes(out)

    def _without(self, m: re.Match[bytes]) -> bytes:
        kept = [c for c in m.group(2).split() if c.upper() not in self.names]
        self.hidden += len(m.group(2).split()) - len(kept)
        return m.group(1) + b" ".join(kept)


@dataclass
class _Conn:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    frozen: bool = False
    pending: Fault | None = None
    rewrite: HideCapabilities | None = None
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    closed_at: float = 0.0

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            writer.transport.abort()


class ImapProxy:
    def __init__(
        self, upstream_port: int, upstream_host: str = "127.0.0.1", hide: set[str] | None = None
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.hide = hide or set()
        self.hidden = 0  # capabilities taken out of the server's announcements, all connections
        self.from_client = bytearray()
        self.port = 0
        self.faults: list[Fault] = []
        self.connections: list[tuple[float, _Conn]] = []
        self._changed = asyncio.Condition()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> ImapProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for _, conn in self.connections:
            conn.abort()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._server.wait_closed()

    def arm(
        self,
        trigger: bytes,
        action: Literal["cut", "freeze"],
        when: Literal["before", "reply", "mid_reply"],
    ) -> Fault:
        fault = Fault(re.compile(trigger, re.IGNORECASE), action, when)
        self.faults.append(fault)
        return fault

    async def connection_after(self, moment: float, within: float = 60) -> float:
        """When the first connection accepted after ``moment`` (monotonic) was made."""

        def later() -> float | None:
            return next((t for t, _ in self.connections if t > moment), None)

        async def wait() -> float:
            async with self._changed:
                await self._changed.wait_for(lambda: later() is not None)
            found = later()
            assert found is not None
            return found

        return await asyncio.wait_for(wait(), within)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        conn = _Conn(writer, up_writer, rewrite=HideCapabilities(self.hide) if self.hide else None)
        self.connections.append((time.monotonic(), conn))
        async with self._changed:
            self._changed.notify_all()
        for pump in (self._from_client(conn, reader), self._from_server(conn, up_reader)):
            task = asyncio.create_task(pump)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _strike(self, conn: _Conn, fault: Fault) -> None:
        fault.at = time.monotonic()
        fault.connection = conn
        if fault.action == "cut":
            conn.abort()
        else:
            conn.frozen = True
        fault.fired.set()

    async def _from_client(self, conn: _Conn, reader: asyncio.StreamReader) -> None:
        try:
            while data := await reader.read(65536):
                if conn.frozen:
                    continue  # swallowed: a silent peer
                self.from_client += data
                fault = next((f for f in self.faults if f.trigger.search(data)), None)
                if fault is not None:
                    self.faults.remove(fault)
                    if fault.when == "before":
                        self._strike(conn, fault)
                        continue
                    conn.pending = fault
                conn.upstream.write(data)
                await conn.upstream.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # The client gave up on this connection (for a frozen one: its watchdog fired).
            conn.closed_at = time.monotonic()
            conn.closed.set()
            conn.abort()

    async def _from_server(self, conn: _Conn, reader: asyncio.StreamReader) -> None:
        try:
            while data := await reader.read(65536):
                if conn.frozen:
                    continue
                if conn.rewrite is not None:
                    data = conn.rewrite.feed(data)
                    self.hidden = sum(c.rewrite.hidden for _, c in self.connections if c.rewrite)
                    if not data:
                        continue  # a line not yet whole
                fault, conn.pending = conn.pending, None
                if fault is not None and fault.when == "mid_reply":
                    data = data[: max(1, len(data) // 2)]
                conn.client.write(data)
                await conn.client.drain()
                if fault is not None:
                    self._strike(conn, fault)
        except (ConnectionError, OSError):
            pass
        finally:
            conn.abort()
