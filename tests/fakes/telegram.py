"""A local stand-in for the Telegram Bot API (https://core.telegram.org/bots/api), speaking
its documented JSON: ``POST /bot<token>/<method>``, answers ``{"ok": true, "result": ...}``
or ``{"ok": false, "error_code", "description"[, "parameters": {"retry_after"}]}``.

It knows the methods the gateway uses (sendMessage, answerCallbackQuery, getWebhookInfo,
setWebhook, getMe, deleteMessage, deleteMessages), records every call, and can be told to
answer the next calls of a method with 429 Too Many Requests. It also posts updates to a
webhook as Telegram does, with the secret token header.

It keeps the messages of each chat, the bot's (sendMessage) and the user's (the updates
:class:`Telegram` makes), so deletions follow the documented rules
(https://core.telegram.org/bots/api#deletemessage): in a private chat a bot deletes outgoing
and incoming messages sent less than 48 hours ago; deleteMessages takes 1-100 ids and skips
those it cannot find. What deleteMessages does when one of them is too old the documentation
does not say; this stand-in takes the strict reading and refuses the whole call (400) then.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web


@dataclass
class Call:
    token: str
    method: str
    body: dict[str, Any]
    at: float
    status: int


DELETABLE_FOR = 48 * 3600


@dataclass
class Kept:
    date: float
    outgoing: bool
    text: str


@dataclass
class FakeBotApi:
    tokens: set[str]
    calls: list[Call] = field(default_factory=list)
    flood: dict[str, list[int]] = field(default_factory=dict)  # method -> retry_after of next 429s
    webhook_info: dict[str, Any] = field(
        default_factory=lambda: {"url": "", "has_custom_certificate": False, "pending_update_count": 0}
    )
    url: str = ""
    messages: dict[tuple[int, int], Kept] = field(default_factory=dict)  # (chat, message id)
    _runner: web.AppRunner | None = None
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    # One sequence per chat in Telegram; the user's messages here carry their update's id
    # (from 1000), so the bot's start far above them and the two never meet.
    _next_message_id: int = 1_000_000
    refusals: dict[str, list[tuple[int, str]]] = field(default_factory=dict)  # method -> next errors

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def fail_next(self, method: str, retry_after: int, times: int = 1) -> None:
        self.flood.setdefault(method, []).extend([retry_after] * times)

    def refuse_next(self, method: str, code: int, description: str) -> None:
        """Answer the next call of ``method`` with this error (a 4xx the gateway cannot retry)."""
        self.refusals.setdefault(method, []).append((code, description))

    def received(self, chat_id: int, message_id: int, date: float, text: str = "") -> None:
        """A message the user wrote in ``chat_id`` (what Telegram knows of it)."""
        self.messages[(chat_id, message_id)] = Kept(date, False, text)

    def in_chat(self, chat_id: int) -> dict[int, Kept]:
        """The messages of ``chat_id`` not deleted, by id."""
        return {mid: kept for (chat, mid), kept in self.messages.items() if chat == chat_id}

    def sent(self, chat_id: int | None = None) -> list[Call]:
        return [
            c
            for c in self.calls
            if c.method == "sendMessage"
            and c.status == 200
            and (chat_id is None or c.body.get("chat_id") == chat_id)
        ]

    async def wait_for(self, predicate: Any, within: float = 20) -> None:
        async def loop() -> None:
            async with self._changed:
                await self._changed.wait_for(predicate)

        await asyncio.wait_for(loop(), within)

    @staticmethod
    def _error(code: int, description: str, **parameters: Any) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
        if parameters:
            body["parameters"] = parameters
        return web.json_response(body, status=code)

    async def _handle(self, request: web.Request) -> web.Response:
        token, method = request.match_info["token"], request.match_info["method"]
        try:
            body = await request.json() if request.can_read_body else {}
        except ValueError:
            return self._error(400, "Bad Request: can't parse JSON")
        resp = self._answer(token, method, body if isinstance(body, dict) else {})
        self.calls.append(Call(token, method, body, time.monotonic(), resp.status))
        async with self._changed:
            self._changed.notify_all()
        return resp

    def _answer(self, token: str, method: str, body: dict[str, Any]) -> web.Response:
        if token not in self.tokens:
            return self._error(401, "Unauthorized")
        refusals = self.refusals.get(method)
        if refusals:
            return self._error(*refusals.pop(0))
        pending = self.flood.get(method)
        if pending:
            retry_after = pending.pop(0)
            return self._error(429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after)
        if method == "sendMessage":
            text = body.get("text")
            if not isinstance(body.get("chat_id"), int | str):
                return self._error(400, "Bad Request: chat_id is empty")
            if not isinstance(text, str) or not text:
                return self._error(400, "Bad Request: message text is empty")
            if len(text) > 4096:
                return self._error(400, "Bad Request: message is too long")
            if body["chat_id"] == 403:
                return self._error(403, "Forbidden: bot was blocked by the user")
            self._next_message_id += 1
            if isinstance(body["chat_id"], int):
                self.messages[(body["chat_id"], self._next_message_id)] = Kept(time.time(), True, text)
            return web.json_response(
                {
                    "ok": True,
                    "result": {
                        "message_id": self._next_message_id,
                        "date": int(time.time()),
                        "chat": {"id": body["chat_id"], "type": "private"},
                        "text": text,
                    },
                }
            )
        if method == "deleteMessage":
            chat, mid = body.get("chat_id"), body.get("message_id")
            if not isinstance(chat, int) or not isinstance(mid, int):
                return self._error(400, "Bad Request: message identifier is not specified")
            if (chat, mid) not in self.messages:
                return self._error(400, "Bad Request: message to delete not found")
            if time.time() - self.messages[(chat, mid)].date >= DELETABLE_FOR:
                return self._error(400, "Bad Request: message can't be deleted")
            del self.messages[(chat, mid)]
            return web.json_response({"ok": True, "result": True})
        if method == "deleteMessages":
            chat, ids = body.get("chat_id"), body.get("message_ids")
            if not isinstance(chat, int) or not isinstance(ids, list) or not ids:
                return self._error(400, "Bad Request: message identifiers are not specified")
            if len(ids) > 100 or not all(isinstance(i, int) for i in ids):
                return self._error(400, "Bad Request: too many message identifiers specified")
            found = [(chat, i) for i in ids if (chat, i) in self.messages]
            if any(time.time() - self.messages[k].date >= DELETABLE_FOR for k in found):
                return self._error(400, "Bad Request: message can't be deleted")
            for k in found:
                del self.messages[k]
            return web.json_response({"ok": True, "result": True})
        if method == "answerCallbackQuery":
            if not body.get("callback_query_id"):
                return self._error(400, "Bad Request: query is too old and response timeout expired")
            return web.json_response({"ok": True, "result": True})
        if method == "getWebhookInfo":
            return web.json_response({"ok": True, "result": self.webhook_info})
        if method == "setWebhook":
            self.webhook_info = {**self.webhook_info, "url": body.get("url", "")}
            return web.json_response({"ok": True, "result": True, "description": "Webhook was set"})
        if method == "getMe":
            return web.json_response(
                {"ok": True, "result": {"id": 1, "is_bot": True, "first_name": "Hotline"}}
            )
        return self._error(404, "Not Found")


class Telegram:
    """Posts updates to a bot's webhook the way Telegram does."""

    def __init__(
        self, http: aiohttp.ClientSession, webhook_url: str, secret: str, api: FakeBotApi | None = None
    ) -> None:
        self.http = http
        self.url = webhook_url
        self.secret = secret
        self.next_update_id = 1000
        self.api = api  # told of each message the user writes, so it can be deleted

    def text(
        self,
        chat_id: int,
        text: str,
        update_id: int | None = None,
        lang: str = "ru",
        date: int | None = None,
    ) -> dict[str, Any]:
        uid = update_id if update_id is not None else self._uid()
        date = int(time.time()) if date is None else date
        if self.api is not None:
            self.api.received(chat_id, uid, date, text)
        return {
            "update_id": uid,
            "message": {
                "message_id": uid,
                "date": date,
                "from": {"id": chat_id, "is_bot": False, "first_name": "A", "language_code": lang},
                "chat": {"id": chat_id, "type": "private", "first_name": "A"},
                "text": text,
            },
        }

    def button(self, chat_id: int, data: str, lang: str = "ru") -> dict[str, Any]:
        uid = self._uid()
        return {
            "update_id": uid,
            "callback_query": {
                "id": f"cq{uid}",
                "from": {"id": chat_id, "is_bot": False, "first_name": "A", "language_code": lang},
                "message": {
                    "message_id": 1,
                    "date": int(time.time()),
                    "chat": {"id": chat_id, "type": "private"},
                },
                "chat_instance": "1",
                "data": data,
            },
        }

    def _uid(self) -> int:
        self.next_update_id += 1
        return self.next_update_id

    async def post(self, update: Any, secret: str | None = None, raw: bytes | None = None) -> int:
        headers = {"Content-Type": "application/json"}
        token = self.secret if secret is None else secret
        if token:
            headers["X-Telegram-Bot-Api-Secret-Token"] = token
        async with self.http.post(
            self.url, data=raw if raw is not None else _json(update), headers=headers
        ) as resp:
            await resp.read()
            return resp.status


def _json(value: Any) -> bytes:
    import json

    return json.dumps(value, ensure_ascii=False).encode()
